"""Running a plan's tiles on an executor: placement, records into the ledger, progress, cancel."""

from __future__ import annotations

import logging
import warnings
from typing import Callable

from geoloom.platform.errors import RunError
from geoloom.platform.ledger import Ledger, TileRecord
from geoloom.platform.models.card import ModelCard
from geoloom.platform.plan import TileTask
from geoloom.platform.tile_job import TileJob
from geoloom.runtime.executors import Executor
from geoloom.runtime.model_cache import ModelSpec
from geoloom.runtime.progress import ProgressCallback, ProgressTracker
from geoloom.runtime.tasks import execute_tile

log = logging.getLogger(__name__)


def placement(card: ModelCard, executor: Executor) -> dict[str, float] | None:
    """Resources to ask for: a GPU when the model wants one and a worker offers it.

    A task asking for a resource no worker has would wait forever, so this checks first:
    a model that prefers a GPU falls back to CPU with a warning; one that requires it fails.
    """
    if card.gpu == "none":
        return None
    info = executor.info()
    if info.gpus > 0:
        return {"GPU": 1} if info.engine != "in-process" else None
    if card.gpu == "requires":
        raise RunError(
            f"model {card.name} requires a GPU but no worker offers one ({info.describe()}); "
            "start workers with --resources GPU=1 or pick a CPU model"
        )
    warnings.warn(f"model {card.name} prefers a GPU but none is available ({info.describe()}); running on CPU", stacklevel=2)
    return None


def run_tiles(
    executor: Executor,
    tasks: list[TileTask] | tuple[TileTask, ...],
    job: TileJob,
    spec: ModelSpec,
    ledger: Ledger,
    *,
    resources: dict[str, float] | None = None,
    retries: int = 2,
    skip: set[str] | None = None,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[TileRecord]:
    """Run every task not in ``skip``; each record goes to the ledger as it arrives."""
    skip = skip or set()
    todo = [t for t in tasks if t.key not in skip]
    tracker = ProgressTracker(len(tasks), skipped=len(tasks) - len(todo), callback=progress)
    tracker.start_event()
    records = []
    cols = [t.col for t in todo] or [0]
    c0, span = min(cols), max(cols) - min(cols) + 1

    def strip(t: TileTask) -> float:  # workers take neighbouring columns of tiles (shared source blocks)
        return (t.col - c0) / span

    for outcome in executor.imap_unordered(
        execute_tile, todo, job, spec, retries, key=lambda t: t.key, resources=resources, cancelled=cancelled,
        affinity=strip,
    ):
        task: TileTask = outcome.item
        if outcome.error is not None:
            record = TileRecord(
                key=task.key, row=task.row, col=task.col, state="failed",
                error=f"{type(outcome.error).__name__}: {outcome.error}".splitlines()[0],
            )
        else:
            record = outcome.value
        ledger.append(record)
        records.append(record)
        tracker.update(record)
    return records
