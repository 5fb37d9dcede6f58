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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS, band_info
from geoloom.platform.classes import DEBRIS, FOAM, HARD_NEGATIVES, LABEL_CLASSES, SARGASSUM, SHIP, TURBID

__all__ = [
    "EVAL_SEEDS", "TRAIN_SEED0", "VAL_SEEDS", "evaluate", "heldout_report", "pixel_scores",
    "train_marine_debris",
]

#: Progress callback: (stage, done, total).
ProgressFn = Callable[[str, int, int], None]

TRAIN_SEED0 = 1000
VAL_SEEDS = range(500, 600)
EVAL_SEEDS = (0, 1, 2, 3)

PATCH = 128
#: Crop origins on multiples of 6 keep the 20 m and 60 m pixel blocks whole inside a patch.
BLOCK = 6
_COARSE = {res: [i for i, b in enumerate(REFLECTANCE_BANDS) if band_info(b).resolution_m == res] for res in (20, 60)}
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


def _scenes(seeds: Sequence[int], size: int, *, bilinear: bool, progress: ProgressFn | None, stage: str
            ) -> tuple[np.ndarray, np.ndarray]:
    """Generated scenes as (n, 12, size, size) float16 reflectance and (n, size, size) uint8 labels."""
    from geoloom.platform.scenes import synthesize_scene

    xs = np.empty((len(seeds), len(REFLECTANCE_BANDS), size, size), dtype=np.float16)
    ys = np.empty((len(seeds), size, size), dtype=np.uint8)
    for i, s in enumerate(seeds):
        bands, labels = synthesize_scene(int(s), (size, size))
        x = np.stack([bands[b] for b in REFLECTANCE_BANDS])[None]
        xs[i] = bilinear_coarse_bands(x)[0] if bilinear else x[0]
        ys[i] = labels
        _tick(progress, stage, i + 1, len(seeds))
    return xs, ys


class PatchSampler:
    """Random training patches: centred on debris, on hard negatives (foam, Sargassum, ships,
    turbid water) or anywhere, with flips, 90 degree rotations, brightness, noise and the
    resampling a warped read applies. One numpy generator, so a seed fixes every batch."""

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
            yb[k] = self.y[i, top:top + p, left:left + p] == DEBRIS
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
    import torch

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
            best = (scores["f1"], epoch + 1, threshold, scores, {k: v.detach().clone() for k, v in net.state_dict().items()})
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
    steps_per_epoch: int = 150,
    batch_size: int = 16,
    patch: int = PATCH,
    train_scenes: int = 360,
    val_scenes: int = 48,
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
    from geoloom.platform.models.marine_debris import CARD_FILE, CHANNELS, HALO, WEIGHTS_FILE

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
    t_start = time.perf_counter()
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)
    n_threads = torch.get_num_threads()

    train_seeds = list(range(TRAIN_SEED0, TRAIN_SEED0 + train_scenes))
    val_seeds = list(VAL_SEEDS)[:val_scenes]
    xt, yt = _scenes(train_seeds, scene_size, bilinear=False, progress=progress, stage="training scenes")
    xv, yv = _scenes(val_seeds, scene_size, bilinear=True, progress=progress, stage="validation scenes")
    t_data = time.perf_counter() - t_start

    fit = _fit(xt, yt, xv, yv, seed=seed, epochs=epochs, steps_per_epoch=steps_per_epoch, batch_size=batch_size,
               lr=lr, pos_weight=pos_weight, device=device, progress=progress, patch=patch)
    net, history, best_epoch, threshold, val_scores, fdi_val = (
        fit["net"], fit["history"], fit["best_epoch"], fit["threshold"], fit["scores"], fit["fdi"])
    fused = net.fused().to(memory_format=torch.contiguous_format)
    weights = out / "marine-debris.pt"
    torch.save({k: v.contiguous() for k, v in fused.state_dict().items()}, weights)
    seconds = time.perf_counter() - t_start
    data = {
        "version": "1",
        "threshold": threshold,
        "weights": weights.name,
        "sha256": file_sha256(weights),
        "training": {
            "data": (f"{train_scenes} generated scenes of {scene_size}x{scene_size} px at 10 m "
                     f"(synthesize_scene seeds {train_seeds[0]}-{train_seeds[-1]}); validation {val_scenes} scenes "
                     f"(seeds {val_seeds[0]}-{val_seeds[-1]}) read as the platform reads them (bilinear 20/60 m bands)"),
            "architecture": {"kind": "U-Net, 2 poolings, 3x3 convolutions, 1x1 skip fusion", "channels": list(CHANNELS),
                             "parameters": int(sum(p.numel() for p in fused.parameters())),
                             "receptive_field_px": _rf(), "halo_px": HALO},
            "patches": (f"{patch}x{patch} px: 50% centred on debris, 30% on foam/Sargassum/ships/turbid water, "
                        "20% anywhere"),
            "augmentation": ("8 flips/rotations; brightness x0.9-1.1 and per-band gain x0.97-1.03; Gaussian noise "
                             "sigma 0-0.0015; bilinear 20/60 m bands (50%); sub-pixel shift (25%); sub-pixel "
                             "debris from the generator's fractional mixing"),
            "loss": f"BCE (positive weight {pos_weight}) + soft Dice",
            "optimizer": f"AdamW lr {lr} one-cycle, weight decay 1e-4, batch {batch_size}, "
                         f"{epochs} epochs x {steps_per_epoch} steps",
            "threshold": f"{threshold} = best pixel F1 on validation (0.05 steps); best epoch {best_epoch}",
            "history": history,
            "seed": seed,
            "threads": n_threads,
            "seconds": round(seconds, 1),
            "data_seconds": round(t_data, 1),
            "machine": f"{sysconfig.get_platform()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "date": dt.date.today().isoformat(),
        },
        "metrics": {"validation": {"marine-debris": val_scores, "fdi": fdi_val,
                                   "scenes": f"synthesize_scene seeds {val_seeds[0]}-{val_seeds[-1]}"}},
    }
    (out / "marine-debris.json").write_text(json.dumps(data, indent=2) + "\n")
    if install:
        WEIGHTS_FILE.parent.mkdir(parents=True, exist_ok=True)
        CARD_FILE.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(weights, WEIGHTS_FILE)
        old = json.loads(CARD_FILE.read_text()) if CARD_FILE.exists() else {}
        if "mpx_per_s" in old:
            data["mpx_per_s"] = old["mpx_per_s"]
        data["weights"] = WEIGHTS_FILE.name
        CARD_FILE.write_text(json.dumps(data, indent=2) + "\n")
        from geoloom.platform.models import registry

        registry.refresh()
    return weights


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
    out.update({
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
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Score a model's detections against the label rasters of a generated catalog.

    For each acquisition date the model runs through the real pipeline (``detect`` over the
    footprint of that date's scenes, in-process); its detection layer is compared with the
    scenes' ``labels`` assets read onto the run grid with nearest resampling. Returns pixel
    precision, recall, F1 and IoU for debris, object recall (share of 4-connected labelled
    debris objects with at least one detected pixel) and false positives by label class.
    """
    import shapely.ops
    import shapely.geometry
    from odc.geo.geobox import GeoBox
    from affine import Affine

    from geoloom.platform.models.registry import get_card
    from geoloom.workflows.api import detect

    catalogs = [catalog] if isinstance(catalog, (str, Path)) else list(catalog)
    card = get_card(model_name)
    if card.detection is None:
        raise ValueError(f"model {model_name} has no detection layer to score; pick a detector such as marine-debris")
    own_tmp = workdir is None
    work = Path(tempfile.mkdtemp(prefix="geoloom-eval-")) if own_tmp else Path(workdir)
    counts, runs = [], []
    jobs = [(c, d, items) for c in catalogs for d, items in _catalog_dates(c).items()]
    if not jobs:
        raise ValueError(f"no scene with a labels asset in {catalogs}; evaluate on a catalog from 'geoloom sample-data'")
    t0 = time.perf_counter()
    try:
        for k, (cat, day, items) in enumerate(jobs):
            region = shapely.ops.unary_union([shapely.geometry.shape(i.geometry) for i in items])
            out = work / f"{k:02d}-{card.name}-{day}"
            run = detect(region, model=model_name, catalog=cat, out=out, start=day, end=day, threshold=threshold,
                         runtime="in-process", overwrite=True, retries=0)
            if not run.ok:
                raise RuntimeError(f"the evaluation run {out} has failed tiles: {run.failed_tiles[:1]}")
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
    progress: ProgressFn | None = None,
) -> dict[str, Any]:
    """Evaluate ``models`` side by side on held-out catalogs and record the scores in the
    marine-debris card data. Without ``catalogs`` the sample catalogs of seeds 0-3 are generated."""
    from geoloom.platform.models import registry
    from geoloom.platform.models.marine_debris import CARD_FILE
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
        results = {m: evaluate(m, catalogs, workdir=work / "runs", progress=progress) for m in models}
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
    path = Path(card_file) if card_file else CARD_FILE
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("metrics", {})["held_out"] = report
    path.write_text(json.dumps(data, indent=2) + "\n")
    registry.refresh()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m geoloom.workflows.training train|heldout`` (what the CLI commands call)."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m geoloom.workflows.training")
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default="marine-debris-model")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=6)
    t.add_argument("--install", action="store_true")
    e = sub.add_parser("eval")
    e.add_argument("model")
    e.add_argument("--catalog", required=True, nargs="+")
    h = sub.add_parser("heldout")
    h.add_argument("--catalog", nargs="*", default=None)
    h.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)

    def show(stage: str, done: int, total: int) -> None:
        if done == total or done % 50 == 0:
            print(f"{stage}: {done}/{total}", flush=True)

    if args.cmd == "train":
        print(train_marine_debris(args.out, seed=args.seed, epochs=args.epochs, progress=show, install=args.install))
    elif args.cmd == "eval":
        print(json.dumps(evaluate(args.model, args.catalog, progress=show), indent=2))
    else:
        print(json.dumps(heldout_report(args.catalog or None, workdir=args.workdir, progress=show), indent=2))


if __name__ == "__main__":
    main()
