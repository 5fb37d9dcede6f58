"""Evaluating detectors through the pipeline against the label rasters of generated catalogs, and the held-out report.

The pipeline itself lives in the layer above: callers pass its entry point in as ``run_detect``
(``geoloom.workflows.detect``), so nothing here imports the runtime or the workflows.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from geoloom.platform.models.training.data import EVAL_SEEDS, ProgressFn, _tick
from geoloom.platform.models.training.install import _user_card_file
from geoloom.platform.models.training.scores import _count, _summary

__all__ = ["PipelineRun", "RunDetect", "evaluate", "heldout_report", "region_mask", "run_date", "run_geobox", "run_or_resume"]


class PipelineRun(Protocol):
    """What evaluation reads of a run written by the pipeline (``geoloom.workflows.Run`` is one)."""

    @property
    def manifest(self) -> dict[str, Any]:
        """The run's STAC Item as a dict."""

    @property
    def dataset(self) -> Any:
        """The result layers (an xarray Dataset)."""

    @property
    def ok(self) -> bool:
        """True when every tile was computed and none failed."""

    @property
    def failed_tiles(self) -> list[dict[str, Any]]:
        """Key, row, col and error of every failed tile."""


#: Runs a model through the pipeline into a run folder: ``geoloom.workflows.detect``.
RunDetect = Callable[..., PipelineRun]


def run_geobox(run: PipelineRun) -> Any:
    """The output grid of a run, from the projection fields of its manifest (a STAC Item)."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    p = run.manifest["properties"]
    return GeoBox(tuple(p["proj:shape"]), Affine(*p["proj:transform"][:6]), p["proj:code"])


def run_date(run: PipelineRun) -> str:
    """The (first) acquisition date of the scenes of a run, as the catalog's dates are keyed."""
    from pystac.utils import str_to_datetime

    return str_to_datetime(run.manifest["properties"]["start_datetime"]).date().isoformat()


def _label_mosaic(items: list[Any], geobox: Any) -> np.ndarray:
    """Label rasters of ``items`` on ``geobox`` (nearest), first item first, 0 where none."""
    from geoloom.platform.catalog import AssetRef
    from geoloom.platform.reading import gdal_env, read_band

    h, w = geobox.shape.yx
    out = np.zeros((h, w), dtype=np.uint8)
    with gdal_env():
        for item in items:
            asset = item.assets.get("labels")
            if asset is None:
                continue
            # read as a categorical band ("scl" is read with nearest-neighbour resampling)
            lab = read_band(AssetRef(href=asset.get_absolute_href(), band="scl", scale=1.0, nodata=0.0), geobox)
            fill = (out == 0) & np.isfinite(lab)
            out[fill] = lab[fill].astype(np.uint8)
    return out


def _catalog_dates(catalog: str | Path) -> dict[str, list[Any]]:
    """Items of a catalog that have labels, by acquisition date, in the compositor's order."""
    from geoloom.platform.catalog import open_catalog

    by_date: dict[str, list[Any]] = {}
    for item in open_catalog(catalog).get_items(recursive=True):
        if "labels" in item.assets and item.datetime is not None:
            by_date.setdefault(item.datetime.date().isoformat(), []).append(item)
    for items in by_date.values():
        items.sort(key=lambda i: (-i.datetime.timestamp(), i.id))
    return dict(sorted(by_date.items()))


def evaluate(
    model_name: str,
    catalog: str | Path | Sequence[str | Path],
    *,
    run_detect: RunDetect,
    threshold: float | None = None,
    workdir: str | Path | None = None,
    runtime: str = "in-process",
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score a model's detections against the label rasters of a generated catalog.

    For each acquisition date the model runs through the real pipeline (``run_detect``, that is
    ``geoloom.workflows.detect``, over the footprint of that date's scenes; ``runtime`` and
    ``workers`` as for ``detect``); its detection layer is compared with the scenes' ``labels``
    assets read onto the run grid with nearest resampling. Returns pixel precision, recall, F1
    and IoU for debris, object recall (share of 4-connected labelled debris objects with at
    least one detected pixel) and false positives by label class.
    """
    import shapely.ops
    import shapely.geometry

    from geoloom.platform.errors import CatalogError, ModelError, RunError
    from geoloom.platform.models.registry import get_card

    catalogs = [catalog] if isinstance(catalog, (str, Path)) else list(catalog)
    card = get_card(model_name)
    if card.detection is None:
        raise ModelError(f"model {model_name} has no detection layer to score; pick a detector such as marine-debris")
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="geoloom-eval-")) if own_tmp else Path(workdir)
    counts, runs = [], []
    jobs = [(c, d, items) for c in catalogs for d, items in _catalog_dates(c).items()]
    if not jobs:
        raise CatalogError(f"no scene with a labels asset in {', '.join(map(str, catalogs))}; "
                           "evaluate on a catalog from 'geoloom sample-data'")
    t0 = time.perf_counter()
    try:
        for k, (cat, day, items) in enumerate(jobs):
            region = shapely.ops.unary_union([shapely.geometry.shape(i.geometry) for i in items])
            out = work / f"{k:02d}-{card.name}-{day}"
            run = run_or_resume(run_detect, out, region, model=model_name, catalog=cat, start=day, end=day,
                                 threshold=threshold, runtime=runtime, workers=workers, retries=0, per_date=False)
            if not run.ok:
                reason = run.failed_tiles[0]["error"] if run.failed_tiles else "tiles missing"
                raise RunError(f"the evaluation run {out} is incomplete ({reason}); "
                               "check the catalog's files and run the evaluation again")
            geobox = run_geobox(run)
            pred = np.asarray(run.dataset[card.detection].values)
            labels = _label_mosaic(items, geobox)
            labels[~region_mask(region, geobox)] = 0
            counts.append(_count(pred, labels))
            runs.append({"catalog": str(cat), "date": day, "scenes": [i.id for i in items],
                         "grid": f"{run.manifest['properties']['proj:code']} {geobox.width}x{geobox.height}"})
            _tick(progress, f"evaluating {card.name}", k + 1, len(jobs))
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    result = {"model": card.name, "threshold": threshold if threshold is not None else card.threshold}
    result.update(_summary(counts))
    result["runs"] = runs
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def run_or_resume(detect: RunDetect, out: Path, region: Any, **kwargs: Any) -> PipelineRun:
    """``detect`` into ``out``, finishing the same run if an unfinished one is there (an interrupted
    evaluation costs only its missing tiles), replacing any other run. A finished run is computed
    again: the same weights and options give the same run id, but the code that scores may have changed."""
    from geoloom.platform.errors import OutputError

    with warnings.catch_warnings():  # "prefers a GPU but none is available": expected here
        warnings.filterwarnings("ignore", message=".*prefers a GPU.*")
        if out.exists() and not (out / "run.json").exists():
            try:
                return detect(region, out=out, resume=True, **kwargs)
            except OutputError:
                pass  # no run there, or another one (other weights or parameters): replace it
        return detect(region, out=out, overwrite=True, **kwargs)


def region_mask(geom: Any, geobox: Any) -> np.ndarray:
    """True for pixels of ``geobox`` whose centre lies inside ``geom`` (EPSG:4326)."""
    from odc.geo.geom import Geometry
    from rasterio.features import geometry_mask

    g = Geometry(geom, "epsg:4326").to_crs(geobox.crs)
    return geometry_mask([g.geom.__geo_interface__], out_shape=geobox.shape.yx, transform=geobox.transform,
                         invert=True)


def heldout_report(
    catalogs: Sequence[str | Path] | None = None,
    *,
    run_detect: RunDetect,
    models: Sequence[str] = ("marine-debris", "fdi"),
    workdir: str | Path | None = None,
    card_file: str | Path | None = None,
    runtime: str = "in-process",
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Evaluate ``models`` side by side on held-out catalogs and record the scores in the
    marine-debris card data (``card_file``, default: the user's installed copy; replacing those of
    the same models). Without ``catalogs`` the sample catalogs of seeds 0-3 are generated.
    ``run_detect`` runs each model through the pipeline (``geoloom.workflows.detect``)."""
    from geoloom.platform.models import registry
    from geoloom.platform.sampledata import generate_sample_data

    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="geoloom-heldout-")) if own_tmp else Path(workdir)
    try:
        if catalogs is None:
            catalogs = []
            for s in EVAL_SEEDS:
                target = work / f"catalog-seed{s}"
                cat = target / "catalog.json"
                if not cat.exists():
                    generate_sample_data(target, seed=s, size="small")
                catalogs.append(cat)
                _tick(progress, "held-out catalogs", len(catalogs), len(EVAL_SEEDS))
        results = {m: evaluate(m, catalogs, run_detect=run_detect, workdir=work / "runs", runtime=runtime,
                               workers=workers, progress=progress)
                   for m in models}
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    for r in results.values():
        for run in r["runs"]:
            run["catalog"] = Path(run["catalog"]).parent.name
    report = {
        "data": ("generated sample catalogs (generate_sample_data, size small) of seeds "
                 f"{', '.join(str(s) for s in EVAL_SEEDS)}: 4 scenes each, 2 dates x 2 UTM zones; each date run "
                 "through the pipeline and scored against the label rasters"),
        **results,
    }
    path = Path(card_file) if card_file else _user_card_file()
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("metrics", {}).setdefault("held_out", {}).update(report)
    path.write_text(json.dumps(data, indent=2) + "\n")
    registry.refresh()
    return report
