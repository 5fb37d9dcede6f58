"""A run as PMTiles: its primary layer as PNG web map tiles in the map's colours, and its detections as vector tiles.

The raster archive (PMTiles v3, web mercator) holds every zoom from the one that covers the layer
in at most four tiles up to the layer's native zoom, each tile rendered from the COG as the UI's map
renders it (:func:`geoloom.platform.xyz_tiles.render_tile`), empty tiles left out. Its metadata carry
the name, bounds, centre, zooms and the legend. Where GDAL has its PMTiles driver, the detections go
beside it as a vector archive (``run-detections.pmtiles`` next to ``run.pmtiles``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from geoloom.platform import xyz_tiles, styles
from geoloom.platform.export import PrimaryLayer, primary_layer

__all__ = ["layer_bounds_lonlat", "layer_zooms", "legend", "style_of", "write_pmtiles"]

#: Web mercator's latitude limit.
_MAX_LAT = 85.0511287798
#: Web mercator's width of the world (metres).
_WORLD_M = 40_075_016.685578488


def style_of(layer: PrimaryLayer) -> xyz_tiles.LayerStyle:
    """The map's style of a run's layer (its ramp, or the card's class values)."""
    return xyz_tiles.layer_style(layer.path, kind=layer.kind, classes=layer.class_values)


def legend(layer: PrimaryLayer, style: xyz_tiles.LayerStyle) -> dict[str, Any]:
    """What the colours mean: the ramp's colours from ``vmin`` to ``vmax``, or each class's colour and label."""
    out: dict[str, Any] = {"layer": layer.name, "kind": layer.kind or style.kind, "style": style.kind}
    if style.kind == "ramp":
        out |= {"vmin": style.vmin, "vmax": style.vmax, "colours": list(styles.VIRIDIS),
                "probability": style.probability}
    elif style.kind == "classes":
        labels = dict(layer.classes)
        out["classes"] = [{"value": v, "label": labels.get(v, str(v)), "colour": c}
                          for v, c in styles.class_colours(style.classes)]
    return out


def layer_bounds_lonlat(cog: str | Path) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a COG in degrees, latitudes clipped to web mercator's."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(cog) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds, densify_pts=21)
    return w, max(s, -_MAX_LAT), e, min(n, _MAX_LAT)


def layer_zooms(cog: str | Path) -> tuple[int, int]:
    """(min, max) zoom of a layer's tiles: the finest zoom at which the layer spans at most one tile's width
    and height (so 1 to 4 tiles cover it), and its native zoom."""
    from pyproj import Transformer

    w, s, e, n = layer_bounds_lonlat(cog)
    top = xyz_tiles.native_zoom(cog)
    x0, y0, x1, y1 = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform_bounds(w, s, e, n)
    span = max(x1 - x0, y1 - y0, 1e-9)
    fits = math.floor(math.log2(_WORLD_M / span))  # the zoom whose tiles are at least as wide as the layer
    return max(0, min(top, fits)), top


def write_pmtiles(folder: Path, manifest: dict[str, Any], dst: Path) -> Path:
    """The primary layer (a per-date run's most recent one) as a raster PMTiles archive at ``dst``,
    and the detections as ``<dst stem>-detections.pmtiles`` where GDAL can write them; returns ``dst``."""
    from pmtiles.tile import Compression, TileType
    from pmtiles.writer import Writer

    layer = primary_layer(folder, manifest)
    style = style_of(layer)
    bounds = layer_bounds_lonlat(layer.path)
    low, top = layer_zooms(layer.path)
    w, s, e, n = bounds
    centre = (round((w + e) / 2, 7), round((s + n) / 2, 7), min(low + 1, top))
    title = f"{manifest.get('id', folder.name)} {layer.name}" + (f" {layer.date}" if layer.date else "")
    metadata = {
        "name": title, "description": layer.description or layer.name, "attribution": "geoloom",
        "type": "overlay", "format": "png", "version": "1",
        "bounds": [round(v, 7) for v in bounds], "center": list(centre), "minzoom": low, "maxzoom": top,
        "legend": legend(layer, style),
    }
    header = {
        "tile_type": TileType.PNG, "tile_compression": Compression.NONE,
        "min_zoom": low, "max_zoom": top,
        "min_lon_e7": round(w * 1e7), "min_lat_e7": round(s * 1e7),
        "max_lon_e7": round(e * 1e7), "max_lat_e7": round(n * 1e7),
        "center_zoom": centre[2], "center_lon_e7": round(centre[0] * 1e7), "center_lat_e7": round(centre[1] * 1e7),
    }
    part = dst.with_name(dst.name + ".part")
    try:
        with open(part, "wb") as f:
            writer = Writer(f)
            for tile_id, png in _rendered(layer.path, style, bounds, low, top):
                writer.write_tile(tile_id, png)
            writer.finalize(header, metadata)
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
    _write_detections(folder, dst.with_name(f"{dst.stem}-detections.pmtiles"), low, top)
    return dst


def _tiles(bounds: tuple[float, float, float, float], z: int) -> list[tuple[int, int, int]]:
    """The (z, x, y) web mercator tiles over ``bounds`` at zoom ``z``."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    return [(t.z, t.x, t.y) for t in tms.tiles(*bounds, [z])]


def _rendered(cog: Path, style: xyz_tiles.LayerStyle, bounds: tuple[float, float, float, float],
              low: int, top: int) -> Iterator[tuple[int, bytes]]:
    """(tile id, PNG) of each non-empty tile, in tile id order (a clustered archive); the lowest and highest
    zooms get one transparent tile if they would be empty, so the archive keeps its zoom range."""
    from pmtiles.tile import zxy_to_tileid

    blank = xyz_tiles.tile_png(np.zeros((xyz_tiles.TILE_SIZE, xyz_tiles.TILE_SIZE, 4), dtype="uint8"))

    def render(zxy: tuple[int, int, int]) -> bytes | None:
        rgba = xyz_tiles.render_tile(cog, style, *zxy)
        return None if rgba is None or not rgba[..., 3].any() else xyz_tiles.tile_png(rgba)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="pmtiles") as pool:
        for z in range(low, top + 1):
            zxys = sorted(_tiles(bounds, z), key=lambda t: zxy_to_tileid(*t))
            written = 0
            for zxy, png in zip(zxys, pool.map(render, zxys), strict=True):
                if png is not None:
                    written += 1
                    yield zxy_to_tileid(*zxy), png
            if not written and z in (low, top) and zxys:
                yield zxy_to_tileid(*zxys[0]), blank


def _write_detections(folder: Path, dst: Path, low: int, top: int) -> Path | None:
    """The detections as a vector PMTiles archive, where GDAL has the driver and the run has detections."""
    import geopandas as gpd
    import pyogrio

    source = folder / "detections.parquet"
    if not source.is_file() or "PMTiles" not in pyogrio.list_drivers(write=True):
        return None
    frame = gpd.read_parquet(source)
    if frame.empty:
        return None
    part = dst.with_name(f"{dst.stem}.part.pmtiles")  # GDAL wants a .pmtiles ending
    part.unlink(missing_ok=True)
    try:
        frame.to_crs("EPSG:4326").to_file(part, driver="PMTiles", engine="pyogrio", layer="detections",
                                          MINZOOM=low, MAXZOOM=max(top, low))
        os.replace(part, dst)
    finally:
        part.unlink(missing_ok=True)
    return dst
