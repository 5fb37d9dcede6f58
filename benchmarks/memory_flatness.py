"""Memory flatness: peak resident memory of a run over 1x, 4x and 16x the area, up to a full
Sentinel-2 tile (10980 x 10980 px).

    python -m benchmarks memory_flatness [--quick]

The areas are windows of the tile of ``geoloom sample-data --size tile`` with sides 2745, 5490
and 10980 px (1/16, 1/4 and all of it), the smaller two centred on its sea (the middle of
``scaling.SEA_WINDOW``, as far as the tile allows) so that every area runs the network: marine-debris
decides tiles of land, cloud and cirrus over land from SCL alone, and the tile's middle is such
a window (its 36 tiles never load the network), which would set a run without the network's
memory against runs with it. Each is run by ``detect`` in a fresh process
with the embedded Dask cluster (2 workers), as ``geoloom run`` runs it. Peak memory is the
summed RSS of the whole process tree (client, nannies, workers), sampled every 0.1 s; the
largest single process is reported too. Within one suite run the 16x run is the one the
``against_naive`` case made (same region, model and runtime). Target: the 16x peak within
1.3x of the 1x peak. ``--quick``: 64, 128 and 256 px windows of a sample scene (64 px tiles),
in-process.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import (
    SceneGrid, case_main, detect_child, ensure_tile_catalog, finish_report, machine_line, memory_story, new_report,
    ratio, row, sample_scene, scene_items, write_report,
)
from benchmarks.scaling import SEA_WINDOW

CASE = "memory_flatness"
TARGET = 1.3
MODEL = "marine-debris"
MULTIPLES = (1, 4, 16)


def setups(quick: bool) -> list[dict[str, Any]]:
    """One detect spec per area multiple."""
    if quick:
        catalog, _, grid, day = sample_scene()
        base, extra = 64, {"runtime": "in-process", "tile_size": 64, "start": day, "end": day}
        origin = (1200, 204)
    else:
        catalog = ensure_tile_catalog()
        grid = SceneGrid.from_item(scene_items(catalog)[0])
        base, extra = grid.shape_yx[0] // 4, {"runtime": "dask", "workers": 2}
        origin = None
        row, col, height, width = SEA_WINDOW
        sea_centre = (row + height // 2, col + width // 2)
    out = []
    for m in MULTIPLES:
        side = base * int(m**0.5)
        if origin:
            window = (*origin, side, side)
        elif side >= grid.shape_yx[0]:
            window = (0, 0, *grid.shape_yx)
        else:
            window = grid.around(sea_centre, side, side)
        out.append({"multiple": m, "window": list(window), "spec": {
            "region": grid.window_region(*window), "catalog": str(catalog), "crs": f"EPSG:{grid.epsg}",
            "model": MODEL, **extra}})
    return out


def same_run(spec: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether a run made elsewhere in this suite had the same parameters (the folder aside)."""
    keys = ("region", "catalog", "crs", "model", "runtime", "workers", "tile_size", "start", "end")
    return all(spec.get(k) == other.get(k) for k in keys)


def measure(case: dict[str, Any], out: Path, shared: dict[str, Any] | None) -> dict[str, Any]:
    """One area: reuse the suite's full-tile run where it matches, else run it."""
    reused = (shared or {}).get("geoloom_full_tile")
    if reused and same_run(case["spec"], reused["spec"]):
        child, source = reused["child"], "against_naive (same suite run)"
    else:
        child = detect_child({**case["spec"], "out": str(out / f"x{case['multiple']}")}, timeout=4 * 3600).summary()
        source = "this case"
    res = child["result"]
    return {
        "multiple": case["multiple"], "window": case["window"], "source": source,
        "pixels": res["grid"]["shape_yx"][0] * res["grid"]["shape_yx"][1], "tiles": res["grid"]["tiles"],
        "peak_tree_rss_mb": child["peak_tree_rss_mb"], "peak_single_rss_mb": child["peak_single_rss_mb"],
        "peak_tree_at_s": child["peak_tree_at_s"], "maxrss_mb": child["maxrss_mb"], "process_s": child["wall_s"],
        "detect_s": res["detect_s"], "publish_s": res["timings"]["seconds"]["publish"],
        "processes_seen": child["processes_seen"], "peak_by_role": child.get("peak_by_role"),
        "tree_at_peak_mb": child.get("tree_at_peak_mb"), "memory": memory_story(child),
    }


def bound_by(rows: list[dict[str, Any]]) -> str:
    """Which process and phase the growth comes from."""
    small, big = rows[0], rows[-1]
    return f"1x: {small['memory']}. {big['multiple']}x: {big['memory']}"


def run(quick: bool = False, shared: dict[str, Any] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    cases = setups(quick)
    report = new_report(CASE, quick, {
        "model": MODEL, "areas": [{k: c[k] for k in ("multiple", "window")} for c in cases],
        "runtime": {k: v for k, v in cases[0]["spec"].items() if k in ("runtime", "workers", "tile_size")},
        "memory": "summed RSS of the process tree, sampled every 0.1 s",
        "command": f"python -m benchmarks {CASE}" + (" --quick" if quick else ""),
    })
    with tempfile.TemporaryDirectory(prefix="geoloom-mem-") as tmp:
        rows = [measure(c, Path(tmp), shared) for c in cases]
    base = rows[0]["peak_tree_rss_mb"]
    for r in rows:
        r["peak_over_1x"] = ratio(r["peak_tree_rss_mb"], base)
    flat = rows[-1]["peak_over_1x"]
    met = flat is not None and flat <= TARGET
    report.update({"areas": rows, "ratio_16x_over_1x": flat, "target": f"<= {TARGET}", "met": met,
                   "bound_by": None if met else bound_by(rows)})
    finish_report(report, started)
    report["summary"] = [row(CASE, "peak RSS 16x area / 1x area", flat, f"<= {TARGET}", met,
                             f"4x/1x {rows[1]['peak_over_1x']}; {machine_line(report['machine'])}")]
    write_report(CASE, report)
    return report


if __name__ == "__main__":
    case_main(__doc__, run)
