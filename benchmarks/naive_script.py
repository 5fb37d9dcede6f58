"""The marine-debris network over one scene without a platform: the single-process script a
user would write, as published marine-debris code does.

    python -m benchmarks.naive_script --item SCENE.json --out probability.tif [--window ROW COL H W]

1. read the 12 reflectance bands of the scene into memory, the 20 m and 60 m bands upsampled
   to 10 m (bilinear), as float32 reflectance (DN x 1e-4);
2. slide a 480 px window with 64 px overlap over it, batch size 1, through the network;
3. feather-blend the overlapping windows (linear weight ramps) into an in-memory array;
4. write one GeoTIFF of the debris probability on the scene's 10 m grid.

The network is geoloom's marine-debris network, loaded as the platform loads it (the shipped
``state_dict`` with ``torch.load(weights_only=True)``), and run through the same forward
function (``infer``: float32 on CPU, channels-last), so only the way around the model differs.
There is no cloud or land masking: the script sees only the bands.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.windows import Window

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.models.marine_debris import CHANNELS, WEIGHTS_FILE, DebrisNet, infer

WINDOW = 480
OVERLAP = 64


def load_network(device: torch.device) -> DebrisNet:
    """The shipped weights in the inference form of the network."""
    net = DebrisNet(channels=CHANNELS, fused=True)
    net.load_state_dict(torch.load(WEIGHTS_FILE, map_location="cpu", weights_only=True))
    return net.eval().to(device).to(memory_format=torch.channels_last)


def band_files(item: Path) -> tuple[dict[str, Path], dict[str, float]]:
    """Band file paths and reflectance scales from the scene's STAC item."""
    d = json.loads(item.read_text())
    files, scales = {}, {}
    for band in REFLECTANCE_BANDS:
        a = d["assets"][band]
        files[band] = (item.parent / a["href"]).resolve()
        scales[band] = float((a.get("raster:bands") or [{}])[0].get("scale", 1e-4))
    return files, scales


def read_scene(item: Path, window: tuple[int, int, int, int] | None) -> tuple[np.ndarray, dict[str, Any]]:
    """(12, H, W) float32 reflectance at 10 m and the GeoTIFF profile of the 10 m grid."""
    files, scales = band_files(item)
    with rasterio.open(files["nir"]) as ref:  # a 10 m band defines the grid
        r0, c0, h, w = window or (0, 0, ref.height, ref.width)
        transform = ref.window_transform(Window(c0, r0, w, h))
        crs = ref.crs
    stack = np.empty((len(REFLECTANCE_BANDS), h, w), dtype=np.float32)
    for i, band in enumerate(REFLECTANCE_BANDS):
        with rasterio.open(files[band]) as src:
            f = src.res[0] / 10.0  # 1, 2 or 6
            win = Window(c0 / f, r0 / f, w / f, h / f)
            stack[i] = src.read(1, window=win, out_shape=(h, w), resampling=Resampling.bilinear, out_dtype="float32")
        stack[i] *= np.float32(scales[band])
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "float32", "crs": crs,
               "transform": transform, "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
               "BIGTIFF": "IF_SAFER"}
    return stack, profile


def starts(length: int, size: int, overlap: int) -> list[int]:
    """Window offsets along one axis: a step of size - overlap, the last one flush with the edge."""
    if length <= size:
        return [0]
    out = list(range(0, length - size, size - overlap))
    return out + [length - size]


def windows(h: int, w: int, size: int = WINDOW, overlap: int = OVERLAP) -> Iterator[tuple[int, int]]:
    for r in starts(h, size, overlap):
        for c in starts(w, size, overlap):
            yield r, c


def feather(size: int, overlap: int) -> np.ndarray:
    """A (size, size) weight: ramps from near 0 to 1 over ``overlap`` px at every edge."""
    ramp = np.ones(size, dtype=np.float32)
    edge = (np.arange(overlap, dtype=np.float32) + 1) / (overlap + 1)
    ramp[:overlap] = edge
    ramp[-overlap:] = edge[::-1]
    return np.outer(ramp, ramp)


def predict_scene(stack: np.ndarray, net: DebrisNet, device: torch.device, *, size: int = WINDOW,
                  overlap: int = OVERLAP) -> tuple[np.ndarray, dict[str, float]]:
    """Slide the window over the scene, batch size 1, and blend into a probability map."""
    _, h, w = stack.shape
    size = min(size, h, w)
    weight = feather(size, min(overlap, size // 2))
    acc = np.zeros((h, w), dtype=np.float32)
    norm = np.zeros((h, w), dtype=np.float32)
    t_model = t_blend = 0.0
    n = 0
    for r, c in windows(h, w, size, overlap):
        t0 = time.perf_counter()
        p = infer(net, stack[None, :, r : r + size, c : c + size], device)[0]
        t1 = time.perf_counter()
        acc[r : r + size, c : c + size] += p * weight
        norm[r : r + size, c : c + size] += weight
        t_model += t1 - t0
        t_blend += time.perf_counter() - t1
        n += 1
    t0 = time.perf_counter()
    np.divide(acc, norm, out=acc)
    t_blend += time.perf_counter() - t0
    return acc, {"model_s": t_model, "blend_s": t_blend, "windows": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--item", type=Path, required=True, help="the scene's STAC item (JSON)")
    ap.add_argument("--out", type=Path, required=True, help="the probability GeoTIFF to write")
    ap.add_argument("--window", type=int, nargs=4, metavar=("ROW", "COL", "H", "W"), default=None,
                    help="only this 10 m pixel window of the scene (rows and columns on the 60 m grid)")
    ap.add_argument("--size", type=int, default=WINDOW)
    ap.add_argument("--overlap", type=int, default=OVERLAP)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all cores)")
    ap.add_argument("--result", type=Path, default=None, help="write the stage seconds here (JSON)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    t0 = time.perf_counter()
    net = load_network(device)
    t1 = time.perf_counter()
    stack, profile = read_scene(args.item, tuple(args.window) if args.window else None)
    t2 = time.perf_counter()
    prob, stages = predict_scene(stack, net, device, size=args.size, overlap=args.overlap)
    t3 = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(args.out, "w", **profile) as dst:
        dst.write(prob, 1)
    t4 = time.perf_counter()
    if args.result:
        args.result.write_text(json.dumps({
            "load_s": round(t1 - t0, 3), "read_s": round(t2 - t1, 3), "predict_s": round(t3 - t2, 3),
            "model_s": round(stages["model_s"], 3), "blend_s": round(stages["blend_s"], 3),
            "write_s": round(t4 - t3, 3), "total_s": round(t4 - t0, 3), "windows": stages["windows"],
            "shape_yx": [profile["height"], profile["width"]], "transform": list(profile["transform"])[:6],
            "crs": str(profile["crs"]), "threads": torch.get_num_threads(),
            "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }, indent=2))


if __name__ == "__main__":
    main()
