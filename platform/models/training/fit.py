"""The training loop of the marine-debris network: fit on generated scenes, keep the best epoch, write weights and card data."""

from __future__ import annotations

import datetime as dt
import json
import os
import sysconfig
import time
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.classes import DEBRIS
from geoloom.platform.models.training.data import (
    BLOCK, PATCH, TRAIN_SEED0, VAL_SEEDS, VALIDATION, PatchSampler, ProgressFn, _scenes, _tick,
)
from geoloom.platform.models.training.realism import TRAINING, WITH_JPEG2000, RealismConfig
from geoloom.platform.models.training.install import install_marine_debris
from geoloom.platform.models.training.scores import _best_threshold, pixel_scores

__all__ = ["train_marine_debris"]


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
    """Binary cross-entropy (positives weighted) plus soft Dice."""
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pos_weight)
    p = torch.sigmoid(logits)
    dice = 1.0 - (2.0 * (p * target).sum() + 1.0) / (p.sum() + target.sum() + 1.0)
    return bce + dice


def _fit(xt: np.ndarray, yt: np.ndarray, xv: np.ndarray, yv: np.ndarray, *, seed: int, epochs: int,
         steps_per_epoch: int, batch_size: int, lr: float, pos_weight: float, device: str = "cpu",
         progress: ProgressFn | None = None, channels: tuple[int, int, int] | None = None,
         patch: int = PATCH, realism: RealismConfig | None = TRAINING) -> dict[str, Any]:
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
    sampler = PatchSampler(xt, yt, np.random.default_rng([seed, 0x7EA1]), patch=patch,
                           realism=realism)
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
    realism: bool = True,
    jpeg2000: bool = False,
) -> Path:
    """Train the marine-debris network on generated scenes; returns the weights file.

    Writes ``marine-debris.pt`` (the inference ``state_dict``) and ``marine-debris.json``
    (threshold chosen on validation by best F1, sha256, training details) into ``out_dir``;
    ``install=True`` also copies both into the package, replacing the shipped model.
    Deterministic for a seed on a given machine and thread count. ``device="cuda"`` trains
    on a GPU (faster, not bit-identical to a CPU run); the shipped weights were trained on CPU.
    ``realism=False`` trains without the real-water effects of :mod:`.realism` (the earlier recipe);
    ``jpeg2000=True`` codes half the training patches and validation scenes as lossy JPEG 2000 too.
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
                     plumes=True, realism=(WITH_JPEG2000 if jpeg2000 else VALIDATION) if realism else None)
    t_data = time.perf_counter() - t_start

    fit = _fit(xt, yt, xv, yv, seed=seed, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
               lr=lr, pos_weight=pos_weight, device=device, progress=progress, patch=patch,
               realism=(WITH_JPEG2000 if jpeg2000 else TRAINING) if realism else None)
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
                     f"(seeds {val_seeds[0]}-{val_seeds[-1]}, every other one under a sediment plume"
                     + (", three in four with real-water effects" if realism else "")
                     + ") read as the platform reads them (bilinear 20/60 m bands)"),
            "architecture": {"kind": "U-Net, 2 poolings, 3x3 convolutions, 1x1 skip fusion", "channels": list(CHANNELS),
                             "parameters": int(sum(p.numel() for p in fused.parameters())),
                             "receptive_field_px": _rf(), "halo_px": HALO},
            "patches": (f"{patch}x{patch} px: 50% centred on debris, 30% on foam/Sargassum/ships/turbid water, "
                        "20% anywhere"),
            "augmentation": ("sediment plumes (35%: a smooth field turns part of the open water turbid, "
                             "the generator's endmember mixing); 8 flips/rotations; brightness x0.9-1.1 and "
                             "per-band gain x0.97-1.03; Gaussian noise sigma 0-0.0015; bilinear 20/60 m bands "
                             "(50%); sub-pixel shift (25%); sub-pixel debris from the generator's fractional mixing"
                             + (_REALISM if realism else "")
                             + ("; lossy JPEG 2000 of the 10 m and 20 m bands at 15-40% size (50%)" if realism and jpeg2000
                                else "")),
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


_REALISM = (
    "; real-water effects (realism.py, per patch, before resampling): Sentinel-2 L1C sensor noise at the "
    "documented SNR, signal-dependent (90%, x0.7-1.3), whitecaps 1-20% of a pixel with a wind field (55%, "
    "labelled water), sun glint 0.002-0.04 with swath gradient (50%), wave texture 20-60 m (60%), adjacency "
    "near land (60%), residual atmospheric-correction offsets up to ~0.01 in the blue (80%)")


def _rf() -> int:
    """The network's receptive field radius in pixels."""
    from geoloom.platform.models.marine_debris import receptive_field_radius

    return receptive_field_radius()
