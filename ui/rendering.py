"""Result layers as map images: read a run's layer, reproject it to Web Mercator, colour it, PNG it.

Leaflet stretches an image overlay linearly in Web Mercator between its lon/lat bounds, so a
layer warped onto an EPSG:3857 grid lands exactly where it belongs.
"""

from __future__ import annotations

import base64
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from PIL import Image
from pyproj import Transformer
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

from geoloom.workflows import Run, styles, xyz_tiles

#: Longest side of a rendered layer, in pixels (bigger layers are read decimated).
MAX_PX = 1400

#: Name of the packed true-colour layer written by :mod:`geoloom.ui.imagery`.
RGB_LAYER = "truecolour"


@dataclass(frozen=True, slots=True)
class Legend:
    """What a layer's colours mean: a colour ramp with its range, or a list of classes."""

    title: str
    kind: str  # "ramp" | "classes" | "rgb"
    colours: tuple[str, ...] = ()
    vmin: float | None = None
    vmax: float | None = None
    entries: tuple[tuple[str, str], ...] = ()  # (colour, label)

    def html(self) -> str:
        """The legend as a small HTML block: a gradient with its range, or a colour swatch per class."""
        if self.kind == "ramp":
            gradient = ", ".join(self.colours)
            return (
                f"<div style='font-size:12px'><b>{_esc(self.title)}</b>"
                f"<div style='height:12px;width:180px;background:linear-gradient(to right, {gradient});"
                "border:1px solid #888;margin:3px 0'></div>"
                f"<div style='display:flex;justify-content:space-between;width:180px'>"
                f"<span>{self.vmin:.3g}</span><span>{self.vmax:.3g}</span></div></div>"
            )
        rows = "".join(
            f"<div><span style='display:inline-block;width:12px;height:12px;background:{c};"
            f"border:1px solid #666;margin-right:5px;vertical-align:middle'></span>{_esc(label)}</div>"
            for c, label in self.entries
        )
        return f"<div style='font-size:12px'><b>{_esc(self.title)}</b>{rows}</div>"


@dataclass(frozen=True, slots=True)
class LayerImage:
    """A coloured layer ready for a Leaflet image overlay."""

    png: bytes
    bounds_latlon: tuple[tuple[float, float], tuple[float, float]]  # ((south, west), (north, east))
    legend: Legend
    shape_yx: tuple[int, int] = field(default=(0, 0))

    @property
    def data_url(self) -> str:
        """The PNG as a ``data:`` URL."""
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


@dataclass(frozen=True, slots=True)
class TiledLayer:
    """A layer served as XYZ tiles from its COG (full resolution at every zoom), with its legend."""

    cog: Path
    style: xyz_tiles.LayerStyle
    legend: Legend
    bounds_latlon: tuple[tuple[float, float], tuple[float, float]]  # ((south, west), (north, east))
    url: str = ""  # the Leaflet URL template, once the tile server has it


def layer_cog(folder: str | Path, layer: str) -> Path:
    """The COG of a run's layer: ``result.tif`` for the primary (and the true colour), else ``result-<layer>.tif``."""
    folder = Path(folder)
    own = folder / f"result-{layer}.tif"
    return own if own.exists() else folder / "result.tif"


def tiled_layer(folder: str | Path, layer: str) -> TiledLayer:
    """A run's layer for the tile server: its COG, colours (those of the quicklook) and legend."""
    run = Run(Path(folder))
    da = run.dataset[layer]
    attrs = dict(da.attrs)
    cog = layer_cog(folder, layer)
    kind = attrs.get("kind")
    if layer == RGB_LAYER or kind == "truecolour":
        style = xyz_tiles.layer_style(cog, rgb=True)
        legend = Legend("Imagery (true colour)", "rgb")
    else:
        classes = tuple(int(v) for v in attrs.get("flag_values", [])) or None
        style = xyz_tiles.layer_style(cog, kind=kind, classes=classes)
        title = attrs.get("long_name") or layer
        if style.kind == "ramp":
            title = f"{title} (faint where low)" if style.probability else title
            legend = Legend(title, "ramp", styles.VIRIDIS, style.vmin, style.vmax)
        else:
            meanings = str(attrs.get("flag_meanings", "")).split()
            values = list(classes or style.classes)
            labels = {v: (meanings[i].replace("_", " ") if i < len(meanings) else str(v)) for i, v in enumerate(values)}
            legend = Legend(title, "classes", entries=tuple((c, labels.get(v, str(v)))
                                                            for v, c in styles.class_colours(values)))
    g = run.geobox
    w, s, e, n = g.extent.to_crs("EPSG:4326").boundingbox
    return TiledLayer(cog, style, legend, ((float(s), float(w)), (float(n), float(e))))


def layer_names(run: Run) -> list[str]:
    """The run's raster layers, primary first."""
    ds = run.dataset
    primary = ds.attrs.get("primary")
    names = [str(v) for v in ds.data_vars if ds[v].ndim == 2 and v != "spatial_ref"]
    return sorted(names, key=lambda n: (n != primary, n))


def render_layer(folder: str | Path, layer: str) -> LayerImage:
    """Read one layer of the run in ``folder`` and turn it into a coloured Web Mercator PNG."""
    run = Run(Path(folder))
    ds = run.dataset
    da = ds[layer]
    geobox = run.geobox
    src_crs = CRS.from_user_input(geobox.crs.to_wkt())
    transform = geobox.transform
    h, w = da.shape
    step = max(1, math.ceil(max(h, w) / MAX_PX))
    values = np.asarray(da[::step, ::step].values)
    src_transform = transform * Affine.scale(step)
    attrs = dict(da.attrs)
    fill = da.encoding.get("fill_value", da.encoding.get("_FillValue"))
    if layer == RGB_LAYER or attrs.get("kind") == "truecolour":
        rgba = _warp_rgb(values.astype("uint32"), src_transform, src_crs)
        legend = Legend("Imagery (true colour)", "rgb")
        image, bounds = rgba
    elif np.issubdtype(values.dtype, np.floating):
        data, bounds = _warp(values.astype("float32"), src_transform, src_crs, np.nan, Resampling.bilinear)
        image, legend = _colour_ramp(data, attrs, layer)
    else:
        nodata = int(fill) if fill is not None and not (isinstance(fill, float) and math.isnan(fill)) else 255
        data, bounds = _warp(values, src_transform, src_crs, nodata, Resampling.nearest)
        image, legend = _colour_classes(data, nodata, attrs, layer)
    return LayerImage(_png(image), bounds, legend, tuple(image.shape[:2]))


def _warp(values: np.ndarray, src_transform: Affine, src_crs: CRS, nodata: Any, resampling: Resampling):
    h, w = values.shape
    left, top = src_transform * (0, 0)
    right, bottom = src_transform * (w, h)
    dst_transform, dw, dh = calculate_default_transform(src_crs, "EPSG:3857", w, h, left, bottom, right, top)
    out = np.full((dh, dw), nodata, dtype=values.dtype)
    reproject(values, out, src_transform=src_transform, src_crs=src_crs, dst_transform=dst_transform,
              dst_crs="EPSG:3857", src_nodata=nodata, dst_nodata=nodata, resampling=resampling)
    return out, _bounds_latlon(dst_transform, dw, dh)


def _warp_rgb(packed: np.ndarray, src_transform: Affine, src_crs: CRS):
    """Unpack ``r<<16 | g<<8 | b`` (0 = no data), warp each channel, return RGBA."""
    valid = packed > 0
    chans = [((packed >> s) & 255).astype("float32") for s in (16, 8, 0)]
    out = []
    bounds = None
    for c in chans:
        c[~valid] = np.nan
        warped, bounds = _warp(c, src_transform, src_crs, np.nan, Resampling.bilinear)
        out.append(warped)
    stack = np.stack(out, axis=-1)
    alpha = np.where(np.isfinite(stack).all(axis=-1), 255, 0).astype("uint8")
    rgb = np.nan_to_num(stack, nan=0.0)
    # packed values are reflectance 0..0.4 in 1..255; brighten with a gamma so dark water still shows
    rgb = (np.clip((rgb - 1) / 254.0, 0, 1) ** (1 / 1.6) * 255).astype("uint8")
    return np.dstack([rgb, alpha]), bounds


def _bounds_latlon(transform: Affine, w: int, h: int):
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    left, top = transform * (0, 0)
    right, bottom = transform * (w, h)
    west, south = to_lonlat.transform(left, bottom)
    east, north = to_lonlat.transform(right, top)
    return ((float(south), float(west)), (float(north), float(east)))


def _ramp_lut(colours: tuple[str, ...], n: int = 256) -> np.ndarray:
    anchors = np.array([styles.hex_rgb(c) for c in colours], dtype="float32")
    xs = np.linspace(0, 1, len(colours))
    t = np.linspace(0, 1, n)
    return np.stack([np.interp(t, xs, anchors[:, i]) for i in range(3)], axis=-1).astype("uint8")


def value_range(data: np.ndarray, attrs: dict[str, Any]) -> tuple[float, float]:
    """Colour range of a float layer: the quicklook's and the QGIS style's (0-1 for probabilities)."""
    return styles.value_range(attrs.get("kind"), data)


def _colour_ramp(data: np.ndarray, attrs: dict[str, Any], layer: str):
    vmin, vmax = value_range(data, attrs)
    lut = _ramp_lut(styles.VIRIDIS)
    valid = np.isfinite(data)
    idx = np.clip((np.nan_to_num(data, nan=vmin) - vmin) / (vmax - vmin) * 255, 0, 255).astype("uint8")
    rgb = lut[idx]
    alpha = np.where(valid, 255, 0).astype("uint8")
    title = attrs.get("long_name") or layer
    if attrs.get("kind") == "probability":
        # low probabilities fade out, so what the model found stands out on the imagery
        fade = np.clip(np.nan_to_num(data, nan=0.0) / styles.PROBABILITY_OPAQUE, 0, 1)
        alpha = (alpha * (0.15 + 0.85 * fade)).astype("uint8")
        title = f"{title} (faint where low)"
    return np.dstack([rgb, alpha]), Legend(title, "ramp", styles.VIRIDIS, vmin, vmax)


def _colour_classes(data: np.ndarray, nodata: int, attrs: dict[str, Any], layer: str):
    values = [int(v) for v in attrs.get("flag_values", [])] or sorted(int(v) for v in np.unique(data) if v != nodata)
    meanings = str(attrs.get("flag_meanings", "")).split()
    labels = {v: (meanings[i].replace("_", " ") if i < len(meanings) else str(v)) for i, v in enumerate(values)}
    rgba = np.zeros(data.shape + (4,), dtype="uint8")
    entries = []
    for v, colour in styles.class_colours(values):
        mask = data == v
        rgba[mask, :3] = styles.hex_rgb(colour)
        rgba[mask, 3] = 255
        entries.append((colour, labels.get(v, str(v))))
    title = attrs.get("long_name") or layer
    return rgba, Legend(title, "classes", entries=tuple(entries))


def _png(rgba: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgba, mode="RGBA").save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _esc(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
