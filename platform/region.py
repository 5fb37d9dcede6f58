"""Regions: where a run looks, normalised once to valid EPSG:4326 (multi)polygons.

Every front door (CLI ``--bbox/--geojson/--region/--preset/--place``, the Python API, the map
and the file upload in the UI) goes through :func:`as_region`; everything downstream takes a
:class:`Region`. Values in another CRS (GeoDataFrames, vector files, rasters' footprints, geometries
with ``crs=``) are read by :mod:`geoloom.platform.region_sources` and reprojected here.

>>> r = Region.from_bbox((170, -10, -170, 10))
>>> r.crosses_antimeridian(), r.geometry.geom_type, r.bbox_lonlat
(True, 'MultiPolygon', (170.0, -10.0, -170.0, 10.0))
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
import sys
import unicodedata
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Geod
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient
from shapely.validation import explain_validity

from geoloom.platform import region_sources as sources
from geoloom.platform.errors import RegionError
from geoloom.platform.region_hints import hint, region_hints

__all__ = [
    "DEFAULT_MAX_AREA_KM2",
    "Region",
    "as_region",
    "gazetteer_path",
    "list_places",
    "list_presets",
    "presets_dir",
    "region_hints",
]

DEFAULT_MAX_AREA_KM2: float = 50_000
"""Largest region :func:`as_region` accepts unless told otherwise (``--max-area``)."""

_GEOD = Geod(ellps="WGS84")
_LONLAT_RULE = "coordinates must be EPSG:4326 longitude/latitude degrees (RFC 7946)"
_POLYGON_TYPES = ("Polygon", "MultiPolygon")


def _shipped_data() -> Path:
    """The folder of the ``geoloom.sample_data`` package data, wherever geoloom is installed."""
    return Path(str(resources.files("geoloom.sample_data")))


def presets_dir() -> Path:
    """Folder of the preset regions (``<name>.geojson``)."""
    return _shipped_data() / "presets"


def gazetteer_path() -> Path:
    """The small offline gazetteer of coastal places (a JSON list)."""
    return _shipped_data() / "gazetteer.json"


@dataclass(frozen=True, slots=True)
class Region:
    """An area of interest: a valid, oriented EPSG:4326 (multi)polygon, split at the antimeridian."""

    geometry: Polygon | MultiPolygon
    name: str = "region"
    source: str = "bbox"  # "bbox" | "geojson" | "file" | "frame" | "raster" | "preset" | "place" | "geometry" | "drawn"

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, Polygon | MultiPolygon):
            raise RegionError(
                f"a Region needs a Polygon or MultiPolygon, got {type(self.geometry).__name__}; "
                "build it with Region.from_bbox/from_geojson or as_region()"
            )

    # -- constructors -------------------------------------------------------------------

    @classmethod
    def from_bbox(cls, bbox_lonlat: Sequence[float], *, name: str = "bbox", crs: Any = None) -> Region:
        """A box from ``(W, S, E, N)`` degrees (``W > E`` crosses the antimeridian), or from ``crs`` coordinates."""
        if not sources.is_lonlat(crs):
            x0, y0, x1, y1 = _check_numbers(bbox_lonlat)
            if x0 >= x1 or y0 >= y1:
                raise RegionError(f"bbox ({x0:g}, {y0:g}, {x1:g}, {y1:g}) needs min x < max x and min y < max y in {crs}")
            return cls(_normalise(box(x0, y0, x1, y1), what="bbox", crs=crs), name=name, source="bbox")
        w, s, e, n = _check_bbox(bbox_lonlat)
        if w < e:
            geom: Polygon | MultiPolygon = orient(box(w, s, e, n), sign=1.0)
        else:
            geom = _as_polygonal(MultiPolygon([box(w, s, 180.0, n), box(-180.0, s, e, n)]))
        return cls(geom, name=name, source="bbox")

    @classmethod
    def from_geojson(cls, obj: dict | str | Path, *, name: str | None = None, crs: Any = None) -> Region:
        """A region from GeoJSON: a dict, JSON text, a file path, or ``"-"`` for stdin (``crs``: if not lon/lat)."""
        data, default_name = _load_geojson(obj)
        geom = _polygons_from_geojson(data, crs=crs)
        return cls(geom, name=name or _geojson_name(data) or default_name, source="geojson")

    @classmethod
    def from_geometry(
        cls, geom: Any, *, crs: Any = None, name: str = "geometry", source: str = "geometry"
    ) -> Region:
        """A region from a shapely (multi)polygon (or a ``__geo_interface__``) in lon/lat, or in ``crs``."""
        if not isinstance(geom, BaseGeometry) and isinstance(getattr(geom, "__geo_interface__", None), dict):
            geom = _shape(geom.__geo_interface__, what="geometry")
        if not isinstance(geom, BaseGeometry):
            raise RegionError(f"expected a shapely geometry, got {type(geom).__name__}; give region= as a shapely "
                              "Polygon or MultiPolygon (crs= if it is not in lon/lat)")
        return cls(_normalise(geom, what="geometry", crs=crs), name=name, source=source)

    @classmethod
    def from_file(cls, path: str | Path, *, layer: str | None = None, name: str | None = None) -> Region:
        """Every polygon of a vector file (``"area.gpkg:layer"``, ``.shp.zip``, KML, FlatGeobuf, GeoParquet, ...), dissolved."""
        path, named = sources.split_layer(path) if layer is None else (Path(path).expanduser(), layer)
        if path.suffix.lower() in (".geojson", ".json") and not named:
            return cls.from_geojson(path, name=name)
        geom, crs, default = sources.read_vector_file(path, named)
        return cls(_normalise(geom, what=f"file {path.name}", crs=crs), name=name or default, source="file")

    @classmethod
    def from_frame(cls, frame: Any, *, crs: Any = None, name: str = "frame") -> Region:
        """All rows of a GeoDataFrame or GeoSeries in any CRS, dissolved into one region (``crs`` if it has none)."""
        geom, own = sources.frame_geometry(frame, what=type(frame).__name__)
        if own is not None and crs is not None and not own.equals(sources.as_crs(crs), ignore_axis_order=True):
            raise RegionError(f"the {type(frame).__name__} is in {own.name} but crs= says {crs}; drop crs= "
                              "or fix the frame's CRS with .set_crs(..., allow_override=True)")
        return cls(_normalise(geom, what=type(frame).__name__, crs=own or crs), name=name, source="frame")

    @classmethod
    def from_footprint(cls, raster: Any, *, name: str = "raster") -> Region:
        """The footprint of an odc-geo GeoBox or a georeferenced xarray object (``.odc.geobox`` or ``.rio``)."""
        geom, crs = sources.raster_footprint(raster)
        return cls(_normalise(geom, what=f"footprint of the {type(raster).__name__}", crs=crs), name=name, source="raster")

    @classmethod
    def from_preset(cls, name: str) -> Region:
        """A named preset region from :func:`presets_dir`."""
        path = _preset_path(name)
        if path is None:
            available = ", ".join(list_presets()) or "none installed"
            raise RegionError(
                f"unknown preset {name!r}; use one of: {available} (or {hint('instead')})"
            )
        region = cls.from_geojson(path)
        return dataclasses.replace(region, name=path.stem, source="preset")

    @classmethod
    def from_place(cls, name: str) -> Region:
        """A place from the offline gazetteer or a preset name, matched case-insensitively."""
        key = _key(name)
        for entry in _gazetteer():
            full = entry["name"]
            short = re.split(r"[,(]", full)[0]
            if key in {_key(full), _key(short), _key(f"{full}, {entry.get('country', '')}")}:
                region = cls.from_bbox(entry["bbox"], name=entry["name"])
                return dataclasses.replace(region, source="place")
        if _preset_path(name) is not None:
            return cls.from_preset(name)
        names = [e["name"] for e in _gazetteer()] + list_presets()
        by_key = {_key(n): n for n in names}
        close = [by_key[k] for k in difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6)]
        maybe = f"did you mean: {', '.join(close)}? " if close else ""
        raise RegionError(
            f"unknown place {name!r}; {maybe}'geoloom regions' lists the {len(names)} known places and presets, "
            f"or {hint('instead')}"
        )

    # -- views --------------------------------------------------------------------------

    @property
    def bbox_lonlat(self) -> tuple[float, float, float, float]:
        """``(W, S, E, N)``; ``W > E`` when the region crosses the antimeridian (RFC 7946 5.2)."""
        if self.crosses_antimeridian():
            w, s, e, n = _shift_east(self.geometry).bounds
            return (w, s, e - 360.0 if e > 180.0 else e, n)
        return tuple(float(v) for v in self.geometry.bounds)  # type: ignore[return-value]

    @property
    def area_km2(self) -> float:
        """Geodesic area on the WGS84 ellipsoid, in km²."""
        area, _ = _GEOD.geometry_area_perimeter(self.geometry)
        return abs(area) / 1e6

    @property
    def centroid_lonlat(self) -> tuple[float, float]:
        """Planar centroid in lon/lat, taken across the antimeridian when the region crosses it."""
        geom = _shift_east(self.geometry) if self.crosses_antimeridian() else self.geometry
        c = geom.centroid
        lon = c.x - 360.0 if c.x > 180.0 else c.x
        return (float(lon) + 0.0, float(c.y) + 0.0)

    def crosses_antimeridian(self) -> bool:
        """True when the region has parts on both sides of the 180° meridian."""
        if not isinstance(self.geometry, MultiPolygon):
            return False
        parts = list(self.geometry.geoms)
        return any(p.bounds[2] >= 180.0 for p in parts) and any(p.bounds[0] <= -180.0 for p in parts)

    def to_geojson(self) -> dict[str, Any]:
        """A GeoJSON Feature with ``name``, ``source`` and ``area_km2`` properties."""
        return {
            "type": "Feature",
            "bbox": list(self.bbox_lonlat),
            "geometry": json.loads(shapely.to_geojson(self.geometry)),
            "properties": {"name": self.name, "source": self.source, "area_km2": round(self.area_km2, 3)},
        }

    def to_dict(self) -> dict[str, Any]:
        """The region as written into run files (a GeoJSON Feature); :meth:`from_dict` reads it back."""
        return self.to_geojson()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Region:
        """The region :meth:`to_dict` wrote: same geometry, name and source."""
        props = data.get("properties") or {}
        geom = shape(data["geometry"])
        if not isinstance(geom, Polygon | MultiPolygon):
            raise RegionError(f"a stored region must be a Polygon or MultiPolygon, not {geom.geom_type}")
        return cls(geom, name=str(props.get("name", "region")), source=str(props.get("source", "geojson")))


# -- the normaliser -----------------------------------------------------------------------


def as_region(value: Any, *, crs: Any = None, max_area_km2: float | None = DEFAULT_MAX_AREA_KM2) -> Region:
    """The one normaliser: every region form a user holds (see :func:`_to_region`) -> a size-checked Region.

    ``crs``: the CRS of a shapely geometry, a bbox, a GeoJSON dict or a ``__geo_interface__`` given
    in other coordinates than lon/lat degrees (frames, files and rasters carry their own).
    """
    region = _to_region(value, crs)
    if max_area_km2 is not None and region.area_km2 > max_area_km2:
        raise RegionError(
            f"region {region.name!r} covers {region.area_km2:,.0f} km², more than the limit of "
            f"{max_area_km2:,.0f} km²; split it into smaller regions or {hint('max_area')}"
        )
    return region


def _to_region(value: Any, crs: Any = None) -> Region:
    """Region | GeoDataFrame/GeoSeries | GeoBox/xarray | shapely | GeoJSON | path | text | __geo_interface__ | bbox."""
    if isinstance(value, Region):
        return value
    if sources.is_frame(value):
        return Region.from_frame(value, crs=crs)
    if sources.is_raster(value):
        return Region.from_footprint(value)
    if isinstance(value, BaseGeometry):
        return Region.from_geometry(value, crs=crs)
    if isinstance(value, dict):
        return Region.from_geojson(value, crs=crs)
    if isinstance(value, Path):
        return Region.from_file(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "-" or text.startswith("{"):
            return Region.from_geojson(text, crs=crs)
        if re.fullmatch(r"[-+0-9.eE]+([\s,]+[-+0-9.eE]+){3}", text):
            return Region.from_bbox(re.split(r"[\s,]+", text), crs=crs)
        path, _ = sources.split_layer(text)
        if path.suffix.lower() in sources.VECTOR_SUFFIXES or path.is_file():
            return Region.from_file(text)
        if _preset_path(text) is not None:
            return Region.from_preset(text)
        return Region.from_place(text)
    geo = getattr(value, "__geo_interface__", None)
    if isinstance(geo, dict):
        crs = crs if crs is not None else getattr(value, "crs", None)
        if geo.get("type") in ("Feature", "FeatureCollection"):
            return Region.from_geojson(geo, crs=crs)
        return Region.from_geometry(value, crs=crs)
    if isinstance(value, Sequence) or hasattr(value, "__array__"):
        return Region.from_bbox(list(value), crs=crs)
    raise RegionError(
        f"cannot use a {type(value).__name__} as a region; give region= as (W, S, E, N), a GeoJSON dict, "
        "a vector file path ('area.gpkg:layer'), a shapely geometry (with crs= if not lon/lat), a GeoDataFrame "
        "or GeoSeries, an object with __geo_interface__, an odc-geo GeoBox or a georeferenced xarray object, "
        "a preset or a place name"
    )


# -- listing ------------------------------------------------------------------------------


def list_presets() -> list[str]:
    """Names of the installed preset regions, sorted."""
    folder = presets_dir()
    return sorted(p.stem for p in folder.glob("*.geojson")) if folder.is_dir() else []


def list_places() -> list[dict[str, Any]]:
    """Gazetteer places and presets as ``{"name", "kind", "country", "bbox"}`` dicts."""
    places = [
        {"name": e["name"], "kind": e["kind"], "country": e.get("country", ""), "bbox": list(e["bbox"])}
        for e in _gazetteer()
    ]
    for preset in list_presets():
        bbox = Region.from_preset(preset).bbox_lonlat
        places.append({"name": preset, "kind": "preset", "country": "", "bbox": list(bbox)})
    return places


def _gazetteer() -> list[dict[str, Any]]:
    path = gazetteer_path()
    if not path.is_file():
        return []
    return json.loads(path.read_text(encoding="utf-8"))


def _preset_path(name: str) -> Path | None:
    folder = presets_dir()
    if not folder.is_dir() or not name or any(c in name for c in "/\\"):
        return None
    key = _key(name)
    for path in folder.glob("*.geojson"):
        if _key(path.stem) == key:
            return path
    return None


def _key(name: str) -> str:
    """Case-, accent- and spacing-insensitive form of a name."""
    text = unicodedata.normalize("NFKD", str(name).casefold())
    return " ".join("".join(c for c in text if not unicodedata.combining(c)).split())


# -- validation ---------------------------------------------------------------------------


def _check_bbox(values: Sequence[float]) -> tuple[float, float, float, float]:
    w, s, e, n = _check_numbers(values)
    for label, v, lim in (("west", w, 180), ("east", e, 180), ("south", s, 90), ("north", n, 90)):
        if abs(v) > lim:
            looks = f" (it looks like projected metres: {hint('crs')})" if abs(v) > 360 else ""
            raise RegionError(f"bbox {label} ({v}) must be within -{lim}..{lim}{looks}; {hint('bbox')}")
    if s >= n:
        raise RegionError(f"bbox south ({s}) must be less than north ({n}); {hint('bbox')} (west, south, east, north)")
    if w == e:
        raise RegionError(f"bbox has zero width (west == east == {w}); give a west and an east that differ")
    return w, s, e, n


def _check_numbers(values: Sequence[float]) -> tuple[float, float, float, float]:
    """Four finite numbers (W S E N, or min x, min y, max x, max y)."""
    try:
        vals = list(values)
    except TypeError:
        raise RegionError(f"bbox must be 4 numbers W S E N, got {values!r}; {hint('bbox')}") from None
    if len(vals) != 4:
        raise RegionError(f"bbox needs 4 numbers W S E N, got {len(vals)}; {hint('bbox')}")
    out: list[float] = []
    for label, v in zip(("west", "south", "east", "north"), vals):
        try:
            if isinstance(v, bool):
                raise TypeError
            f = float(v)
        except (TypeError, ValueError):
            raise RegionError(f"bbox {label} ({v!r}) is not a number; {hint('bbox')}") from None
        if not math.isfinite(f):
            raise RegionError(f"bbox {label} is {f}; {hint('bbox')}")
        out.append(f)
    return out[0], out[1], out[2], out[3]


def _load_geojson(obj: dict | str | Path) -> tuple[dict, str]:
    """The parsed GeoJSON and a fallback name."""
    if isinstance(obj, dict):
        return obj, "geojson"
    if isinstance(obj, str) and obj.strip() == "-":
        return _parse_json(sys.stdin.read(), "GeoJSON from stdin"), "geojson"
    if isinstance(obj, str) and obj.lstrip().startswith("{"):
        return _parse_json(obj, "GeoJSON text"), "geojson"
    if not isinstance(obj, str | Path):
        raise RegionError(f"cannot read GeoJSON from a {type(obj).__name__}; pass a dict, JSON text or a file path")
    path = Path(obj).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise RegionError(f"GeoJSON file {str(path)!r} {what}; check the path (or {hint('instead')})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise RegionError(f"cannot read GeoJSON file {str(path)!r} ({exc}); check that it is a readable UTF-8 text file") from None
    return _parse_json(text, f"GeoJSON file {str(path)!r}"), path.stem


def _parse_json(text: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegionError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix it or export it again as GeoJSON"
        ) from None
    if not isinstance(data, dict):
        raise RegionError(f"{what} holds a JSON {type(data).__name__}, not a GeoJSON object; give a Polygon, MultiPolygon, Feature or FeatureCollection")
    return data


def _geojson_name(data: dict) -> str | None:
    props = data.get("properties") if data.get("type") == "Feature" else data
    name = props.get("name") if isinstance(props, dict) else None
    return name if isinstance(name, str) and name else None


def _polygons_from_geojson(data: dict, *, crs: Any = None) -> Polygon | MultiPolygon:
    if crs is None:
        _check_crs(data)
    kind = data.get("type")
    if kind == "FeatureCollection":
        features = data.get("features") or []
        if not features:
            raise RegionError(f"the GeoJSON FeatureCollection has no features; add a Polygon feature or {hint('instead')}")
        geoms = [f.get("geometry") for f in features if isinstance(f, dict)]
        polys = [g for g in geoms if isinstance(g, dict) and g.get("type") in _POLYGON_TYPES]
        if not polys:
            kinds = sorted({str(g.get("type")) for g in geoms if isinstance(g, dict)}) or ["none"]
            raise RegionError(
                f"the GeoJSON FeatureCollection has no Polygon or MultiPolygon features (found {', '.join(kinds)}); "
                f"a region needs a polygon: draw or buffer one, or {hint('instead')}"
            )
        parts = [_polygons_from_geojson(g, crs=crs) for g in polys]
        merged = shapely.union_all(parts)
        return _as_polygonal(merged)
    if kind == "Feature":
        geom = data.get("geometry")
        if not isinstance(geom, dict):
            raise RegionError("the GeoJSON Feature has no geometry; give a Feature with a Polygon or MultiPolygon geometry")
        return _polygons_from_geojson(geom, crs=crs)
    if kind not in _POLYGON_TYPES:
        raise RegionError(
            f"GeoJSON type {kind!r} is not supported: a region needs a polygon; give a Polygon, MultiPolygon, "
            "Feature or FeatureCollection of polygons (buffer points or lines into a polygon first)"
        )
    return _normalise(_shape(data, what=f"GeoJSON {kind}"), what=f"GeoJSON {kind}", crs=crs)


def _shape(data: dict, *, what: str) -> BaseGeometry:
    """A shapely geometry from a GeoJSON geometry mapping; RegionError when it is malformed."""
    try:
        with warnings.catch_warnings():  # NaN coordinates are reported by _normalise, not as a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            return shape(data)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, shapely.errors.ShapelyError) as exc:
        raise RegionError(f"malformed {what} ({exc}); each ring must be a closed list of [lon, lat] pairs") from None


def _check_crs(data: dict) -> None:
    crs = data.get("crs")
    if isinstance(crs, dict):
        name = str((crs.get("properties") or {}).get("name", ""))
        if name and not re.search(r"CRS84|4326", name, re.IGNORECASE):
            raise RegionError(f"GeoJSON declares CRS {name!r}, but GeoJSON {_LONLAT_RULE}; {hint('crs')}")


def _normalise(geom: BaseGeometry, *, what: str, crs: Any = None) -> Polygon | MultiPolygon:
    """Check a (multi)polygon, take it from ``crs`` to lon/lat, split it at the antimeridian, orient it."""
    if geom.geom_type not in _POLYGON_TYPES:
        raise RegionError(f"a region needs a Polygon or MultiPolygon, got a {geom.geom_type}; buffer points or lines into a polygon first")
    if geom.is_empty:
        raise RegionError(f"the {what} is empty; give a polygon with at least three distinct corners")
    geom = shapely.force_2d(geom)
    if crs is not None and math.isfinite(sum(geom.bounds)):
        geom = sources.to_lonlat(geom, crs)
    coords = shapely.get_coordinates(geom)
    if not all(math.isfinite(v) for v in coords.ravel()):
        raise RegionError(f"the {what} has NaN or infinite coordinates; give finite lon/lat degrees")
    x, y = coords[:, 0], coords[:, 1]
    if abs(x).max() > 180 or abs(y).max() > 90:
        i = int((abs(x) > 180).argmax() if abs(x).max() > 180 else (abs(y) > 90).argmax())
        raise RegionError(f"the {what} has coordinate ({x[i]:g}, {y[i]:g}) outside lon -180..180 / lat -90..90: {_LONLAT_RULE}; {hint('crs')}")
    parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
    out: list[Polygon] = []
    for part in parts:
        crossing = _jumps_antimeridian(part)
        work = _shift_east(part) if crossing else part
        _check_valid(work, what=what)
        if crossing:
            west = work.intersection(box(0.0, -90.0, 180.0, 90.0))
            east = translate(work.intersection(box(180.0, -90.0, 360.0, 90.0)), xoff=-360.0)
            out += _polygon_parts(west) + _polygon_parts(east)
        else:
            out.append(part)
    if len(parts) > 1:
        whole = MultiPolygon(out)
        if not whole.is_valid:
            raise RegionError(f"the {what} is not valid ({_where(explain_validity(whole))}): its polygons overlap: merge them or give them as separate features")
    return _as_polygonal(MultiPolygon(out) if len(out) > 1 else out[0])


def _check_valid(poly: Polygon, *, what: str) -> None:
    if poly.is_valid and poly.area > 0:
        return
    if poly.is_valid or shapely.make_valid(poly).area == 0:
        raise RegionError(f"the {what} has zero area (its corners are repeated or in a line); give a polygon that encloses an area")
    raise RegionError(
        f"the {what} is not valid: {_where(explain_validity(poly))}; fix the polygon there (redraw it without "
        "crossing edges, or run a fix-geometries tool) and try again"
    )


def _where(reason: str) -> str:
    """``"Self-intersection[1 2]"`` -> ``"self-intersection at lon 1, lat 2"``."""
    m = re.fullmatch(r"(.+?)\[(\S+) (\S+)\]", reason.strip())
    return f"{m[1].lower()} at lon {m[2]}, lat {m[3]}" if m else reason


def _jumps_antimeridian(poly: Polygon) -> bool:
    lons = shapely.get_coordinates(poly.exterior)[:, 0]
    return bool(len(lons) > 1 and (abs(lons[1:] - lons[:-1]) > 180.0).any())


def _shift_east(geom: BaseGeometry) -> Any:
    """The geometry with negative longitudes moved by +360 (0..360 space)."""
    return shapely.transform(geom, lambda xy: xy + np.where(xy[:, :1] < 0, [[360.0, 0.0]], [[0.0, 0.0]]))


def _polygon_parts(geom: BaseGeometry) -> list[Polygon]:
    if isinstance(geom, Polygon):
        return [] if geom.is_empty or geom.area == 0 else [geom]
    if hasattr(geom, "geoms"):
        return [p for g in geom.geoms for p in _polygon_parts(g)]
    return []


def _as_polygonal(geom: BaseGeometry) -> Polygon | MultiPolygon:
    polys = _polygon_parts(geom)
    if not polys:
        raise RegionError("the region has zero area; give a polygon that encloses an area")
    oriented = [orient(p, sign=1.0) for p in polys]
    return oriented[0] if len(oriented) == 1 else MultiPolygon(oriented)
