"""Sentinel-2 band names, aliases and codes: re-exported from :mod:`geoloom.platform.sensors`, their home."""

from __future__ import annotations

from geoloom.platform.sensors import (
    CATEGORICAL_BANDS,
    REFLECTANCE_BANDS,
    S2_ALL_BANDS,
    S2_BANDS,
    S2_CIRRUS,
    SCL_CLASSES,
    SCL_UNCLEAR,
    Band,
    band_info,
    canonical_band,
    require_bands,
)

__all__ = [
    "Band", "S2_BANDS", "S2_CIRRUS", "S2_ALL_BANDS", "REFLECTANCE_BANDS", "CATEGORICAL_BANDS", "SCL_CLASSES",
    "SCL_UNCLEAR", "band_info", "canonical_band", "require_bands",
]
