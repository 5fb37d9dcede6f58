"""One run per row of a table of regions: ``detect(areas, by="name", out=...)``.

The rows of a GeoDataFrame or of a vector file layer are grouped by the ``by`` column (rows with the
same value are one region, their polygons unioned); each group becomes an ordinary run in
``out/<label>``, where the label is the value made safe as a folder name. ``out/runs.json`` records
the column and label -> folder, and :func:`open_runs` reads the set back as a :class:`RunSet`.
Every row is planned before any pixel is read, and one executor (one embedded cluster) serves all rows.
"""

from __future__ import annotations

import json
import os
import re
import time
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import geopandas as gpd
import pandas as pd

from geoloom.platform import region_sources as sources
from geoloom.platform.acquisitions import by_date
from geoloom.platform.errors import GeoloomError, OutputError, RegionError
from geoloom.platform.region import Region, as_region
from geoloom.runtime.executors import ClusterInfo, make_executor
from geoloom.runtime.progress import Progress, ProgressCallback, progress_callback
from geoloom.workflows.api import Run
from geoloom.workflows.request import build_request
from geoloom.workflows.runs import Prepared, execute, prepare

__all__ = ["MAX_ROWS", "RUNS_FILE", "RunSet", "TableRow", "detect_rows", "open_runs", "prepare_rows", "safe_label",
           "table_rows"]

#: The most runs one ``by=`` call starts (distinct values of the column).
MAX_ROWS = 500
#: The file in ``out`` that lists the set's runs.
RUNS_FILE = "runs.json"
_LABEL_CHARS = 80
_WORDS = {
    "python": {"by": "by={by!r}", "table": "give region= as a GeoDataFrame, a vector file path ('areas.gpkg:layer') "
                                          "or a GeoJSON FeatureCollection, or drop by="},
    "cli": {"by": "--by {by}", "table": "give the regions with --region FILE[:LAYER] (or --geojson FILE), "
                                       "or drop --by"},
}


def _arg(door: str, by: str) -> str:
    """The ``by`` argument as the front door spells it: ``by='name'`` or ``--by name``."""
    return _WORDS[door]["by"].format(by=by)


@dataclass(frozen=True, slots=True)
class TableRow:
    """One run of the set: its folder label, the column's value and the region (its rows unioned)."""

    label: str
    value: Any
    region: Region


def safe_label(value: Any) -> str:
    """A column value as a folder name: letters, digits, ``.``, ``_`` and ``-`` (``"Bay / North"`` -> ``"Bay-North"``)."""
    text = unicodedata.normalize("NFKC", str(value)).strip()
    text = re.sub(r"[^\w.-]+", "-", text).strip("-._")
    return text[:_LABEL_CHARS].rstrip("-._") or "row"


def _unique(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3``... so that no two folders clash (case-insensitively, as on macOS)."""
    label, n = base, 1
    while label.lower() in taken:
        n += 1
        label = f"{base}-{n}"
    taken.add(label.lower())
    return label


# -- the table --------------------------------------------------------------------------------------


def _read_table(value: Any, *, by: str, door: str) -> tuple[Any, str]:
    """The table a ``by=`` region names (GeoDataFrame, GeoSeries, vector file, FeatureCollection) and its name."""
    if sources.is_frame(value):
        return value, type(value).__name__
    if isinstance(value, dict) and value.get("type") == "FeatureCollection":
        return gpd.GeoDataFrame.from_features(value.get("features") or [], crs="EPSG:4326"), "FeatureCollection"
    if isinstance(value, str | Path) and str(value).strip() not in ("", "-"):
        path, layer = sources.split_layer(value if isinstance(value, Path) else str(value).strip())
        if path.suffix.lower() in sources.VECTOR_SUFFIXES or path.is_file():
            sources.read_vector_file(path, layer)  # a missing file, layer or driver: the region's own error
            if path.suffix.lower() in sources.GEOPARQUET_SUFFIXES:
                frame = gpd.read_parquet(path)
            else:
                frame = gpd.read_file(path, layer=layer, engine="pyogrio")
            return frame, f"file {path.name}" + (f" (layer {layer})" if layer else "")
    kind = f"{str(value)!r}, which is no vector file" if isinstance(value, str | Path) else f"a {type(value).__name__}"
    raise RegionError(f"{_arg(door, by)} needs a table of regions, one run per row, not {kind}; "
                      f"{_WORDS[door]['table']}")


def _columns(frame: Any) -> dict[str, Any]:
    """The frame's columns other than its geometry, by name as text."""
    if isinstance(frame, gpd.GeoSeries):
        return {}
    return {str(c): c for c in frame.columns if c != frame.geometry.name}


def _check_row(geom: Any, index: Any, value: Any, *, by: str, what: str, door: str) -> None:
    """A row's geometry is a valid, non-empty polygon; else a RegionError naming the row."""
    where = f"{_arg(door, by)}: row {index} ({by}={value!r}) of the {what}"
    if geom is None or geom.is_empty:
        raise RegionError(f"{where} has no geometry; give every row a polygon, or drop the row")
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise RegionError(f"{where} is a {geom.geom_type}, not a polygon; buffer points or lines into polygons "
                          "first, or drop the row")
    if not geom.is_valid:
        from shapely.validation import explain_validity

        raise RegionError(f"{where} is not valid ({explain_validity(geom)}); fix the polygon (a fix-geometries "
                          "tool, or shapely.make_valid), or drop the row")


def table_rows(region: Any, by: str, *, max_area_km2: float | None, door: str = "python") -> list[TableRow]:
    """The runs of a table of regions: one per distinct value of column ``by``, in order of first appearance."""
    by = str(by)
    frame, what = _read_table(region, by=by, door=door)
    columns = _columns(frame)
    if by not in columns:
        known = ", ".join(columns) if columns else "none besides the geometry; add a column that names each region"
        raise RegionError(f"{_arg(door, by)} is not a column of the {what}; its columns are: {known}")
    if len(frame) == 0:
        raise RegionError(f"{_arg(door, by)}: the {what} has no rows; give at least one region")
    values = frame[columns[by]]
    for index, value in values.items():
        if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)) or not str(value).strip():
            raise RegionError(f"{_arg(door, by)}: row {index} of the {what} has no {by}; fill it in, or drop the row")
    groups = list(dict.fromkeys(values.tolist()))
    if len(groups) > MAX_ROWS:
        raise RegionError(f"{_arg(door, by)}: the {what} has {len(groups)} distinct values, more runs than the "
                          f"{MAX_ROWS} one call starts; split the table, or group the rows by a coarser column")
    for (index, value), geom in zip(values.items(), frame.geometry):
        _check_row(geom, index, value, by=by, what=what, door=door)
    rows, taken = [], {RUNS_FILE}
    for value in groups:
        label = _unique(safe_label(value), taken)
        part = frame[values == value]
        try:
            reg = as_region(Region.from_frame(part, name=str(value)), max_area_km2=max_area_km2)
        except RegionError as exc:
            raise RegionError(f"{_arg(door, by)}: the region {by}={value!r}: {exc}") from None
        rows.append(TableRow(label, value.item() if hasattr(value, "item") else value, reg))
    return rows


# -- planning and running -----------------------------------------------------------------------------


def _for_row(row: TableRow, by: str, exc: GeoloomError) -> GeoloomError:
    """The same error, saying which row it is about."""
    try:
        return type(exc)(f"the run for {by}={row.value!r}: {exc}")
    except TypeError:
        return exc


def prepare_rows(region: Any, *, by: str, out: str | Path, options: dict[str, Any],
                 max_area_km2: float | None, door: str = "python") -> list[tuple[TableRow, Prepared]]:
    """Every row's run planned (scenes found, tiles planned, no pixels read) into ``out/<label>``;
    ``options``: :func:`~geoloom.workflows.request.build_request`'s keywords, the same for every row."""
    folder = Path(out).expanduser()
    planned = []
    for row in table_rows(region, by, max_area_km2=max_area_km2, door=door):
        try:
            planned.append((row, prepare(build_request(row.region, out=folder / row.label, max_area_km2=None,
                                                       **options))))
        except GeoloomError as exc:
            raise _for_row(row, by, exc) from None
    return planned


def _tiles(prepared: Prepared) -> int:
    """The tiles a run computes: its plan's, once per acquisition date for a per-date run."""
    return len(prepared.plan.tiles) * (max(1, len(by_date(prepared.scenes))) if prepared.per_date else 1)


class _RowsProgress:
    """One progress over every row: each row's tile events offset by the rows before it."""

    def __init__(self, totals: list[int], callback: ProgressCallback) -> None:
        self.totals, self.callback = totals, callback
        self.row = self.before = self.failed = self.skipped = 0
        self.last: Progress | None = None
        self.start = time.perf_counter()

    def __call__(self, p: Progress) -> None:
        self.last = p
        total = self.before + self.failed + self.skipped + p.total + sum(self.totals[self.row + 1:])
        done, failed, skipped = self.before + p.done, self.failed + p.failed, self.skipped + p.skipped
        elapsed = time.perf_counter() - self.start
        computed = done + failed - skipped
        eta = elapsed / computed * (total - done - failed) if computed > 0 else None
        self.callback(Progress(total, done, failed, skipped, elapsed, eta, p.last))

    def next_row(self) -> None:
        """Close a row: its tiles count as finished from now on."""
        p = self.last
        if p is None:
            self.before += self.totals[self.row]
        else:
            self.before, self.failed = self.before + p.done, self.failed + p.failed
            self.skipped += p.skipped
        self.row, self.last = self.row + 1, None


def _check_set_folder(out: Path, rows: list[TableRow], *, resume: bool, overwrite: bool, door: str) -> None:
    """Refuse a folder that holds runs already, unless resuming or overwriting them."""
    if resume or overwrite:
        return
    held = [r.label for r in rows if (out / r.label).is_dir() and any((out / r.label).iterdir())]
    if (out / RUNS_FILE).exists() or held:
        what = f"runs ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''})" if held else "a set of runs"
        how = ("resume=True to finish them, overwrite=True to replace them, or a new out=" if door == "python"
               else "--resume OUT to finish them, --overwrite to replace them, or a new --out")
        raise OutputError(f"{out} already holds {what}; use {how}")


def _write_runs_file(out: Path, by: str, rows: list[TableRow]) -> None:
    """``out/runs.json``: the column and, per label, the folder and the column's value."""
    out.mkdir(parents=True, exist_ok=True)
    data = {"by": by, "runs": {r.label: {"folder": r.label, "value": r.value} for r in rows}}
    tmp = out / (RUNS_FILE + ".part")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, out / RUNS_FILE)


def detect_rows(region: Any, *, by: str, out: str | Path, options: dict[str, Any], client: Any = None,
                resume: bool = False, overwrite: bool = False, progress: Any = True,
                cancelled: Callable[[], bool] | None = None, on_cluster: Callable[[ClusterInfo], None] | None = None,
                max_area_km2: float | None = None, door: str = "python") -> RunSet:
    """Run every row of a table of regions (see :func:`~geoloom.workflows.api.detect` with ``by=``) on one executor."""
    folder = Path(out).expanduser().resolve()
    planned = prepare_rows(region, by=by, out=folder, options=options, max_area_km2=max_area_km2, door=door)
    rows = [row for row, _ in planned]
    _check_set_folder(folder, rows, resume=resume, overwrite=overwrite, door=door)
    _write_runs_file(folder, by, rows)
    cancelled = cancelled or (lambda: False)
    ex = planned[0][1].request.execution
    callback, bar = progress_callback(progress)
    tracker = _RowsProgress([_tiles(p) for _, p in planned], callback) if callback else None
    executor = make_executor(ex.runtime, scheduler=ex.cluster, workers=ex.workers, client=client)
    try:
        if on_cluster:
            on_cluster(executor.info())
        for row, prepared in planned:
            if cancelled():
                break
            again = resume and (folder / row.label / "request.json").exists()
            try:
                execute(prepared, executor=executor, resume=again, overwrite=overwrite and not again,
                        progress=tracker, cancelled=cancelled)
            except GeoloomError as exc:
                raise _for_row(row, by, exc) from None
            if tracker:
                tracker.next_row()
    finally:
        executor.close()
        if bar is not None:
            bar.close()
    return RunSet(folder, by, {r.label: Run(folder / r.label) for r in rows if (folder / r.label / "run.json").exists()})


# -- the result -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RunSet(Mapping[str, Run]):
    """The runs of a ``by=`` call: label -> :class:`Run`, in the table's order, with their detections and a summary."""

    folder: Path
    by: str
    runs: dict[str, Run] = field(default_factory=dict)

    def __getitem__(self, label: str) -> Run:
        return self.runs[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self.runs)

    def __len__(self) -> int:
        return len(self.runs)

    @property
    def detections(self) -> gpd.GeoDataFrame:
        """Every run's detections (EPSG:4326), the run's label in a column named like ``by`` (``<by>_label``
        where the detections have a column of that name already)."""
        frames = {label: run.detections for label, run in self.runs.items()}
        clash = self.by == "geometry" or any(self.by in gdf.columns for gdf in frames.values())
        column = f"{self.by}_label" if clash else self.by
        parts = [gdf.assign(**{column: label}) for label, gdf in frames.items() if len(gdf)]
        if not parts:
            return gpd.GeoDataFrame({column: pd.Series([], dtype=object)}, geometry=[], crs="EPSG:4326")
        gdf = gpd.GeoDataFrame(pd.concat(parts, ignore_index=True), geometry="geometry", crs="EPSG:4326")
        return gdf[[column, *(c for c in gdf.columns if c != column)]]

    def summary(self) -> pd.DataFrame:
        """One line per run: label, area_km2, tiles, detections, ok and folder."""
        lines = [{"label": label, "area_km2": round(run.request.region.area_km2, 3), "tiles": run.tiles.total,
                  "detections": len(run.detections), "ok": run.ok, "folder": str(run.folder)}
                 for label, run in self.runs.items()]
        return pd.DataFrame(lines, columns=["label", "area_km2", "tiles", "detections", "ok", "folder"])

    @property
    def ok(self) -> bool:
        """True when every run finished with no failed or missing tile."""
        return all(run.ok for run in self.runs.values())

    def __repr__(self) -> str:
        failed = [label for label, run in self.runs.items() if not run.ok]
        shown = ", ".join(list(self.runs)[:6]) + (", ..." if len(self.runs) > 6 else "")
        tail = f"; failed tiles in {', '.join(failed)}" if failed else ""
        return f"RunSet({str(self.folder)!r}, by={self.by!r}, {len(self.runs)} run(s): {shown}{tail})"


def open_runs(folder: str | Path) -> RunSet:
    """Open the runs a ``by=`` call wrote into ``folder`` (its ``runs.json``)."""
    p = Path(folder).expanduser()
    f = p / RUNS_FILE
    if not f.exists():
        raise OutputError(f"{p} holds no set of runs (no {RUNS_FILE}); run detect(..., by=COLUMN, out=...) there first, "
                          "or open a single run with open_run")
    data = json.loads(f.read_text())
    runs = {label: Run(p / entry["folder"]) for label, entry in data["runs"].items()}
    unfinished = [label for label, run in runs.items() if not (run.folder / "run.json").exists()]
    if unfinished:
        raise OutputError(f"{p}: the runs {', '.join(unfinished)} did not finish; finish them with "
                          f"detect(..., by={data['by']!r}, out=..., resume=True)")
    return RunSet(p, str(data["by"]), runs)
