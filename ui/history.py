"""The run history: run folders under the runs folder, newest first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from geoloom.workflows import GeoloomError, Region, Run, RunRequest, TileCounts, request_from_folder


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One run folder as the history lists it."""

    folder: Path
    model: str
    region_name: str
    finished: bool
    tiles: TileCounts | None
    started: str | None
    mtime: float
    user: str | None = None  # who started it (the job service's record)

    @property
    def label(self) -> str:
        """One line for the history list: when, model, region and how the run ended."""
        when = dt.datetime.fromtimestamp(self.mtime).strftime("%Y-%m-%d %H:%M")
        if not self.finished or self.tiles is None:
            status = "unfinished"
        elif self.tiles.failed:
            status = f"{self.tiles.failed} tile(s) failed"
        elif self.tiles.missing:
            status = "cancelled"
        else:
            status = f"{self.tiles.done} tile(s)"
        who = f" · {self.user}" if self.user else ""
        return f"{when} · {self.model} · {self.region_name} · {status}{who}"


def list_runs(runs_dir: Path, *, limit: int = 200, owners: dict[str, str] | None = None) -> list[RunEntry]:
    """Run folders (those with a request.json) directly under ``runs_dir``, newest first; ``owners``
    (folder -> user, from the job service) names who started each."""
    if not runs_dir.is_dir():
        return []
    entries = []
    for folder in runs_dir.iterdir():
        req = folder / "request.json"
        if folder.name.startswith(".") or not req.is_file():
            continue
        run = Run(folder)
        try:
            request = run.request
            finished = (folder / "run.json").is_file()
            tiles, started = (run.tiles, run.timings.get("started")) if finished else (None, None)
        except (OSError, ValueError, KeyError, GeoloomError):
            continue  # a foreign or older folder
        entries.append(RunEntry(
            folder=folder, model=request.model.name, region_name=request.region.name, finished=finished, tiles=tiles,
            started=started, mtime=(folder / "run.json").stat().st_mtime if finished else req.stat().st_mtime,
            user=(owners or {}).get(str(folder.resolve())),
        ))
    entries.sort(key=lambda e: e.mtime, reverse=True)
    return entries[:limit]


def read_request(folder: Path) -> RunRequest:
    """The request a run folder was started with."""
    return request_from_folder(folder)


def region_of(folder: Path) -> Region | None:
    """The region a run was started with, as it was named."""
    try:
        return read_request(folder).region
    except (OSError, ValueError, KeyError, GeoloomError):
        return None
