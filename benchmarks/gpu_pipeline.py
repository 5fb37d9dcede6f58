"""The GPU end to end: how busy a run keeps the GPU, and its rate against the network alone.

    python -m benchmarks.gpu_pipeline [--quick] [--device cuda|cpu]

For a machine with a CUDA GPU; a few minutes. Two numbers side by side, in one run:

* the network alone: ``MarineDebrisModel(device=...).probability`` on batches of tiles already in
  memory (512 px core + halo, float16 autocast on CUDA), Mpx/s of core pixels, best batch;
* the pipeline end to end: ``detect`` (marine-debris, embedded Dask cluster: one worker per core,
  each offering the GPU, so reads and writes of some tiles overlap the network of others) over the
  full generated Sentinel-2 tile (``--quick``: a 2048 x 2048 px window of it), Mpx/s of region
  pixels per second of the run's execute stage, while ``nvidia-smi`` samples the GPU every 200 ms:
  its mean utilisation over that stage is the "GPU busy" figure (target >= 85 %).

Without a GPU (or with ``--device cpu``) the same two numbers are measured on the CPU path, as a
smoke run, with no utilisation. Writes ``benchmarks/results/gpu_pipeline.json`` (``quick/`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    SceneGrid, ensure_tile_catalog, finish_report, machine_line, new_report, row, scene_items, write_report,
)

CASE = "gpu_pipeline"
BUSY_TARGET = 85.0
CORE = 512


class GpuSampler:
    """``nvidia-smi`` utilisation and memory every ``period_ms`` on a thread, with timestamps."""

    def __init__(self, period_ms: int = 200) -> None:
        self.samples: list[tuple[float, float, float]] = []
        self._proc: subprocess.Popen[str] | None = None
        self._thread: threading.Thread | None = None
        self.period_ms = period_ms

    def __enter__(self) -> GpuSampler:
        exe = shutil.which("nvidia-smi")
        if exe:
            self._proc = subprocess.Popen([exe, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits",
                                           f"-lms={self.period_ms}", "-i", "0"], stdout=subprocess.PIPE, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                util, mem = (float(v) for v in line.strip().split(","))
            except ValueError:
                continue
            self.samples.append((time.time(), util, mem))

    def __exit__(self, *exc: Any) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    def between(self, t0: float, t1: float) -> dict[str, Any] | None:
        """Mean and peak utilisation (%) and peak memory (MiB) between two wall-clock times."""
        inside = [(u, m) for t, u, m in self.samples if t0 <= t <= t1]
        if not inside:
            return None
        util = [u for u, _ in inside]
        return {"samples": len(inside), "busy_mean_pct": round(float(np.mean(util)), 1),
                "busy_p50_pct": round(float(np.median(util)), 1), "memory_peak_mib": max(m for _, m in inside)}


def network_alone(device: str, repeats: int = 5) -> dict[str, Any]:
    """Mpx/s of the network alone on tiles in memory, by batch size; the best batch."""
    from geoloom.platform.models.marine_debris import HALO, MarineDebrisModel

    model = MarineDebrisModel(device=device)
    side = CORE + 2 * HALO
    rng = np.random.default_rng(0)
    rows = []
    for batch in ((1, 4, 16) if device == "cuda" else (1, 2)):
        x = (rng.random((batch, 12, side, side), dtype=np.float32) * 0.1).astype(np.float32)
        model.probability(x)  # warm-up: kernels, allocator
        t0 = time.perf_counter()
        for _ in range(repeats):
            model.probability(x)  # returns host memory: the device has finished
        seconds = (time.perf_counter() - t0) / repeats
        rows.append({"batch": batch, "s": round(seconds, 4), "mpx_per_s_core": round(batch * CORE * CORE / seconds / 1e6, 2)})
    best = max(rows, key=lambda r: r["mpx_per_s_core"])
    return {"backend": model.network().name, "batches": rows, "best_mpx_per_s_core": best["mpx_per_s_core"]}


def end_to_end(device: str, quick: bool, out: Path, sampler: GpuSampler) -> dict[str, Any]:
    """A run over the full tile (or a window of it), timed, with the GPU sampled over its execute stage."""
    import datetime as dt

    from geoloom.workflows import detect

    catalog = ensure_tile_catalog()
    grid = SceneGrid.from_item(scene_items(catalog)[0])
    window = (4096, 4096, 2048, 2048) if quick else (0, 0, *grid.shape_yx)
    region = grid.window_region(*window)
    t0 = time.perf_counter()
    run = detect(region, model="marine-debris", catalog=catalog, crs=f"EPSG:{grid.epsg}", runtime="dask",
                 out=out / "run", per_date=False, progress=False)
    wall = time.perf_counter() - t0
    timings = run.timings
    started = dt.datetime.fromisoformat(timings["started"]).timestamp()
    execute = timings["seconds"]["execute"]
    pixels = window[2] * window[3]
    return {
        "window": list(window), "pixels": pixels, "tiles": run.tiles.total, "wall_s": round(wall, 2),
        "execute_s": execute, "publish_s": timings["seconds"].get("publish"),
        "tile_worker_seconds": timings.get("tile_seconds"), "cluster": timings.get("cluster"),
        "mpx_per_s_execute": round(pixels / execute / 1e6, 2), "mpx_per_s_wall": round(pixels / wall / 1e6, 2),
        "gpu": sampler.between(started, started + execute),
    }


def run(quick: bool = False, device: str | None = None) -> dict[str, Any]:
    from geoloom.platform.devices import local_gpus

    started = time.perf_counter()
    device = device or ("cuda" if local_gpus() else "cpu")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # the workers see no GPU either
    report = new_report(CASE, quick, {"device": device, "model": "marine-debris", "core": CORE,
                                      "command": f"python -m benchmarks.{CASE}" + (" --quick" if quick else "")})
    net = network_alone(device)
    with tempfile.TemporaryDirectory(prefix="geoloom-gpu-") as tmp, GpuSampler() as sampler:
        e2e = end_to_end(device, quick, Path(tmp), sampler)
    report.update(network_alone=net, end_to_end=e2e,
                  pipeline_over_network=round(e2e["mpx_per_s_execute"] / net["best_mpx_per_s_core"], 3))
    finish_report(report, started)
    busy = (e2e["gpu"] or {}).get("busy_mean_pct")
    report["summary"] = [
        row(CASE, f"end to end, Mpx/s ({device}, execute stage)", e2e["mpx_per_s_execute"], None, None,
            f"network alone {net['best_mpx_per_s_core']} Mpx/s ({net['backend']}); {machine_line(report['machine'])}"),
        row(CASE, "GPU busy over the run's execute stage (%)", busy, f">= {BUSY_TARGET:.0f}",
            None if busy is None else busy >= BUSY_TARGET, "nvidia-smi every 200 ms" if busy is not None else
            "no GPU sampled (no nvidia-smi or CPU run)"),
    ]
    write_report(CASE, report)
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None, help="default: cuda when there is a GPU")
    args = ap.parse_args()
    for r in run(args.quick, args.device)["summary"]:
        print(r)


if __name__ == "__main__":
    main()
