"""Floating marine debris: a compact U-Net over the 12 L2A bands, chained after the cloud and land mask.

The network (:class:`DebrisNet`) is trained by :func:`geoloom.platform.models.training.train_marine_debris`
on generated scenes; the shipped weights are a ``state_dict`` of the inference form (batch norm
folded into the convolutions), loaded with ``torch.load(weights_only=True)`` after its sha256 is
checked against the card. The card's numbers (threshold, training details, scores, throughput)
live in ``cards/marine-debris.json``, written by the training, evaluation and benchmark scripts.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import xarray as xr
from scipy import ndimage

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.composite import CLASSES_FROM_BANDS
from geoloom.platform.devices import local_gpus
from geoloom.platform.errors import ModelError
from geoloom.platform.models.base import nodata_mask
from geoloom.platform.models.card import check_weights
from geoloom.platform.models.debris_onnx import OnnxDebris, onnx_usable
from geoloom.platform.models.clouds import CLOUD, CLOUD_NODATA, SHADOW, CloudModel, classify_scl
from geoloom.platform.models.marine_debris_card import (
    CARD_FILE, CHANNELS, DOWNSAMPLE, HALO, MODELS_DIR, NAME, WEIGHTS_FILE, active_files, build_card, read_card_data,
)
from geoloom.platform.models.nir_support import nir_supported
from geoloom.platform.models.small_objects import drop_small_objects
from geoloom.platform.sensors import SCL_LAND

__all__ = [
    "CARD_FILE", "CHANNELS", "DOWNSAMPLE", "DebrisNet", "HALO", "LAND_SCL", "MarineDebrisModel", "NAME",
    "MODELS_DIR", "WEIGHTS_FILE", "BACKENDS", "active_files", "build_card", "pick_device", "read_card_data",
    "receptive_field_radius", "water_window",
]

log = logging.getLogger(__name__)

#: Where clouds come from the bands (no SCL: Level-1C), pixels within this many pixels (100 m) of a
#: cloud are not scored: the band tests miss thin cloud edges, which read bright in the NIR beside the
#: cloud, and the scene-wide shadow search (``cloud_shadow``) does not resolve a shadow's frayed rim.
#: The distance is the 10 m dilation that s2cloudless's authors suggest (about 11 px); with the 5 x 5
#: smoothing before it, it stays inside the halo (2 + 10 < 24), so tiles stay seamless.
CLOUD_BUFFER_PX = 10

#: Where the network runs: ONNX Runtime on a CPU, torch on CUDA (or on a CPU without ONNX Runtime).
BACKENDS = ("onnxruntime", "torch")
#: Names this module lends from the torch module, imported on first use so that a CPU worker on
#: ONNX Runtime never imports torch.
_TORCH_NAMES = ("DebrisNet", "infer", "pick_device", "receptive_field_radius", "TorchDebris")


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from geoloom.platform.models import debris_net

        return getattr(debris_net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: SCL codes of land (vegetation, bare soil and built-up): never debris.
LAND_SCL: tuple[int, ...] = tuple(sorted(SCL_LAND))
#: SCL's thin cirrus (10) says nothing of the surface beneath. Where its green vs SWIR-1 index (MNDWI)
#: is below this, that surface is land: on the generated full tile, cirrus over land reads -0.47 to
#: -0.22 and over water and debris +0.11 and above; MARIDA's debris spectrum reads +0.48, soil -0.40,
#: roofs -0.28. So such pixels are land (probability 0) and the network need not look at them.
CIRRUS_SCL = 10
CIRRUS_LAND_MNDWI = -0.1
#: The bands that tell land under thin cirrus.
CIRRUS_LAND_BANDS = ("green", "swir16")


def cirrus_land(scl: np.ndarray, green: np.ndarray, swir16: np.ndarray) -> np.ndarray:
    """Pixels of thin cirrus (SCL 10) over land, told by their green vs SWIR-1 index."""
    cirrus = np.nan_to_num(scl, nan=0.0) == CIRRUS_SCL
    if not cirrus.any():
        return cirrus
    with np.errstate(divide="ignore", invalid="ignore"):
        mndwi = (green - swir16) / (green + swir16)
    return cirrus & (mndwi < CIRRUS_LAND_MNDWI)


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


def check_backend(backend: str | None, device: str | None = None) -> str | None:
    """``backend`` if it is one of :data:`BACKENDS` (or None: chosen where the network loads), else a
    one-line error; ONNX Runtime runs here on the CPU only."""
    if backend is None:
        return None
    if backend not in BACKENDS:
        raise ModelError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}; leave it out to choose by device")
    if backend == "onnxruntime" and device not in (None, "cpu"):
        raise ModelError(f"backend onnxruntime runs on the CPU here, not on {device!r}; use backend torch for a GPU")
    return backend


def cloud_buffer(cloud: np.ndarray) -> np.ndarray:
    """The pixels within CLOUD_BUFFER_PX of a cloud body: the mask is first smoothed over 5 x 5 pixels
    (a pixel is cloud body where most of its neighbourhood is cloud), so that lone bright pixels the
    band tests call cloud (a white hull, a roof) get no buffer, as s2cloudless averages before it dilates."""
    body = ndimage.uniform_filter(cloud.astype(np.float32), size=5, mode="nearest") >= 0.5
    if not body.any():
        return body
    return ndimage.binary_dilation(body, structure=np.ones((3, 3), bool), iterations=CLOUD_BUFFER_PX)


# --------------------------------------------------------------------------- the model
class MarineDebrisModel:
    """Debris probability and mask for a tile: cloud mask (the ``clouds`` model) and land mask
    from SCL, then the network on the 12 reflectance bands."""

    def __init__(self, threshold: float | None = None, *, device: str | None = None,
                 weights: str | Path | None = None, card_file: str | Path | None = None,
                 backend: str | None = None) -> None:
        default_weights, default_card = active_files()
        self.weights = Path(weights) if weights else default_weights
        self.card = build_card(read_card_data(Path(card_file) if card_file else default_card), self.weights)
        check_weights(self.card, self.weights)  # before any tile runs
        self.threshold = self.card.threshold if threshold is None else float(threshold)
        self._device_name = device
        self._backend_name = check_backend(backend, device)
        self._backend: Any = None
        self._lock = threading.Lock()
        self._clouds = CloudModel()

    def network(self) -> Any:
        """The network, loaded on first use (once per worker process): ONNX Runtime on a CPU where it is
        installed and the export matches the weights, else torch (CUDA when there is a GPU). It has
        ``name``, ``band_mean`` and ``probability(x)``."""
        with self._lock:
            if self._backend is None:
                self._backend = self._load()
            return self._backend

    def _load(self) -> Any:
        """Build the backend that :meth:`network` describes."""
        wanted = self._backend_name
        on_cpu = self._device_name == "cpu" or (self._device_name is None and local_gpus() == 0)
        if wanted == "onnxruntime":
            if (why := onnx_usable(self.weights)) is not None:
                raise ModelError(f"backend onnxruntime cannot run {NAME}: {why}")
            return OnnxDebris(self.weights)
        if wanted is None and on_cpu and onnx_usable(self.weights) is None:
            try:
                return OnnxDebris(self.weights)
            except ModelError as exc:  # e.g. an export left from other weights: torch gives the same values
                log.warning("%s; running %s on torch", exc, NAME)
        try:
            from geoloom.platform.models.debris_net import TorchDebris

            return TorchDebris(self.weights, self._device_name)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(
                f"cannot load the weights {self.weights} of model {NAME}: {str(exc).splitlines()[0]}; "
                "reinstall geoloom or retrain with 'geoloom models train marine-debris'"
            ) from None

    def warm_up(self) -> None:
        """Load the network and run it once on a window of a whole tile (tile, halo both sides): ONNX
        Runtime allocates its buffers on a first run, about 90 MB of fresh pages for a 512 px tile, which
        would otherwise fall on the first tile of every worker (as page faults, 35 ms more than a later
        run, and more where several workers fault at once)."""
        side = -(-(self.card.tile_size + 2 * self.card.halo) // DOWNSAMPLE) * DOWNSAMPLE
        self.network().probability(np.zeros((1, len(REFLECTANCE_BANDS), side, side), np.float32))

    def probability(self, x: np.ndarray) -> np.ndarray:
        """Network probability (n, h, w) for reflectance (n, 12, h, w); NaN inputs are filled."""
        net = self.network()
        x = np.asarray(x, dtype=np.float32)
        if np.isnan(x).any():
            x = np.where(np.isnan(x), net.band_mean[None, :, None, None], x)
        return net.probability(x)

    def outputs_from_classes(self, scl: np.ndarray,
                             read: Callable[[str], np.ndarray] | None = None) -> dict[str, np.ndarray] | None:
        """The tile's outputs when its scene classification decides every pixel (land, cloud, cloud
        shadow: no clear water anywhere, so the reflectance need not be read), as :meth:`predict` would
        give them on a tile whose bands all have data; None when some pixel needs the network. Where the
        only other pixels are thin cirrus, ``read(band)`` gives the two bands that tell land beneath it."""
        clouds = classify_scl(scl)
        hidden = (clouds == CLOUD) | (clouds == SHADOW) | (clouds == CLOUD_NODATA)
        land = np.isin(np.nan_to_num(scl, nan=0.0), LAND_SCL)
        open_ = ~hidden & ~land
        if open_.any() and read is not None and (np.nan_to_num(scl[open_], nan=0.0) == CIRRUS_SCL).all():
            green, swir16 = (read(b) for b in CIRRUS_LAND_BANDS)
            if np.isfinite(green).all() and np.isfinite(swir16).all():
                land |= cirrus_land(scl, green, swir16)
        if (~hidden & ~land).any():
            return None
        prob = np.where(hidden, np.float32(np.nan), np.float32(0.0)).astype(np.float32)
        debris = np.where(hidden, np.uint8(255), np.uint8(0)).astype(np.uint8)
        return {"probability": prob, "debris": debris}

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """Probability and mask of a tile; NaN and nodata where clouds, shadows, land or no data are."""
        invalid = nodata_mask(tile, REFLECTANCE_BANDS)
        if "scl" in tile:  # the chain: clouds and land first, from the scene classification
            clouds = self._clouds.predict(tile)["cloud"]
            land = np.isin(np.nan_to_num(tile["scl"].values, nan=0.0), LAND_SCL)
            land |= cirrus_land(tile["scl"].values, tile["green"].values, tile["swir16"].values)
        else:
            clouds, land = np.zeros(invalid.shape, np.uint8), np.zeros(invalid.shape, bool)
        cloud = clouds == CLOUD
        if tile.attrs.get(CLASSES_FROM_BANDS) and cloud.any():  # soft edges the band tests miss: keep clear
            cloud = cloud | cloud_buffer(cloud)
        nodata = invalid | cloud | (clouds == SHADOW) | (clouds == CLOUD_NODATA)
        prob = np.where(land, np.float32(0.0), np.float32(np.nan)).astype(np.float32)
        window = water_window(~(nodata | land))
        if window is not None:  # the network runs only where there is clear water (and its context)
            (y0, y1), (x0, x1) = window
            x = np.stack([tile[b].values[y0:y1, x0:x1] for b in REFLECTANCE_BANDS])[None]
            prob[y0:y1, x0:x1] = np.where(land[y0:y1, x0:x1], np.float32(0.0), self.probability(x)[0])
        prob[nodata] = np.nan
        found = prob >= self.threshold
        if found.any():  # both NIR bands must see it (see nir_support), as an object of 3 px or more
            found = drop_small_objects(nir_supported(tile["nir"].values, tile["nir08"].values, found))
        debris = found.astype(np.uint8)
        debris[nodata] = 255
        return {"probability": prob, "debris": debris}
