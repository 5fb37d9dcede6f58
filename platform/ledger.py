"""The tile ledger: one JSON line per tile outcome, append-only, so an interrupted run can resume."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

TileState = Literal["pending", "running", "done", "failed"]


@dataclass(frozen=True, slots=True)
class TileRecord:
    """What happened to one tile: its state, attempts, timings and error."""

    key: str
    row: int
    col: int
    state: TileState
    attempts: int = 1
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    worker: str | None = None
    detections: int = 0
    scenes: tuple[str, ...] = ()
    #: Pixel counts of the tile's core (:func:`geoloom.platform.tile_stats.core_counts`).
    counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        """The record as one JSON line (sorted keys)."""
        d = asdict(self)
        d["scenes"] = list(self.scenes)
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileRecord:
        """A record from a parsed JSON line; unknown fields are ignored."""
        d = dict(d)
        d["scenes"] = tuple(d.get("scenes") or ())
        d["counts"] = dict(d.get("counts") or {})
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class Ledger:
    """Append-only JSON-lines ledger in the run folder; the last line of a tile wins."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, record: TileRecord) -> None:
        """Write one record and fsync it, so a crash loses at most a torn last line."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(record.to_json() + "\n")
            f.flush()
            os.fsync(f.fileno())

    def drop_torn_tail(self) -> bool:
        """Cut a last line a crash left without its newline, so the next record starts on a line of its own."""
        if not self.path.exists():
            return False
        with open(self.path, "rb+") as f:
            data = f.read()
            if not data or data.endswith(b"\n"):
                return False
            f.truncate(data.rfind(b"\n") + 1)
            return True

    def records(self) -> dict[str, TileRecord]:
        """The latest record of every tile (a torn last line from a crash is ignored)."""
        out: dict[str, TileRecord] = {}
        if not self.path.exists():
            return out
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = TileRecord.from_dict(json.loads(line))
                except (json.JSONDecodeError, TypeError):
                    continue
                out[rec.key] = rec
        return out

    def done_keys(self) -> set[str]:
        """Keys of the tiles whose latest record is done."""
        return {k for k, r in self.records().items() if r.state == "done"}

    def counts(self, keys: Iterable[str]) -> dict[str, int]:
        """How many of ``keys`` are pending, done or failed (no record counts as pending)."""
        recs = self.records()
        counts = {"pending": 0, "done": 0, "failed": 0}
        for k in keys:
            state = recs[k].state if k in recs else "pending"
            counts[state if state in counts else "pending"] += 1
        return counts
