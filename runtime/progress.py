"""Progress events: tiles done, failed and left, elapsed time and an ETA."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

from geoloom.platform.ledger import TileRecord


@dataclass(frozen=True, slots=True)
class Progress:
    """A snapshot of a run's progress, sent to callbacks after every tile."""

    total: int
    done: int
    failed: int
    skipped: int
    elapsed_s: float
    eta_s: float | None
    last: TileRecord | None = None

    @property
    def finished(self) -> int:
        """Tiles with an outcome: done, failed or skipped."""
        return self.done + self.failed + self.skipped

    @property
    def fraction(self) -> float:
        """Share of the tiles finished, 1.0 for a run without tiles."""
        return self.finished / self.total if self.total else 1.0


ProgressCallback = Callable[[Progress], None]


class ProgressTracker:
    """Counts records and estimates the remaining time from the tiles computed in this session."""

    def __init__(self, total: int, *, skipped: int = 0, callback: ProgressCallback | None = None) -> None:
        self.total, self.skipped = total, skipped
        self.done = self.failed = 0
        self.callback = callback
        self.start = time.perf_counter()

    def snapshot(self, last: TileRecord | None = None) -> Progress:
        """Progress now; the ETA extrapolates from the tiles computed in this session."""
        elapsed = time.perf_counter() - self.start
        computed = self.done + self.failed
        left = self.total - computed - self.skipped
        eta = elapsed / computed * left if computed else None
        return Progress(self.total, self.done + self.skipped, self.failed, self.skipped, elapsed, eta, last)

    def update(self, record: TileRecord) -> Progress:
        """Count a tile's record and send the new progress to the callback."""
        if record.state == "done":
            self.done += 1
        else:
            self.failed += 1
        snap = self.snapshot(record)
        if self.callback:
            self.callback(snap)
        return snap

    def start_event(self) -> None:
        """Send the starting progress (resumed tiles already counted) to the callback."""
        if self.callback:
            self.callback(self.snapshot())


class ProgressBar:
    """A tqdm bar fed by Progress events: a widget in Jupyter, text on stderr in a terminal, off otherwise.

    ``disable=None`` (tqdm's rule) hides it when stderr is not a terminal; ``True`` always hides it.
    Call it with each :class:`Progress`; :meth:`close` (or a ``with`` block) ends the bar.
    """

    def __init__(self, *, disable: bool | None = None, unit: str = "tile", desc: str | None = None) -> None:
        self.disable, self.unit, self.desc = disable, unit, desc
        self._bar: Any = None

    def __call__(self, progress: Progress) -> None:
        """Move the bar to the progress now (the first event opens it with the run's tile count)."""
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=progress.total, unit=self.unit, desc=self.desc, disable=self.disable,
                             file=sys.stderr, dynamic_ncols=True)
        self._bar.n = progress.finished
        self._bar.set_postfix(failed=progress.failed, refresh=False)
        self._bar.refresh()

    def close(self) -> None:
        """End the bar (kept on screen at its last state)."""
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_callback(progress: bool | ProgressCallback | None) -> tuple[ProgressCallback | None, ProgressBar | None]:
    """What a ``progress=`` argument means: True a :class:`ProgressBar`, False/None nothing, a callable itself.

    Returns the callback to pass on and the bar to close when the run ends (None when there is none).
    """
    if progress is True:
        bar = ProgressBar()
        return bar, bar
    if progress is False or progress is None:
        return None, None
    if not callable(progress):
        raise TypeError(f"progress= must be True, False or a callable taking a Progress, not {type(progress).__name__}")
    return progress, None
