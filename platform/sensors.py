"""Sensor facts, one home each: Sentinel-2 and Landsat band tables, Sentinel-2 offsets, SCL codes.

Everything that must agree across geoloom (the band a name means, its native resolution, how
stored numbers become reflectance) is defined here and imported elsewhere.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from geoloom.platform.errors import BandError

__all__ = [
    "Band", "S2_BANDS", "S2_CIRRUS", "S2_ALL_BANDS", "S2_BAND_IDS", "S2_LEVEL_BANDS", "S2_BANDS_BY_RESOLUTION",
    "REFLECTANCE_BANDS", "CATEGORICAL_BANDS", "band_info", "canonical_band", "require_bands",
    "S2_QUANTIFICATION", "S2_OFFSET_BASELINE", "S2_OFFSET_DN", "S2_OFFSET_SINCE", "S2_AUX_QUANTIFICATION",
    "parse_baseline", "s2_offset_dn", "s2_scale_offset",
    "SCL_CLASSES", "SCL_UNCLEAR", "SCL_CLOUD",
    "LANDSAT_BANDS", "LANDSAT_SENSORS", "LANDSAT_LABELS", "LANDSAT_SR_RESCALE", "LANDSAT_ST_RESCALE",
    "LANDSAT_L1_TOA_RESCALE",
]


# ---------------------------------------------------------------------------- Sentinel-2 bands


@dataclass(frozen=True, slots=True)
class Band:
    """One Sentinel-2 band as named in the Earth Search ``sentinel-2-l2a`` collection."""

    name: str
    s2_id: str
    common_name: str | None
    center_um: float | None
    resolution_m: int
    description: str


#: The bands of a Level-2A product (surface reflectance and the scene classification).
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

#: B10, short-wave infrared cirrus: in Level-1C products only (Level-2A drops it).
S2_CIRRUS = Band("cirrus", "B10", "cirrus", 1.375, 60, "Cirrus")

#: Every Sentinel-2 band of either level: the 13 MSI bands in ESA's order (B01 ... B12), then SCL.
S2_ALL_BANDS: tuple[Band, ...] = (*S2_BANDS[:10], S2_CIRRUS, *S2_BANDS[10:])

#: ESA's ``band_id`` (0..12, as in ``BOA_ADD_OFFSET band_id="8"``) -> band id (``B8A``).
S2_BAND_IDS: dict[int, str] = {i: b.s2_id for i, b in enumerate(S2_ALL_BANDS[:13])}

#: The bands of each processing level, by asset name.
S2_LEVEL_BANDS: dict[str, tuple[str, ...]] = {
    "L1C": tuple(b.name for b in S2_ALL_BANDS if b.name != "scl"),
    "L2A": tuple(b.name for b in S2_BANDS),
}

#: Asset names grouped by native resolution (metres).
S2_BANDS_BY_RESOLUTION: dict[int, tuple[str, ...]] = {
    res: tuple(b.name for b in S2_ALL_BANDS if b.resolution_m == res) for res in (10, 20, 60)
}

#: Reflectance bands in the order used by marine-debris models (B1..B12 without B10).
REFLECTANCE_BANDS: tuple[str, ...] = tuple(b.name for b in S2_BANDS if b.name != "scl")

#: Those reflectance bands grouped by native resolution (metres), in the same order.
REFLECTANCE_BY_RESOLUTION: dict[int, tuple[str, ...]] = {
    res: tuple(b.name for b in S2_BANDS if b.name != "scl" and b.resolution_m == res) for res in (10, 20, 60)
}

#: Bands read with nearest-neighbour resampling (classes, not reflectance).
CATEGORICAL_BANDS: frozenset[str] = frozenset({"scl", "qa_pixel", "qa"})

_BY_KEY: dict[str, Band] = {}
for _b in S2_ALL_BANDS:
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


# ---------------------------------------------------------------------------- Sentinel-2 radiometry

#: Stored numbers per unit of reflectance (``QUANTIFICATION_VALUE`` / ``BOA_QUANTIFICATION_VALUE``).
S2_QUANTIFICATION = 10000

#: Processing baseline from which L1C and L2A pixels carry an add-offset (``RADIO_ADD_OFFSET``,
#: ``BOA_ADD_OFFSET``): reflectance = (DN + offset) / quantification value.
S2_OFFSET_BASELINE: tuple[int, int] = (4, 0)

#: The add-offset of baseline 04.00 and later, in stored numbers.
S2_OFFSET_DN = -1000

#: Baseline 04.00 went into operations on this day: every product of a later acquisition has the offset.
S2_OFFSET_SINCE = dt.date(2022, 1, 25)

#: Quantification values of the L2A auxiliary layers (aerosol optical thickness, water vapour).
S2_AUX_QUANTIFICATION: dict[str, float] = {"aot": 1000.0, "wvp": 1000.0}


def parse_baseline(text: str | None) -> tuple[int, int] | None:
    """``"05.09"``, ``"N0509"`` or ``"0509"`` as (5, 9); None if it is not a baseline."""
    m = re.fullmatch(r"N?(\d{1,2})\.?(\d{2})", (text or "").strip())
    return (int(m[1]), int(m[2])) if m else None


def s2_offset_dn(baseline: str | None) -> int:
    """The add-offset (DN) of a processing baseline: -1000 from 04.00 on, 0 before or when unknown."""
    parsed = parse_baseline(baseline)
    return S2_OFFSET_DN if parsed is not None and parsed >= S2_OFFSET_BASELINE else 0


def s2_scale_offset(add_offset_dn: float, quantification: float = S2_QUANTIFICATION) -> tuple[float, float]:
    """``raster:bands`` scale and offset for reflectance = (DN + add_offset) / quantification."""
    return 1.0 / quantification, add_offset_dn / quantification


def processing_level(properties: dict, collection: str | None = None, bands: frozenset[str] | set[str] = frozenset()
                     ) -> str | None:
    """``"L1C"`` (top of atmosphere) or ``"L2A"`` (surface reflectance) of a Sentinel-2 item, from what it
    says (``processing:level``, ``s2:product_type``, the collection's name) or, failing that, from its bands
    (an SCL band is L2A); None when nothing tells."""
    level = str(properties.get("processing:level") or "").upper()
    if level in ("L1C", "L2A"):
        return level
    product = str(properties.get("s2:product_type") or "").upper()
    for key, value in (("1C", "L1C"), ("2A", "L2A")):
        if product.endswith(key):
            return value
    name = (collection or "").lower()
    for key, value in (("l1c", "L1C"), ("l2a", "L2A")):
        if key in name:
            return value
    return "L2A" if "scl" in bands else None


# ---------------------------------------------------------------------------- scene classification

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

#: SCL codes by meaning.
SCL_SHADOW: frozenset[int] = frozenset({3})
SCL_OPAQUE_CLOUD: frozenset[int] = frozenset({8, 9})
SCL_CIRRUS: frozenset[int] = frozenset({10})
SCL_LAND: frozenset[int] = frozenset({4, 5})  # vegetation, bare soil and built-up

#: SCL codes counted as cloud (for a cloud cover estimated from the SCL band).
SCL_CLOUD: frozenset[int] = SCL_OPAQUE_CLOUD | SCL_CIRRUS

#: SCL codes that make an observation unusable for compositing (no data, saturated, shadow, cloud).
SCL_UNCLEAR: frozenset[int] = frozenset({0, 1}) | SCL_SHADOW | SCL_CLOUD


# ---------------------------------------------------------------------------- Landsat

#: Landsat band number -> (asset key, STAC common name, centre wavelength in micrometres), per sensor.
LANDSAT_BANDS: dict[str, dict[int, tuple[str, str, float]]] = {
    "oli": {
        1: ("coastal", "coastal", 0.44),
        2: ("blue", "blue", 0.48),
        3: ("green", "green", 0.56),
        4: ("red", "red", 0.655),
        5: ("nir", "nir08", 0.865),
        6: ("swir16", "swir16", 1.61),
        7: ("swir22", "swir22", 2.2),
        8: ("pan", "pan", 0.59),
        9: ("cirrus", "cirrus", 1.37),
        10: ("lwir11", "lwir11", 10.9),
        11: ("lwir12", "lwir12", 12.0),
    },
    "tm": {
        1: ("blue", "blue", 0.485),
        2: ("green", "green", 0.56),
        3: ("red", "red", 0.66),
        4: ("nir", "nir", 0.83),
        5: ("swir16", "swir16", 1.65),
        6: ("lwir", "lwir", 11.45),
        7: ("swir22", "swir22", 2.215),
    },
    "etm": {
        1: ("blue", "blue", 0.485),
        2: ("green", "green", 0.56),
        3: ("red", "red", 0.66),
        4: ("nir", "nir", 0.835),
        5: ("swir16", "swir16", 1.65),
        6: ("lwir", "lwir", 11.335),
        7: ("swir22", "swir22", 2.22),
        8: ("pan", "pan", 0.71),
    },
}

#: Sensor letter + mission number of a Landsat product name (``LC08`` -> ``C08``) -> sensor table.
LANDSAT_SENSORS: dict[str, str] = {
    "C08": "oli", "C09": "oli", "O08": "oli", "O09": "oli", "E07": "etm", "T04": "tm", "T05": "tm",
}
LANDSAT_LABELS: dict[str, str] = {"oli": "Landsat OLI", "etm": "Landsat ETM+", "tm": "Landsat TM"}

#: Collection 2 level-2 rescaling (USGS): surface reflectance, and surface temperature in kelvin.
LANDSAT_SR_RESCALE: tuple[float, float] = (2.75e-5, -0.2)
LANDSAT_ST_RESCALE: tuple[float, float] = (0.00341802, 149.0)
#: OLI level-1 top-of-atmosphere reflectance rescaling, the same for every scene.
LANDSAT_L1_TOA_RESCALE: tuple[float, float] = (2.0e-5, -0.1)
