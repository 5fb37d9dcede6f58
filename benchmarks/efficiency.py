"""Efficiency: a geoloom run over a region against the bare model on the same pixels in memory.

    python -m benchmarks efficiency [--quick]

Platform: ``detect(region, model)`` in a fresh process, as ``geoloom run`` runs it (embedded
Dask cluster, 2 workers x 1 thread on 2 cores), timed from the call to the published run.
Bare model: the same plan's tiles, composited into memory first (not timed), then
``model.predict`` on each of them - the call ``run_tile`` makes, one tile per call (the same
batch) - in 2 processes x 1 thread, started together; its time is the slower process.
Efficiency = bare model time / platform time (1.0: the platform costs nothing on top of the
model); also against a cluster that is already running (``dask scheduler`` and workers started
once, the model loaded by a first run), as a deployment serves repeated runs; and as jobs of a warm
``geoloom serve`` (submit to the job's end, the way the UI and ``geoloom submit`` run). The rest is
broken down from the tile ledger (read, model, write worker-seconds) and from a profile of the
same tiles in the bare processes: ``read_band`` (windowed reads upsampled in memory, the bands
being on the run's grid), plain native windowed reads of the same source pixels (what decoding
alone costs), composite, model, Zarr write, vectorize; and the first tile read again through
GDAL's warper (what the aligned reads save). ``--quick``: one 256 px tile of
one scene, in-process runtime against 1 bare process.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import (
    case_main, detect_child, finish_report, machine_line, median, new_report, ratio, row, sample_scene, write_report,
)

CASE = "efficiency"
TARGET = 0.85
MODELS = ("marine-debris", "fdi")


def region_spec(quick: bool) -> dict[str, Any]:
    """A window of the sample catalog's 30NZM granule, west of the other granule.

    Full: 8 tiles of 512 px (2 x 4), both dates, so every tile composites two scenes. Quick: one
    tile of 256 px, one date (one scene).
    """
    catalog, item, grid, day = sample_scene()
    window = (1200, 204, 256, 256) if quick else (600, 60, 2048, 1024)
    spec = {"catalog": str(catalog), "region": grid.window_region(*window), "crs": f"EPSG:{grid.epsg}",
            "tile_size": 256 if quick else 512, "window": list(window), "scene_grid": item.name}
    if quick:
        spec.update(start=day, end=day)
    return spec


def setup(quick: bool) -> dict[str, Any]:
    """How the platform runs, and the bare model with the same parallelism."""
    if quick:
        return {"runtime": "in-process", "workers": None, "bare_processes": 1, "bare_threads": os.cpu_count() or 1}
    return {"runtime": "dask", "workers": 2, "bare_processes": 2, "bare_threads": 1}


# --------------------------------------------------------------------------- the bare model
def _profile_tile(task: Any, plan: Any, card: Any, model: Any, store: Path, parts: Path) -> tuple[Any, dict[str, float]]:
    """Composite one tile as ``run_tile`` does, timing decode, warp and composite; then time the
    model, the Zarr write and the vectorizing of its core. Returns the tile and the seconds."""
    import numpy as np
    import rasterio
    from affine import Affine
    from rasterio.warp import transform_bounds
    from rasterio.windows import from_bounds

    from geoloom.platform.composite import composite_tile
    from geoloom.platform.mosaic import write_tile
    from geoloom.platform.reading import gdal_env, read_band
    from geoloom.platform.vectors import polygonize

    sec = {"decode": 0.0, "read_warp": 0.0}
    by_id = plan.scene_by_id
    scenes = [by_id[s] for s in task.scene_ids if s in by_id]

    def read(scene: Any, band: str, geobox: Any) -> np.ndarray:
        asset = scene.assets[band]
        t0 = time.perf_counter()
        with rasterio.open(asset.href) as src:  # the source pixels under the tile, no warp
            bounds = transform_bounds(str(geobox.crs), src.crs, *geobox.boundingbox)
            win = from_bounds(*bounds, transform=src.transform).round_offsets().round_lengths()
            if win.width > 0 and win.height > 0:
                src.read(asset.bidx, window=win)
        t1 = time.perf_counter()
        out = read_band(asset, geobox, plan.warp_grid)
        sec["decode"] += t1 - t0
        sec["read_warp"] += time.perf_counter() - t1
        return out

    t0 = time.perf_counter()
    with gdal_env():
        tile, _ = composite_tile(scenes, card.bands, task.read_geobox, read)
    t1 = time.perf_counter()
    layers = model.predict(tile)
    t2 = time.perf_counter()
    h, (cy, cx) = task.halo, task.core_shape_yx
    core = {o.name: np.asarray(layers[o.name])[h:h + cy, h:h + cx] for o in card.outputs}
    write_tile(store, task, core, tile_size=plan.tile_size)
    t3 = time.perf_counter()
    if card.detection:
        transform = Affine(*task.read_transform) * Affine.translation(h, h)
        gdf = polygonize(core[card.detection], core.get(card.score) if card.score else None, transform, task.crs,
                         tile=task.key, label=card.name, scene_index=tile["scene_index"].values[h:h + cy, h:h + cx],
                         scenes=tuple((s.id, s.datetime) for s in scenes))
        gdf.to_parquet(parts / f"{task.key}.parquet")
    t4 = time.perf_counter()
    return tile, {
        "decode": sec["decode"], "read_warp": sec["read_warp"],
        "composite": (t1 - t0) - sec["decode"] - sec["read_warp"], "model": t2 - t1, "zarr_write": t3 - t2,
        "vectorize": t4 - t3,
    }


def _read_tile(task: Any, plan: Any, card: Any, *, warp: bool) -> float:
    """Seconds to composite one tile, with every band through GDAL's warper or as geoloom reads it."""
    from geoloom.platform.composite import composite_tile
    from geoloom.platform.reading import gdal_env, read_band

    by_id = plan.scene_by_id
    scenes = [by_id[s] for s in task.scene_ids if s in by_id]
    t0 = time.perf_counter()
    with gdal_env():
        composite_tile(scenes, card.bands, task.read_geobox,
                       lambda sc, b, gb: read_band(sc.assets[b], gb, plan.warp_grid, force_warp=warp))
    return time.perf_counter() - t0


def bare_worker(rank: int, nproc: int, threads: int, spec: dict[str, Any], repeats: int, barrier: Any,
                queue: Any) -> None:
    """One bare-model process: its share of the tiles into memory, then ``predict`` on them, timed."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # ONNX Runtime and torch take it as a worker does
    import warnings

    warnings.simplefilter("ignore")
    from geoloom.platform.mosaic import create_store
    from geoloom.runtime.model_cache import ModelSpec, load_model
    from geoloom.workflows.api import plan_run

    try:
        with tempfile.TemporaryDirectory(prefix="geoloom-bare-") as tmp:
            prepared = plan_run(spec["region"], model=spec["model"], catalog=spec["catalog"], out=tmp,
                                tile_size=spec.get("tile_size"), crs=spec.get("crs"), start=spec.get("start"),
                                end=spec.get("end"))
            plan, card = prepared.plan, prepared.card
            model = load_model(ModelSpec(spec["model"]))
            store, parts = Path(tmp) / "scratch.zarr", Path(tmp) / "parts"
            parts.mkdir()
            create_store(store, plan, card.outputs)
            mine = plan.tiles[rank::nproc]
            tiles, profile = [], []
            for task in mine:
                tile, sec = _profile_tile(task, plan, card, model, store, parts)
                tiles.append(tile)
                profile.append(sec)
            what_if = {}
            if mine and rank == 0:  # the first tile again, as geoloom reads it and through GDAL's warper
                _read_tile(mine[0], plan, card, warp=True)  # both warm: files open, blocks decoded once
                what_if = {"tile": mine[0].key,
                           "read_s": round(median([_read_tile(mine[0], plan, card, warp=False) for _ in range(3)]), 3),
                           "read_s_all_bands_warped": round(
                               median([_read_tile(mine[0], plan, card, warp=True) for _ in range(3)]), 3)}
            for tile in tiles:  # warm-up: weights loaded, kernels picked
                model.predict(tile)
            times = []
            for _ in range(repeats):
                barrier.wait()
                t0 = time.perf_counter()
                for tile in tiles:
                    model.predict(tile)
                times.append(time.perf_counter() - t0)
            queue.put({"rank": rank, "tiles": len(tiles), "times": times, "profile": profile, "what_if": what_if,
                       "plan_tiles": len(plan.tiles)})
    except BaseException as exc:  # the parent must not wait forever
        barrier.abort()
        queue.put({"rank": rank, "error": f"{type(exc).__name__}: {exc}"})
        raise


def _collect(queue: Any, procs: list[Any]) -> list[dict[str, Any]]:
    """One message per process; a process that died without one is an error, not a hang."""
    import queue as _queue

    results: list[dict[str, Any]] = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=5))
        except _queue.Empty:
            if not any(p.is_alive() for p in procs):
                raise RuntimeError("a bare-model process died without a result") from None
    return results


def bare_model(spec: dict[str, Any], repeats: int, nproc: int, threads: int) -> dict[str, Any]:
    """The bare model in ``nproc`` processes of ``threads`` torch threads; per repeat the slower process's seconds."""
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(nproc), ctx.Queue()
    procs = [ctx.Process(target=bare_worker, args=(r, nproc, threads, spec, repeats, barrier, queue))
             for r in range(nproc)]
    for p in procs:
        p.start()
    results = _collect(queue, procs)
    for p in procs:
        p.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"bare model failed: {errors}")
    results.sort(key=lambda r: r["rank"])
    walls = [max(r["times"][i] for r in results) for i in range(repeats)]
    stages: dict[str, float] = {}
    for r in results:
        for sec in r["profile"]:
            for k, v in sec.items():
                stages[k] = stages.get(k, 0.0) + v
    return {
        "processes": nproc, "threads_per_process": threads, "tiles": sum(r["tiles"] for r in results),
        "per_process_tiles": [r["tiles"] for r in results],
        "repeat_seconds": [round(w, 4) for w in walls], "median_s": round(median(walls), 4),
        "per_process_seconds": [[round(t, 4) for t in r["times"]] for r in results],
        "profile_worker_seconds": {k: round(v, 3) for k, v in stages.items()},
        "what_if_read": [r["what_if"] for r in results],
    }


# --------------------------------------------------------------------------- the platform
@contextmanager
def warm_cluster(workers: int) -> Iterator[str]:
    """``dask scheduler`` and ``workers`` ``dask worker`` processes (1 thread each) on loopback, as a
    deployment keeps them running; yields the scheduler address."""
    import socket
    import subprocess
    import sys

    from distributed import Client

    from geoloom.runtime.executors import WORKER_ENVIRON
    from geoloom.runtime.local_cluster import PROFILER_SETTING

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    addr, dask = f"tcp://127.0.0.1:{port}", str(Path(sys.executable).parent / "dask")
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], **quiet)]
    procs += [subprocess.Popen([dask, "worker", addr, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1"],
                               env={PROFILER_SETTING: "False", **os.environ, **WORKER_ENVIRON}, **quiet)
              for _ in range(workers)]
    try:
        with Client(addr, timeout="60s") as client:
            client.wait_for_workers(workers, timeout=120)
        yield addr
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


def warm_runs(spec: dict[str, Any], repeats: int, out: Path, workers: int) -> dict[str, Any]:
    """``detect`` against a running cluster: one run that loads the model on every worker, then ``repeats`` timed."""
    with warm_cluster(workers) as addr:
        warm = {**{k: v for k, v in spec.items() if k not in ("workers", "runtime")}, "cluster": addr}
        first = platform_runs(warm, 1, out)[0]
        runs = platform_runs(warm, repeats, out)
    return {"scheduler": "dask scheduler + %d dask worker processes, started before the runs" % workers,
            "first_run_detect_s": first["detect_s"], "repeat_detect_s": [r["detect_s"] for r in runs],
            "median_detect_s": median([r["detect_s"] for r in runs]), "runs": runs}


def service_runs(spec: dict[str, Any], repeats: int, out: Path, workers: int) -> dict[str, Any]:
    """The same run as jobs of a warm ``geoloom serve`` (its own cluster of ``workers``): one job that
    starts the workers and loads the model, then ``repeats`` timed from submit to the job's end (state
    polled every 20 ms), as the UI and ``geoloom submit`` use it."""
    import socket
    import subprocess
    import sys

    from geoloom.workflows.service_client import ServiceClient, submit

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    exe = str(Path(sys.executable).parent / "geoloom")
    proc = subprocess.Popen([exe, "serve", "--port", str(port), "--workers", str(workers), "--db",
                             str(out / f"jobs-{port}.sqlite")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = ServiceClient(url)
    kw = {k: spec[k] for k in ("region", "catalog", "crs", "tile_size", "start", "end", "model") if k in spec}

    def one(name: str) -> tuple[float, Any]:
        t0 = time.perf_counter()
        job = submit(kw["region"], **{k: v for k, v in kw.items() if k != "region"}, out=out / name, service=url,
                     per_date=spec.get("per_date", False))  # as the platform runs (benchmarks.child): one composite
        record = client.wait(job.id, poll_s=0.02, timeout_s=600)
        elapsed = time.perf_counter() - t0
        if record.state != "done":
            raise RuntimeError(f"service job {job.id} ended {record.state}")
        return elapsed, record

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client.jobs()
                break
            except Exception:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("geoloom serve did not come up") from None
                time.sleep(0.2)
        first, _ = one(f"{spec['model']}-service-first")
        times = [one(f"{spec['model']}-service-{i}")[0] for i in range(repeats)]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return {"service": f"geoloom serve --workers {workers} (its own cluster, kept warm between jobs)",
            "first_job_s": round(first, 3), "repeat_job_s": [round(t, 3) for t in times],
            "median_job_s": round(median(times), 3)}


def platform_runs(spec: dict[str, Any], repeats: int, out: Path) -> list[dict[str, Any]]:
    """``repeats`` runs of ``detect`` in fresh processes."""
    runs = []
    for _ in range(repeats):
        child = detect_child({**spec, "out": str(out / f"{spec['model']}-{len(list(out.iterdir()))}")})
        runs.append({"detect_s": child.result["detect_s"], "process_s": child.wall_s, "ready_s": child.result["ready_s"],
                     "stages": child.result["stages"], "timings": child.result["timings"],
                     "grid": child.result["grid"], "peak_tree_rss_mb": child.peak_tree_rss_mb})
    return runs


def breakdown(run: dict[str, Any], bare: dict[str, Any]) -> dict[str, Any]:
    """Where a platform run's wall time goes, in seconds of wall time (worker-seconds / workers)."""
    workers = max(1, run["timings"].get("cluster", {}).get("workers", 1))
    ws = run["stages"]["worker_seconds"]
    execute = run["timings"]["seconds"]["execute"]
    publish = run["timings"]["seconds"]["publish"]
    wall = run["detect_s"]
    tiles_wall = ws["total"] / workers
    parts = {
        "read_warp_composite": ws["read"] / workers,
        "model": ws["model"] / workers,
        "write_zarr_and_vectors": ws["write"] / workers,
        "setup_and_scheduling": execute - tiles_wall,
        "publish_cog_vectors_manifest": publish,
        "search_and_plan": wall - execute - publish,
    }
    prof = bare["profile_worker_seconds"]
    read_total = prof.get("decode", 0) + prof.get("read_warp", 0) + prof.get("composite", 0)
    split = {}
    if read_total > 0:
        split = {k: round(prof.get(k, 0) / read_total, 3) for k in ("decode", "read_warp", "composite")}
    return {
        "wall_s": round(wall, 3),
        "seconds": {k: round(v, 3) for k, v in parts.items()},
        "share": {k: round(v / wall, 3) for k, v in parts.items()},
        "read_split_from_profile": split,
        "note": "setup_and_scheduling = execute minus the tiles' own seconds: executor (Dask cluster) start, "
                "worker imports and model load, store creation, task dispatch. read_warp = read_band (windowed "
                "reads upsampled in memory where the band is on the run's grid, GDAL warps elsewhere; with their "
                "own decode); decode = plain native windowed reads of the same source pixels, timed separately "
                "for comparison",
    }


def bound_by(parts: dict[str, Any], bare: dict[str, Any]) -> str:
    """One sentence: the stages that bound the efficiency, and the read what-if."""
    share = parts["share"]
    big = sorted((k for k in share if k != "model" and share[k] >= 0.1), key=share.get, reverse=True)
    big = big or [max((k for k in share if k != "model"), key=share.get)]
    text = ", ".join(f"{k} {share[k]:.0%}" for k in big) + f" of the run's wall time (model {share['model']:.0%})"
    whatif = next((w for w in bare["what_if_read"] if w), None)
    if whatif:
        text += (f"; tile {whatif['tile']} reads and composites in {whatif['read_s']:.2f} s "
                 f"({whatif['read_s_all_bands_warped']:.2f} s with every band through GDAL's warper)")
    return text


def measure(model: str, region: dict[str, Any], how: dict[str, Any], repeats: int, out: Path) -> dict[str, Any]:
    """Platform and bare model for one model, side by side (platform, bare, then the other platform repeats)."""
    spec = {k: region[k] for k in ("region", "catalog", "crs", "tile_size", "start", "end") if k in region}
    spec.update(model=model, runtime=how["runtime"], workers=how["workers"])
    first = platform_runs(spec, 1, out)
    bare = bare_model(spec, repeats, how["bare_processes"], how["bare_threads"])
    rest = platform_runs(spec, repeats - 1, out) if repeats > 1 else []
    warm = warm_runs(spec, repeats, out, how["workers"]) if how["runtime"] == "dask" else None
    service = service_runs(spec, repeats, out, how["workers"]) if how["runtime"] == "dask" else None
    runs = first + rest
    for i, r in enumerate(runs):
        r["repeat"] = i
    platform_s = median([r["detect_s"] for r in runs])
    mid = sorted(runs, key=lambda r: r["detect_s"])[len(runs) // 2]
    parts = breakdown(mid, bare)
    eff = ratio(bare["median_s"], platform_s)
    return {
        "model": model,
        "platform": {"repeat_detect_s": [r["detect_s"] for r in runs], "median_detect_s": platform_s,
                     "repeat_process_s": [r["process_s"] for r in runs], "runs": runs},
        "bare_model": bare,
        "efficiency": eff,
        "platform_over_model": ratio(platform_s, bare["median_s"]),
        "warm_cluster": warm,
        "efficiency_warm_cluster": ratio(bare["median_s"], warm["median_detect_s"]) if warm else None,
        "service": service,
        "efficiency_service": ratio(bare["median_s"], service["median_job_s"]) if service else None,
        "efficiency_tiles_only": ratio(bare["median_s"], mid["stages"]["worker_seconds"]["total"] / (how["workers"] or 1)),
        "breakdown": parts,
        "target": TARGET,
        "met": eff is not None and eff >= TARGET,
        "bound_by": None if eff is not None and eff >= TARGET else bound_by(parts, bare),
    }


def run(quick: bool = False, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    repeats = 1 if quick else 3
    region, how = region_spec(quick), setup(quick)
    report = new_report(CASE, quick, {
        "models": list(MODELS), "repeats": repeats, "setup": how,
        "platform": f"detect(..., runtime={how['runtime']!r}, workers={how['workers']}) in a fresh process",
        "bare": f"{how['bare_processes']} process(es) x {how['bare_threads']} thread(s), model.predict per tile",
        "region": region,
        "command": f"python -m benchmarks {CASE}" + (" --quick" if quick else ""),
    })
    with tempfile.TemporaryDirectory(prefix="geoloom-eff-") as tmp:
        report["models"] = {m: measure(m, region, how, repeats, Path(tmp)) for m in MODELS}
    finish_report(report, started)
    report["summary"] = [
        row(CASE, f"{m}: bare model / platform time", r["efficiency"], f">= {TARGET}", r["met"],
            machine_line(report["machine"])) for m, r in report["models"].items()
    ] + [
        row(CASE, f"{m}: bare model / platform time on a running cluster (workers started, model loaded)",
            r["efficiency_warm_cluster"], f">= {TARGET}", r["efficiency_warm_cluster"] is not None
            and r["efficiency_warm_cluster"] >= TARGET, "dask scheduler + workers started once")
        for m, r in report["models"].items() if r.get("efficiency_warm_cluster") is not None
    ] + [
        row(CASE, f"{m}: bare model / job time on a warm job service (geoloom serve; submit to done)",
            r["efficiency_service"], ">= 0.6", r["efficiency_service"] is not None and r["efficiency_service"] >= 0.6,
            "geoloom serve, its cluster started once")
        for m, r in report["models"].items() if r.get("efficiency_service") is not None
    ] + [
        row(CASE, f"{m}: bare model / the tiles' own time (no start-up, no publish)", r["efficiency_tiles_only"],
            "", None, "from the tile ledger") for m, r in report["models"].items()
    ]
    write_report(CASE, report)
    return report


if __name__ == "__main__":
    case_main(__doc__, run)
