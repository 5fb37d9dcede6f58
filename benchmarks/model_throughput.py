"""Inference throughput of the marine-debris model: Mpx/s by batch size, on CPU (ONNX Runtime and torch) and on CUDA.

    python -m benchmarks.model_throughput [--threads N] [--repeats N] [--section NAME] [--update-card]

Writes ``benchmarks/results/model_throughput.json``, one section per device and backend (``cpu`` is
the default CPU path, ONNX Runtime; ``cpu-torch`` is torch on the same CPU); a run keeps the
sections it does not measure (CUDA from a GPU machine, another CPU named with ``--section``).
Throughput is given over the pixels the network reads (tile core plus halo) and over the core
pixels a run keeps, with the load average at the time (a shared machine reads slow).
``--update-card`` records a CPU section's per-tile rate (core pixels) as the card's
``mpx_per_s``, which the planner uses for its time estimate.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from benchmarks.common import cpu_name
from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.models.debris_net import TorchDebris
from geoloom.platform.models.marine_debris import CARD_FILE, CHANNELS, HALO, MarineDebrisModel
from geoloom.platform.scenes import synthesize_scene

RESULTS = Path(__file__).resolve().parent / "results" / "model_throughput.json"
CORE = 512


def _tile(seed: int, size: int) -> xr.Dataset:
    bands, _ = synthesize_scene(seed, (size, size))
    data = {b: (("y", "x"), bands[b]) for b in REFLECTANCE_BANDS}
    data["scl"] = (("y", "x"), np.full((size, size), 6.0, dtype=np.float32))
    return xr.Dataset(data)


def _time(fn, repeats: int) -> dict[str, float]:
    fn()  # warm-up (kernel selection, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return {"best_s": min(times), "median_s": statistics.median(times)}


def measure(device: str, batches: list[int], repeats: int, backend: str | None = None) -> dict:
    model = MarineDebrisModel(device=device, backend=backend)
    size = CORE + 2 * HALO
    tiles = [_tile(7 + i, size) for i in range(max(batches))]
    x = np.stack([np.stack([t[b].values for b in REFLECTANCE_BANDS]) for t in tiles])
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for n in batches:
        def run(n: int = n) -> None:
            model.probability(x[:n])
            sync()

        t = _time(run, repeats)
        rows.append({"batch": n, **{k: round(v, 4) for k, v in t.items()},
                     "mpx_per_s_read": round(n * size * size / t["best_s"] / 1e6, 3),
                     "mpx_per_s_core": round(n * CORE * CORE / t["best_s"] / 1e6, 3),
                     "mpx_per_s_core_median": round(n * CORE * CORE / t["median_s"] / 1e6, 3)})
    per_tile = _time(lambda: model.predict(tiles[0]), repeats)
    info = {
        "device": torch.cuda.get_device_name(0) if device == "cuda" else cpu_name(),
        "backend": model.network().name,
        "threads": int(os.environ.get("OMP_NUM_THREADS") or 0) or torch.get_num_threads(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "precision": "float16 autocast" if device == "cuda" else "float32",
        "torch": torch.__version__,
        "tile_read_px": size * size, "tile_core_px": CORE * CORE,
        "network": rows,
        "predict_per_tile": {**{k: round(v, 4) for k, v in per_tile.items()},
                             "mpx_per_s_core": round(CORE * CORE / per_tile["best_s"] / 1e6, 3),
                             "note": "one tile through MarineDebrisModel.predict (stack, NaN fill, network, masks)"},
        "best_mpx_per_s_core": max(r["mpx_per_s_core"] for r in rows),
        "best_batch": max(rows, key=lambda r: r["mpx_per_s_core"])["batch"],
    }
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--section", default="cpu", help="name of the CPU section in the report (default: cpu)")
    ap.add_argument("--update-card", action="store_true", help="record a CPU section's per-tile rate in the card data")
    ap.add_argument("--card-section", default=None, help="the section --update-card reads (default: --section)")
    args = ap.parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # ONNX Runtime's threads, as a worker sets them
    report = json.loads(args.out.read_text()) if args.out.exists() else {}
    model = MarineDebrisModel()
    net = TorchDebris(model.weights, "cpu").net
    report.update({"model": model.card.name,
                   "architecture": {"channels": list(CHANNELS), "parameters": sum(p.numel() for p in net.parameters()),
                                    "halo": HALO, "note": "throughput depends on the architecture, not the weights"},
                   "core": CORE})
    report.pop("torch", None)
    report.pop("sha256", None)
    devices = report.setdefault("devices", {})
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    devices[args.section] = {**measure("cpu", [1, 2, 4], args.repeats), "measured": stamp}
    print(json.dumps(devices[args.section], indent=2))
    devices[f"{args.section}-torch"] = {**measure("cpu", [1, 2, 4], args.repeats, "torch"), "measured": stamp}
    print(json.dumps(devices[f"{args.section}-torch"], indent=2))
    if torch.cuda.is_available():
        devices["cuda"] = {**measure("cuda", [1, 4, 16, 32], args.repeats), "measured": stamp}
        print(json.dumps(devices["cuda"], indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    if args.update_card and CARD_FILE.exists():
        data = json.loads(CARD_FILE.read_text())
        section = devices[args.card_section or args.section]
        data["mpx_per_s"] = section["predict_per_tile"]["mpx_per_s_core"]
        CARD_FILE.write_text(json.dumps(data, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
