"""Training and evaluating detectors on generated scenes: ``train_marine_debris`` and ``evaluate``.

Seeds never overlap: training scenes are ``synthesize_scene`` seeds from 1000 up, validation
scenes seeds 500-599, and the held-out evaluation uses the catalogs that
``generate_sample_data`` writes for seeds 0-3 (a different world generator altogether).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sysconfig
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS, band_info
from geoloom.platform.classes import (
    CLOUD, CLOUD_SHADOW, DEBRIS, FOAM, HARD_NEGATIVES, LABEL_CLASSES, SARGASSUM, SHIP, TURBID,
)

__all__ = [
    "EVAL_SEEDS", "TRAIN_SEED0", "VAL_SEEDS", "add_turbidity", "comparison_figure", "evaluate", "heldout_report",
    "install_marine_debris", "pixel_scores", "scores_table", "train_marine_debris",
]

#: Progress callback: (stage, done, total).
ProgressFn = Callable[[str, int, int], None]

TRAIN_SEED0 = 1000
VAL_SEEDS = range(500, 600)
EVAL_SEEDS = (0, 1, 2, 3)

PATCH = 96
#: Crop origins on multiples of 6 keep the 20 m and 60 m pixel blocks whole inside a patch.
BLOCK = 6
_BY_RES = {res: [i for i, b in enumerate(REFLECTANCE_BANDS) if band_info(b).resolution_m == res]
           for res in (10, 20, 60)}
_COARSE = {res: _BY_RES[res] for res in (20, 60)}
_HARD = (FOAM, SARGASSUM, SHIP, TURBID)


def _tick(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    if progress is not None:
        progress(stage, done, total)


# --------------------------------------------------------------------------- data
def bilinear_coarse_bands(x: np.ndarray) -> np.ndarray:
    """Re-upsample the 20 m and 60 m bands of (n, 12, h, w) nearest-repeated reflectance
    bilinearly, as the platform's warped reads deliver them. Blocks must start at (0, 0)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    h, w = t.shape[-2:]
    out = t.clone()
    for res, idx in _COARSE.items():
        k = res // 10
        native = t[:, idx, ::k, ::k]
        up = F.interpolate(native, scale_factor=k, mode="bilinear", align_corners=False)
        out[:, idx] = up[..., :h, :w]
    return out.numpy()



#: Share of each labelled pixel that is open water, which a sediment plume can make turbid.
_CLEAR_WATER = np.zeros(256, dtype=np.float32)
for _code, _share in {1: 1.0, 2: 0.6, 3: 0.4, 4: 0.3, 5: 0.5, 7: 0.35, 8: 1.0}.items():
    _CLEAR_WATER[_code] = _share


def add_turbidity(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *, strength: float,
                  nodes: int = 3) -> None:
    """Lay a smooth sediment plume over one scene or patch (12, h, w) in place: part of each
    pixel's open water becomes turbid water, mixed as the generator mixes endmembers (the
    20 m and 60 m bands take the plume averaged over their pixel). ``x`` holds the coarse
    bands repeated onto the 10 m grid in blocks starting at (0, 0)."""
    import torch
    import torch.nn.functional as F

    from geoloom.platform.spectra import ENDMEMBERS

    h, w = labels.shape
    field = torch.from_numpy(rng.random((1, 1, nodes, nodes)).astype(np.float32))
    field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=True)[0, 0].numpy()
    turb = strength * np.clip(1.6 * field - 0.3, 0.0, 1.0) * _CLEAR_WATER[labels]
    delta = (ENDMEMBERS["turbid"] - ENDMEMBERS["water"]).astype(np.float32)
    for res, idx in _BY_RES.items():
        t = _block_mean(turb, res // 10)
        x[idx] += delta[idx, None, None] * t[None]


def _block_mean(a: np.ndarray, k: int) -> np.ndarray:
    """Mean over k x k blocks from (0, 0), repeated back to a's shape (edge blocks may be partial)."""
    if k == 1:
        return a
    h, w = a.shape
    ph, pw = -h % k, -w % k
    total = np.pad(a, ((0, ph), (0, pw)))
    count = np.pad(np.ones_like(a), ((0, ph), (0, pw)))
    s = total.reshape((h + ph) // k, k, (w + pw) // k, k).sum(axis=(1, 3))
    n = count.reshape((h + ph) // k, k, (w + pw) // k, k).sum(axis=(1, 3))
    return np.repeat(np.repeat(s / n, k, axis=0), k, axis=1)[:h, :w].astype(np.float32)

def _scenes(seeds: Sequence[int], size: int, *, bilinear: bool, progress: ProgressFn | None, stage: str,
            plumes: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Generated scenes as (n, 12, size, size) float16 reflectance and (n, size, size) uint8 labels;
    ``plumes``: every other scene under a sediment plume (see :func:`add_turbidity`)."""
    from geoloom.platform.scenes import synthesize_scene

    xs = np.empty((len(seeds), len(REFLECTANCE_BANDS), size, size), dtype=np.float16)
    ys = np.empty((len(seeds), size, size), dtype=np.uint8)
    for i, s in enumerate(seeds):
        bands, labels = synthesize_scene(int(s), (size, size))
        x = np.stack([bands[b] for b in REFLECTANCE_BANDS])[None]
        if plumes and i % 2:
            add_turbidity(x[0], labels, np.random.default_rng([int(s), 0x7B]), strength=0.9, nodes=4)
        xs[i] = bilinear_coarse_bands(x)[0] if bilinear else x[0]
        ys[i] = labels
        _tick(progress, stage, i + 1, len(seeds))
    return xs, ys


class PatchSampler:
    """Random training patches: centred on debris, on hard negatives (foam, Sargassum, ships,
    turbid water) or anywhere, with sediment plumes laid over some, flips, 90 degree rotations,
    brightness, noise and the resampling a warped read applies. One numpy generator, so a seed
    fixes every batch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *, patch: int = PATCH,
                 p_debris: float = 0.5, p_hard: float = 0.3) -> None:
        self.x, self.y, self.rng, self.patch = x, y, rng, patch
        self.p_debris, self.p_hard = p_debris, p_hard
        self.debris = [np.flatnonzero(lab == DEBRIS) for lab in y]
        self.hard = [np.flatnonzero(np.isin(lab, _HARD)) for lab in y]
        self.with_debris = [i for i, d in enumerate(self.debris) if d.size]
        self.with_hard = [i for i, d in enumerate(self.hard) if d.size]

    def _crop(self) -> tuple[int, int, int]:
        rng, size = self.rng, self.x.shape[-1]
        u = rng.random()
        if u < self.p_debris and self.with_debris:
            i = self.with_debris[rng.integers(len(self.with_debris))]
            c = self.debris[i][rng.integers(self.debris[i].size)]
        elif u < self.p_debris + self.p_hard and self.with_hard:
            i = self.with_hard[rng.integers(len(self.with_hard))]
            c = self.hard[i][rng.integers(self.hard[i].size)]
        else:
            i = int(rng.integers(len(self.x)))
            c = int(rng.integers(size * size))
        cy, cx = divmod(int(c), size)
        p = self.patch
        jitter = rng.integers(-p // 3, p // 3 + 1, 2)
        top = int(np.clip(cy - p // 2 + jitter[0], 0, size - p)) // BLOCK * BLOCK
        left = int(np.clip(cx - p // 2 + jitter[1], 0, size - p)) // BLOCK * BLOCK
        return i, top, left

    def batch(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng, p = self.rng, self.patch
        xb = np.empty((n, self.x.shape[1], p, p), dtype=np.float32)
        yb = np.empty((n, p, p), dtype=np.float32)
        for k in range(n):
            i, top, left = self._crop()
            xb[k] = self.x[i, :, top:top + p, left:left + p]
            labels = self.y[i, top:top + p, left:left + p]
            yb[k] = labels == DEBRIS
            if rng.random() < 0.35:  # a sediment plume over the patch
                add_turbidity(xb[k], labels, rng, strength=float(rng.uniform(0.2, 1.0)))
        # resampling: half the patches get bilinear 20/60 m bands, some a sub-pixel shift (reprojection)
        resample = rng.random(n) < 0.5
        if resample.any():
            xb[resample] = bilinear_coarse_bands(xb[resample])
        for k in np.flatnonzero(rng.random(n) < 0.25):
            a, b = rng.random(2) * 0.5
            s = xb[k]
            sy = np.concatenate([s[:, 1:], s[:, -1:]], axis=1)
            sx = np.concatenate([s[:, :, 1:], s[:, :, -1:]], axis=2)
            sxy = np.concatenate([sy[:, :, 1:], sy[:, :, -1:]], axis=2)
            xb[k] = (1 - a) * (1 - b) * s + a * (1 - b) * sy + (1 - a) * b * sx + a * b * sxy
        # radiometry: overall brightness, per-band gain, sensor noise
        gain = rng.uniform(0.9, 1.1, (n, 1, 1, 1)) * rng.uniform(0.97, 1.03, (n, xb.shape[1], 1, 1))
        xb *= gain.astype(np.float32)
        sigma = rng.uniform(0.0, 0.0015, (n, 1, 1, 1)).astype(np.float32)
        xb += sigma * rng.standard_normal(xb.shape, dtype=np.float32)
        # the eight flips/rotations
        for k in range(n):
            r, f = int(rng.integers(4)), bool(rng.integers(2))
            xk, yk = np.rot90(xb[k], r, axes=(1, 2)), np.rot90(yb[k], r)
            if f:
                xk, yk = xk[:, :, ::-1], yk[:, ::-1]
            xb[k], yb[k] = xk, yk
        return xb, yb


# --------------------------------------------------------------------------- scores
def pixel_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall, F1 and IoU from pixel counts."""
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    iou = tp / (tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4), "iou": round(iou, 4)}


def _best_threshold(prob: np.ndarray, target: np.ndarray) -> tuple[float, dict[str, float]]:
    """The threshold (0.05 steps) with the best F1, and the scores there."""
    bins = np.linspace(0.0, 1.0, 101)
    pos = np.histogram(prob[target], bins)[0][::-1].cumsum()[::-1]
    neg = np.histogram(prob[~target], bins)[0][::-1].cumsum()[::-1]
    n_pos = int(target.sum())
    best = (-1.0, 0.5, {})
    for t in np.round(np.arange(0.05, 0.96, 0.05), 2):
        k = int(round(t * 100))
        tp, fp = int(pos[k]), int(neg[k])
        s = pixel_scores(tp, fp, n_pos - tp)
        if s["f1"] > best[0]:
            best = (s["f1"], float(t), s)
    return best[1], best[2]


def _validate(net: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, dict[str, float], dict[str, float]]:
    """Best threshold, scores there and an FDI-baseline comparison on the validation scenes."""
    from geoloom.platform.models.indices import FDIModel, fdi, normalized_difference
    from geoloom.platform.models.marine_debris import infer

    net.eval()
    device = next(net.parameters()).device
    probs = [infer(net, x[i:i + 4].astype(np.float32), device) for i in range(0, len(x), 4)]
    prob = np.concatenate(probs)
    valid = y != 0
    target = (y == DEBRIS)[valid]
    threshold, scores = _best_threshold(prob[valid], target)
    b = {name: x[:, i].astype(np.float32) for i, name in enumerate(REFLECTANCE_BANDS)}
    hit = (fdi(b["nir"], b["rededge2"], b["swir16"]) >= FDIModel.card.threshold) & (
        normalized_difference(b["nir"], b["red"]) <= FDIModel.ndvi_max)
    h = hit[valid]
    base = pixel_scores(int((h & target).sum()), int((h & ~target).sum()), int((~h & target).sum()))
    return threshold, scores, base


def _losses(logits: Any, target: Any, pos_weight: Any) -> Any:
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    p = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + dice


# --------------------------------------------------------------------------- training
def _fit(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, *, seed: int, epochs: int,
         steps_per_epoch: int, batch_size: int, lr: float, pos_weight: float, device: str = "cpu",
         progress: ProgressFn | None = None, channels: tuple[int, int, int] | None = None,
         patch: int = PATCH) -> dict[str, Any]:
    """Train on scenes (xt, yt), validate on (xv, yv) after each epoch, keep the best epoch."""
    import torch

    from geoloom.platform.models.marine_debris import CHANNELS, DebrisNet

    torch.manual_seed(seed)
    dev = torch.device(device)
    sample = xt[:, :, ::8, ::8].astype(np.float32)  # per-band statistics over the training scenes
    net = DebrisNet(channels=channels or CHANNELS)
    net.band_mean.copy_(torch.from_numpy(sample.mean(axis=(0, 2, 3))))
    net.band_scale.copy_(torch.from_numpy(np.maximum(sample.std(axis=(0, 2, 3)), 1e-3)))
    net = net.to(dev)
    sampler = PatchSampler(xt, yt, np.random.default_rng([seed, 0x7EA1]), patch=patch)
    total = epochs * steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    weight = torch.tensor(pos_weight, device=dev)
    history: list[dict[str, Any]] = []
    best: tuple | None = None
    step = 0
    for epoch in range(epochs):
        net.train()
        losses = []
        for _ in range(steps_per_epoch):
            xb, yb = sampler.batch(batch_size)
            logits = net(torch.from_numpy(xb).to(dev))[:, 0]
            loss = _losses(logits, torch.from_numpy(yb).to(dev), weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            step += 1
            _tick(progress, "training", step, total)
        threshold, scores, base = _validate(net, xv, yv)
        history.append({"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4), "val_f1": scores["f1"],
                        "val_threshold": threshold})
        if best is None or scores["f1"] > best[0]:
            state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            best = (scores["f1"], epoch + 1, threshold, scores, state)
    assert best is not None
    net.load_state_dict(best[4])
    net = net.cpu().eval()
    return {"net": net, "history": history, "best_epoch": best[1], "threshold": best[2], "scores": best[3],
            "fdi": base}


def train_marine_debris(
    out_dir: str | Path = "marine-debris-model",
    seed: int = 0,
    epochs: int = 6,
    progress: ProgressFn | None = None,
    *,
    steps_per_epoch: int = 100,
    batch_size: int = 12,
    patch: int = PATCH,
    train_scenes: int = 160,
    val_scenes: int = 32,
    scene_size: int = 384,
    lr: float = 3e-3,
    pos_weight: float = 3.0,
    threads: int | None = None,
    device: str = "cpu",
    install: bool = False,
) -> Path:
    """Train the marine-debris network on generated scenes; returns the weights file.

    Writes ``marine-debris.pt`` (the inference ``state_dict``) and ``marine-debris.json``
    (threshold chosen on validation by best F1, sha256, training details) into ``out_dir``;
    ``install=True`` also copies both into the package, replacing the shipped model.
    Deterministic for a seed on a given machine and thread count. ``device="cuda"`` trains
    on a GPU (faster, not bit-identical to a CPU run); the shipped weights were trained on CPU.
    """
    import torch

    from geoloom.platform.models.card import file_sha256
    from geoloom.platform.models.marine_debris import CHANNELS, HALO

    if train_scenes < 1 or val_scenes < 1 or epochs < 1 or steps_per_epoch < 1:
        raise ValueError("train_scenes, val_scenes, epochs and steps_per_epoch must be at least 1")
    if patch % 4 or patch < 32:
        raise ValueError("patch must be a multiple of 4 and at least 32 pixels")
    if scene_size < patch or scene_size % BLOCK:
        raise ValueError(f"scene_size must be a multiple of {BLOCK} and at least the patch size {patch}")
    if len(VAL_SEEDS) < val_scenes:
        raise ValueError(f"at most {len(VAL_SEEDS)} validation scenes")
    out = Path(out_dir).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    t_start, cpu_start = time.perf_counter(), time.process_time()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()

    train_seeds = list(range(TRAIN_SEED0, TRAIN_SEED0 + train_scenes))
    val_seeds = list(VAL_SEEDS)[:val_scenes]
    xt, yt = _scenes(train_seeds, scene_size, bilinear=False, progress=progress, stage="training scenes")
    xv, yv = _scenes(val_seeds, scene_size, bilinear=True, progress=progress, stage="validation scenes",
                     plumes=True)
    t_data = time.perf_counter() - t_start

    fit = _fit(xt, yt, xv, yv, seed=seed, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
               lr=lr, pos_weight=pos_weight, device=device, progress=progress, patch=patch)
    net, history, best_epoch, threshold, val_scores, fdi_val = (
        fit["net"], fit["history"], fit["best_epoch"], fit["threshold"], fit["scores"], fit["fdi"])
    fused = net.fused().to(memory_format=torch.contiguous_format)
    weights = out / "marine-debris.pt"
    torch.save({k: v.contiguous() for k, v in fused.state_dict().items()}, weights)
    seconds, cpu_seconds = time.perf_counter() - t_start, time.process_time() - cpu_start
    data = {
        "version": "1",
        "threshold": threshold,
        "weights": weights.name,
        "sha256": file_sha256(weights),
        "training": {
            "data": (f"{train_scenes} generated scenes of {scene_size}x{scene_size} px at 10 m "
                     f"(synthesize_scene seeds {train_seeds[0]}-{train_seeds[-1]}); validation {val_scenes} scenes "
                     f"(seeds {val_seeds[0]}-{val_seeds[-1]}, every other one under a sediment plume) read as the "
                     "platform reads them (bilinear 20/60 m bands)"),
            "architecture": {"kind": "U-Net, 2 poolings, 3x3 convolutions, 1x1 skip fusion", "channels": list(CHANNELS),
                             "parameters": int(sum(p.numel() for p in fused.parameters())),
                             "receptive_field_px": _rf(), "halo_px": HALO},
            "patches": (f"{patch}x{patch} px: 50% centred on debris, 30% on foam/Sargassum/ships/turbid water, "
                        "20% anywhere"),
            "augmentation": ("sediment plumes (35%: a smooth field turns part of the open water turbid, "
                             "the generator's endmember mixing); 8 flips/rotations; brightness x0.9-1.1 and "
                             "per-band gain x0.97-1.03; Gaussian noise sigma 0-0.0015; bilinear 20/60 m bands "
                             "(50%); sub-pixel shift (25%); sub-pixel debris from the generator's fractional mixing"),
            "loss": f"BCE (positive weight {pos_weight}) + soft Dice",
            "optimizer": f"AdamW lr {lr} one-cycle, weight decay 1e-4, batch {batch_size}, "
                         f"{epochs} epochs x {steps_per_epoch} steps",
            "threshold": f"{threshold} = best pixel F1 on validation (0.05 steps); best epoch {best_epoch}",
            "history": history,
            "seed": seed,
            "threads": n_threads,
            "seconds": round(seconds, 1),
            "cpu_seconds": round(cpu_seconds, 1),
            "data_seconds": round(t_data, 1),
            "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "machine": f"{sysconfig.get_platform()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "date": dt.date.today().isoformat(),
        },
        "metrics": {"validation": {"marine-debris": val_scores, "fdi": fdi_val,
                                   "scenes": f"synthesize_scene seeds {val_seeds[0]}-{val_seeds[-1]}"}},
    }
    (out / "marine-debris.json").write_text(json.dumps(data, indent=2) + "\n")
    if install:
        install_marine_debris(out)
    return weights


def install_marine_debris(folder: str | Path) -> Path:
    """Make the model trained into ``folder`` the user's ``marine-debris``: its weights and card data
    go to the per-user models folder (the shipped ones stay as they are). Held-out scores belong to
    the old weights and are dropped (run ``heldout_report``); the measured throughput belongs to the
    architecture and is kept."""
    from geoloom.platform.models import registry
    from geoloom.platform.models.marine_debris_card import CARD_FILE, WEIGHTS_FILE, active_files, installed_dir

    folder = Path(folder)
    data = json.loads((folder / "marine-debris.json").read_text())
    source = folder / data["weights"]
    target = installed_dir()
    target.mkdir(parents=True, exist_ok=True)
    old = json.loads(active_files()[1].read_text()) if active_files()[1].exists() else {}
    if "mpx_per_s" in old:
        data["mpx_per_s"] = old["mpx_per_s"]
    data["weights"] = WEIGHTS_FILE.name
    _write_atomically(target / WEIGHTS_FILE.name, source.read_bytes())
    _write_atomically(target / CARD_FILE.name, (json.dumps(data, indent=2) + "\n").encode())
    registry.refresh()
    return target / WEIGHTS_FILE.name


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _user_card_file() -> Path:
    """The card data of the user's installed marine-debris; the shipped model is copied there first,
    so that scores are written beside the weights they belong to and never into the package."""
    from geoloom.platform.models.marine_debris_card import CARD_FILE, WEIGHTS_FILE, active_files, installed_dir

    weights, card = active_files()
    if weights == WEIGHTS_FILE:
        target = installed_dir()
        target.mkdir(parents=True, exist_ok=True)
        _write_atomically(target / WEIGHTS_FILE.name, WEIGHTS_FILE.read_bytes())
        _write_atomically(target / CARD_FILE.name, CARD_FILE.read_bytes())
        card = target / CARD_FILE.name
    return card


def _rf() -> int:
    from geoloom.platform.models.marine_debris import receptive_field_radius

    return receptive_field_radius()


# --------------------------------------------------------------------------- evaluation
def _label_mosaic(items: list[Any], geobox: Any) -> np.ndarray:
    """Label rasters of ``items`` on ``geobox`` (nearest), first item first, 0 where none."""
    from geoloom.platform.catalog import AssetRef
    from geoloom.platform.reading import gdal_env, read_band

    h, w = geobox.shape.yx
    out = np.zeros((h, w), dtype=np.uint8)
    with gdal_env():
        for item in items:
            asset = item.assets.get("labels")
            if asset is None:
                continue
            # read as a categorical band ("scl" is read with nearest-neighbour resampling)
            lab = read_band(AssetRef(href=asset.get_absolute_href(), band="scl", scale=1.0, nodata=0.0), geobox)
            fill = (out == 0) & np.isfinite(lab)
            out[fill] = lab[fill].astype(np.uint8)
    return out


def _count(pred: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Pixel and object counts of a debris mask (1 = debris) against labels (0 = no label)."""
    from scipy import ndimage

    valid = labels != 0
    hit = (pred == 1) & valid
    truth = labels == DEBRIS
    objects, n = ndimage.label(truth)  # 4-connected
    hit_objects = np.unique(objects[hit & truth])
    fp_classes = np.bincount(labels[hit & ~truth], minlength=256)
    class_pixels = np.bincount(labels[valid], minlength=256)
    return {
        "tp": int((hit & truth).sum()), "fp": int((hit & ~truth).sum()), "fn": int((truth & ~hit).sum()),
        "objects": int(n), "objects_hit": int((hit_objects > 0).sum()),
        "fp_by_code": fp_classes, "pixels_by_code": class_pixels, "pixels": int(valid.sum()),
    }


def _summary(counts: list[dict[str, Any]]) -> dict[str, Any]:
    tp, fp, fn = (sum(c[k] for c in counts) for k in ("tp", "fp", "fn"))
    objects, hit = sum(c["objects"] for c in counts), sum(c["objects_hit"] for c in counts)
    fp_codes = sum(c["fp_by_code"] for c in counts)
    px_codes = sum(c["pixels_by_code"] for c in counts)
    fps = {name: int(fp_codes[code]) for code, name in LABEL_CLASSES.items() if code != DEBRIS}
    rates = {name: round(float(fp_codes[code]) / float(px_codes[code]), 5) if px_codes[code] else None
             for code, name in LABEL_CLASSES.items() if code != DEBRIS}
    out = pixel_scores(tp, fp, fn)
    fp_clear = fp - int(fp_codes[CLOUD]) - int(fp_codes[CLOUD_SHADOW])
    out.update({
        "cloud_free": {**pixel_scores(tp, fp_clear, fn),
                       "note": "false positives on labelled cloud and cloud shadow left out"},
        "object_recall": round(hit / objects, 4) if objects else 0.0,
        "objects": objects, "objects_hit": hit, "tp": tp, "fp": fp, "fn": fn,
        "pixels": sum(c["pixels"] for c in counts),
        "false_positives_by_class": fps,
        "false_positive_rate_by_class": rates,
        "false_positives_hard_negatives": sum(fps[name] for name in HARD_NEGATIVES.values()),
    })
    return out


def _catalog_dates(catalog: str | Path) -> dict[str, list[Any]]:
    """Items of a catalog that have labels, by acquisition date, in the compositor's order."""
    from geoloom.platform.catalog import open_catalog

    by_date: dict[str, list[Any]] = {}
    for item in open_catalog(catalog).get_items(recursive=True):
        if "labels" in item.assets and item.datetime is not None:
            by_date.setdefault(item.datetime.date().isoformat(), []).append(item)
    for items in by_date.values():
        items.sort(key=lambda i: (-i.datetime.timestamp(), i.id))
    return dict(sorted(by_date.items()))


def evaluate(
    model_name: str,
    catalog: str | Path | Sequence[str | Path],
    *,
    threshold: float | None = None,
    workdir: str | Path | None = None,
    runtime: str = "in-process",
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score a model's detections against the label rasters of a generated catalog.

    For each acquisition date the model runs through the real pipeline (``detect`` over the
    footprint of that date's scenes; ``runtime`` and ``workers`` as for ``detect``); its
    detection layer is compared with the scenes' ``labels`` assets read onto the run grid with
    nearest resampling. Returns pixel
    precision, recall, F1 and IoU for debris, object recall (share of 4-connected labelled
    debris objects with at least one detected pixel) and false positives by label class.
    """
    import shapely.ops
    import shapely.geometry
    from odc.geo.geobox import GeoBox
    from affine import Affine

    from geoloom.platform.errors import CatalogError, ModelError, RunError
    from geoloom.platform.models.registry import get_card
    from geoloom.workflows.api import detect

    catalogs = [catalog] if isinstance(catalog, (str, Path)) else list(catalog)
    card = get_card(model_name)
    if card.detection is None:
        raise ModelError(f"model {model_name} has no detection layer to score; pick a detector such as marine-debris")
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="geoloom-eval-")) if own_tmp else Path(workdir)
    counts, runs = [], []
    jobs = [(c, d, items) for c in catalogs for d, items in _catalog_dates(c).items()]
    if not jobs:
        raise CatalogError(f"no scene with a labels asset in {', '.join(map(str, catalogs))}; "
                           "evaluate on a catalog from 'geoloom sample-data'")
    t0 = time.perf_counter()
    try:
        for k, (cat, day, items) in enumerate(jobs):
            region = shapely.ops.unary_union([shapely.geometry.shape(i.geometry) for i in items])
            out = work / f"{k:02d}-{card.name}-{day}"
            run = _run_or_resume(detect, out, region, model=model_name, catalog=cat, start=day, end=day,
                                 threshold=threshold, runtime=runtime, workers=workers, retries=0)
            if not run.ok:
                reason = run.failed_tiles[0]["error"] if run.failed_tiles else "tiles missing"
                raise RunError(f"the evaluation run {out} is incomplete ({reason}); "
                               "check the catalog's files and run the evaluation again")
            request = json.loads((out / "request.json").read_text())
            plan = request["plan"]
            geobox = GeoBox(tuple(plan["shape_yx"]), Affine(*plan["transform"][:6]), plan["crs"])
            pred = np.asarray(run.dataset[card.detection].values)
            labels = _label_mosaic(items, geobox)
            labels[~region_mask(region, geobox)] = 0
            counts.append(_count(pred, labels))
            runs.append({"catalog": str(cat), "date": day, "scenes": [i.id for i in items],
                         "grid": f"{plan['crs']} {plan['shape_yx'][1]}x{plan['shape_yx'][0]}"})
            _tick(progress, f"evaluating {card.name}", k + 1, len(jobs))
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    result = {"model": card.name, "threshold": threshold if threshold is not None else card.threshold}
    result.update(_summary(counts))
    result["runs"] = runs
    result["seconds"] = round(time.perf_counter() - t0, 1)
    return result


def _run_or_resume(detect: Callable[..., Any], out: Path, region: Any, **kwargs: Any) -> Any:
    """``detect`` into ``out``, finishing the same run if one is there (an interrupted
    evaluation costs only its missing tiles), replacing any other run."""
    from geoloom.platform.errors import OutputError

    with warnings.catch_warnings():  # "prefers a GPU but none is available": expected here
        warnings.filterwarnings("ignore", message=".*prefers a GPU.*")
        if (out / "request.json").exists():
            try:
                return detect(region, out=out, resume=True, **kwargs)
            except OutputError:
                pass  # another run (other weights or parameters): replace it
        return detect(region, out=out, overwrite=True, **kwargs)


def region_mask(geom: Any, geobox: Any) -> np.ndarray:
    """True for pixels of ``geobox`` whose centre lies inside ``geom`` (EPSG:4326)."""
    from odc.geo.geom import Geometry
    from rasterio.features import geometry_mask

    g = Geometry(geom, "epsg:4326").to_crs(geobox.crs)
    return geometry_mask([g.geom.__geo_interface__], out_shape=geobox.shape.yx, transform=geobox.transform,
                         invert=True)


def heldout_report(
    catalogs: Sequence[str | Path] | None = None,
    *,
    models: Sequence[str] = ("marine-debris", "fdi"),
    workdir: str | Path | None = None,
    card_file: str | Path | None = None,
    runtime: str = "in-process",
    workers: int | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Evaluate ``models`` side by side on held-out catalogs and record the scores in the
    marine-debris card data (``card_file``, default: the user's installed copy; replacing those of
    the same models). Without ``catalogs`` the
    sample catalogs of seeds 0-3 are generated."""
    from geoloom.platform.models import registry
    from geoloom.platform.sampledata import generate_sample_data

    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="geoloom-heldout-")) if own_tmp else Path(workdir)
    try:
        if catalogs is None:
            catalogs = []
            for s in EVAL_SEEDS:
                target = work / f"catalog-seed{s}"
                cat = target / "catalog.json"
                if not cat.exists():
                    generate_sample_data(target, seed=s, size="small")
                catalogs.append(cat)
                _tick(progress, "held-out catalogs", len(catalogs), len(EVAL_SEEDS))
        results = {m: evaluate(m, catalogs, workdir=work / "runs", runtime=runtime, workers=workers, progress=progress)
                   for m in models}
    finally:
        if own_tmp:
            shutil.rmtree(work, ignore_errors=True)
    for r in results.values():
        for run in r["runs"]:
            run["catalog"] = Path(run["catalog"]).parent.name
    report = {
        "data": ("generated sample catalogs (generate_sample_data, size small) of seeds "
                 f"{', '.join(str(s) for s in EVAL_SEEDS)}: 4 scenes each, 2 dates x 2 UTM zones; each date run "
                 "through the pipeline and scored against the label rasters"),
        **results,
    }
    path = Path(card_file) if card_file else _user_card_file()
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("metrics", {}).setdefault("held_out", {}).update(report)
    path.write_text(json.dumps(data, indent=2) + "\n")
    registry.refresh()
    return report


def scores_table(report: dict[str, Any], models: Sequence[str] = ("marine-debris", "fdi")) -> str:
    """Markdown tables of a held-out report: scores side by side, then false positives by class."""
    rows = [("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("IoU", "iou"),
            ("object recall", "object_recall")]
    lines = ["| score | " + " | ".join(f"`{m}`" for m in models) + " |", "| --- |" + " ---: |" * len(models)]
    for title, key in rows:
        lines.append(f"| {title} | " + " | ".join(f"{report[m][key]:.3f}" for m in models) + " |")
    lines.append("| F1 without cloud pixels | " + " | ".join(f"{report[m]['cloud_free']['f1']:.3f}" for m in models)
                 + " |")
    lines.append("| debris objects hit | " + " | ".join(f"{report[m]['objects_hit']} of {report[m]['objects']}"
                                                    for m in models) + " |")
    lines += ["", "| false positives (pixels) on | " + " | ".join(f"`{m}`" for m in models) + " |",
              "| --- |" + " ---: |" * len(models)]
    names = list(report[models[0]]["false_positives_by_class"])
    hard = set(HARD_NEGATIVES.values())
    for name in sorted(names, key=lambda n: (n not in hard, n)):
        cells = []
        for m in models:
            n = report[m]["false_positives_by_class"][name]
            rate = report[m]["false_positive_rate_by_class"].get(name)
            cells.append(f"{n:,}" + (f" ({100 * rate:.2f}% of its pixels)" if rate else ""))
        lines.append(f"| {name}{' (hard negative)' if name in hard else ''} | " + " | ".join(cells) + " |")
    lines.append("| all false positives | " + " | ".join(f"{report[m]['fp']:,}" for m in models) + " |")
    return "\n".join(lines)


#: Label colours for figures (RGB), by label code.
LABEL_COLOURS: dict[int, tuple[int, int, int]] = {
    0: (40, 40, 40), 1: (22, 52, 96), 2: (255, 40, 40), 3: (230, 170, 20), 4: (255, 255, 255),
    5: (150, 220, 255), 6: (190, 190, 190), 7: (90, 90, 110), 8: (150, 110, 60), 9: (70, 110, 50),
}


def comparison_figure(run_folder: str | Path, catalog: str | Path, out_png: str | Path, *,
                      baseline_folder: str | Path | None = None, scale: int = 2,
                      panels: Sequence[str] = ("colour", "labels", "probability", "detections", "baseline")) -> Path:
    """A PNG of a one-date run beside the truth, panels among: natural ``colour``, ``labels``,
    ``probability``, ``detections`` and the ``baseline`` run's detections."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from PIL import Image, ImageDraw

    from geoloom.platform.catalog import iter_scenes
    from geoloom.platform.models.registry import get_card
    from geoloom.platform.publish import colorize
    from geoloom.platform.reading import gdal_env, read_band
    from geoloom.workflows.api import Run

    run = Run(Path(run_folder))
    request = json.loads((run.folder / "request.json").read_text())
    plan = request["plan"]
    geobox = GeoBox(tuple(plan["shape_yx"]), Affine(*plan["transform"][:6]), plan["crs"])
    day = request["parameters"]["start"]
    items = _catalog_dates(catalog)[day]
    labels = _label_mosaic(items, geobox)
    scenes = {s.id: s for s in iter_scenes(catalog)}
    rgb = np.zeros(geobox.shape.yx + (3,), dtype=np.float32)
    with gdal_env():
        for k, band in enumerate(("red", "green", "blue")):
            layer = np.full(geobox.shape.yx, np.nan, dtype=np.float32)
            for item in items:
                v = read_band(scenes[item.id].assets[band], geobox)
                layer = np.where(np.isnan(layer), v, layer)
            rgb[..., k] = np.nan_to_num(layer)
    rgb = (np.clip((rgb / 0.16) ** (1 / 2.2), 0, 1) * 255).astype(np.uint8)
    card = get_card(run.manifest["properties"]["geoloom:model"]["name"])
    ds = run.dataset
    prob = np.asarray(ds[card.score or card.primary].values, dtype=np.float32)
    shown = {"colour": ("natural colour", rgb), "labels": ("labels (red: debris)", _paint_labels(labels)),
             "probability": (f"{card.name} probability", colorize(prob, 0.0, 1.0)[..., :3]),
             "detections": (f"{card.name} detections", _paint_hits(np.asarray(ds[card.detection].values), labels))}
    if baseline_folder is not None:
        base = Run(Path(baseline_folder))
        bcard = get_card(base.manifest["properties"]["geoloom:model"]["name"])
        shown["baseline"] = (f"{bcard.name} detections",
                             _paint_hits(np.asarray(base.dataset[bcard.detection].values), labels))
    panels = [shown[p] for p in panels if p in shown]
    h, w = geobox.shape.yx
    pad, head = 8, 22
    sheet = Image.new("RGB", (len(panels) * (w * scale + pad) + pad, h * scale + head + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for i, (title, img) in enumerate(panels):
        x0 = pad + i * (w * scale + pad)
        sheet.paste(Image.fromarray(np.ascontiguousarray(img[..., :3])).resize((w * scale, h * scale), Image.NEAREST),
                    (x0, head))
        draw.text((x0, 5), title, fill=(0, 0, 0))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, optimize=True)
    return out


def _paint_labels(labels: np.ndarray) -> np.ndarray:
    lut = np.zeros((256, 3), dtype=np.uint8)
    for code, colour in LABEL_COLOURS.items():
        lut[code] = colour
    return lut[labels]


def _paint_hits(mask: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Detections on a dark background: hits on debris green, false alarms orange, misses red."""
    img = np.full(labels.shape + (3,), 30, dtype=np.uint8)
    img[labels == 0] = (70, 70, 70)
    img[(mask == 255)] = (120, 120, 120)
    truth, hit = labels == DEBRIS, mask == 1
    img[truth & ~hit] = (255, 40, 40)
    img[truth & hit] = (60, 230, 90)
    img[~truth & hit] = (255, 170, 0)
    return img


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m geoloom.workflows.training train|install|eval|heldout``: the same functions the
    ``geoloom models train`` and ``geoloom models eval`` commands call."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m geoloom.workflows.training")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default="marine-debris-model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--install", action="store_true")
    i = sub.add_parser("install")
    i.add_argument("folder")
    e = sub.add_parser("eval")
    e.add_argument("model")
    e.add_argument("--catalog", required=True, nargs="+")
    h = sub.add_parser("heldout")
    h.add_argument("--catalog", nargs="*", default=None)
    h.add_argument("--workdir", default=None)
    h.add_argument("--model", dest="models", action="append", default=None)
    h.add_argument("--runtime", default="in-process")
    h.add_argument("--workers", type=int, default=None)
    args = ap.parse_args(argv)

    t0 = time.perf_counter()

    def show(stage: str, done: int, total: int) -> None:
        if done == total or done % 25 == 0:
            print(f"{time.perf_counter() - t0:7.1f} s  {stage}: {done}/{total}", flush=True)

    if args.cmd == "train":
        print(train_marine_debris(args.out, seed=args.seed, epochs=args.epochs, progress=show, install=args.install))
    elif args.cmd == "install":
        print(install_marine_debris(args.folder))
    elif args.cmd == "eval":
        print(json.dumps(evaluate(args.model, args.catalog, progress=show), indent=2))
    else:
        report = heldout_report(args.catalog or None, models=tuple(args.models or ("marine-debris", "fdi")),
                                workdir=args.workdir, runtime=args.runtime, workers=args.workers, progress=show)
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
