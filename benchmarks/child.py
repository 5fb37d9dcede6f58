"""What a benchmark runs in a fresh process, so that its time and memory are its own.

    python -m benchmarks.child detect '{"region": ..., "model": ..., ...}' --result FILE

``detect``: one ``geoloom.workflows.detect`` run; writes the import and run seconds, the
ledger's stage sums, the manifest's timings and the plan's grid to FILE.
``detect`` with ``"warm": true`` in the spec: the run goes to a cluster of ``workers`` started
before it, with the tile code imported and the model loaded on every worker (as a job service
keeps one), and the clock runs only over ``detect``. With ``"steady": true`` as well, the same
``detect`` runs once before the timed one, on that cluster and in this process: the state a job
service is in after its first job.
``startup``: what a run pays before its first tile, step by step: imports, the embedded Dask
cluster, a no-op round trip, the tile code's imports and the model load on every worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import psutil


def _since_start() -> float:
    return time.time() - psutil.Process().create_time()


def run_detect(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``detect`` as the spec says; return what the parent reports."""
    import warnings

    warnings.simplefilter("ignore")
    from geoloom.workflows import detect

    from benchmarks.common import ledger_stages, run_timings

    ready = _since_start()
    region = spec["region"]
    region = tuple(region) if isinstance(region, list) else region
    kwargs = {k: spec[k] for k in ("tile_size", "crs", "workers", "cluster", "max_cloud", "start", "end") if spec.get(k) is not None}
    t0 = time.perf_counter()
    run = detect(region, model=spec["model"], catalog=spec["catalog"], out=spec["out"],
                 runtime=spec.get("runtime", "dask"), overwrite=True, retries=0, progress=False,
                 per_date=spec.get("per_date", False), **kwargs)
    seconds = time.perf_counter() - t0
    request = json.loads((Path(run.folder) / "request.json").read_text())
    plan = request["plan"]
    return {
        "ready_s": round(ready, 3),
        "detect_s": round(seconds, 3),
        "folder": str(run.folder),
        "tiles": dataclasses.asdict(run.tiles),
        "stages": ledger_stages(run.folder),
        "timings": run_timings(run.folder),
        "grid": {"crs": plan["crs"], "transform": plan["transform"], "shape_yx": plan["shape_yx"],
                 "tile_size": plan["tile_size"], "tiles": len(plan["tiles"])},
    }


def run_detect_warm(spec: dict[str, Any]) -> dict[str, Any]:
    """``run_detect`` on a running cluster of ``spec["workers"]`` workers, each with the model loaded warm
    (run once, as the job service's workers are when it starts)."""
    from geoloom.runtime.executors import WORKER_ENVIRON
    from geoloom.runtime.local_cluster import start_local_cluster

    t0 = time.perf_counter()
    cluster, client = start_local_cluster(int(spec["workers"]), gpus=0, dashboard=False, environ=WORKER_ENVIRON)
    try:
        client.run(_import_tile_code)
        client.run(_warm_model, spec["model"])
        warm_s = time.perf_counter() - t0
        run_spec = {**{k: v for k, v in spec.items() if k not in ("warm", "steady", "workers")},
                    "cluster": client.scheduler.address}
        if spec.get("steady"):  # a first job, as a running service has served before this one
            run_detect({**run_spec, "out": str(spec["out"]) + "-first"})
        before, own_before = client.run(_cpu_and_faults), _cpu_and_faults()
        out = run_detect(run_spec)
        after, own_after = client.run(_cpu_and_faults), _cpu_and_faults()
    finally:
        client.close()
        cluster.close()
    workers = {k: sum(after[w][k] - before[w][k] for w in after if w in before) for k in own_after}
    return {**out, "cluster_warm_s": round(warm_s, 3),
            "cpu": {"workers": {k: round(v, 3) for k, v in workers.items()},
                    "client_and_scheduler": {k: round(own_after[k] - own_before[k], 3) for k in own_after}}}


def _cpu_and_faults() -> dict[str, float]:
    """CPU seconds (user, system) and minor page faults of this process so far."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return {"user_s": r.ru_utime, "system_s": r.ru_stime, "page_faults": r.ru_minflt}


def run_startup(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds of each start-up step of a Dask run, measured in order."""
    import warnings

    warnings.simplefilter("ignore")
    import geoloom.workflows  # noqa: F401  (what the CLI imports first)

    ready = _since_start()
    from geoloom.runtime.executors import DaskExecutor

    t0 = time.perf_counter()
    ex = DaskExecutor(workers=spec.get("workers", 2))
    t1 = time.perf_counter()
    try:
        ex.client.run(lambda: None)
        t2 = time.perf_counter()
        ex.client.run(_import_tile_code)
        t3 = time.perf_counter()
        ex.client.run(_load_model, spec["model"])
        t4 = time.perf_counter()
    finally:
        ex.close()
    t5 = time.perf_counter()
    return {"python_and_imports_s": round(ready, 3), "cluster_start_s": round(t1 - t0, 3),
            "noop_round_trip_s": round(t2 - t1, 3), "worker_imports_s": round(t3 - t2, 3),
            "worker_model_load_s": round(t4 - t3, 3), "cluster_close_s": round(t5 - t4, 3)}


def _import_tile_code() -> None:
    import geoloom.platform.tile_job  # noqa: F401
    import geoloom.runtime.tasks  # noqa: F401


def _load_model(name: str) -> None:
    """Load the model as a cold run's first tile does (the network included)."""
    from geoloom.runtime.model_cache import ModelSpec, load_model

    model = load_model(ModelSpec(name))
    if hasattr(model, "network"):
        model.network()


def _warm_model(name: str) -> None:
    """Load the model warm, as the job service's workers are when it starts (``warm_worker``)."""
    from geoloom.runtime.model_cache import ModelSpec, warm_model

    warm_model(ModelSpec(name))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["detect", "startup"])
    ap.add_argument("spec", help="JSON parameters")
    ap.add_argument("--result", type=Path, required=True)
    args = ap.parse_args()
    spec = json.loads(args.spec)
    if args.what == "startup":
        out = run_startup(spec)
    elif spec.get("warm"):
        out = run_detect_warm(spec)
    else:
        out = run_detect(spec)
    args.result.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
