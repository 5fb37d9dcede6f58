"""Scaling: 1 against 2 Dask workers on the same region, and the no-op scheduling ceiling.

    python -m benchmarks scaling [--quick]

The same ``detect`` run (marine-debris, embedded LocalCluster, 1 thread per worker) with
``workers=1`` and ``workers=2``, alternating, in fresh processes; speed-up = median seconds
with 1 worker / median seconds with 2 (target >= 1.7 on 2 cores). Full: a 4096 x 4096 px
window (64 tiles) of the full-tile sample where it is most sea (``SEA_WINDOW``), 3 repeats of each, so that the tiles, not the
cluster start and the publish step, make most of the run. The ceiling is the no-op tile task
of ``benchmarks/scheduling.py`` through the same Dask executor (measured here on 1000 tiles,
and its stored report),
set against the tiles per second the real runs reach.

On a cold start (each run starts its embedded cluster: worker processes, imports, model load);
warm (each run goes to a cluster of that many workers started before it, the model loaded warm on
every worker, as a job service starts one; the clock runs over ``detect`` alone); and steady (the
same, after one untimed run of the same job on that cluster and in that process: a job service after
its first job, whose workers and client have met a run's memory and imports). ``--quick``: a 256 x
512 px window of a sample scene in 256 px tiles (2 tiles).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    RESULTS, SceneGrid, case_main, detect_child, ensure_tile_catalog, finish_report, machine_line, median, new_report,
    ratio, row, sample_scene, scene_items, write_report,
)

CASE = "scaling"
#: The 64-tile window (row, col, height, width, on the 60 m grid) with the most open water of the
#: full-tile sample (71 % water by its SCL): marine-debris decides tiles of land, cloud and thin
#: cirrus over land from SCL and two bands without its network, so a window of land would time
#: little but the start-up.
SEA_WINDOW = (6630, 6120, 4096, 4096)
TARGET = 1.7
MODEL = "marine-debris"


def region_spec(quick: bool) -> dict[str, Any]:
    """The region both worker counts compute: 64 tiles (2 in quick mode)."""
    if quick:
        catalog, _, grid, day = sample_scene()
        window, extra = (1200, 204, 256, 512), {"tile_size": 256, "start": day, "end": day}
    else:
        catalog = ensure_tile_catalog()
        grid = SceneGrid.from_item(scene_items(catalog)[0])
        window, extra = SEA_WINDOW, {}
    return {"region": grid.window_region(*window), "catalog": str(catalog), "crs": f"EPSG:{grid.epsg}",
            "model": MODEL, "runtime": "dask", "window": list(window), **extra}


def one_run(spec: dict[str, Any], workers: int, out: Path, *, warm: bool = False, steady: bool = False) -> dict[str, Any]:
    child = detect_child({**{k: v for k, v in spec.items() if k != "window"}, "workers": workers,
                          "warm": warm or steady, "steady": steady,
                          "out": str(out / f"w{workers}-{len(list(out.iterdir()))}")})
    res = child.result
    ws = res["stages"]["worker_seconds"]
    execute = res["timings"]["seconds"]["execute"]
    return {"workers": workers, "warm": warm, "steady": steady, "detect_s": res["detect_s"], "process_s": child.wall_s, "execute_s": execute,
            "publish_s": res["timings"]["seconds"]["publish"], "tiles": res["stages"]["tiles"],
            "workers_used": len(res["stages"]["workers"]), "worker_seconds": ws, "per_tile_s": res["stages"]["per_tile_s"],
            "fixed_s": round(res["detect_s"] - ws["total"] / workers, 3),
            "tiles_per_s": round(res["stages"]["tiles"] / execute, 3),
            **({"cpu": res["cpu"]} if "cpu" in res else {})}


def ceiling(workers: int, tiles: int) -> dict[str, Any]:
    """The no-op scheduling ceiling, live on ``tiles`` tiles and as stored by ``benchmarks/scheduling.py``."""
    from benchmarks.scheduling import measure

    live = measure(tiles, workers, tiles)
    stored_path = RESULTS / "scheduling.json"
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else None
    return {"live": live, "stored": stored and {
        n: {"dask_tiles_per_s": c["dask"]["tiles_per_second"], "in_process_tiles_per_s": c["in-process"]["tiles_per_second"]}
        for n, c in stored["cases"].items()}}


def bound_by(runs: list[dict[str, Any]], ceil: dict[str, Any], load: list[float]) -> str:
    """Amdahl: what does not shrink with workers, and how much slower each tile gets."""
    one = [r for r in runs if r["workers"] == 1]
    two = [r for r in runs if r["workers"] == 2]
    fixed1, fixed2 = median([r["fixed_s"] for r in one]), median([r["fixed_s"] for r in two])
    tile1, tile2 = median([r["per_tile_s"]["total"] for r in one]), median([r["per_tile_s"]["total"] for r in two])
    t1 = median([r["detect_s"] for r in one])
    ideal = t1 / (fixed2 + median([r["worker_seconds"]["total"] for r in one]) / 2)
    noop = ceil["live"]["dask"]["tiles_per_second"]
    real = max(r["tiles_per_s"] for r in runs)
    cpu = ""
    if all("cpu" in r for r in runs):  # warm runs: what the processes spent while detect ran
        def med(rs: list[dict[str, Any]], who: str, k: str) -> float:
            return median([r["cpu"][who][k] for r in rs])
        cpu = (f"; the workers' user CPU {med(one, 'workers', 'user_s'):.1f} s with 1 worker, "
               f"{med(two, 'workers', 'user_s'):.1f} s with 2, their system CPU {med(one, 'workers', 'system_s'):.2f} "
               f"against {med(two, 'workers', 'system_s'):.2f} s ({med(one, 'workers', 'page_faults'):.0f} against "
               f"{med(two, 'workers', 'page_faults'):.0f} page faults); the client and scheduler's process "
               f"{med(one, 'client_and_scheduler', 'user_s') + med(one, 'client_and_scheduler', 'system_s'):.2f} "
               f"against {med(two, 'client_and_scheduler', 'user_s') + med(two, 'client_and_scheduler', 'system_s'):.2f}"
               " CPU-s (planning, scheduling, the ledger, publishing)")
    return (f"fixed seconds that do not shrink with workers (cluster start, worker imports, model load, publish): "
            f"{fixed1:.1f} s with 1 worker, {fixed2:.1f} s with 2, of {t1:.1f} s; with per-tile cost unchanged the "
            f"speed-up could reach {ideal:.2f}. Each tile takes {tile1:.2f} s alone and {tile2:.2f} s with 2 workers "
            f"sharing 2 cores (load average before {load[0]:g}). Scheduling is not the bound: no-op tasks "
            f"go at {noop:.0f} tiles/s, real runs at {real:.2f} tiles/s{cpu}")


def run(quick: bool = False, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    repeats = 1 if quick else 3
    spec = region_spec(quick)
    report = new_report(CASE, quick, {
        "model": MODEL, "repeats": repeats, "region": {k: v for k, v in spec.items() if k != "region"},
        "order": "1 then 2 workers, then 2 then 1, alternating",
        "command": f"python -m benchmarks {CASE}" + (" --quick" if quick else ""),
    })
    runs = []
    with tempfile.TemporaryDirectory(prefix="geoloom-scale-") as tmp:
        for mode in ("cold", "warm", "steady"):
            for i in range(repeats):
                for w in ((1, 2) if i % 2 == 0 else (2, 1)):
                    r = one_run(spec, w, Path(tmp), warm=mode == "warm", steady=mode == "steady")
                    r["repeat"] = i
                    runs.append(r)
    cold = [r for r in runs if not r["warm"] and not r["steady"]]
    warm_runs = [r for r in runs if r["warm"]]
    steady_runs = [r for r in runs if r["steady"]]
    t1 = median([r["detect_s"] for r in cold if r["workers"] == 1])
    t2 = median([r["detect_s"] for r in cold if r["workers"] == 2])
    speedup = ratio(t1, t2)
    w1 = median([r["detect_s"] for r in warm_runs if r["workers"] == 1])
    w2 = median([r["detect_s"] for r in warm_runs if r["workers"] == 2])
    speedup_warm = ratio(w1, w2)
    met_warm = speedup_warm is not None and speedup_warm >= TARGET
    s1 = median([r["detect_s"] for r in steady_runs if r["workers"] == 1])
    s2 = median([r["detect_s"] for r in steady_runs if r["workers"] == 2])
    speedup_steady = ratio(s1, s2)
    met_steady = speedup_steady is not None and speedup_steady >= TARGET
    ceil = ceiling(2, 200 if quick else 1000)
    met = speedup is not None and speedup >= TARGET
    report.update({
        "runs": runs, "median_s": {"1_worker": t1, "2_workers": t2}, "speedup": speedup, "target": f">= {TARGET}",
        "met": met, "warm": {"median_s": {"1_worker": w1, "2_workers": w2}, "speedup": speedup_warm,
                             "met": met_warm},
        "steady": {"median_s": {"1_worker": s1, "2_workers": s2}, "speedup": speedup_steady, "met": met_steady},
        "ceiling": ceil,
        "tiles_only_speedup": ratio(median([r["worker_seconds"]["total"] for r in runs if r["workers"] == 1]),
                                    median([r["worker_seconds"]["total"] / 2 for r in runs if r["workers"] == 2])),
    })
    report["bound_by"] = None if met else bound_by(cold, ceil, report["machine"]["load_average"])
    report["bound_by_warm"] = None if met_warm else bound_by(warm_runs, ceil, report["machine"]["load_average"])
    report["bound_by_steady"] = None if met_steady else bound_by(steady_runs, ceil, report["machine"]["load_average"])
    finish_report(report, started)
    noop = ceil["live"]["dask"]["tiles_per_second"]
    report["summary"] = [
        row(CASE, "speed-up 2 workers / 1 worker, cold start", speedup, f">= {TARGET}", met,
            machine_line(report["machine"])),
        row(CASE, "speed-up 2 workers / 1 worker, running cluster (as the job service has)", speedup_warm,
            f">= {TARGET}", met_warm, machine_line(report["machine"])),
        row(CASE, "speed-up 2 workers / 1 worker, steady (a second job on that cluster, as a job service after its "
            "first)", speedup_steady, f">= {TARGET}", met_steady, machine_line(report["machine"])),
        row(CASE, "no-op scheduling ceiling (tiles/s, Dask, 2 workers)", noop, None, None,
            f"real runs: {max(r['tiles_per_s'] for r in runs)} tiles/s"),
    ]
    write_report(CASE, report)
    return report


if __name__ == "__main__":
    case_main(__doc__, run)
