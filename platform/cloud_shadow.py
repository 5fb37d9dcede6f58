"""Cloud shadows for imagery without a scene classification (Level-1C), found once per scene.

A cloud at height h casts its shadow h * tan(sun zenith) away from the sun. The height is not known,
so it is searched: the scene's cloud mask (classified from the bands, see ``band_masks``) is moved
away from the sun for heights from MIN_HEIGHT_M to MAX_HEIGHT_M, and the height whose moved mask
falls on the darkest ground (brightness relative to the clear pixels of the same kind, land or water)
is the scene's cloud height, if that darkness is a dip (lighter at the lowest and highest heights
searched, not a trend that runs off the scene). Shadow is then the moved mask, widened by the height's uncertainty,
where the pixel is darker than its kind, and not cloud itself. Where nothing along the search is
darker than SHADOW_CONTRAST_MAX, the scene has no shadow to find.

It runs on a decimated read of the whole scene (OVERVIEW_SIDE pixels a side, about 215 m on a full
Sentinel-2 tile), because shadows fall hundreds of pixels from their clouds, farther than any tile
halo; the mask is written beside the run as a small GeoTIFF and read by every tile like a band, so
tiles stay seamless. The sun's position comes from the acquisition time and the scene's centre.

Limits: one cloud height per scene; clouds smaller than an overview pixel (small cumulus on a full
tile) and their shadows are not resolved; the view angle's parallax is ignored (a few hundred metres
for high clouds off nadir), which the widening partly covers.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from geoloom.platform.band_masks import CIRRUS, CLOUD, MASK_BANDS, SHADOW_BAND, WATER, scl_from_bands
from geoloom.platform.catalog import AssetRef, Scene

__all__ = [
    "MAX_HEIGHT_M", "MIN_HEIGHT_M", "OVERVIEW_SIDE", "SHADOW_BAND", "SHADOW_CONTRAST_MAX", "ShadowSearch",
    "find_shadows", "scene_shadows", "shadowed_scenes", "sun_position",
]

#: Side (pixels) of the decimated read.
OVERVIEW_SIDE = 512
#: Cloud heights searched (low cumulus to mid-level cloud).
MIN_HEIGHT_M, MAX_HEIGHT_M = 200.0, 6000.0
#: A shadow must darken its ground to at most this share of the clear pixels of its kind.
SHADOW_CONTRAST_MAX = 0.8
#: The darkest height must be this much darker than both ends of the search (a dip, not a trend).
SHADOW_DIP_MIN = 0.15
#: Share of the cloud mask that must land on clear pixels of the scene for a height to be scored.
MIN_LANDING = 0.1
#: Heights within this of the best one also cast shadow (a cloud's top and base, the search's step).
HEIGHT_SPREAD_M = 400.0
#: Bands whose mean is a pixel's brightness (visible to SWIR: shadow dims them all).
_BRIGHTNESS = ("green", "red", "nir", "swir16")


def sun_position(when: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """The sun's zenith angle and azimuth (degrees, clockwise from north) at ``when`` (aware) over
    (``lon``, ``lat``), by NOAA's low-precision formulas (well under a degree in 1950-2050)."""
    t = when.astimezone(dt.timezone.utc)
    day = t.timetuple().tm_yday
    hour = t.hour + t.minute / 60 + t.second / 3600
    g = 2 * math.pi / 365 * (day - 1 + (hour - 12) / 24)  # fractional year
    eqtime = 229.18 * (0.000075 + 0.001868 * math.cos(g) - 0.032077 * math.sin(g) - 0.014615 * math.cos(2 * g)
                       - 0.040849 * math.sin(2 * g))
    decl = (0.006918 - 0.399912 * math.cos(g) + 0.070257 * math.sin(g) - 0.006758 * math.cos(2 * g)
            + 0.000907 * math.sin(2 * g) - 0.002697 * math.cos(3 * g) + 0.00148 * math.sin(3 * g))
    hour_angle = math.radians((hour * 60 + eqtime + 4 * lon) / 4 - 180)
    phi = math.radians(lat)
    cos_zen = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(hour_angle)
    zen = math.acos(max(-1.0, min(1.0, cos_zen)))
    az = math.atan2(math.sin(hour_angle), math.cos(hour_angle) * math.sin(phi) - math.tan(decl) * math.cos(phi))
    return math.degrees(zen), (math.degrees(az) + 180.0) % 360.0


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by (dy, dx) pixels, False where nothing moved in."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = mask[max(-dy, 0):h - max(dy, 0),
                                                                     max(-dx, 0):w - max(dx, 0)]
    return out


class ShadowSearch:
    """The search on one decimated scene: its classes, relative brightness and pixel size."""

    def __init__(self, bands: dict[str, np.ndarray], pixel_m: tuple[float, float]) -> None:
        self.classes = scl_from_bands(bands)
        valid = np.isfinite(self.classes)
        self.cloud = valid & np.isin(self.classes, (CLOUD, CIRRUS))
        self.clear = valid & ~self.cloud
        water = self.clear & (self.classes == WATER)
        brightness = np.mean([np.asarray(bands[b], np.float32) for b in _BRIGHTNESS], axis=0)
        self.relative = np.full(brightness.shape, np.nan, np.float32)
        for kind in (water, self.clear & ~water):  # brightness against the clear pixels of the same kind
            if kind.sum() >= 20:
                self.relative[kind] = brightness[kind] / max(float(np.nanmedian(brightness[kind])), 1e-4)
        self.pixel_m = pixel_m

    def offset(self, height_m: float, zenith: float, azimuth: float) -> tuple[int, int]:
        """Rows and columns from a cloud to its shadow (rows grow southwards)."""
        d = height_m * math.tan(math.radians(min(zenith, 85.0)))
        az = math.radians(azimuth)
        return round(d * math.cos(az) / self.pixel_m[1]), round(-d * math.sin(az) / self.pixel_m[0])

    def heights(self, zenith: float) -> np.ndarray:
        """Heights a pixel apart on the ground."""
        step = min(self.pixel_m) / max(math.tan(math.radians(min(zenith, 85.0))), 0.05)
        return np.arange(MIN_HEIGHT_M, MAX_HEIGHT_M + step / 2, max(step, 50.0))

    def darkness(self, height_m: float, zenith: float, azimuth: float) -> tuple[float, int]:
        """Median relative brightness of the clear pixels under the moved cloud mask, and their count."""
        under = _shift(self.cloud, *self.offset(height_m, zenith, azimuth)) & self.clear & np.isfinite(self.relative)
        n = int(under.sum())
        return (float(np.median(self.relative[under])) if n else math.inf), n

    def find(self, zenith: float, azimuth: float) -> tuple[np.ndarray, dict[str, Any]]:
        """The shadow mask and what the search found (height, contrast)."""
        none = np.zeros(self.cloud.shape, bool)
        if zenith >= 85.0 or self.cloud.sum() < 4:
            return none, {"cloud_height_m": None, "contrast": None}
        scored = [(h, *self.darkness(h, zenith, azimuth)) for h in self.heights(zenith)]
        scored = [s for s in scored if s[2] >= max(4, int(MIN_LANDING * self.cloud.sum()))]
        if len(scored) < 3:
            return none, {"cloud_height_m": None, "contrast": None}
        i = min(range(len(scored)), key=lambda k: scored[k][1])
        best, contrast = scored[i][0], scored[i][1]
        info = {"cloud_height_m": round(float(best)), "contrast": round(contrast, 3)}
        # a shadow is a dip: darker than SHADOW_CONTRAST_MAX, inside the search, lighter on either side
        dip = min(scored[0][1], scored[-1][1]) - contrast
        if contrast > SHADOW_CONTRAST_MAX or i in (0, len(scored) - 1) or dip < SHADOW_DIP_MIN:
            return none, info
        moved = np.zeros_like(self.cloud)
        for h in self.heights(zenith):
            if abs(h - best) <= HEIGHT_SPREAD_M:
                moved |= _shift(self.cloud, *self.offset(h, zenith, azimuth))
        moved = ndimage.binary_dilation(moved, structure=np.ones((3, 3), bool))
        dark = np.nan_to_num(self.relative, nan=np.inf) <= SHADOW_CONTRAST_MAX
        return moved & dark & ~self.cloud, info


def find_shadows(bands: dict[str, np.ndarray], pixel_m: tuple[float, float], when: dt.datetime,
                 lon: float, lat: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Cloud shadows of a decimated scene (``bands``: at least ``MASK_BANDS``, reflectance, NaN = no
    data) with ``pixel_m`` (x, y) metre pixels, taken at ``when`` over (``lon``, ``lat``)."""
    missing = [b for b in MASK_BANDS if b not in bands]
    if missing:
        raise ValueError(f"the shadow search needs band(s) {', '.join(missing)}")
    zenith, azimuth = sun_position(when, lon, lat)
    mask, info = ShadowSearch(bands, pixel_m).find(zenith, azimuth)
    return mask, {"sun_zenith": round(zenith, 2), "sun_azimuth": round(azimuth, 2), **info,
                  "shadow_share": round(float(mask.mean()), 4)}


def write_mask(mask: np.ndarray, transform: Any, crs: Any, path: Path) -> Path:
    """The mask as a one-band uint8 GeoTIFF (1 = shadow, 0 = not)."""
    import rasterio

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=mask.shape[1], height=mask.shape[0], count=1, dtype="uint8",
                       crs=crs, transform=transform, compress="deflate") as dst:
        dst.write(mask.astype(np.uint8), 1)
    tmp.replace(path)
    return path


def _overview_grid(asset: AssetRef, side: int) -> tuple[tuple[int, int], Any, Any, tuple[float, float]]:
    """Shape, transform, CRS and pixel size (metres) of a band's decimated read."""
    import rasterio
    from rasterio.transform import from_bounds

    from geoloom.platform.reading import gdal_env
    from geoloom.platform.signing import sign_href

    with gdal_env(), rasterio.open(sign_href(asset.href, asset.sign)) as src:
        h, w, bounds, crs = src.height, src.width, src.bounds, src.crs
    scale = min(1.0, side / max(h, w))
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    px = ((bounds.right - bounds.left) / shape[1], (bounds.top - bounds.bottom) / shape[0])
    if crs is not None and crs.is_geographic:  # degrees to metres at the scene's latitude
        lat = math.radians((bounds.top + bounds.bottom) / 2)
        px = (px[0] * 111_320.0 * math.cos(lat), px[1] * 110_574.0)
    return shape, from_bounds(*bounds, width=shape[1], height=shape[0]), crs, px


def scene_shadow(scene: Scene, folder: Path, *, side: int = OVERVIEW_SIDE) -> dict[str, Any] | None:
    """Find a scene's cloud shadows and write them to ``folder``; what was found, with ``href`` the mask's
    file (None when the scene has its own classification or lacks a band the search needs)."""
    from geoloom.platform.reading import read_overview

    if "scl" in scene.assets or not set(MASK_BANDS) <= set(scene.assets):
        return None
    names = [b for b in dict.fromkeys([*MASK_BANDS, *_BRIGHTNESS, "cirrus"]) if b in scene.assets]
    shape, transform, crs, px = _overview_grid(scene.assets["nir"], side)
    bands = {b: read_overview(scene.assets[b], shape) for b in names}
    centre = scene.footprint.centroid
    mask, info = find_shadows(bands, px, scene.time, centre.x, centre.y)
    safe_id = "".join(c if c.isalnum() or c in "-_." else "_" for c in scene.id)
    path = write_mask(mask, transform, crs, folder / f"{safe_id}-{SHADOW_BAND}.tif")
    return {"href": str(path), **info}


def scene_shadows(scenes: Any, root: Path, folder: str = "masks") -> dict[str, dict[str, Any]]:
    """:func:`scene_shadow` of every scene that classifies itself from its bands, by scene id; the masks
    go to ``root / folder`` and their ``href`` is relative to ``root`` (a run folder that moves keeps them)."""
    out: dict[str, dict[str, Any]] = {}
    for scene in scenes:
        found = scene_shadow(scene, root / folder)
        if found is not None:
            out[scene.id] = found | {"href": Path(found["href"]).relative_to(root).as_posix()}
    return out


def shadowed_scenes(scenes: Any, shadows: dict[str, dict[str, Any]], root: Path) -> tuple[Scene, ...]:
    """The scenes with their shadow masks (``href`` relative to ``root``) as a band (``SHADOW_BAND``),
    scenes without one as they are."""
    import dataclasses

    out = []
    for s in scenes:
        found = shadows.get(s.id)
        if found and found.get("href"):
            mask = AssetRef(href=str(root / found["href"]), band=SHADOW_BAND, nodata=None)
            s = dataclasses.replace(s, assets={**s.assets, SHADOW_BAND: mask})
        out.append(s)
    return tuple(out)
