"""Regions from what users hold: vector files, GeoDataFrames, rasters' footprints, geometries in any CRS.

Each reader returns a shapely geometry with its CRS; :mod:`geoloom.platform.region` takes it to
EPSG:4326 with :func:`to_lonlat` and normalises it. geopandas, pyogrio, xarray and odc-geo are
imported only when a value needs them, so ``import geoloom.platform.region`` stays quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry

from geoloom.platform.errors import RegionError
from geoloom.platform.region_hints import hint

__all__ = [
    "GEOPARQUET_SUFFIXES",
    "VECTOR_SUFFIXES",
    "file_stem",
    "frame_geometry",
    "is_frame",
    "is_lonlat",
    "is_raster",
    "raster_footprint",
    "read_vector_file",
    "split_layer",
    "to_lonlat",
]

#: File endings read as a vector file (anything else that exists is tried too).
VECTOR_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip", ".shp", ".kml", ".kmz", ".fgb", ".parquet", ".geoparquet",
                   ".gml", ".gpx", ".sqlite", ".gdb")
#: File endings read with ``geopandas.read_parquet`` (GDAL may lack the Parquet driver).
GEOPARQUET_SUFFIXES = (".parquet", ".geoparquet")
_FORMATS = "a GeoJSON, GeoPackage, zipped Shapefile, KML, FlatGeobuf or GeoParquet file"
_LONLAT = CRS.from_epsg(4326)
_DENSIFY = 64  # points along the longest side, so that edges bend as they should in lon/lat
_KEEP_DEG = 1e-9  # a densified point this close to a straight edge (0.1 mm) is dropped again


# -- files ----------------------------------------------------------------------------------------


def split_layer(text: str | Path) -> tuple[Path, str | None]:
    """``"area.gpkg:bay"`` -> (``area.gpkg``, ``"bay"``); a path that exists as given has no layer."""
    path = Path(text).expanduser()
    if isinstance(text, Path) or path.exists():
        return path, None
    head, sep, layer = str(text).rpartition(":")
    head_path = Path(head).expanduser()
    if sep and head and layer and not any(c in layer for c in "/\\") and (
        head_path.exists() or head_path.suffix.lower() in VECTOR_SUFFIXES
    ):
        return head_path, layer
    return path, None


def file_stem(path: Path) -> str:
    """The name of a file without its endings: ``area.shp.zip`` -> ``area``."""
    name = path.name
    for suffix in (".zip", *VECTOR_SUFFIXES):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
    return name


def read_vector_file(path: Path, layer: str | None = None) -> tuple[BaseGeometry, CRS | None, str]:
    """The polygons of one layer of a vector file, dissolved into one geometry, with the layer's CRS and name."""
    if not path.exists():
        raise RegionError(f"vector file {str(path)!r} does not exist; check the path")
    import geopandas as gpd

    if path.suffix.lower() in GEOPARQUET_SUFFIXES:
        if layer:
            raise RegionError(f"{path.name} is GeoParquet, which has one layer; drop ':{layer}' from the path")
        reader, name = (lambda: gpd.read_parquet(path)), file_stem(path)
    else:
        layer = layer or _only_layer(path)
        reader, name = (lambda: gpd.read_file(path, layer=layer, engine="pyogrio")), layer or file_stem(path)
    try:
        frame = reader()
    except RegionError:
        raise
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        if layer and ("layer" in reason.lower() or "not found" in reason.lower()):
            known = ", ".join(_layers(path)) or "none"
            raise RegionError(f"{path.name} has no layer {layer!r}; its layers are: {known}") from None
        raise RegionError(f"cannot read {path.name} as a vector file ({reason}); give {_FORMATS}") from None
    geom, crs = frame_geometry(frame, what=f"file {path.name}" + (f" (layer {layer})" if layer else ""))
    return geom, crs, name


def _layers(path: Path) -> list[str]:
    import pyogrio

    try:
        return [str(row[0]) for row in pyogrio.list_layers(path)]
    except Exception as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise RegionError(f"cannot read {path.name} as a vector file ({reason}); give {_FORMATS}") from None


def _only_layer(path: Path) -> str | None:
    """The file's one layer (None lets the driver pick); RegionError naming them when there are several."""
    layers = _layers(path)
    if len(layers) > 1:
        listed = ", ".join(layers[:8]) + (", ..." if len(layers) > 8 else "")
        raise RegionError(f"{path.name} has {len(layers)} layers ({listed}); "
                          f"{hint('layer', path=str(path), layer=layers[0])}")
    return None


# -- GeoDataFrames and GeoSeries ---------------------------------------------------------------------


def is_frame(value: Any) -> bool:
    """True for a geopandas GeoDataFrame or GeoSeries (without importing geopandas)."""
    gpd = sys.modules.get("geopandas")
    return gpd is not None and isinstance(value, gpd.GeoDataFrame | gpd.GeoSeries)


def frame_geometry(frame: Any, *, what: str = "GeoDataFrame") -> tuple[BaseGeometry, CRS | None]:
    """Every polygon of a GeoDataFrame or GeoSeries dissolved into one geometry, in the frame's CRS."""
    geoms = [g for g in frame.geometry if g is not None and not g.is_empty]
    if not geoms:
        raise RegionError(f"the {what} has no geometries; a region needs at least one polygon")
    polys = [p for g in geoms for p in _polygons(g)]
    if not polys:
        kinds = ", ".join(sorted({g.geom_type for g in geoms}))
        raise RegionError(f"the {what} has no Polygon or MultiPolygon (found {kinds}); a region needs a polygon: "
                          "buffer points or lines into polygons first")
    crs = CRS.from_user_input(frame.crs) if frame.crs is not None else None
    return shapely.union_all(polys), crs


def _polygons(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [geom]
    if isinstance(geom, MultiPolygon) or geom.geom_type == "GeometryCollection":
        return [p for g in geom.geoms for p in _polygons(g)]
    return []


# -- rasters: odc-geo GeoBox, xarray with rioxarray or odc-geo ----------------------------------------


def is_raster(value: Any) -> bool:
    """True for an odc-geo GeoBox or an xarray DataArray/Dataset."""
    module = type(value).__module__
    return (module.startswith("odc.geo") and hasattr(value, "extent")) or module.startswith("xarray")


def raster_footprint(value: Any) -> tuple[BaseGeometry, CRS]:
    """The footprint of a GeoBox or of a georeferenced xarray object (``.odc.geobox`` or ``.rio``), with its CRS."""
    what = type(value).__name__
    if type(value).__module__.startswith("odc.geo"):
        return _geobox_footprint(value, what)
    geobox = None
    if hasattr(value, "odc"):
        try:
            geobox = value.odc.geobox
        except Exception:
            geobox = None
    if geobox is not None and getattr(geobox, "crs", None) is not None:
        return _geobox_footprint(geobox, what)
    rio_crs = None
    if hasattr(value, "rio"):
        try:
            rio_crs = value.rio.crs
        except Exception:
            rio_crs = None
    if rio_crs is None:
        raise RegionError(
            f"the xarray {what} has no CRS; give it one (import rioxarray; da.rio.write_crs('EPSG:32630')) "
            "or load it with odc-geo, or give region= as (W, S, E, N)"
        )
    return box(*value.rio.bounds()), as_crs(rio_crs)


def _geobox_footprint(geobox: Any, what: str) -> tuple[BaseGeometry, CRS]:
    if getattr(geobox, "crs", None) is None:
        raise RegionError(f"the {what} has no CRS; give it one, or give region= as (W, S, E, N)")
    return geobox.extent.geom, as_crs(geobox.crs)


# -- CRS -----------------------------------------------------------------------------------------------


def as_crs(value: Any) -> CRS:
    """A pyproj CRS from an EPSG code, a string, or another library's CRS (odc-geo, rasterio, pyproj)."""
    try:
        if isinstance(value, CRS):
            return value
        if hasattr(value, "to_wkt") and not isinstance(value, str | int):
            return CRS.from_wkt(value.to_wkt())
        return CRS.from_user_input(value)
    except Exception:
        raise RegionError(f"crs {value!r} is not a coordinate reference system; give e.g. 'EPSG:32630' or 4326") from None


def is_lonlat(crs: Any) -> bool:
    """True when ``crs`` is None or EPSG:4326 / OGC:CRS84 longitude-latitude degrees."""
    return crs is None or as_crs(crs).equals(_LONLAT, ignore_axis_order=True)


def to_lonlat(geom: BaseGeometry, crs: Any) -> BaseGeometry:
    """``geom`` from ``crs`` to lon/lat degrees, its edges densified so that they bend as they should."""
    if is_lonlat(crs):
        return geom
    src = as_crs(crs)
    minx, miny, maxx, maxy = geom.bounds
    step = max(maxx - minx, maxy - miny) / _DENSIFY
    dense = shapely.segmentize(geom, step) if step > 0 else geom
    transformer = Transformer.from_crs(src, _LONLAT, always_xy=True)

    def project(xy: np.ndarray) -> np.ndarray:
        lon, lat = transformer.transform(xy[:, 0], xy[:, 1])
        return np.column_stack([lon, lat])

    out = shapely.transform(dense, project)
    if not np.isfinite(shapely.get_coordinates(out)).all():
        raise RegionError(f"the region cannot be taken from {src.name} to EPSG:4326 (some corners lie outside "
                          f"where that CRS is defined); {hint('crs')}")
    return shapely.simplify(out, _KEEP_DEG, preserve_topology=True)  # drop the points of edges that stayed straight
