"""The marine-debris network in torch: its architecture, inference on CPU or CUDA, and its receptive field.

Imported by training, by the torch path of :class:`~geoloom.platform.models.marine_debris.MarineDebrisModel`
(CUDA, or a CPU without ONNX Runtime) and by the ONNX export; a CPU worker on the ONNX Runtime path never
imports torch.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.models.marine_debris_card import CHANNELS, DOWNSAMPLE

__all__ = ["CHANNELS", "DebrisNet", "TorchDebris", "infer", "load_network", "pick_device", "receptive_field_radius"]


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


def load_network(weights: str | Path, device: torch.device) -> DebrisNet:
    """The fused network from a ``state_dict`` file, in eval mode and channels-last on ``device``."""
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net = DebrisNet(channels=CHANNELS, fused=True)
    net.load_state_dict(state)
    return net.eval().to(device).to(memory_format=torch.channels_last)


class TorchDebris:
    """The network on torch (CUDA with float16 autocast, or the CPU): ``probability(x)``."""

    def __init__(self, weights: str | Path, device: str | None = None) -> None:
        self.device = pick_device(device)
        self.net = load_network(weights, self.device)
        self.name = f"torch-{self.device.type}"
        self.band_mean = self.net.band_mean.detach().cpu().numpy().astype(np.float32)

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Debris probability (n, h, w) float32 for a batch (n, 12, h, w) of gap-free reflectance."""
        return infer(self.net, x, self.device)
