"""Regions: constructors, validation messages, antimeridian splits, presets and places."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box

import geoloom.platform.region as region_mod
from geoloom.platform.errors import GeoloomError, RegionError
from geoloom.platform.region import (
    DEFAULT_MAX_AREA_KM2,
    Region,
    as_region,
    gazetteer_path,
    list_places,
    list_presets,
    presets_dir,
    region_hints,
)

EQUATOR_1DEG_KM2 = 12_308.0  # geodesic area of a 1°x1° cell at the equator on WGS84


def _poly(coords: list[list[float]]) -> dict:
    return {"type": "Polygon", "coordinates": [coords]}


def _square(w: float, s: float, e: float, n: float) -> dict:
    return _poly([[w, s], [e, s], [e, n], [w, n], [w, s]])


def _all_within_lon_range(geom) -> bool:
    minx, _, maxx, _ = geom.bounds
    return -180.0 <= minx and maxx <= 180.0


@pytest.fixture
def tmp_presets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary presets folder with two presets, one a FeatureCollection."""
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "tiny-bay.geojson").write_text(json.dumps(_square(1.0, 2.0, 1.1, 2.1)))
    fc = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"name": "ignored"}, "geometry": _square(-3.0, 4.0, -2.9, 4.1)}],
    }
    (folder / "Coast-Strip.geojson").write_text(json.dumps(fc))
    monkeypatch.setattr(region_mod, "presets_dir", lambda: folder)
    return folder


# -- from_bbox ----------------------------------------------------------------------------


def test_from_bbox_basic_properties():
    r = Region.from_bbox((0, 0, 1, 1))
    assert isinstance(r.geometry, Polygon)
    assert r.name == "bbox" and r.source == "bbox"
    assert r.bbox_lonlat == (0.0, 0.0, 1.0, 1.0)
    assert r.centroid_lonlat == pytest.approx((0.5, 0.5))
    assert not r.crosses_antimeridian()
    assert r.geometry.exterior.is_ccw  # RFC 7946 orientation


def test_geodesic_area_of_one_degree_cell_at_equator():
    assert Region.from_bbox((0, 0, 1, 1)).area_km2 == pytest.approx(EQUATOR_1DEG_KM2, rel=0.01)
    # shrinks with latitude roughly as cos(lat)
    high = Region.from_bbox((0, 59.5, 1, 60.5)).area_km2
    assert high == pytest.approx(EQUATOR_1DEG_KM2 * math.cos(math.radians(60)), rel=0.02)


def test_from_bbox_accepts_numeric_strings_and_numpy():
    r = Region.from_bbox(["10", "20", "10.5", "20.5"], name="mine")
    assert r.name == "mine" and r.bbox_lonlat == (10.0, 20.0, 10.5, 20.5)
    assert Region.from_bbox(np.array([10, 20, 10.5, 20.5])).geometry.equals(r.geometry)


def test_bbox_across_antimeridian_is_split():
    r = Region.from_bbox((170, -10, -170, 10))
    assert isinstance(r.geometry, MultiPolygon)
    parts = sorted(r.geometry.geoms, key=lambda p: p.bounds[0])
    assert [p.bounds for p in parts] == [(-180.0, -10.0, -170.0, 10.0), (170.0, -10.0, 180.0, 10.0)]
    assert all(_all_within_lon_range(p) for p in parts)
    assert r.crosses_antimeridian()
    assert r.bbox_lonlat == (170.0, -10.0, -170.0, 10.0)
    lon, lat = r.centroid_lonlat
    assert abs(lon) == pytest.approx(180.0) and lat == pytest.approx(0.0)
    # edges are geodesics, so compare with the same two 10°-wide halves away from the antimeridian
    halves = Region.from_bbox((-10, -10, 0, 10)).area_km2 + Region.from_bbox((0, -10, 10, 10)).area_km2
    assert r.area_km2 == pytest.approx(halves, rel=1e-9)
    assert r.area_km2 == pytest.approx(EQUATOR_1DEG_KM2 * 400, rel=0.02)


@pytest.mark.parametrize(
    ("bbox", "expected"),
    [
        ((0, 0, 1), "needs 4 numbers"),
        ((0, 0, 1, 1, 2), "got 5"),
        ((0, "abc", 1, 1), "south ('abc') is not a number"),
        ((0, float("nan"), 1, 1), "south is nan"),
        ((0, 0, float("inf"), 1), "east is inf"),
        ((200, 0, 201, 1), "west (200.0) must be within -180..180"),
        ((0, -95, 1, 1), "south (-95.0) must be within -90..90"),
        ((500000, 4600000, 510000, 4610000), "looks like projected"),
        ((0, 5, 1, 5), "south (5.0) must be less than north (5.0)"),
        ((0, 6, 1, 5), "south (6.0) must be less than north (5.0)"),
    ],
)
def test_bad_bbox_says_what_and_what_to_do(bbox, expected):
    with pytest.raises(RegionError) as info:
        Region.from_bbox(bbox)
    msg = str(info.value)
    assert expected in msg
    assert "give region=(W, S, E, N)" in msg and "--bbox" not in msg  # Python words in Python
    assert "\n" not in msg
    with region_hints("cli"), pytest.raises(RegionError, match="give --bbox W S E N"):
        Region.from_bbox(bbox)


def test_zero_width_bbox():
    with pytest.raises(RegionError, match=r"zero width .*give a west and an east that differ"):
        Region.from_bbox((3, 0, 3, 1))


def test_region_error_is_value_error_and_geoloom_error():
    with pytest.raises(ValueError):
        Region.from_bbox((0, 0, 0, 0))
    with pytest.raises(GeoloomError):
        Region.from_bbox((0, 0, 0, 0))


def test_region_rejects_non_polygon_geometry():
    with pytest.raises(RegionError, match="needs a Polygon or MultiPolygon"):
        Region(Point(0, 0))  # type: ignore[arg-type]


# -- from_geojson -------------------------------------------------------------------------


def test_from_geojson_polygon_dict_is_oriented():
    clockwise = _poly([[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]])
    r = Region.from_geojson(clockwise)
    assert r.source == "geojson" and r.name == "geojson"
    assert r.geometry.exterior.is_ccw
    assert r.bbox_lonlat == (0.0, 0.0, 1.0, 1.0)


def test_from_geojson_multipolygon_feature_and_name():
    mp = {"type": "MultiPolygon", "coordinates": [_square(0, 0, 1, 1)["coordinates"], _square(2, 0, 3, 1)["coordinates"]]}
    feature = {"type": "Feature", "properties": {"name": "two boxes"}, "geometry": mp}
    r = Region.from_geojson(feature)
    assert isinstance(r.geometry, MultiPolygon) and len(r.geometry.geoms) == 2
    assert r.name == "two boxes"
    assert Region.from_geojson(feature, name="override").name == "override"
    assert r.area_km2 == pytest.approx(2 * EQUATOR_1DEG_KM2, rel=0.01)


def test_from_geojson_feature_collection_unions_polygons_and_skips_points():
    fc = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {}, "geometry": _square(0, 0, 1, 1)},
            {"type": "Feature", "properties": {}, "geometry": _square(0.5, 0, 1.5, 1)},
            {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [5, 5]}},
        ],
    }
    r = Region.from_geojson(fc)
    assert isinstance(r.geometry, Polygon)
    assert r.bbox_lonlat == (0.0, 0.0, 1.5, 1.0)
    assert r.area_km2 == pytest.approx(1.5 * EQUATOR_1DEG_KM2, rel=0.01)


def test_from_geojson_text_file_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    text = json.dumps(_square(10, 10, 10.2, 10.2))
    assert Region.from_geojson(text).bbox_lonlat == (10.0, 10.0, 10.2, 10.2)
    path = tmp_path / "harbour.geojson"
    path.write_text(text)
    for arg in (path, str(path)):
        r = Region.from_geojson(arg)
        assert r.name == "harbour" and r.bbox_lonlat == (10.0, 10.0, 10.2, 10.2)
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    assert Region.from_geojson("-").bbox_lonlat == (10.0, 10.0, 10.2, 10.2)


def test_from_geojson_drops_z_coordinates():
    r = Region.from_geojson(_poly([[0, 0, 5], [1, 0, 5], [1, 1, 5], [0, 1, 5], [0, 0, 5]]))
    assert not r.geometry.has_z


def test_geojson_round_trip():
    r = Region.from_bbox((170, -10, -170, 10), name="pacific")
    gj = r.to_geojson()
    assert gj["type"] == "Feature"
    assert gj["properties"]["name"] == "pacific" and gj["properties"]["source"] == "bbox"
    assert gj["properties"]["area_km2"] == pytest.approx(r.area_km2, abs=0.01)
    assert gj["bbox"] == [170.0, -10.0, -170.0, 10.0]
    json.dumps(gj)  # plain JSON
    back = Region.from_geojson(gj)
    assert back.name == "pacific" and back.geometry.equals(r.geometry)


def test_geojson_polygon_across_antimeridian_is_split():
    crossing = _poly([[175, -5], [-175, -5], [-175, 5], [175, 5], [175, -5]])
    r = Region.from_geojson(crossing)
    assert isinstance(r.geometry, MultiPolygon) and len(r.geometry.geoms) == 2
    assert all(_all_within_lon_range(p) for p in r.geometry.geoms)
    assert r.crosses_antimeridian()
    assert r.bbox_lonlat == (175.0, -5.0, -175.0, 5.0)
    assert r.area_km2 == pytest.approx(100 * EQUATOR_1DEG_KM2, rel=0.01)
    assert all(p.exterior.is_ccw for p in r.geometry.geoms)


def test_geojson_non_rectangular_polygon_across_antimeridian():
    # a triangle with its apex east of the antimeridian
    tri = _poly([[178, 0], [-178, 1], [178, 2], [178, 0]])
    r = Region.from_geojson(tri)
    west, east = sorted(r.geometry.geoms, key=lambda p: -p.bounds[0])
    assert west.bounds[0] == pytest.approx(178.0) and west.bounds[2] == pytest.approx(180.0)
    assert east.bounds[0] == pytest.approx(-180.0) and east.bounds[2] == pytest.approx(-178.0)
    # total equals the same triangle shifted away from the antimeridian and cut at 0°
    shifted = Polygon([(-2, 0), (2, 1), (-2, 2), (-2, 0)])
    pieces = [shifted.intersection(box(-5, -5, 0, 5)), shifted.intersection(box(0, -5, 5, 5))]
    ref = sum(Region.from_geometry(p).area_km2 for p in pieces)
    assert r.area_km2 == pytest.approx(ref, rel=1e-6)


def test_self_intersection_is_reported_with_location_not_repaired():
    bowtie = _poly([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]])
    with pytest.raises(RegionError) as info:
        Region.from_geojson(bowtie)
    msg = str(info.value)
    assert "self-intersection at lon 0.5, lat 0.5" in msg
    assert "fix the polygon" in msg


def test_degenerate_polygon_has_zero_area():
    with pytest.raises(RegionError, match=r"zero area.*give a polygon that encloses an area"):
        Region.from_geojson(_poly([[0, 0], [1, 1], [2, 2], [0, 0]]))


@pytest.mark.parametrize(
    ("geometry", "kind"),
    [({"type": "Point", "coordinates": [0, 0]}, "Point"), ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "LineString")],
)
def test_unsupported_geojson_type_needs_polygon(geometry, kind):
    with pytest.raises(RegionError) as info:
        Region.from_geojson(geometry)
    msg = str(info.value)
    assert kind in msg and "needs a polygon" in msg and "buffer" in msg


def test_empty_feature_collection_and_collection_without_polygons():
    with pytest.raises(RegionError, match=r"no features; add a Polygon feature"):
        Region.from_geojson({"type": "FeatureCollection", "features": []})
    points = {"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 0]}}]}
    with pytest.raises(RegionError, match=r"found Point.*needs a polygon"):
        Region.from_geojson(points)


def test_invalid_json_reports_line_and_column(tmp_path: Path):
    path = tmp_path / "broken.geojson"
    path.write_text('{\n  "type": "Polygon",\n  "coordinates": [[[0, 0], [1, 0]\n')
    with pytest.raises(RegionError) as info:
        Region.from_geojson(path)
    msg = str(info.value)
    assert "broken.geojson" in msg and "not valid JSON" in msg
    assert "line 4" in msg and "column" in msg and "fix it" in msg
    with pytest.raises(RegionError, match=r"GeoJSON text is not valid JSON \(line 1, column"):
        Region.from_geojson('{"type": ')


def test_missing_file(tmp_path: Path):
    with pytest.raises(RegionError, match=r"does not exist; check the path"):
        Region.from_geojson(tmp_path / "nope.geojson")
    with pytest.raises(RegionError, match=r"is a folder"):
        Region.from_geojson(tmp_path)


def test_projected_coordinates_are_refused_with_crs_hint():
    utm = _square(500000, 4600000, 510000, 4610000)
    with pytest.raises(RegionError) as info:
        Region.from_geojson(utm)
    msg = str(info.value)
    assert "500000" in msg and "EPSG:4326" in msg and "RFC 7946" in msg and "reproject" in msg


def test_declared_non_wgs84_crs_is_refused():
    gj = dict(_square(0, 0, 1, 1), crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32630"}})
    with pytest.raises(RegionError, match=r"32630.*EPSG:4326"):
        Region.from_geojson(gj)
    ok = dict(_square(0, 0, 1, 1), crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}})
    assert Region.from_geojson(ok).bbox_lonlat == (0.0, 0.0, 1.0, 1.0)


def test_malformed_geojson_polygon():
    with pytest.raises(RegionError, match=r"malformed GeoJSON Polygon.*\[lon, lat\]"):
        Region.from_geojson({"type": "Polygon"})
    with pytest.raises(RegionError, match=r"NaN or infinite"):
        Region.from_geojson(_poly([[0, 0], [1, float("nan")], [1, 1], [0, 0]]))


def test_overlapping_multipolygon_parts_are_reported():
    mp = {"type": "MultiPolygon", "coordinates": [_square(0, 0, 1, 1)["coordinates"], _square(0.5, 0, 1.5, 1)["coordinates"]]}
    with pytest.raises(RegionError, match=r"not valid .*overlap"):
        Region.from_geojson(mp)


# -- from_geometry ------------------------------------------------------------------------


def test_from_geometry_and_drawn_source():
    r = Region.from_geometry(box(1, 1, 2, 2), source="drawn", name="my area")
    assert (r.name, r.source) == ("my area", "drawn")
    with pytest.raises(RegionError, match="buffer"):
        Region.from_geometry(LineString([(0, 0), (1, 1)]))
    with pytest.raises(RegionError, match="shapely"):
        Region.from_geometry("POLYGON ((0 0, 1 0, 1 1, 0 0))")  # type: ignore[arg-type]


# -- presets ------------------------------------------------------------------------------


def test_presets_and_gazetteer_are_package_data():
    from importlib import resources

    shipped = Path(str(resources.files("geoloom.sample_data")))
    assert presets_dir() == shipped / "presets" and gazetteer_path() == shipped / "gazetteer.json"
    assert gazetteer_path().is_file() and any(presets_dir().glob("*.geojson"))


def test_preset_lookup_with_temporary_presets(tmp_presets: Path):
    assert list_presets() == ["Coast-Strip", "tiny-bay"]
    r = Region.from_preset("tiny-bay")
    assert (r.name, r.source) == ("tiny-bay", "preset")
    assert r.bbox_lonlat == pytest.approx((1.0, 2.0, 1.1, 2.1))
    assert Region.from_preset("coast-strip").name == "Coast-Strip"  # case-insensitive, file name wins


def test_unknown_preset_lists_available(tmp_presets: Path):
    with pytest.raises(RegionError) as info:
        Region.from_preset("nowhere")
    msg = str(info.value)
    assert "unknown preset 'nowhere'" in msg and "Coast-Strip, tiny-bay" in msg and "region=(W, S, E, N)" in msg
    with pytest.raises(RegionError, match="unknown preset"):
        Region.from_preset("../tiny-bay")


def test_no_presets_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(region_mod, "presets_dir", lambda: tmp_path / "missing")
    assert list_presets() == []
    with pytest.raises(RegionError, match="none installed"):
        Region.from_preset("sample-area")


def test_shipped_presets_load():
    names = list_presets()
    assert names, "geoloom.sample_data ships no presets"
    for name in names:
        r = Region.from_preset(name)
        assert r.source == "preset" and r.area_km2 > 0
        assert as_region(name).geometry.equals(r.geometry)


@pytest.mark.parametrize("name", ["sample-area", "sample-bay", "zone-border"])
def test_expected_presets_exist(name):
    assert name in list_presets()


# -- places -------------------------------------------------------------------------------


def test_gazetteer_is_well_formed():
    entries = json.loads(gazetteer_path().read_text(encoding="utf-8"))
    assert len(entries) >= 25
    kinds = {"city", "bay", "port", "coast", "river-mouth"}
    names = [e["name"].casefold() for e in entries]
    assert len(names) == len(set(names))
    crossing = 0
    for e in entries:
        assert e["kind"] in kinds and e["country"]
        r = Region.from_bbox(e["bbox"])
        assert 1 < r.area_km2 < 10_000, e["name"]
        crossing += r.crosses_antimeridian()
    assert crossing >= 1


def test_from_place_case_and_accent_insensitive():
    r = Region.from_place("  accra ")
    assert (r.name, r.source) == ("Accra", "place")
    assert r.centroid_lonlat == pytest.approx((-0.2, 5.56), abs=0.1)
    assert Region.from_place("ACCRA, GHANA").name == "Accra"
    assert Region.from_place("roatan").name.startswith("Roatán")
    assert Region.from_place("manila bay").bbox_lonlat[0] == pytest.approx(120.55)


def test_place_across_antimeridian():
    r = Region.from_place("Taveuni")
    assert r.crosses_antimeridian()
    assert all(_all_within_lon_range(p) for p in r.geometry.geoms)
    w, _, e, _ = r.bbox_lonlat
    assert w > e


def test_unknown_place_suggests_close_matches():
    with pytest.raises(RegionError) as info:
        Region.from_place("Acra")
    msg = str(info.value)
    assert "unknown place 'Acra'" in msg and "did you mean: Accra" in msg and "region=(W, S, E, N)" in msg
    with region_hints("cli"), pytest.raises(RegionError, match="--bbox W S E N or --region FILE"):
        Region.from_place("Acra")
    with pytest.raises(RegionError, match=r"unknown place 'zzzzqqq'; 'geoloom regions' lists"):
        Region.from_place("zzzzqqq")


def test_presets_are_places(tmp_presets: Path):
    r = Region.from_place("TINY-BAY")
    assert (r.name, r.source) == ("tiny-bay", "preset")
    with pytest.raises(RegionError, match="did you mean: tiny-bay"):
        Region.from_place("tiny-bey")
    places = list_places()
    by_name = {p["name"]: p for p in places}
    assert by_name["tiny-bay"]["kind"] == "preset"
    assert by_name["tiny-bay"]["bbox"] == pytest.approx([1.0, 2.0, 1.1, 2.1])
    assert by_name["Accra"]["kind"] == "city"
    assert set(by_name["Tema"]) == {"name", "kind", "country", "bbox"}


# -- as_region ----------------------------------------------------------------------------


def test_as_region_every_accepted_form(tmp_path: Path, tmp_presets: Path):
    ref = Region.from_bbox((1.0, 2.0, 1.1, 2.1))
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps(_square(1.0, 2.0, 1.1, 2.1)))
    forms = {
        "region": ref,
        "tuple": (1.0, 2.0, 1.1, 2.1),
        "list": [1.0, 2.0, 1.1, 2.1],
        "array": np.array([1.0, 2.0, 1.1, 2.1]),
        "bbox string": "1.0 2.0 1.1 2.1",
        "bbox csv": "1.0,2.0,1.1,2.1",
        "geojson dict": _square(1.0, 2.0, 1.1, 2.1),
        "geojson text": json.dumps(_square(1.0, 2.0, 1.1, 2.1)),
        "shapely": box(1.0, 2.0, 1.1, 2.1),
        "path": path,
        "path string": str(path),
        "preset": "tiny-bay",
    }
    sources = {}
    for label, value in forms.items():
        r = as_region(value)
        assert isinstance(r, Region), label
        assert r.geometry.normalize().equals_exact(ref.geometry.normalize(), 1e-12), label
        sources[label] = r.source
    assert as_region(ref) is ref
    assert sources["tuple"] == "bbox" and sources["geojson dict"] == "geojson"
    assert sources["shapely"] == "geometry" and sources["preset"] == "preset"
    assert as_region("Durban").source == "place"


def test_as_region_stdin(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(_square(0, 0, 0.1, 0.1))))
    assert as_region("-").source == "geojson"


def test_as_region_size_limit():
    big = (0, 0, 3, 3)  # ~110,000 km²
    with pytest.raises(RegionError) as info:
        as_region(big)
    msg = str(info.value)
    assert f"{DEFAULT_MAX_AREA_KM2:,.0f} km²" in msg
    area = Region.from_bbox(big).area_km2
    assert f"{area:,.0f} km²" in msg
    assert "split it" in msg and "max_area_km2=" in msg and "--max-area" not in msg
    with region_hints("cli"), pytest.raises(RegionError, match="--max-area"):
        as_region(big)
    assert as_region(big, max_area_km2=200_000).area_km2 == pytest.approx(area)
    assert as_region(big, max_area_km2=None).area_km2 == pytest.approx(area)
    with pytest.raises(RegionError, match="limit of 100 km²"):
        as_region("Accra", max_area_km2=100)


def test_as_region_errors():
    with pytest.raises(RegionError, match="cannot use a int as a region"):
        as_region(5)
    with pytest.raises(RegionError, match="cannot use a NoneType"):
        as_region(None)
    with pytest.raises(RegionError, match="does not exist"):
        as_region("missing-file.geojson")
    with pytest.raises(RegionError, match="needs 4 numbers"):
        as_region([1, 2, 3])
    with pytest.raises(RegionError, match="unknown place"):
        as_region("Atlantis")


def test_region_is_immutable_and_hashable():
    r = Region.from_bbox((0, 0, 1, 1))
    with pytest.raises(AttributeError):
        r.name = "other"  # type: ignore[misc]
    assert {r, Region.from_bbox((0, 0, 1, 1))} == {r}


# -- what users hold: frames, files, rasters, other CRSs ---------------------------------------

BAY = (-0.054, 5.618, -0.027, 5.645)


def _same(region: Region, ref: Region, tol: float = 1e-9) -> bool:
    return region.geometry.symmetric_difference(ref.geometry).area < tol * ref.geometry.area


def _bay_frame(crs: str = "EPSG:3857", rows: int = 1):
    import geopandas as gpd

    w, s, e, n = BAY
    mid = (w + e) / 2
    parts = [box(w, s, e, n)] if rows == 1 else [box(w, s, mid, n), box(mid, s, e, n)]
    return gpd.GeoDataFrame({"name": [f"part {i}" for i in range(rows)]}, geometry=parts, crs="EPSG:4326").to_crs(crs)


def test_geodataframe_in_any_crs_is_dissolved_into_lonlat():
    ref = Region.from_bbox(BAY)
    # edges straight in UTM bend a little in lon/lat (densified); Web Mercator keeps a box a box
    for crs, tol in (("EPSG:3857", 1e-9), ("EPSG:32630", 1e-4), ("EPSG:4326", 1e-9)):
        frame = _bay_frame(crs, rows=2)
        region = as_region(frame)
        assert region.source == "frame" and isinstance(region.geometry, Polygon), crs
        assert _same(region, ref, tol), crs
        assert _same(as_region(frame.geometry), ref, tol), crs  # a GeoSeries too
    assert Region.from_frame(_bay_frame(), name="bay").name == "bay"


def test_geodataframe_crossing_the_antimeridian_is_split():
    import geopandas as gpd
    from pyproj import Transformer

    to_3832 = Transformer.from_crs(4326, 3832, always_xy=True)  # Pacific-centred Mercator
    (x0, x1), (y0, y1) = to_3832.transform([179.5, -179.5], [-17.0, -16.0])
    region = as_region(gpd.GeoDataFrame(geometry=[box(x0, y0, x1, y1)], crs=3832))
    assert region.crosses_antimeridian() and all(_all_within_lon_range(p) for p in region.geometry.geoms)
    assert region.bbox_lonlat == pytest.approx((179.5, -17.0, -179.5, -16.0))


def test_geometry_and_bbox_with_crs():
    ref = Region.from_bbox(BAY)
    frame = _bay_frame("EPSG:32630")
    geom = frame.geometry.iloc[0]
    assert _same(Region.from_geometry(geom, crs="EPSG:32630"), ref, 1e-4)
    assert _same(as_region(geom, crs=32630), ref, 1e-4)
    utm_box = as_region(tuple(frame.total_bounds), crs="EPSG:32630")  # the UTM box around the bay
    assert utm_box.geometry.buffer(1e-6).contains(ref.geometry) and utm_box.area_km2 == pytest.approx(ref.area_km2, rel=0.02)
    assert _same(as_region(json.loads(frame.to_json())["features"][0]["geometry"], crs="EPSG:32630"), ref, 1e-4)
    with pytest.raises(RegionError, match="outside lon -180..180.*crs="):
        as_region(geom)  # metres read as degrees: the message says to pass crs=
    with pytest.raises(RegionError, match="says EPSG:4326; drop crs="):
        as_region(frame, crs="EPSG:4326")


def test_geo_interface_objects():
    class Shape:
        def __init__(self, data: dict, crs: str | None = None) -> None:
            self.__geo_interface__ = data
            if crs:
                self.crs = crs

    ref = Region.from_bbox(BAY)
    assert _same(as_region(Shape(_square(*BAY))), ref)
    assert _same(as_region(Shape({"type": "Feature", "properties": {}, "geometry": _square(*BAY)})), ref)
    frame = _bay_frame("EPSG:3857")
    assert _same(as_region(Shape(json.loads(frame.to_json()), crs="EPSG:3857")), ref)


def test_raster_footprints():
    import odc.geo.xr  # noqa: F401  (the .odc accessor)
    import rioxarray  # noqa: F401  (the .rio accessor)
    import xarray as xr
    from odc.geo.geobox import GeoBox
    from odc.geo.xr import xr_zeros

    frame = _bay_frame("EPSG:32630")
    geobox = GeoBox.from_bbox(tuple(frame.total_bounds), "EPSG:32630", resolution=10)
    ref = Region.from_bbox(BAY)
    for value in (geobox, xr_zeros(geobox, dtype="uint8")):
        region = as_region(value)
        assert region.source == "raster" and region.geometry.contains(ref.geometry.buffer(-1e-4))
        assert region.area_km2 == pytest.approx(geobox.extent.area / 1e6, rel=0.01)
    da = xr.DataArray(np.zeros((3, 3)), coords={"y": [25.0, 15.0, 5.0], "x": [5.0, 15.0, 25.0]}, dims=("y", "x"))
    rio = as_region(da.rio.write_crs("EPSG:32630"))
    assert rio.area_km2 == pytest.approx(900e-6, rel=0.01)
    with pytest.raises(RegionError, match=r"has no CRS.*write_crs"):
        as_region(da)


def _write_vector_files(folder: Path) -> dict[str, Path]:
    import zipfile

    frame = _bay_frame("EPSG:4326")
    paths = {"gpkg": folder / "area.gpkg", "kml": folder / "area.kml", "fgb": folder / "area.fgb",
             "parquet": folder / "area.parquet", "zip": folder / "area.shp.zip"}
    frame.to_crs(3857).to_file(paths["gpkg"], layer="bay")
    frame.to_file(paths["gpkg"], layer="other")
    frame.to_file(paths["kml"], driver="KML")
    frame.to_crs(32630).to_file(paths["fgb"])
    frame.to_crs(3857).to_parquet(paths["parquet"])
    (folder / "shp").mkdir()
    frame.to_crs(32630).to_file(folder / "shp" / "area.shp")
    with zipfile.ZipFile(paths["zip"], "w") as z:
        for f in (folder / "shp").iterdir():
            z.write(f, f.name)
    return paths


def test_vector_files_of_every_format(tmp_path: Path):
    paths = _write_vector_files(tmp_path)
    ref = Region.from_bbox(BAY)
    forms = {"gpkg": f"{paths['gpkg']}:bay", "kml": paths["kml"], "fgb": str(paths["fgb"]),
             "parquet": paths["parquet"], "zip": str(paths["zip"])}
    for label, value in forms.items():
        region = as_region(value)
        assert region.source == "file" and _same(region, ref, 1e-4), label
    assert as_region(f"{paths['gpkg']}:bay").name == "bay"
    assert as_region(paths["zip"]).name == "area"
    assert Region.from_file(paths["gpkg"], layer="other").name == "other"


def test_vector_file_errors_say_what_to_do(tmp_path: Path):
    paths = _write_vector_files(tmp_path)
    with pytest.raises(RegionError, match=rf"has 2 layers \(bay, other\); name one as region='{paths['gpkg']}:bay'"):
        as_region(paths["gpkg"])
    with region_hints("cli"), pytest.raises(RegionError, match=r"name one as --region .*area.gpkg:bay"):
        as_region(paths["gpkg"])
    with pytest.raises(RegionError, match="has no layer 'nope'; its layers are: bay, other"):
        as_region(f"{paths['gpkg']}:nope")
    with pytest.raises(RegionError, match="'missing.gpkg' does not exist"):
        as_region("missing.gpkg:bay")
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"not a geopackage")
    with pytest.raises(RegionError, match="cannot read junk.gpkg as a vector file"):
        as_region(junk)


def test_a_wrong_object_gets_a_python_worded_error():
    with pytest.raises(RegionError) as info:
        as_region(object())
    msg = str(info.value)
    assert "cannot use a object as a region; give region= as (W, S, E, N)" in msg
    assert "GeoDataFrame" in msg and "__geo_interface__" in msg and "--" not in msg
    with pytest.raises(RegionError, match=r"looks like projected metres: pass crs="):
        as_region((500_000, 600_000, 510_000, 610_000))


def test_region_module_imports_no_heavy_libraries():
    import subprocess
    import sys

    code = ("import sys, geoloom.platform.region; "
            "print([m for m in ('geopandas', 'pyogrio', 'xarray', 'odc.geo') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
