"""The five ways the UI gets a region: drawn on the map, preset, place, bbox text, a file upload.

Each helper turns what the page received into a validated :class:`Region` or raises a
``GeoloomError`` whose one-line message the page shows in place.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path, PurePath
from typing import Any

import shapely.geometry

from geoloom.workflows import DEFAULT_MAX_AREA_KM2, Region, RegionError, as_region, list_places, region_hints

#: Largest region file accepted, in bytes.
MAX_UPLOAD_BYTES = 2 * 1024 * 1024

#: File endings the upload takes: GeoJSON, GeoPackage, zipped Shapefile, KML/KMZ, FlatGeobuf, GeoParquet.
UPLOAD_TYPES = ("geojson", "json", "gpkg", "zip", "kml", "kmz", "fgb", "parquet", "geoparquet")

#: What the upload takes, in words.
UPLOAD_FORMATS = "GeoJSON, GeoPackage, zipped Shapefile, KML, FlatGeobuf or GeoParquet"


def checked(region: Region, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> Region:
    """The region if it is within the size limit (RegionError otherwise)."""
    with region_hints("ui"):
        return as_region(region, max_area_km2=max_area_km2)


def from_drawing(feature: dict[str, Any] | None, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> Region:
    """A region from the GeoJSON Feature that Leaflet.draw returns (rectangle or polygon)."""
    geometry = (feature or {}).get("geometry") if isinstance(feature, dict) else None
    if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
        kind = geometry.get("type") if isinstance(geometry, dict) else "nothing"
        raise RegionError(f"the drawn shape is a {kind}, not an area; draw a rectangle or a polygon on the map")
    try:
        geom = shapely.geometry.shape(geometry)
    except Exception:
        raise RegionError("the drawn shape could not be read; draw it again as a rectangle or a polygon") from None
    with region_hints("ui"):
        return checked(Region.from_geometry(geom, name="drawn area", source="drawn"), max_area_km2=max_area_km2)


def from_preset(name: str, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> Region:
    """A preset region, size-checked."""
    with region_hints("ui"):
        return checked(Region.from_preset(name), max_area_km2=max_area_km2)


def search_places(query: str, *, limit: int = 20) -> list[dict[str, Any]]:
    """Gazetteer places (and presets) whose name, kind or country contains every word of ``query``."""
    words = [w for w in re.split(r"[\s,]+", query.lower()) if w]
    if not words:
        return []
    hits = []
    for place in list_places():
        text = f"{place['name']} {place.get('kind', '')} {place.get('country', '')}".lower()
        if all(w in text for w in words):
            hits.append(place)
    return hits[:limit]


def place_label(place: dict[str, Any]) -> str:
    """A place's name with its kind and country, for the list of matches."""
    extra = ", ".join(v for v in (place.get("kind"), place.get("country")) if v)
    return f"{place['name']} ({extra})" if extra else place["name"]


def from_place(name: str, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> Region:
    """A gazetteer place (or preset) by name, size-checked."""
    with region_hints("ui"):
        return checked(Region.from_place(name), max_area_km2=max_area_km2)


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """``"W S E N"`` (spaces or commas) as four floats."""
    parts = [p for p in re.split(r"[\s,;]+", (text or "").strip()) if p]
    if len(parts) != 4:
        raise RegionError(
            f"a bounding box needs four numbers, west south east north (got {len(parts)}); e.g. -0.06 5.57 -0.02 5.61"
        )
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise RegionError(f"{bad!r} is not a number; give the box as four numbers W S E N in degrees") from None
    return values  # type: ignore[return-value]


def from_bbox_text(text: str, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> Region:
    """A region from typed ``"W S E N"`` text, size-checked."""
    with region_hints("ui"):
        return checked(Region.from_bbox(parse_bbox(text), name="bbox"), max_area_km2=max_area_km2)


def from_upload(filename: str, data: bytes, *, max_area_km2: float = DEFAULT_MAX_AREA_KM2) -> Region:
    """A region from an uploaded file (size-limited): GeoJSON read as text, other formats through a temporary file."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise RegionError(
            f"{filename} is {len(data) / 1e6:.1f} MB, more than the {MAX_UPLOAD_BYTES / 1e6:.0f} MB limit for a region; "
            "simplify the shapes or upload only the outline"
        )
    suffix = PurePath(filename).suffix.lower().lstrip(".")
    if suffix not in ("geojson", "json"):
        return _from_vector_upload(filename, data, max_area_km2=max_area_km2)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise RegionError(f"{filename} is not a UTF-8 text file; upload a GeoJSON (.geojson or .json) file") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegionError(
            f"{filename} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix it or export it again as GeoJSON"
        ) from None
    if not isinstance(obj, dict):
        raise RegionError(
            f"{filename} holds a JSON {type(obj).__name__}, not a GeoJSON object; upload a Polygon, Feature or FeatureCollection"
        )
    with region_hints("ui"):
        region = Region.from_geojson(obj)
    if region.name in ("geojson", None):
        region = dataclasses.replace(region, name=PurePath(filename).stem or "upload")
    return checked(region, max_area_km2=max_area_km2)


def _from_vector_upload(filename: str, data: bytes, *, max_area_km2: float) -> Region:
    """A GeoPackage, zipped Shapefile, KML, FlatGeobuf or GeoParquet upload, read by the same normaliser."""
    name = PurePath(filename).name
    if PurePath(name).suffix.lower().lstrip(".") not in UPLOAD_TYPES:
        raise RegionError(f"{name} is not a file the region upload reads; upload a {UPLOAD_FORMATS} file")
    with tempfile.TemporaryDirectory(prefix="geoloom-upload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        with region_hints("ui"):
            return as_region(path, max_area_km2=max_area_km2)


def describe(region: Region) -> str:
    """One line about a region: name, where it came from, area and bbox."""
    w, s, e, n = region.bbox_lonlat
    return f"{region.name} ({region.source}): {region.area_km2:,.1f} km², bbox {w:.4f} {s:.4f} {e:.4f} {n:.4f}"


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
