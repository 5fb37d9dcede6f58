"""Spectral-index models a non-specialist can use: FDI (floating debris), NDWI (water), NDVI (vegetation)."""

from __future__ import annotations

import numpy as np
import xarray as xr

from geoloom.platform.models.base import mask_layer, nodata_mask
from geoloom.platform.models.card import ModelCard, OutputSpec

# Centre wavelengths (nm) used by Biermann et al. (2020) for FDI.
L_RED, L_NIR, L_SWIR1 = 664.6, 832.8, 1613.7
FDI_FACTOR = 10.0 * (L_NIR - L_RED) / (L_SWIR1 - L_RED)


def fdi(nir: np.ndarray, rededge2: np.ndarray, swir16: np.ndarray) -> np.ndarray:
    """Floating Debris Index: NIR minus a baseline interpolated between red edge 2 and SWIR 1."""
    baseline = rededge2 + (swir16 - rededge2) * FDI_FACTOR
    return (nir - baseline).astype(np.float32)


def normalized_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a - b) / (a + b) as float32, NaN where it is undefined."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (a - b) / (a + b)
    return np.where(np.isfinite(out), out, np.nan).astype(np.float32)


class FDIModel:
    """Floating debris where FDI is high and NDVI stays low (not vegetation)."""

    card = ModelCard(
        name="fdi",
        title="Floating Debris Index (baseline)",
        description=(
            "Marks water pixels that reflect more near-infrared light than clean water would, as floating "
            "material does (Biermann et al. 2020). A quick baseline: it also lights up on foam, sediment "
            "plumes, seaweed mats and ships, so check its detections before trusting them."
        ),
        bands=("red", "rededge2", "nir", "swir16"),
        resolution=10.0,
        halo=0,
        tile_size=512,
        outputs=(
            OutputSpec("fdi", "index", "float32", None, "Floating Debris Index (reflectance units)"),
            OutputSpec("debris", "mask", "uint8", 255, "1 where FDI and NDVI pass the thresholds",
                       {0: "no debris", 1: "debris"}),
        ),
        primary="fdi",
        detection="debris",
        score="fdi",
        threshold=0.02,
        mpx_per_s=40.0,
        l1c="dark-spectrum",  # its threshold is in surface reflectance: Level-1C takes the same correction
        metrics={},
    )
    ndvi_max = 0.25

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = self.card.threshold if threshold is None else float(threshold)

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """The FDI layer and a debris mask where FDI reaches the threshold and NDVI stays low."""
        b = {k: tile[k].values for k in self.card.bands}
        index = fdi(b["nir"], b["rededge2"], b["swir16"])
        ndvi = normalized_difference(b["nir"], b["red"])
        invalid = nodata_mask(tile, self.card.bands)
        index[invalid] = np.nan
        hit = (index >= self.threshold) & (ndvi <= self.ndvi_max)
        return {"fdi": index, "debris": mask_layer(hit, invalid)}


class NormalizedDifferenceModel:
    """Base for one normalized-difference index with a threshold mask."""

    card: ModelCard
    pair: tuple[str, str]

    def __init__(self, threshold: float | None = None) -> None:
        self.threshold = self.card.threshold if threshold is None else float(threshold)

    def predict(self, tile: xr.Dataset) -> dict[str, np.ndarray]:
        """The index layer and a mask where it reaches the threshold."""
        a, b = (tile[k].values for k in self.pair)
        index = normalized_difference(a, b)
        invalid = nodata_mask(tile, self.card.bands) | ~np.isfinite(index)
        index[invalid] = np.nan
        mask_name = self.card.outputs[1].name
        return {self.card.primary: index, mask_name: mask_layer(index >= self.threshold, invalid)}


class WaterModel(NormalizedDifferenceModel):
    """Open water from the Normalized Difference Water Index (McFeeters 1996)."""

    pair = ("green", "nir")
    card = ModelCard(
        name="water",
        title="Open water (NDWI)",
        description=(
            "Marks open water: water reflects green light but absorbs near-infrared, so the Normalized "
            "Difference Water Index is positive over water and negative over land and vegetation."
        ),
        bands=("green", "nir"),
        resolution=10.0,
        halo=0,
        outputs=(
            OutputSpec("ndwi", "index", "float32", None, "NDWI, -1..1"),
            OutputSpec("water", "mask", "uint8", 255, "1 where NDWI >= threshold", {0: "not water", 1: "water"}),
        ),
        primary="ndwi",
        threshold=0.0,
        mpx_per_s=60.0,
    )


class VegetationModel(NormalizedDifferenceModel):
    """Green vegetation from the Normalized Difference Vegetation Index."""

    pair = ("nir", "red")
    card = ModelCard(
        name="vegetation",
        title="Green vegetation (NDVI)",
        description=(
            "Marks green vegetation (and floating seaweed): living plants reflect near-infrared strongly and "
            "absorb red light, so the Normalized Difference Vegetation Index is high over them."
        ),
        bands=("red", "nir"),
        resolution=10.0,
        halo=0,
        outputs=(
            OutputSpec("ndvi", "index", "float32", None, "NDVI, -1..1"),
            OutputSpec("vegetation", "mask", "uint8", 255, "1 where NDVI >= threshold",
                       {0: "not vegetation", 1: "vegetation"}),
        ),
        primary="ndvi",
        threshold=0.4,
        mpx_per_s=60.0,
    )
