"""One run from region to published map: search, plan, execute, stitch, publish."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterator

from geoloom.platform.atmosphere import corrected_scenes, level_corrections
from geoloom.platform.band_masks import derivable_bands
from geoloom.platform.bands import require_bands
from geoloom.platform.catalog import Scene, SceneList, search_scenes
from geoloom.platform.cloud_shadow import scene_shadows, shadowed_scenes
from geoloom.platform.errors import ModelError, NoImageryError, OutputError, RunError
from geoloom.platform.region import Region
from geoloom.platform.ledger import Ledger
from geoloom.platform.models.card import ModelCard
from geoloom.platform.mosaic import create_store, drop_partial_chunks
from geoloom.platform.outputs import writable_folder
from geoloom.platform.plan import Plan, plan_tiles
from geoloom.platform.publish import STAGING_PREFIX, build_manifest, write_cog, write_detections, write_quicklook
from geoloom.platform.tile_job import TileJob
from geoloom.platform.vectors import finalize_detections, read_parts
from geoloom.runtime.engine import placement, run_tiles
from geoloom.runtime.executors import ClusterInfo, Executor, make_executor
from geoloom.runtime.model_cache import model_card
from geoloom.runtime.progress import ProgressCallback
from geoloom.workflows.request import Imagery, RunRequest

#: Files a run folder holds; only these are replaced by ``overwrite``.
RUN_FILES = ("request.json", "run.json", "ledger.jsonl", "result.zarr", "parts", "result.tif",
             "detections.parquet", "detections.geojson", "quicklook.png",
             # a per-date run's (workflows/per_date.py)
             "dates", "timeseries.parquet", "timeseries.csv", "timeseries.png", "alerts.geojson", "alerts.jsonl")


def code_version() -> str:
    """The installed geoloom version, recorded in the manifest; ``unknown`` when not installed."""
    try:
        return version("geoloom")
    except PackageNotFoundError:
        return "unknown"


@dataclass(slots=True)
class Prepared:
    """A request resolved into a card, scenes and a plan (what ``--dry-run`` shows)."""

    request: RunRequest
    card: ModelCard
    scenes: list[Scene]
    plan: Plan
    matched: int | None = None

    @property
    def per_date(self) -> bool:
        """One result per acquisition date: as the request says, else as the model's card says."""
        asked = self.request.monitoring.per_date
        return self.card.ephemeral if asked is None else bool(asked)

    def summary(self) -> dict[str, Any]:
        """The plan's summary (tiles, pixels, bytes, scenes, estimate) with the model, catalog and items matched."""
        return self.plan.summary(mpx_per_s=self.card.mpx_per_s) | {
            "model": self.card.name, "catalog": self.request.imagery.catalog, "items_matched": self.matched,
        }


def search_imagery(imagery: Imagery, region: Region) -> SceneList:
    """The scenes of ``imagery`` over ``region`` (search, then the analyst's exclusions)."""
    found = search_scenes(imagery.catalog, region, start=imagery.start, end=imagery.end,
                          max_cloud=imagery.max_cloud, collection=imagery.collection, query=imagery.query,
                          sign=imagery.sign)
    if not imagery.exclude:
        return found
    kept = SceneList(s for s in found if s.id not in set(imagery.exclude))
    kept.matched = found.matched
    if not kept:
        raise NoImageryError(f"every scene of the search was left out ({len(found)}); keep at least one scene")
    return kept


def prepare(request: RunRequest) -> Prepared:
    """Validate the request and plan it; reads no pixels."""
    card = model_card(request.model)
    scenes = search_imagery(request.imagery, request.region)
    taken = [s for s in scenes if not card.levels or s.level is None or s.level in card.levels]
    if not taken:
        levels = ", ".join(sorted({str(s.level) for s in scenes}))
        raise ModelError(f"model {card.name} takes {' or '.join(card.levels)} imagery and the scenes found are {levels}; "
                         "pick another model, or a collection of the right processing level")
    usable = [s for s in taken if set(card.bands) <= derivable_bands(s.bands)]
    if not usable:
        require_bands(card.bands, derivable_bands(taken[0].bands), what=f"model {card.name}")
    prepared = Prepared(request, card, usable, plan_scenes(request, card, usable), getattr(scenes, "matched", None))
    if request.monitoring.alerts.active and not prepared.per_date:
        raise RunError("alert rules are judged per acquisition date; add --per-date (per_date=True), "
                       "or leave the alert rules out")
    return prepared


def plan_scenes(request: RunRequest, card: ModelCard, scenes: list[Scene]) -> Plan:
    """The request's tile plan over ``scenes`` (the grid depends on the region and the request only)."""
    grid = request.grid
    return plan_tiles(
        request.region,
        scenes,
        bands=card.bands,
        resolution=grid.resolution or card.resolution,
        halo=card.halo,
        tile_size=grid.tile_size or card.tile_size,
        crs=grid.crs,
    )


def run_id_for(prepared: Prepared) -> str:
    """The run's id: model name and a hash of plan, model parameters and weights (a resume must match it)."""
    from geoloom.platform.plan import plan_token

    parts = [prepared.plan.token, prepared.request.model.cache_key, prepared.card.sha256]
    if prepared.per_date:  # the grid, not the scenes: an update adds dates to the same run
        parts = [prepared.plan.grid_token, *parts[1:], "per-date"]
    return f"{prepared.card.name}-{plan_token(*parts)}"


def drop_interrupted_writes(out: Path) -> None:
    """Remove what a killed run left half-written in its folder: Zarr chunk, tile-part and publish temporaries.

    Every file of a run is written under a temporary name and renamed when whole, so these are never results.
    """
    if (out / "result.zarr").is_dir():
        drop_partial_chunks(out / "result.zarr")
    if (out / "parts").is_dir():
        for p in (out / "parts").glob("*.tmp"):
            p.unlink(missing_ok=True)
    for p in out.glob("*.part"):
        if p.is_file() and p.name.startswith(("run.json", "result", "detections.", "quicklook.")):
            p.unlink(missing_ok=True)
    for p in out.glob(STAGING_PREFIX + "*"):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    Ledger(out / "ledger.jsonl").drop_torn_tail()


def _check_out_dir(out: Path, run_id: str, *, resume: bool, overwrite: bool) -> None:
    """Refuse a folder that holds another run, or one we cannot write; never delete foreign files."""
    request_file = out / "request.json"
    if out.exists() and not out.is_dir():
        writable_folder(out, what="the run")  # refuses a file
    if request_file.exists():
        previous = json.loads(request_file.read_text()).get("run_id")
        if resume and previous != run_id:
            raise OutputError(
                f"{out} holds run {previous}, not this one ({run_id}); resume it with the same options, or pick a new --out"
            )
        if not resume and not overwrite:
            raise OutputError(
                f"{out} already holds run {previous}; use --resume to finish it, --overwrite to replace it, or a new --out"
            )
    elif resume:
        raise OutputError(f"{out} holds no run to resume; start a run there without --resume")
    elif out.is_dir() and any(p.name in RUN_FILES for p in out.iterdir()):
        raise OutputError(f"{out} holds files of an unfinished or foreign run; use --overwrite or a new --out")
    writable_folder(out, what="the run")


LOCK_FILE = ".geoloom.lock"


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """Hold the run folder for this process; a second run or resume into it is refused, not interleaved."""
    with open(out / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError(
                f"another geoloom run is writing into {out}; wait for it to finish (or stop it), or pick a new --out"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _clear_for_run(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Under the folder lock: drop a killed run's temporaries (resume) or the previous run's files (overwrite)."""
    if not (out / "request.json").exists():
        return
    drop_interrupted_writes(out)
    if overwrite and not resume:
        layers = [p.name for pattern in ("result-*.tif", "result*.qml", "run.gpkg") for p in out.glob(pattern)]
        for name in (*RUN_FILES, *layers):  # + the layers, styles and export of another model's run
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def execute(
    prepared: Prepared,
    *,
    executor: Executor | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    on_cluster: Callable[[ClusterInfo], None] | None = None,
) -> Path:
    """Run a prepared request into its folder and publish it; returns the folder. The tiles run where
    the request's ``execution`` says, unless an ``executor`` or a ``distributed.Client`` is given.
    A per-date request gives one result per acquisition date (:mod:`geoloom.workflows.per_date`)."""
    if prepared.per_date:
        from geoloom.workflows.per_date import execute_per_date

        return execute_per_date(prepared, executor=executor, client=client, resume=resume, overwrite=overwrite,
                                progress=progress, cancelled=cancelled, on_cluster=on_cluster).folder
    req = prepared.request
    out = Path(req.out).expanduser().resolve()
    run_id = run_id_for(prepared)
    _check_out_dir(out, run_id, resume=resume, overwrite=overwrite)
    with _folder_lock(out):
        _clear_for_run(out, resume=resume, overwrite=overwrite)
        return _execute_locked(prepared, out, run_id, executor=executor, client=client, resume=resume,
                               progress=progress, cancelled=cancelled, on_cluster=on_cluster)


def _execute_locked(prepared: Prepared, out: Path, run_id: str, *, executor: Executor | None, client: Any, resume: bool,
                    progress: ProgressCallback | None, cancelled: Callable[[], bool],
                    on_cluster: Callable[[ClusterInfo], None] | None) -> Path:
    req, card, plan = prepared.request, prepared.card, prepared.plan
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    own = executor is None
    ex = req.execution
    executor = executor or make_executor(ex.runtime, scheduler=ex.cluster, workers=ex.workers, client=client)
    try:
        info = executor.info()
        resources = placement(card, executor)
        if on_cluster:
            on_cluster(info)
        store, parts = out / "result.zarr", out / "parts"
        ledger = Ledger(out / "ledger.jsonl")
        if not resume or not (store / "zarr.json").exists():
            corrections = level_corrections(plan.scenes, card.bands, card.l1c)
            # cloud shadows of scenes that classify themselves from their bands, on the corrected bands
            shadows = scene_shadows(corrected_scenes(plan.scenes, corrections), out) if "scl" in card.bands else {}
            request = {"run_id": run_id, "request": req.to_folder_dict(), "card": card.to_dict(), "plan": plan.to_dict(),
                       "corrections": corrections, "shadows": shadows}
            (out / "request.json").write_text(json.dumps(request, indent=2, default=str))
            create_store(store, plan, card.outputs, attrs={"run_id": run_id, "model": card.name, "primary": card.primary})
        else:  # a resume applies the corrections and shadows the run started with
            started_with = json.loads((out / "request.json").read_text())
            corrections, shadows = started_with.get("corrections") or {}, started_with.get("shadows") or {}
        parts.mkdir(exist_ok=True)
        scenes = shadowed_scenes(corrected_scenes(plan.scenes, corrections), shadows, out.resolve())
        job = TileJob(
            store=str(store), parts=str(parts), scenes=scenes, bands=card.bands,
            tile_size=plan.tile_size,
            outputs=tuple(o.name for o in card.outputs), grid=plan.warp_grid, detection=card.detection, score=card.score, label=card.name,
            primary=card.primary,
        )
        skip = ledger.done_keys() if resume else set()
        run_tiles(executor, plan.tiles, job, req.model, ledger, resources=resources, retries=ex.retries, skip=skip,
                  progress=progress, cancelled=cancelled)
    finally:
        if own:
            executor.close()
    t_exec = time.perf_counter() - t0
    publish(prepared, out, run_id=run_id, started=started, seconds={"execute": round(t_exec, 3)}, cluster=info)
    return out


def publish(prepared: Prepared, out: Path, *, run_id: str, started: dt.datetime, seconds: dict[str, float], cluster: ClusterInfo) -> None:
    """Write the COGs, vectors, quicklook and manifest from the store and the ledger."""
    req, card, plan = prepared.request, prepared.card, prepared.plan
    t0 = time.perf_counter()
    store = out / "result.zarr"
    assets: dict[str, tuple[str, str, list[str]]] = {
        "zarr": ("./result.zarr", "application/vnd+zarr", ["data"]),
    }
    primary = card.output(card.primary)
    layers = {"result": (primary, "result.tif")} | {
        spec.name: (spec, f"result-{spec.name}.tif") for spec in card.outputs if spec.name != card.primary
    }
    def primary_and_quicklook() -> None:  # the quicklook comes from the primary COG's overviews
        cog = write_cog(store, primary, plan, out / "result.tif")
        write_quicklook(cog, primary, out / "quicklook.png")

    # the COGs on two threads (GDAL works outside the GIL), the vectors meanwhile here
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="publish") as pool:
        pending = [pool.submit(primary_and_quicklook)]
        pending += [pool.submit(write_cog, store, spec, plan, out / name) for key, (spec, name) in layers.items()
                    if key != "result"]
        gdf = finalize_detections(read_parts(out / "parts", plan.crs), run_id=run_id, model=card.name) if card.detection else None
        if gdf is not None:
            write_detections(gdf, out)
        for f in pending:
            f.result()
    for key, (_, name) in layers.items():
        assets[key] = (f"./{name}", pystac_cog(), ["data"])
    if gdf is not None:
        assets["detections"] = ("./detections.parquet", "application/vnd.apache.parquet", ["data"])
        assets["detections-geojson"] = ("./detections.geojson", "application/geo+json", ["data"])
    assets["quicklook"] = ("./quicklook.png", "image/png", ["overview"])
    records = Ledger(out / "ledger.jsonl").records()
    keys = [t.key for t in plan.tiles]
    counts = {"total": len(keys), "done": sum(1 for k in keys if k in records and records[k].state == "done")}
    counts["failed"] = sum(1 for k in keys if k in records and records[k].state == "failed")
    counts["missing"] = counts["total"] - counts["done"] - counts["failed"]
    stage = {"read": 0.0, "model": 0.0, "write": 0.0}
    for k in keys:
        r = records.get(k)
        if r and r.state == "done":
            for s in stage:
                stage[s] += r.seconds.get(s, 0.0)
    timings = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds | {"publish": round(time.perf_counter() - t0, 3)},
        "tile_seconds": {k: round(v, 3) for k, v in stage.items()},
        "cluster": asdict(cluster),
    }
    started_with = json.loads((out / "request.json").read_text())
    corrections, shadows = started_with.get("corrections") or {}, started_with.get("shadows") or {}
    parameters = req.parameters() | ({"l1c_correction": {"method": card.l1c, "path_reflectance": corrections}}
                                     if corrections else {})
    if shadows:  # what the shadow search found per scene (the masks stay in masks/)
        parameters["cloud_shadow"] = {sid: {k: v for k, v in found.items() if k != "href"}
                                      for sid, found in shadows.items()}
    item = build_manifest(
        run_id=run_id, plan=plan, model_card=card.to_dict(), parameters=parameters, assets=assets,
        tiles=counts, timings=timings, version=code_version(),
    )
    tmp = out / "run.json.part"
    tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2, default=str))
    os.replace(tmp, out / "run.json")


def pystac_cog() -> str:
    """The media type of a Cloud-Optimized GeoTIFF asset."""
    return "image/tiff; application=geotiff; profile=cloud-optimized"
