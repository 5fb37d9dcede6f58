"""Training data for the marine-debris network: generated scenes, sediment plumes, real-water effects and patch sampling."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.classes import DEBRIS, FOAM, SARGASSUM, SHIP, TURBID
from geoloom.platform.models.training.realism import TRAINING, VALIDATION, RealismConfig, add_realism
from geoloom.platform.sensors import REFLECTANCE_BY_RESOLUTION

__all__ = [
    "BLOCK", "EVAL_SEEDS", "PATCH", "PatchSampler", "ProgressFn", "TRAIN_SEED0", "VAL_SEEDS", "VALIDATION",
    "add_turbidity", "bilinear_coarse_bands",
]

#: Progress callback: (stage, done, total).
ProgressFn = Callable[[str, int, int], None]

#: ``synthesize_scene`` seeds: training from TRAIN_SEED0 up, validation VAL_SEEDS; held-out catalogs
#: of ``generate_sample_data`` seeds EVAL_SEEDS. They never overlap.
TRAIN_SEED0 = 1000
VAL_SEEDS = range(500, 600)
EVAL_SEEDS = (0, 1, 2, 3)

PATCH = 96
#: Crop origins on multiples of 6 keep the 20 m and 60 m pixel blocks whole inside a patch.
BLOCK = 6
_BY_RES = {res: [REFLECTANCE_BANDS.index(b) for b in names] for res, names in REFLECTANCE_BY_RESOLUTION.items()}
_COARSE = {res: _BY_RES[res] for res in (20, 60)}
_HARD = (FOAM, SARGASSUM, SHIP, TURBID)


def _tick(progress: ProgressFn | None, stage: str, done: int, total: int) -> None:
    """Report progress to ``progress``, if given."""
    if progress is not None:
        progress(stage, done, total)


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
            plumes: bool = False, realism: RealismConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Generated scenes as (n, 12, size, size) float16 reflectance and (n, size, size) uint8 labels;
    ``plumes``: every other scene under a sediment plume (see :func:`add_turbidity`); ``realism``:
    three scenes in four with real-water effects (see :mod:`.realism`), seeded by the scene seed."""
    from geoloom.platform.scenes import synthesize_scene

    xs = np.empty((len(seeds), len(REFLECTANCE_BANDS), size, size), dtype=np.float16)
    ys = np.empty((len(seeds), size, size), dtype=np.uint8)
    for i, s in enumerate(seeds):
        bands, labels = synthesize_scene(int(s), (size, size))
        x = np.stack([bands[b] for b in REFLECTANCE_BANDS])[None]
        if plumes and i % 2:
            add_turbidity(x[0], labels, np.random.default_rng([int(s), 0x7B]), strength=0.9, nodes=4)
        if realism is not None and i % 4 != 3:
            add_realism(x[0], labels, np.random.default_rng([int(s), 0x2EA1]), realism)
        xs[i] = bilinear_coarse_bands(x)[0] if bilinear else x[0]
        ys[i] = labels
        _tick(progress, stage, i + 1, len(seeds))
    return xs, ys


class PatchSampler:
    """Random training patches: centred on debris, on hard negatives (foam, Sargassum, ships,
    turbid water) or anywhere, with sediment plumes laid over some, real-water effects (noise at the
    sensor's SNR, whitecaps, glint, waves, adjacency, correction offsets), flips, 90 degree rotations,
    brightness, noise and the resampling a warped read applies. One numpy generator, so a seed
    fixes every batch."""

    def __init__(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *, patch: int = PATCH,
                 p_debris: float = 0.5, p_hard: float = 0.3, realism: RealismConfig | None = TRAINING) -> None:
        self.x, self.y, self.rng, self.patch, self.realism = x, y, rng, patch, realism
        self.p_debris, self.p_hard = p_debris, p_hard
        self.debris = [np.flatnonzero(lab == DEBRIS) for lab in y]
        self.hard = [np.flatnonzero(np.isin(lab, _HARD)) for lab in y]
        self.with_debris = [i for i, d in enumerate(self.debris) if d.size]
        self.with_hard = [i for i, d in enumerate(self.hard) if d.size]

    def _crop(self) -> tuple[int, int, int]:
        """Scene index, top and left of the next patch."""
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
        """``n`` augmented patches (n, 12, p, p) float32 and their debris masks (n, p, p)."""
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
            if self.realism is not None:  # whitecaps, glint, waves, adjacency, offsets, sensor noise
                add_realism(xb[k], labels, rng, self.realism)
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
