"""Web map tiles of a run's layers, rendered from their COGs at any zoom (rio-tiler), in the house colours.

A layer is read at full resolution where the map is zoomed in (nearest neighbour: a 10 m pixel
stays a sharp square), from the COG's overviews where it is zoomed out. Colours are those of the
quicklook, the legend and the QGIS style (:mod:`geoloom.platform.styles`).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from PIL import Image
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader  # at import: a first import from several threads at once can fail

from geoloom.platform import styles

__all__ = ["LayerStyle", "TILE_SIZE", "colour", "layer_style", "native_zoom", "render_tile", "tile_png"]

#: Pixels on a side of a web map tile.
TILE_SIZE = 256
#: The packed true-colour layer (``r << 16 | g << 8 | b``, 0 = no data) of the UI's imagery runs.
RGB_KIND = "truecolour"


@dataclass(frozen=True, slots=True)
class LayerStyle:
    """How a layer is coloured: a ramp between ``vmin`` and ``vmax``, classes, or packed RGB."""

    kind: str  # "ramp" | "classes" | "rgb"
    vmin: float = 0.0
    vmax: float = 1.0
    probability: bool = False  # a ramp whose low values fade out
    classes: tuple[int, ...] = ()
    nodata: float | int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"kind": self.kind, "vmin": self.vmin, "vmax": self.vmax, "probability": self.probability,
                "classes": list(self.classes), "nodata": self.nodata}


def layer_style(cog: str | Path, *, kind: str | None = None, classes: tuple[int, ...] | None = None,
                rgb: bool = False) -> LayerStyle:
    """The style of a COG: packed RGB, classes (integers: the values given, else those in its overview),
    or a ramp over its value range (read from its smallest overview)."""
    with rasterio.open(cog) as src:
        nodata = src.nodata
        level = src.overviews(1)[-1] if src.overviews(1) else 1
        small = src.read(1, out_shape=(max(1, src.height // level), max(1, src.width // level)))
        if rgb or kind == RGB_KIND:
            return LayerStyle("rgb", nodata=0)
        if np.issubdtype(small.dtype, np.integer):
            found = tuple(int(v) for v in np.unique(small) if nodata is None or v != nodata)
            return LayerStyle("classes", classes=tuple(classes) if classes else found, nodata=nodata)
    data = small.astype("float32")
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        data[small == nodata] = np.nan
    vmin, vmax = styles.value_range(kind, data)
    return LayerStyle("ramp", float(vmin), float(vmax), probability=kind == "probability", nodata=nodata)


def native_zoom(cog: str | Path) -> int:
    """The web map zoom whose pixels are as fine as the COG's (at its centre's latitude)."""
    from rasterio.warp import transform_bounds

    with rasterio.open(cog) as src:
        res = abs(src.transform.a)
        if src.crs and src.crs.is_geographic:
            res *= 111_320.0
        _, s, _, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    lat = math.radians((s + n) / 2)
    return max(0, min(24, math.ceil(math.log2(40_075_016.686 * math.cos(lat) / (TILE_SIZE * res)))))


def _ramp_lut(n: int = 256) -> np.ndarray:
    anchors = np.array([styles.hex_rgb(c) for c in styles.VIRIDIS], dtype="float32")
    xs = np.linspace(0, 1, len(styles.VIRIDIS))
    t = np.linspace(0, 1, n)
    return np.stack([np.interp(t, xs, anchors[:, i]) for i in range(3)], axis=-1).astype("uint8")


_LUT = _ramp_lut()


def colour(values: np.ndarray, valid: np.ndarray, style: LayerStyle) -> np.ndarray:
    """RGBA (h, w, 4) uint8 of a layer's values; ``valid`` False is transparent."""
    h, w = values.shape
    rgba = np.zeros((h, w, 4), dtype="uint8")
    if style.kind == "rgb":
        packed = values.astype("uint32")
        ok = valid & (packed > 0)
        for i, shift in enumerate((16, 8, 0)):
            c = ((packed >> shift) & 255).astype("float32")
            rgba[..., i] = (np.clip((c - 1) / 254.0, 0, 1) ** (1 / 1.6) * 255).astype("uint8")
        rgba[..., 3] = np.where(ok, 255, 0)
    elif style.kind == "classes":
        for v, c in styles.class_colours(style.classes):
            mask = valid & (values == v)
            rgba[mask, :3] = styles.hex_rgb(c)
            rgba[mask, 3] = 255
    else:
        data = values.astype("float32")
        ok = valid & np.isfinite(data)
        span = (style.vmax - style.vmin) or 1.0
        idx = np.clip((np.nan_to_num(data, nan=style.vmin) - style.vmin) / span * 255, 0, 255).astype("uint8")
        rgba[..., :3] = _LUT[idx]
        alpha = np.where(ok, 255.0, 0.0)
        if style.probability:  # low probabilities fade out, as on the quicklook
            alpha *= 0.15 + 0.85 * np.clip(np.nan_to_num(data, nan=0.0) / styles.PROBABILITY_OPAQUE, 0, 1)
        rgba[..., 3] = alpha.astype("uint8")
    return rgba


def render_tile(cog: str | Path, style: LayerStyle, z: int, x: int, y: int, *,
                tilesize: int = TILE_SIZE) -> np.ndarray | None:
    """The RGBA pixels of web map tile ``z/x/y`` of a COG, or None where the tile misses the layer."""
    with Reader(str(cog)) as src:
        if not src.tile_exists(x, y, z):
            return None
        fine = z >= native_zoom(cog) - 1 or style.kind != "ramp"
        method = "nearest" if fine else "bilinear"
        try:
            img = src.tile(x, y, z, tilesize=tilesize, resampling_method=method, reproject_method=method)
        except TileOutsideBounds:
            return None
    values = img.data[0]
    valid = ~np.ma.getmaskarray(img.array[0])
    return colour(values, valid, style)


def tile_png(rgba: np.ndarray) -> bytes:
    """An RGBA tile as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()
