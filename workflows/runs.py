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

from geoloom.platform.bands import require_bands
from geoloom.platform.catalog import Scene, search_scenes
from geoloom.platform.errors import OutputError
from geoloom.platform.ledger import Ledger
from geoloom.platform.models.card import ModelCard
from geoloom.platform.mosaic import create_store, drop_partial_chunks
from geoloom.platform.plan import Plan, plan_tiles
from geoloom.platform.publish import STAGING_PREFIX, build_manifest, write_cog, write_detections, write_quicklook
from geoloom.platform.region import Region
from geoloom.platform.tile_job import TileJob
from geoloom.platform.vectors import finalize_detections, read_parts
from geoloom.runtime.engine import placement, run_tiles
from geoloom.runtime.executors import ClusterInfo, Executor, make_executor
from geoloom.runtime.model_cache import ModelSpec, model_card
from geoloom.runtime.progress import ProgressCallback

#: Files a run folder holds; only these are replaced by ``overwrite``.
RUN_FILES = ("request.json", "run.json", "ledger.jsonl", "result.zarr", "parts", "result.tif",
             "detections.parquet", "detections.geojson", "quicklook.png")


def code_version() -> str:
    try:
        return version("geoloom")
    except PackageNotFoundError:
        return "unknown"


def default_catalog() -> Path:
    """The sample catalog (``geoloom sample-data`` writes it)."""
    from geoloom.platform.sampledata import default_sample_dir

    return default_sample_dir() / "catalog.json"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """Everything a run depends on, in the vocabulary shared by the CLI, the API and the UI."""

    region: Region
    model: ModelSpec
    catalog: str
    out: str
    start: str | None = None
    end: str | None = None
    max_cloud: float | None = None
    tile_size: int | None = None
    resolution: float | None = None
    crs: str | None = None
    retries: int = 2
    collection: str | None = None
    query: dict[str, Any] | None = None
    sign: str | None = None

    def parameters(self) -> dict[str, Any]:
        return {
            "catalog": self.catalog,
            "collection": self.collection,
            "query": self.query,
            "sign": self.sign,
            "start": self.start,
            "end": self.end,
            "max_cloud": self.max_cloud,
            "tile_size": self.tile_size,
            "resolution": self.resolution,
            "crs": self.crs,
            "model": self.model.name,
            "model_params": self.model.params,
            "retries": self.retries,
        }


@dataclass(slots=True)
class Prepared:
    """A request resolved into a card, scenes and a plan (what ``--dry-run`` shows)."""

    request: RunRequest
    card: ModelCard
    scenes: list[Scene]
    plan: Plan
    matched: int | None = None

    def summary(self) -> dict[str, Any]:
        return self.plan.summary(mpx_per_s=self.card.mpx_per_s) | {
            "model": self.card.name, "catalog": self.request.catalog, "items_matched": self.matched,
        }


def prepare(request: RunRequest) -> Prepared:
    """Validate the request and plan it; reads no pixels."""
    card = model_card(request.model)
    scenes = search_scenes(request.catalog, request.region, start=request.start, end=request.end,
                           max_cloud=request.max_cloud, collection=request.collection, query=request.query,
                           sign=request.sign)
    usable = [s for s in scenes if set(card.bands) <= s.bands]
    if not usable:
        require_bands(card.bands, scenes[0].bands, what=f"model {card.name}")
    plan = plan_tiles(
        request.region,
        usable,
        bands=card.bands,
        resolution=request.resolution or card.resolution,
        halo=card.halo,
        tile_size=request.tile_size or card.tile_size,
        crs=request.crs,
    )
    return Prepared(request, card, usable, plan, getattr(scenes, "matched", None))


def run_id_for(prepared: Prepared) -> str:
    from geoloom.platform.plan import plan_token

    return f"{prepared.card.name}-{plan_token(prepared.plan.token, prepared.request.model.cache_key, prepared.card.sha256)}"


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
        raise OutputError(f"--out {out} is a file; give a folder for the run")
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"cannot write to {out} ({exc.strerror or exc}); choose a writable --out folder") from None


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
        for name in (*RUN_FILES, *(p.name for p in out.glob("result-*.tif"))):  # + the layers of another model
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()


def execute(
    prepared: Prepared,
    *,
    executor: Executor | None = None,
    runtime: str = "dask",
    scheduler: str | None = None,
    workers: int | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    on_cluster: Callable[[ClusterInfo], None] | None = None,
) -> Path:
    """Run a prepared request into its folder and publish it; returns the folder."""
    req = prepared.request
    out = Path(req.out).expanduser().resolve()
    run_id = run_id_for(prepared)
    _check_out_dir(out, run_id, resume=resume, overwrite=overwrite)
    with _folder_lock(out):
        _clear_for_run(out, resume=resume, overwrite=overwrite)
        return _execute_locked(prepared, out, run_id, executor=executor, runtime=runtime, scheduler=scheduler,
                               workers=workers, client=client, resume=resume, progress=progress, cancelled=cancelled,
                               on_cluster=on_cluster)


def _execute_locked(prepared: Prepared, out: Path, run_id: str, *, executor: Executor | None, runtime: str,
                    scheduler: str | None, workers: int | None, client: Any, resume: bool,
                    progress: ProgressCallback | None, cancelled: Callable[[], bool],
                    on_cluster: Callable[[ClusterInfo], None] | None) -> Path:
    req, card, plan = prepared.request, prepared.card, prepared.plan
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.perf_counter()
    own = executor is None
    executor = executor or make_executor(runtime, scheduler=scheduler, workers=workers, client=client)
    try:
        info = executor.info()
        resources = placement(card, executor)
        if on_cluster:
            on_cluster(info)
        store, parts = out / "result.zarr", out / "parts"
        ledger = Ledger(out / "ledger.jsonl")
        if not resume or not (store / "zarr.json").exists():
            request = {"run_id": run_id, "plan": plan.to_dict(), "parameters": req.parameters(), "region": req.region.to_geojson()}
            (out / "request.json").write_text(json.dumps(request, indent=2, default=str))
            create_store(store, plan, card.outputs, attrs={"run_id": run_id, "model": card.name, "primary": card.primary})
        parts.mkdir(exist_ok=True)
        job = TileJob(
            store=str(store), parts=str(parts), scenes=plan.scenes, bands=card.bands, tile_size=plan.tile_size,
            outputs=tuple(o.name for o in card.outputs), grid=plan.warp_grid, detection=card.detection, score=card.score, label=card.name,
        )
        skip = ledger.done_keys() if resume else set()
        run_tiles(executor, plan.tiles, job, req.model, ledger, resources=resources, retries=req.retries, skip=skip,
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
    # the COGs and the quicklook on two threads (GDAL works outside the GIL), the vectors meanwhile here
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="publish") as pool:
        pending = [pool.submit(write_cog, store, spec, plan, out / name) for spec, name in layers.values()]
        pending.append(pool.submit(write_quicklook, store, primary, out / "quicklook.png"))
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
    item = build_manifest(
        run_id=run_id, plan=plan, model_card=card.to_dict(), parameters=req.parameters(), assets=assets,
        tiles=counts, timings=timings, version=code_version(),
    )
    tmp = out / "run.json.part"
    tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2, default=str))
    os.replace(tmp, out / "run.json")


def pystac_cog() -> str:
    return "image/tiff; application=geotiff; profile=cloud-optimized"
