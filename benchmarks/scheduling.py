"""The ceiling of the design: plan creation and scheduling with a no-op tile task.

    python benchmarks/scheduling.py [--tiles 1000 100000] [--workers 2]

For each tile count, a plan is made over a square region (tile core 32 px at 10 m, no
imagery needed to plan), then every tile runs a task that does nothing but return a
record, through the in-process executor and through Dask (embedded LocalCluster; at most
``--dask-limit`` of the planned tiles, so a 100k plan is timed on its first 10k). Writes
``benchmarks/results/scheduling.json``: plan seconds, plan peak memory (tracemalloc),
and tiles per second for each executor.
"""

from __future__ import annotations

import argparse
import json
import math
import platform as _platform
import time
import tracemalloc
from pathlib import Path

from geoloom.platform.ledger import TileRecord
from geoloom.platform.plan import TileTask, plan_tiles
from geoloom.platform.region import Region
from geoloom.runtime.executors import DaskExecutor, InProcessExecutor

RESULTS = Path(__file__).resolve().parent / "results" / "scheduling.json"
TILE = 32


def noop_tile(task: TileTask) -> TileRecord:
    """What a tile task returns, without reading or computing anything."""
    return TileRecord(key=task.key, row=task.row, col=task.col, state="done")


def region_for(tiles: int) -> Region:
    side_m = math.sqrt(tiles) * TILE * 10.0
    deg = side_m / 111_320.0
    return Region.from_bbox((0.5, 0.5, 0.5 + deg, 0.5 + deg), name=f"{tiles}-tiles")


def measure(tiles: int, workers: int, dask_limit: int) -> dict:
    region = region_for(tiles)
    tracemalloc.start()
    t0 = time.perf_counter()
    plan = plan_tiles(region, [], bands=("nir",), resolution=10.0, halo=0, tile_size=TILE)
    plan_s = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    out = {"planned_tiles": len(plan.tiles), "plan_seconds": round(plan_s, 3), "plan_peak_mb": round(peak / 2**20, 1)}
    for name, make in (("in-process", InProcessExecutor), ("dask", lambda: DaskExecutor(workers=workers))):
        todo = plan.tiles if name == "in-process" else plan.tiles[:dask_limit]
        ex = make()
        try:
            t0 = time.perf_counter()
            n = sum(1 for o in ex.imap_unordered(noop_tile, todo, key=lambda t: t.key) if o.error is None)
            secs = time.perf_counter() - t0
        finally:
            ex.close()
        out[name] = {"tiles": n, "seconds": round(secs, 3), "tiles_per_second": round(n / secs, 1)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiles", type=int, nargs="+", default=[1000, 100_000])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dask-limit", type=int, default=10_000, help="Run at most this many of the planned tiles on Dask.")
    args = ap.parse_args()
    report = {
        "machine": f"{_platform.machine()}, {__import__('os').cpu_count()} cores",
        "tile_core_px": TILE,
        "workers": args.workers,
        "dask_limit": args.dask_limit,
        "cases": {str(n): measure(n, args.workers, args.dask_limit) for n in args.tiles},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2))
    print(f"{'planned':>10} {'plan s':>8} {'plan MB':>8} {'in-process t/s':>15} {'dask t/s':>10}")
    for c in report["cases"].values():
        print(f"{c['planned_tiles']:>10} {c['plan_seconds']:>8} {c['plan_peak_mb']:>8} "
              f"{c['in-process']['tiles_per_second']:>15} {c['dask']['tiles_per_second']:>10}")
    print(f"report: {RESULTS}")


if __name__ == "__main__":
    main()
