"""The remote task: one tile with retries, always answering with a small record."""

from __future__ import annotations

import os
import socket
import time
import traceback

from geoloom.platform.errors import GeoloomError
from geoloom.platform.ledger import TileRecord
from geoloom.platform.plan import TileTask
from geoloom.platform.tile_job import TileJob, run_tile
from geoloom.runtime.model_cache import ModelSpec, load_model


def worker_name() -> str:
    """This worker's address under Dask, else host:pid."""
    try:
        from distributed import get_worker

        return get_worker().address
    except Exception:
        return f"{socket.gethostname()}:{os.getpid()}"


def execute_tile(task: TileTask, job: TileJob, spec: ModelSpec, retries: int = 2) -> TileRecord:
    """Run one tile, retrying up to ``retries`` times; a tile that keeps failing is recorded failed."""
    attempts = 0
    while True:
        attempts += 1
        started = time.perf_counter()
        try:
            model = load_model(spec)
            record = run_tile(task, job, model)
            return TileRecord(**{**record_fields(record), "attempts": attempts, "worker": worker_name()})
        except Exception as exc:
            if attempts > retries:
                return TileRecord(
                    key=task.key,
                    row=task.row,
                    col=task.col,
                    state="failed",
                    attempts=attempts,
                    seconds={"total": round(time.perf_counter() - started, 4)},
                    error=describe_error(exc),
                    worker=worker_name(),
                )
            time.sleep(min(0.2 * attempts, 2.0))


def describe_error(exc: BaseException) -> str:
    """One line: what failed, with the file for read errors and the innermost frame for bugs."""
    msg = str(exc).splitlines()[0] if str(exc) else ""
    if isinstance(exc, GeoloomError):
        return f"{type(exc).__name__}: {msg}"
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno})" if tb else ""
    return f"{type(exc).__name__}: {msg}{where}"


def record_fields(record: TileRecord) -> dict:
    """The record's fields as a dict, to copy it with some changed."""
    return {f: getattr(record, f) for f in record.__dataclass_fields__}
