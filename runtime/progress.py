"""Progress events: tiles done, failed and left, elapsed time and an ETA."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

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
