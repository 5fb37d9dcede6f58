"""Sentinel-2 L2A bands: names, aliases, centre wavelengths and native resolutions."""

from __future__ import annotations

from dataclasses import dataclass

from geoloom.platform.errors import BandError


@dataclass(frozen=True, slots=True)
class Band:
    """One Sentinel-2 band as named in the Earth Search ``sentinel-2-l2a`` collection."""

    name: str
    s2_id: str
    common_name: str | None
    center_um: float | None
    resolution_m: int
    description: str


S2_BANDS: tuple[Band, ...] = (
    Band("coastal", "B01", "coastal", 0.443, 60, "Coastal aerosol"),
    Band("blue", "B02", "blue", 0.490, 10, "Blue"),
    Band("green", "B03", "green", 0.560, 10, "Green"),
    Band("red", "B04", "red", 0.665, 10, "Red"),
    Band("rededge1", "B05", "rededge", 0.704, 20, "Red edge 1"),
    Band("rededge2", "B06", "rededge", 0.740, 20, "Red edge 2"),
    Band("rededge3", "B07", "rededge", 0.783, 20, "Red edge 3"),
    Band("nir", "B08", "nir", 0.842, 10, "Near infrared"),
    Band("nir08", "B8A", "nir08", 0.865, 20, "Narrow near infrared"),
    Band("nir09", "B09", "nir09", 0.945, 60, "Water vapour"),
    Band("swir16", "B11", "swir16", 1.610, 20, "Short-wave infrared 1.6 um"),
    Band("swir22", "B12", "swir22", 2.190, 20, "Short-wave infrared 2.2 um"),
    Band("scl", "SCL", None, None, 20, "Scene classification"),
)

#: Reflectance bands in the order used by marine-debris models (B1..B12 without B10).
REFLECTANCE_BANDS: tuple[str, ...] = tuple(b.name for b in S2_BANDS if b.name != "scl")

#: Bands read with nearest-neighbour resampling (classes, not reflectance).
CATEGORICAL_BANDS: frozenset[str] = frozenset({"scl", "qa_pixel", "qa"})

_BY_KEY: dict[str, Band] = {}
for _b in S2_BANDS:
    for _k in {_b.name, _b.s2_id, _b.s2_id.replace("B0", "B")}:
        _BY_KEY[_k.lower()] = _b


def band_info(name: str) -> Band | None:
    """The Sentinel-2 band for a name or alias (``nir``, ``B08``, ``B8``), or None."""
    return _BY_KEY.get(name.strip().lower())


def canonical_band(name: str) -> str:
    """The canonical name of a band (``B08`` -> ``nir``); unknown names are returned lower-cased."""
    band = band_info(name)
    return band.name if band else name.strip().lower()


def require_bands(needed: list[str] | tuple[str, ...], available: set[str] | frozenset[str], *, what: str) -> None:
    """Raise BandError if any needed band is missing from ``available``."""
    missing = [b for b in needed if b not in available]
    if missing:
        raise BandError(
            f"{what} needs band(s) {', '.join(missing)} that the imagery lacks "
            f"(it has: {', '.join(sorted(available)) or 'none'}); pick another model or a catalog with those bands."
        )


#: ESA Sentinel-2 scene classification (SCL) codes.
SCL_CLASSES: dict[int, str] = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area pixels",
    3: "cloud shadow",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow or ice",
}

#: SCL codes that make an observation unusable for compositing.
SCL_UNCLEAR: frozenset[int] = frozenset({0, 1, 3, 8, 9, 10})
