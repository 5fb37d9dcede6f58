"""Clouds and cloud shadows from the Sentinel-2 L2A scene classification (SCL)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from geoloom.platform.models.card import ModelCard, OutputSpec
from geoloom.platform.sensors import SCL_CIRRUS, SCL_OPAQUE_CLOUD, SCL_SHADOW

__all__ = ["CIRRUS", "CLEAR", "CLOUD", "CLOUD_CLASSES", "CLOUD_NODATA", "CloudModel", "SHADOW", "classify_scl"]

CLEAR, CLOUD, SHADOW, CIRRUS = 0, 1, 2, 3
CLOUD_NODATA = 255
CLOUD_CLASSES: dict[int, str] = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "cloud shadow", CIRRUS: "thin cirrus"}

#: SCL code -> cloud class; every other valid SCL code is clear.
SCL_TO_CLOUD: dict[int, int] = {**dict.fromkeys(SCL_SHADOW, SHADOW), **dict.fromkeys(SCL_OPAQUE_CLOUD, CLOUD),
                                **dict.fromkeys(SCL_CIRRUS, CIRRUS)}


def classify_scl(scl: np.ndarray) -> np.ndarray:
    """Cloud classes (uint8) from SCL codes; 255 where SCL is missing (NaN) or 0 (no data)."""
    scl = np.asarray(scl)
    valid = np.isfinite(scl) & (np.nan_to_num(scl, nan=0.0) != 0)
    codes = np.where(valid, scl, 0).astype(np.int64)
    lut = np.full(256, CLEAR, dtype=np.uint8)
    for code, cls in SCL_TO_CLOUD.items():
        lut[code] = cls
    out = lut[np.clip(codes, 0, 255)]
    out[~valid] = CLOUD_NODATA
    return out


class CloudModel:
    """Cloud, cloud-shadow and thin-cirrus mask read from the scene classification layer."""

    card = ModelCard(
        name="clouds",
        title="Clouds and cloud shadows (SCL)",
        description=(
            "Marks clouds, the shadows they cast and thin cirrus, so you know where the ground or sea was "
            "hidden on the day the picture was taken. It reads the scene classification map that ESA delivers "
            "with every Sentinel-2 L2A scene, so it costs almost nothing to run. (The s2cloudless detector "
            "needs band B10, which only L1C products carry, so it is not used for L2A imagery.)"
        ),
        bands=("scl",),
        resolution=20.0,
        halo=0,
        tile_size=512,
        outputs=(
            OutputSpec("cloud", "class", "uint8", CLOUD_NODATA, "Cloud class from SCL", dict(CLOUD_CLASSES)),
            OutputSpec("cloudy", "mask", "uint8", CLOUD_NODATA, "1 where cloud, cloud shadow or thin cirrus",
                       {0: "clear", 1: "cloud, shadow or cirrus"}),
        ),
        primary="cloud",
        gpu="none",
        mpx_per_s=200.0,
        training={"method": "none: a lookup of the ESA L2A scene classification (SCL codes 3, 8, 9, 10)"},
    )

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = threshold  # accepted for a uniform factory signature; the mask has no threshold

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """Cloud classes of a tile from its SCL band."""
        cls = classify_scl(tile["scl"].values)
        cloudy = (cls != CLEAR).astype(np.uint8)
        cloudy[cls == CLOUD_NODATA] = CLOUD_NODATA
        return {"cloud": cls, "cloudy": cloudy}
