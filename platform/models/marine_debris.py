"""Floating marine debris: a compact U-Net over the 12 L2A bands, chained after the cloud and land mask.

The network (:class:`DebrisNet`) is trained by :func:`geoloom.platform.models.training.train_marine_debris`
on generated scenes; the shipped weights are a ``state_dict`` of the inference form (batch norm
folded into the convolutions), loaded with ``torch.load(weights_only=True)`` after its sha256 is
checked against the card. The card's numbers (threshold, training details, scores, throughput)
live in ``cards/marine-debris.json``, written by the training, evaluation and benchmark scripts.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import xarray as xr
from torch import nn

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.errors import ModelError
from geoloom.platform.models.base import nodata_mask
from geoloom.platform.models.card import check_weights
from geoloom.platform.models.clouds import CLOUD, CLOUD_NODATA, SHADOW, CloudModel
from geoloom.platform.models.marine_debris_card import (
    CARD_FILE, DOWNSAMPLE, HALO, MODELS_DIR, NAME, WEIGHTS_FILE, active_files, build_card, read_card_data,
)
from geoloom.platform.sensors import SCL_LAND

__all__ = [
    "CARD_FILE", "CHANNELS", "DOWNSAMPLE", "DebrisNet", "HALO", "LAND_SCL", "MarineDebrisModel", "NAME",
    "MODELS_DIR", "WEIGHTS_FILE", "active_files", "build_card", "pick_device", "read_card_data", "receptive_field_radius",
    "water_window",
]

#: Feature channels at full, 1/2 and 1/4 resolution.
CHANNELS: tuple[int, int, int] = (16, 32, 48)
#: SCL codes of land (vegetation, bare soil and built-up): never debris.
LAND_SCL: tuple[int, ...] = tuple(sorted(SCL_LAND))


# --------------------------------------------------------------------------- the network
def _block(cin: int, cout: int, k: int, fused: bool) -> nn.Sequential:
    """Convolution (+ batch norm while training) + ReLU."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=fused)]
    if not fused:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class DebrisNet(nn.Module):
    """A two-level U-Net: per-pixel spectral features (1x1), 3x3 context at 1, 1/2 and 1/4
    resolution, skip connections fused by 1x1 convolutions, one logit per pixel.

    Input: (n, 12, h, w) reflectance (DN x 1e-4) in :data:`REFLECTANCE_BANDS` order, h and w
    multiples of 4, no NaN. Output: (n, 1, h, w) debris logits. ``fused=True`` is the
    inference form without batch-norm layers (see :meth:`fused`).
    """

    def __init__(self, in_bands: int = len(REFLECTANCE_BANDS), channels: tuple[int, int, int] = CHANNELS,
                 *, fused: bool = False) -> None:
        super().__init__()
        c0, c1, c2 = channels
        self.channels = tuple(channels)
        self.register_buffer("band_mean", torch.zeros(in_bands))
        self.register_buffer("band_scale", torch.ones(in_bands))
        self.stem = nn.Sequential(_block(in_bands, c0, 1, fused), _block(c0, c0, 3, fused))
        self.enc1 = nn.Sequential(_block(c0, c1, 3, fused), _block(c1, c1, 3, fused))
        self.enc2 = nn.Sequential(_block(c1, c2, 3, fused), _block(c2, c2, 3, fused))
        self.dec1 = nn.Sequential(_block(c2 + c1, c1, 1, fused), _block(c1, c1, 3, fused))
        self.dec0 = nn.Sequential(_block(c1 + c0, c0, 1, fused), _block(c0, c0, 3, fused))
        self.head = nn.Conv2d(c0, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Debris logits (n, 1, h, w) for reflectance (n, bands, h, w); h and w multiples of 4."""
        x = (x - self.band_mean[None, :, None, None]) / self.band_scale[None, :, None, None]
        s0 = self.stem(x)
        s1 = self.enc1(F.max_pool2d(s0, 2))
        s2 = self.enc2(F.max_pool2d(s1, 2))
        d1 = self.dec1[1](_merge(self.dec1[0], s2, s1))
        d0 = self.dec0[1](_merge(self.dec0[0], d1, s0))
        return self.head(d0)

    def fused(self) -> DebrisNet:
        """The same function without batch norm (folded into the convolutions), for inference."""
        out = DebrisNet(self.band_mean.numel(), self.channels, fused=True)
        out.band_mean.copy_(self.band_mean)
        out.band_scale.copy_(self.band_scale)
        src = dict(self.named_modules())
        with torch.no_grad():
            for name, mod in out.named_modules():
                if not isinstance(mod, nn.Sequential) or not mod or not isinstance(mod[0], nn.Conv2d):
                    continue
                conv, bn = src[name][0], src[name][1]
                if not isinstance(bn, nn.BatchNorm2d):
                    continue
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                mod[0].weight.copy_(conv.weight * scale[:, None, None, None])
                mod[0].bias.copy_(bn.bias - bn.running_mean * scale)
            out.head.load_state_dict(self.head.state_dict())
        return out.eval()


def _merge(block: nn.Sequential, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """``block(cat([upsample2x(coarse), skip]))`` for a 1x1-convolution block, computed without the
    concatenation: a 1x1 convolution commutes with nearest upsampling, so the coarse part is
    convolved at its own resolution and added after upsampling (same result, a fraction of the
    work and memory at full resolution)."""
    conv = block[0]
    n = coarse.shape[1]
    y = F.conv2d(skip, conv.weight[:, n:], conv.bias)
    y = y + F.interpolate(F.conv2d(coarse, conv.weight[:, :n]), scale_factor=2.0, mode="nearest")
    for layer in block[1:]:
        y = layer(y)
    return y


def receptive_field_radius(channels: tuple[int, int, int] = CHANNELS, size: int = 128) -> int:
    """How far (in pixels, Chebyshev) an input pixel can change an output pixel.

    Measured exactly on the network graph: with all weights positive and no biases, an output
    is non-zero if and only if its receptive field contains the one non-zero input (ReLU and
    max pooling pass positive values), for every alignment of the input to the pooling grid.
    """
    net = DebrisNet(channels=channels, fused=True).double().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(0.0 if p.dim() == 1 else 1.0 / p[0].numel())
    radius, c = 0, size // 2
    for dy in range(DOWNSAMPLE):
        for dx in range(DOWNSAMPLE):
            x = torch.zeros(1, net.band_mean.numel(), size, size, dtype=torch.float64)
            x[0, :, c + dy, c + dx] = 1.0
            with torch.no_grad():
                hit = (net(x)[0, 0] > 0).nonzero()
            reach = torch.maximum((hit[:, 0] - (c + dy)).abs(), (hit[:, 1] - (c + dx)).abs()).max().item()
            radius = max(radius, int(reach))
    if radius >= size // 2 - 1:
        raise RuntimeError("receptive field reaches the probe's border; probe with a larger size")
    return radius


def pick_device(device: str | None = None) -> torch.device:
    """CUDA when there is one (unless ``device`` says otherwise), else the CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def infer(net: DebrisNet, x: np.ndarray, device: torch.device) -> np.ndarray:
    """Debris probability (n, h, w) float32 for a batch (n, 12, h, w) of gap-free reflectance."""
    n, _, h, w = x.shape
    ph, pw = -h % DOWNSAMPLE, -w % DOWNSAMPLE
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    if ph or pw:  # pad bottom/right only: the pooling grid stays tied to the tile origin
        t = F.pad(t, (0, pw, 0, ph), mode="replicate")
    t = t.to(device).contiguous(memory_format=torch.channels_last)
    amp = torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        p = torch.sigmoid(net(t).float())
    return p[:, 0, :h, :w].cpu().numpy()


#: Window sides are whole multiples of this (or the tile's side): the network then meets a handful
#: of input shapes, and a worker's memory does not grow with every new one (about 2 MB a shape).
WINDOW_STEP = 256


def water_window(wanted: np.ndarray, context: int = HALO) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The rows and columns the network must see to score every ``wanted`` pixel as it would on the whole
    tile: their bounding box grown by the receptive field, starting on the pooling grid (a multiple of
    DOWNSAMPLE from the tile origin), its side a multiple of WINDOW_STEP or the tile's; None if nothing is wanted."""
    rows, cols = np.flatnonzero(wanted.any(axis=1)), np.flatnonzero(wanted.any(axis=0))
    if rows.size == 0:
        return None
    h, w = wanted.shape

    def span(lo: int, hi: int, n: int) -> tuple[int, int]:
        start = max(0, lo - context) // DOWNSAMPLE * DOWNSAMPLE
        need = min(n, hi + 1 + context) - start
        size = -(-need // WINDOW_STEP) * WINDOW_STEP
        if size >= n - DOWNSAMPLE:
            return 0, n
        start = min(start, (n - size) // DOWNSAMPLE * DOWNSAMPLE)
        return start, start + size

    return span(int(rows[0]), int(rows[-1]), h), span(int(cols[0]), int(cols[-1]), w)


# --------------------------------------------------------------------------- the model
class MarineDebrisModel:
    """Debris probability and mask for a tile: cloud mask (the ``clouds`` model) and land mask
    from SCL, then the network on the 12 reflectance bands."""

    def __init__(self, threshold: float | None = None, *, device: str | None = None,
                 weights: str | Path | None = None, card_file: str | Path | None = None) -> None:
        default_weights, default_card = active_files()
        self.weights = Path(weights) if weights else default_weights
        self.card = build_card(read_card_data(Path(card_file) if card_file else default_card), self.weights)
        check_weights(self.card, self.weights)  # before any tile runs
        self.threshold = self.card.threshold if threshold is None else float(threshold)
        self._device_name = device
        self._net: DebrisNet | None = None
        self._device: torch.device | None = None
        self._lock = threading.Lock()
        self._clouds = CloudModel()

    def network(self) -> tuple[DebrisNet, torch.device]:
        """The network on its device, loaded on first use (once per worker process)."""
        with self._lock:
            if self._net is None:
                device = pick_device(self._device_name)
                try:
                    state = torch.load(self.weights, map_location="cpu", weights_only=True)
                    net = DebrisNet(channels=CHANNELS, fused=True)
                    net.load_state_dict(state)
                except Exception as exc:
                    raise ModelError(
                        f"cannot load the weights {self.weights} of model {NAME}: {str(exc).splitlines()[0]}; "
                        "reinstall geoloom or retrain with 'geoloom models train marine-debris'"
                    ) from None
                self._net = net.eval().to(device).to(memory_format=torch.channels_last)
                self._device = device
            return self._net, self._device  # type: ignore[return-value]

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Network probability (n, h, w) for reflectance (n, 12, h, w); NaN inputs are filled."""
        net, device = self.network()
        x = np.asarray(x, dtype=np.float32)
        if np.isnan(x).any():
            fill = net.band_mean.detach().cpu().numpy().astype(np.float32)[None, :, None, None]
            x = np.where(np.isnan(x), fill, x)
        return infer(net, x, device)

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """Probability and mask of a tile; NaN and nodata where clouds, shadows, land or no data are."""
        invalid = nodata_mask(tile, REFLECTANCE_BANDS)
        if "scl" in tile:  # the chain: clouds and land first, from the scene classification
            clouds = self._clouds.predict(tile)["cloud"]
            land = np.isin(np.nan_to_num(tile["scl"].values, nan=0.0), LAND_SCL)
        else:
            clouds, land = np.zeros(invalid.shape, np.uint8), np.zeros(invalid.shape, bool)
        nodata = invalid | (clouds == CLOUD) | (clouds == SHADOW) | (clouds == CLOUD_NODATA)
        prob = np.where(land, np.float32(0.0), np.float32(np.nan)).astype(np.float32)
        window = water_window(~(nodata | land))
        if window is not None:  # the network runs only where there is clear water (and its context)
            (y0, y1), (x0, x1) = window
            x = np.stack([tile[b].values[y0:y1, x0:x1] for b in REFLECTANCE_BANDS])[None]
            prob[y0:y1, x0:x1] = np.where(land[y0:y1, x0:x1], np.float32(0.0), self.probability(x)[0])
        prob[nodata] = np.nan
        debris = (prob >= self.threshold).astype(np.uint8)
        debris[nodata] = 255
        return {"probability": prob, "debris": debris}
