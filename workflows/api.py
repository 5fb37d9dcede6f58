"""The public Python API: ``detect`` with a model, ``map_tiles`` with your own function, ``Run`` results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import geopandas as gpd
import pandas as pd
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from geoloom.platform.bands import canonical_band
from geoloom.platform.errors import OutputError
from geoloom.platform.ledger import Ledger
from geoloom.platform.models.base import FunctionModel
from geoloom.platform.models.card import ModelCard, OutputSpec
from geoloom.platform.mosaic import open_store
from geoloom.platform.plan import Plan
from geoloom.platform.region import DEFAULT_MAX_AREA_KM2
from geoloom.runtime.model_cache import ModelSpec
from geoloom.runtime.progress import Progress, progress_callback
from geoloom.workflows.request import DEFAULT_MODEL, RunRequest, build_request, request_from_folder
from geoloom.workflows.runs import Prepared, execute, prepare

if TYPE_CHECKING:
    from geoloom.workflows.by_rows import RunSet


@dataclass(frozen=True, slots=True)
class TileCounts:
    """How a run's tiles ended: total, done, failed, and missing (not computed: cancelled, interrupted)."""

    total: int
    done: int
    failed: int
    missing: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileCounts:
        """Counts from the manifest's ``geoloom:tiles`` (a missing count reads as 0)."""
        return cls(**{k: int(data.get(k, 0)) for k in ("total", "done", "failed", "missing")})


@dataclass(frozen=True)
class Run:
    """A finished (or partly finished) run folder, opened lazily, read back as typed values."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder).expanduser())  # Run("runs/bay") works too

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The run's STAC Item (``run.json``) as a dict."""
        return json.loads((self.folder / "run.json").read_text())

    @cached_property
    def _request_file(self) -> dict[str, Any]:
        return json.loads((self.folder / "request.json").read_text())

    @property
    def run_id(self) -> str:
        """The run's id, from request.json (model name and a hash of plan, parameters and weights)."""
        return str(self._request_file["run_id"])

    @cached_property
    def request(self) -> RunRequest:
        """The request the run was started with."""
        return request_from_folder(self.folder)

    @cached_property
    def plan(self) -> Plan:
        """The run's plan (grid, tiles, scenes), rebuilt from ``request.json``."""
        return Plan.from_dict(self._request_file["plan"])

    @property
    def geobox(self) -> GeoBox:
        """The output grid."""
        p = self._request_file["plan"]
        return GeoBox(tuple(p["shape_yx"]), Affine(*p["transform"][:6]), p["crs"])

    @cached_property
    def card(self) -> ModelCard:
        """The model card the run used (a user function's card for ``map_tiles``)."""
        return ModelCard.from_dict(self._request_file["card"], where=f"{self.folder}/request.json")

    @property
    def timings(self) -> dict[str, Any]:
        """Start, finish, seconds per stage, tile seconds and the cluster, from the manifest."""
        return dict(self.manifest["properties"]["geoloom:timings"])

    @property
    def dataset(self) -> xr.Dataset:
        """The result layers as a lazy xarray Dataset (from ``result.zarr``); a per-date run's has a
        ``time`` dimension, one step per acquisition date."""
        return open_store(self.folder / "result.zarr")

    @property
    def per_date(self) -> bool:
        """True for a run with one result per acquisition date."""
        return bool(self._request_file.get("per_date"))

    @property
    def dates(self) -> list[str]:
        """The acquisition days of a per-date run, oldest first ([] for a composite run)."""
        return list(self.manifest["properties"].get("geoloom:dates") or [])

    def date(self, day: str) -> Run:
        """One day of a per-date run, as a run of its own (its COG, detections and ledger)."""
        from geoloom.platform.acquisitions import date_folder_name

        if day not in self.dates:
            raise OutputError(f"{self.folder} has no date {day}; it has {', '.join(self.dates) or 'none (a composite run)'}")
        return Run(self.folder / date_folder_name(day))

    @property
    def timeseries(self) -> pd.DataFrame:
        """One row per acquisition date: clear water km², cloud %, debris pixels (and per km² of clear
        water), objects, largest object; empty for a composite run."""
        p = self.folder / "timeseries.parquet"
        if not p.exists():
            from geoloom.platform.timeseries import COLUMNS

            return pd.DataFrame(columns=list(COLUMNS))
        return pd.read_parquet(p)

    @property
    def alerts(self) -> gpd.GeoDataFrame:
        """The detections that met the alert rules at the last run or update (EPSG:4326)."""
        p = self.folder / "alerts.geojson"
        return gpd.read_file(p) if p.exists() else gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")

    def update(self, **options: Any) -> Run:
        """Compute the acquisition dates this per-date run does not hold yet (see :func:`update`)."""
        update(self.folder, **options)
        return Run(self.folder)

    @property
    def detections(self) -> gpd.GeoDataFrame:
        """Detected objects (EPSG:4326) with score, class, area and scene."""
        p = self.folder / "detections.parquet"
        return gpd.read_parquet(p) if p.exists() else gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")

    @property
    def ledger(self) -> pd.DataFrame:
        """One row per tile: state, attempts, seconds, error."""
        recs = Ledger(self.folder / "ledger.jsonl").records().values()
        return pd.DataFrame([{**r.__dict__} if hasattr(r, "__dict__") else {f: getattr(r, f) for f in r.__dataclass_fields__} for r in recs])

    @property
    def failed_tiles(self) -> list[dict[str, Any]]:
        """Key, row, col and error of every failed tile, from the ledger."""
        recs = Ledger(self.folder / "ledger.jsonl").records().values()
        return [{"key": r.key, "row": r.row, "col": r.col, "error": r.error} for r in recs if r.state == "failed"]

    @property
    def tiles(self) -> TileCounts:
        """How the run's tiles ended, from the manifest."""
        return TileCounts.from_dict(self.manifest["properties"]["geoloom:tiles"])

    @property
    def ok(self) -> bool:
        """True when no tile failed or is missing."""
        return self.tiles.failed == 0 and self.tiles.missing == 0

    def path(self, name: str) -> Path:
        """A file of the run folder."""
        return self.folder / name

    def export(self, to: str = "gpkg", *, out: str | Path | None = None) -> Path:
        """Write the run for GIS tools (``"gpkg"``: detections, raster layers' footprints, region; ``"pmtiles"``:
        the primary layer as web map tiles; ``"kmz"``: detections and layer for Google Earth); the file written."""
        from geoloom.platform.export import export_run

        return export_run(self.folder, to=to, out=out)

    def __repr__(self) -> str:
        t = self.tiles
        return f"Run({str(self.folder)!r}, tiles done {t.done}/{t.total}, failed {t.failed})"


def open_run(folder: str | Path) -> Run:
    """Open a run folder written earlier."""
    p = Path(folder).expanduser()
    if not (p / "run.json").exists():
        raise OutputError(f"{p} holds no finished run (no run.json); run geoloom there first or --resume it")
    return Run(p)


def _cluster_args(cluster: Any) -> tuple[str | None, Any]:
    """``cluster=`` as (scheduler address, client): a string is an address, anything else a Client."""
    if cluster is None or isinstance(cluster, str):
        return cluster, None
    return None, cluster


def plan_run(region: Any, *, model: str = DEFAULT_MODEL, out: str | Path = ".",
             max_area_km2: float | None = DEFAULT_MAX_AREA_KM2, **options: Any) -> Prepared:
    """Plan without reading pixels: ``.summary()`` gives tiles, pixels, bytes, scenes and an estimate.
    Takes the imagery and grid keywords of :func:`detect`."""
    return prepare(build_request(region, model=model, out=out, max_area_km2=max_area_km2, **options))


def plan_request(request: RunRequest) -> Prepared:
    """Plan a whole :class:`RunRequest` without reading pixels (what ``--dry-run`` shows)."""
    return prepare(request)


ProgressArg = bool | Callable[[Progress], None] | None
"""``progress=``: True a progress bar (a widget in Jupyter, text in a terminal), False/None none, or a callable."""


def run_request(request: RunRequest, *, client: Any = None, resume: bool = False, overwrite: bool = False,
                progress: ProgressArg = None, cancelled: Callable[[], bool] | None = None,
                on_cluster: Callable[[Any], None] | None = None) -> Run:
    """Run a whole :class:`RunRequest` (what every front door builds) and return the published run."""
    callback, bar = progress_callback(progress)
    try:
        folder = execute(prepare(request), client=client, resume=resume, overwrite=overwrite, progress=callback,
                         cancelled=cancelled or (lambda: False), on_cluster=on_cluster)
    finally:
        if bar is not None:
            bar.close()
    return Run(folder)


def detect(
    region: Any,
    *,
    model: str = DEFAULT_MODEL,
    out: str | Path,
    catalog: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
    max_cloud: float | None = None,
    threshold: float | None = None,
    tile_size: int | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    runtime: str = "dask",
    cluster: Any = None,
    workers: int | None = None,
    retries: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressArg = True,
    cancelled: Callable[[], bool] | None = None,
    on_cluster: Callable[[Any], None] | None = None,
    max_area_km2: float | None = DEFAULT_MAX_AREA_KM2,
    collection: str | None = None,
    query: Any = None,
    sign: str | None = None,
    per_date: bool | None = None,
    alert_density: float | None = None,
    alert_object_m2: float | None = None,
    on_alert: Sequence[str] | str = (),
    webhooks: Sequence[str] | str = (),
    by: str | None = None,
) -> Run | RunSet:
    """Run a model over a region and return the published run.

    ``region``: (W, S, E, N), a GeoJSON dict, a vector file (``"area.gpkg:layer"``, ``.shp.zip``, KML,
    FlatGeobuf, GeoParquet), a GeoDataFrame or GeoSeries in any CRS, a shapely geometry, a GeoBox or a
    georeferenced xarray object (its footprint), a preset or a place name (see :func:`as_region`).
    ``catalog``: a static STAC catalog (path or URL) or a STAC API URL with ``collection``;
    ``query``: property filters (``["s2:mgrs_tile=31NBG"]``); ``sign``: a URL signer
    (``"planetary-computer"``).
    ``cluster``: a ``distributed.Client`` or a scheduler address; default an embedded local cluster.
    ``max_area_km2``: the largest region accepted (None: no limit).
    ``progress``: a progress bar by default (shown when stderr is a terminal, or in Jupyter); False for
    none; a callable receives every :class:`Progress`.
    ``per_date``: one result per acquisition date (``run.timeseries``, ``run.dataset`` with a time axis)
    instead of one composite of the date range; default: the model's card (per date for marine-debris).
    ``alert_density`` / ``alert_object_m2``: alert rules of a per-date run (detected pixels per km² of
    clear water on a date; a new object's area), judged on each new date; ``on_alert``: commands
    (``{file}``: the alerts GeoJSON) and ``webhooks``: URLs that receive it when one fires.
    ``by``: a column of a table of regions (a GeoDataFrame, a vector file): one run per value of the column
    (its rows unioned) into ``out/<value>``, every other keyword the same for each; returns a
    :class:`~geoloom.workflows.by_rows.RunSet` (label -> Run, ``.detections``, ``.summary()``).
    """
    address, client = _cluster_args(cluster)
    options = dict(model=model, threshold=threshold, catalog=catalog, collection=collection, start=start, end=end,
                   max_cloud=max_cloud, query=query, sign=sign, resolution=resolution, crs=crs, tile_size=tile_size,
                   runtime=runtime, cluster=address, workers=workers, retries=retries, per_date=per_date,
                   alert_density=alert_density, alert_object_m2=alert_object_m2, on_alert=on_alert, webhooks=webhooks)
    if by is not None:
        from geoloom.workflows.by_rows import detect_rows

        return detect_rows(region, by=by, out=out, options=options, client=client, resume=resume, overwrite=overwrite,
                           progress=progress, cancelled=cancelled, on_cluster=on_cluster, max_area_km2=max_area_km2)
    req = build_request(region, out=out, max_area_km2=max_area_km2, **options)
    return run_request(req, client=client, resume=resume, overwrite=overwrite, progress=progress,
                       cancelled=cancelled, on_cluster=on_cluster)


def update(folder: str | Path, *, since: str | None = None, cluster: Any = None, progress: ProgressArg = True,
           on_alert: Sequence[str] = (), webhooks: Sequence[str] = (), runtime: str | None = None,
           workers: int | None = None) -> Any:
    """Search a per-date run's catalog again and compute only the dates it lacks; judge its alert rules on
    them and call its hooks (plus ``on_alert``/``webhooks``, this time only). Returns what was done
    (``.new_dates``, ``.alerts``, ``.hooks``)."""
    from geoloom.workflows.per_date import update_run

    address, client = _cluster_args(cluster)
    callback, bar = progress_callback(progress)
    try:
        return update_run(folder, since=since, client=client, cluster=address, progress=callback,
                          on_alert=tuple(on_alert), webhooks=tuple(webhooks), runtime=runtime, workers=workers)
    finally:
        if bar is not None:
            bar.close()


def map_tiles(
    region: Any,
    fn: Callable[[xr.Dataset], xr.DataArray | xr.Dataset],
    *,
    bands: Sequence[str],
    out: str | Path,
    halo: int = 0,
    resolution: float = 10.0,
    name: str = "result",
    dtype: str = "float32",
    catalog: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
    max_cloud: float | None = None,
    tile_size: int = 512,
    crs: str | None = None,
    gpu: str = "none",
    runtime: str = "dask",
    cluster: Any = None,
    workers: int | None = None,
    retries: int = 2,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressArg = True,
    cancelled: Callable[[], bool] | None = None,
    max_area_km2: float | None = DEFAULT_MAX_AREA_KM2,
    collection: str | None = None,
    query: Any = None,
    sign: str | None = None,
) -> Run:
    """Run your own function on every tile (bands as variables, ``halo`` pixels of context included)
    and stitch its result; it must return a DataArray (or a Dataset with ``name``) on the tile's grid.
    ``gpu``: "none", "prefers" (GPU workers when there are any) or "requires".

    NaN marks pixels with no data (outside every scene, nodata collars). A filter built on running
    sums, such as ``scipy.ndimage.uniform_filter``, carries one NaN along its whole row and column to
    the tile's edge: fill or mask NaN first (e.g. filter the values and a validity mask, divide)."""
    card = ModelCard(
        name=f"map_tiles:{getattr(fn, '__name__', 'function')}",
        title="user function",
        description=getattr(fn, "__doc__", None) or "a user's per-tile function",
        bands=tuple(canonical_band(b) for b in bands),
        resolution=float(resolution),
        halo=int(halo),
        tile_size=int(tile_size),
        outputs=(OutputSpec(name, "index", dtype, None if dtype.startswith("float") else 0),),
        primary=name,
        gpu=gpu,
    )
    address, client = _cluster_args(cluster)
    req = build_request(region, model=ModelSpec(card.name, {}, instance=FunctionModel(fn, card)), out=out,
                        catalog=catalog, collection=collection, start=start, end=end, max_cloud=max_cloud,
                        query=query, sign=sign, resolution=resolution, crs=crs, tile_size=tile_size,
                        runtime=runtime, cluster=address, workers=workers, retries=retries, max_area_km2=max_area_km2)
    return run_request(req, client=client, resume=resume, overwrite=overwrite, progress=progress, cancelled=cancelled)
