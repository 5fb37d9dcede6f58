"""The public Python API: ``detect`` with a model, ``map_tiles`` with your own function, ``Run`` results."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import geopandas as gpd
import pandas as pd
import xarray as xr

from geoloom.platform.bands import canonical_band
from geoloom.platform.errors import OutputError
from geoloom.platform.ledger import Ledger
from geoloom.platform.models.base import FunctionModel
from geoloom.platform.models.card import ModelCard, OutputSpec
from geoloom.platform.mosaic import open_store
from geoloom.platform.region import as_region
from geoloom.platform.stac_api import parse_query
from geoloom.runtime.model_cache import ModelSpec
from geoloom.runtime.progress import Progress
from geoloom.workflows.runs import Prepared, RunRequest, default_catalog, execute, prepare

DEFAULT_MODEL = "marine-debris"


@dataclass(frozen=True)
class Run:
    """A finished (or partly finished) run folder, opened lazily."""

    folder: Path

    @cached_property
    def manifest(self) -> dict[str, Any]:
        """The run's STAC Item (``run.json``) as a dict."""
        return json.loads((self.folder / "run.json").read_text())

    @property
    def dataset(self) -> xr.Dataset:
        """The result layers as a lazy xarray Dataset (from ``result.zarr``)."""
        return open_store(self.folder / "result.zarr")

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
        recs = Ledger(self.folder / "ledger.jsonl").records().values()
        return [{"key": r.key, "row": r.row, "col": r.col, "error": r.error} for r in recs if r.state == "failed"]

    @property
    def tiles(self) -> dict[str, int]:
        return self.manifest["properties"]["geoloom:tiles"]

    @property
    def ok(self) -> bool:
        return self.tiles["failed"] == 0 and self.tiles["missing"] == 0

    def path(self, name: str) -> Path:
        return self.folder / name

    def __repr__(self) -> str:
        t = self.tiles
        return f"Run({str(self.folder)!r}, tiles done {t['done']}/{t['total']}, failed {t['failed']})"


def open_run(folder: str | Path) -> Run:
    """Open a run folder written earlier."""
    p = Path(folder).expanduser()
    if not (p / "run.json").exists():
        raise OutputError(f"{p} holds no finished run (no run.json); run geoloom there first or --resume it")
    return Run(p)


def _request(region: Any, model: ModelSpec, *, catalog, out, start, end, max_cloud, tile_size, resolution, crs, retries,
             max_area_km2, collection=None, query=None, sign=None) -> RunRequest:
    if out is None:
        raise OutputError("give out= (a folder for the run's files)")
    return RunRequest(
        region=as_region(region, max_area_km2=max_area_km2) if max_area_km2 is not False else as_region(region, max_area_km2=None),
        model=model,
        catalog=str(catalog or default_catalog()),
        out=str(out),
        start=str(start) if start else None,
        end=str(end) if end else None,
        max_cloud=max_cloud,
        tile_size=tile_size,
        resolution=resolution,
        crs=crs,
        retries=retries,
        collection=collection,
        query=parse_query(query) or None,
        sign=sign,
    )


def plan_run(region: Any, *, model: str = DEFAULT_MODEL, catalog: str | Path | None = None, out: str | Path = ".",
             start=None, end=None, max_cloud=None, tile_size=None, resolution=None, crs=None, threshold=None,
             max_area_km2: float | None = None, collection: str | None = None, query: Any = None,
             sign: str | None = None) -> Prepared:
    """Plan without reading pixels: ``.summary()`` gives tiles, pixels, bytes, scenes and an estimate."""
    params = {"threshold": threshold} if threshold is not None else {}
    kwargs = {} if max_area_km2 is None else {"max_area_km2": max_area_km2}
    req = _request(region, ModelSpec(str(model), params), catalog=catalog, out=out, start=start, end=end,
                   max_cloud=max_cloud, tile_size=tile_size, resolution=resolution, crs=crs, retries=0,
                   max_area_km2=kwargs.get("max_area_km2", 50_000), collection=collection, query=query, sign=sign)
    return prepare(req)


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
    progress: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    on_cluster: Callable[[Any], None] | None = None,
    max_area_km2: float = 50_000,
    collection: str | None = None,
    query: Any = None,
    sign: str | None = None,
) -> Run:
    """Run a model over a region and return the published run.

    ``region``: (W, S, E, N), a GeoJSON dict or file, a shapely geometry, a preset or a place name.
    ``catalog``: a static STAC catalog (path or URL) or a STAC API URL with ``collection``;
    ``query``: property filters (``["s2:mgrs_tile=31NBG"]``); ``sign``: a URL signer
    (``"planetary-computer"``).
    ``cluster``: a ``distributed.Client`` or a scheduler address; default an embedded local cluster.
    """
    params = {"threshold": threshold} if threshold is not None else {}
    req = _request(region, ModelSpec(str(model), params), catalog=catalog, out=out, start=start, end=end,
                   max_cloud=max_cloud, tile_size=tile_size, resolution=resolution, crs=crs, retries=retries,
                   max_area_km2=max_area_km2, collection=collection, query=query, sign=sign)
    return _run(req, runtime=runtime, cluster=cluster, workers=workers, resume=resume, overwrite=overwrite,
                progress=progress, cancelled=cancelled, on_cluster=on_cluster)


def _run(req: RunRequest, *, runtime, cluster, workers, resume, overwrite, progress, cancelled=None, on_cluster=None) -> Run:
    prepared = prepare(req)
    client = cluster if cluster is not None and not isinstance(cluster, str) else None
    scheduler = cluster if isinstance(cluster, str) else None
    folder = execute(prepared, runtime=runtime, scheduler=scheduler, client=client, workers=workers,
                     resume=resume, overwrite=overwrite, progress=progress, cancelled=cancelled or (lambda: False),
                     on_cluster=on_cluster)
    return Run(folder)


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
    progress: Callable[[Progress], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    max_area_km2: float = 50_000,
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
    spec = ModelSpec(card.name, {}, instance=FunctionModel(fn, card))
    req = _request(region, spec, catalog=catalog, out=out, start=start, end=end, max_cloud=max_cloud,
                   tile_size=tile_size, resolution=resolution, crs=crs, retries=retries, max_area_km2=max_area_km2,
                   collection=collection, query=query, sign=sign)
    return _run(req, runtime=runtime, cluster=cluster, workers=workers, resume=resume, overwrite=overwrite,
                progress=progress, cancelled=cancelled)
