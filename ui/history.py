"""The run history: run folders under the runs folder, newest first."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoloom.workflows import GeoloomError, Region


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One run folder as the history lists it."""

    folder: Path
    model: str
    region_name: str
    finished: bool
    tiles: dict[str, int]
    started: str | None
    mtime: float

    @property
    def label(self) -> str:
        when = dt.datetime.fromtimestamp(self.mtime).strftime("%Y-%m-%d %H:%M")
        if not self.finished:
            status = "unfinished"
        elif self.tiles.get("failed"):
            status = f"{self.tiles['failed']} tile(s) failed"
        elif self.tiles.get("missing"):
            status = "cancelled"
        else:
            status = f"{self.tiles.get('done', 0)} tile(s)"
        return f"{when} · {self.model} · {self.region_name} · {status}"


def list_runs(runs_dir: Path, *, limit: int = 200) -> list[RunEntry]:
    """Run folders (those with a request.json) directly under ``runs_dir``, newest first."""
    if not runs_dir.is_dir():
        return []
    entries = []
    for folder in runs_dir.iterdir():
        req = folder / "request.json"
        if folder.name.startswith(".") or not req.is_file():
            continue
        try:
            request = json.loads(req.read_text())
            manifest = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else None
        except (OSError, ValueError):
            continue
        props = (manifest or {}).get("properties", {})
        entries.append(RunEntry(
            folder=folder,
            model=str(request.get("parameters", {}).get("model", "?")),
            region_name=str(request.get("region", {}).get("properties", {}).get("name", "region")),
            finished=manifest is not None,
            tiles=dict(props.get("geoloom:tiles", {})),
            started=props.get("geoloom:timings", {}).get("started"),
            mtime=(folder / "run.json").stat().st_mtime if manifest else req.stat().st_mtime,
        ))
    entries.sort(key=lambda e: e.mtime, reverse=True)
    return entries[:limit]


def read_request(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "request.json").read_text())


def region_of(folder: Path) -> Region | None:
    """The region a run was started with, as it was named."""
    try:
        feature = read_request(folder)["region"]
        region = Region.from_geojson(feature)
        props = feature.get("properties", {})
        return Region(region.geometry, name=props.get("name", region.name), source=props.get("source", region.source))
    except (OSError, ValueError, KeyError, GeoloomError):
        return None
