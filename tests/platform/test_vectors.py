"""Detections as polygons: per tile from a mask, merged across tile borders, published in EPSG:4326."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from affine import Affine
from geopandas.testing import assert_geodataframe_equal

from geoloom.platform.vectors import COLUMNS, finalize_detections, merge_across_tiles, polygonize, read_parts

CRS = "EPSG:32630"
ORIGIN = Affine(10, 0, 500_000, 0, -10, 4_761_710)  # 10 m pixels, UTM 30N (Bay of Biscay)
TILE = 32
SCENES = (("S2B_new", "2024-05-06T11:00:00Z"), ("S2A_old", "2024-05-01T11:00:00Z"))


def _mask_64() -> np.ndarray:
    """A 64 x 64 mask (2 x 2 tiles of 32) with objects cut by tile borders, and some that are not."""
    m = np.zeros((64, 64), dtype=np.uint8)
    m[5:8, 25:41] = 1  # a bar across the vertical border
    m[28:37, 28:37] = 1  # a square on the corner of four tiles
    m[26:34, 5:7] = 1  # a U: two legs in the upper tile ...
    m[26:34, 12:14] = 1
    m[32:34, 5:14] = 1  # ... joined only in the lower tile
    m[40:49, 20:45] = 1  # a ring across the vertical border, with a hole
    m[42:47, 22:43] = 0
    m[31, 50] = 1  # two pixels that touch only at a corner, across the horizontal border
    m[32, 51] = 1
    m[55:58, 55:58] = 1  # inside one tile
    m[60, 2] = 2  # not a detection (another class)
    m[61, 2] = 255  # nodata
    return m


def _polygonize_tiles(mask: np.ndarray, score: np.ndarray, scene_index: np.ndarray | None = None) -> gpd.GeoDataFrame:
    """Polygonize each 32 x 32 tile on its own, as the tile tasks do, in tile-key order."""
    parts = []
    for r in range(0, mask.shape[0], TILE):
        for c in range(0, mask.shape[1], TILE):
            sl = np.s_[r : r + TILE, c : c + TILE]
            parts.append(polygonize(
                mask[sl], score[sl], ORIGIN * Affine.translation(c, r), CRS, tile=f"tile-{r // TILE}-{c // TILE}-t",
                label="debris", scene_index=None if scene_index is None else scene_index[sl], scenes=SCENES,
            ))
    return gpd.GeoDataFrame(pd.concat([p for p in parts if len(p)], ignore_index=True), crs=CRS)


def _by_position(gdf: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Rows ordered by their geometry's position (north to south, then west to east)."""
    c = gdf.geometry.centroid
    return gdf.assign(_y=-c.y.round(3), _x=c.x.round(3)).sort_values(["_y", "_x"]).drop(columns=["_y", "_x"]).reset_index(drop=True)


def test_polygonize_finds_4_connected_objects_of_value_1_only():
    m = np.zeros((6, 6), dtype=np.uint8)
    m[0, 0] = m[1, 1] = 1  # corner contact: two objects
    m[3:5, 3:6] = 1  # one object of six pixels
    m[0, 5] = 2  # another class
    m[5, 0] = 255  # nodata
    gdf = polygonize(m, None, ORIGIN, CRS, tile="tile-0-0-t", label="debris")
    assert len(gdf) == 3
    assert sorted(gdf["pixels"]) == [1, 1, 6]
    assert all(g.geom_type == "Polygon" and g.is_valid for g in gdf.geometry)


def test_polygonize_puts_polygons_on_the_map_with_pixel_areas_and_holes():
    m = np.zeros((10, 12), dtype=np.uint8)
    m[2:7, 3:9] = 1
    m[3:6, 4:8] = 0  # a hole of 3 x 4
    t = ORIGIN * Affine.translation(100, 50)  # a tile further east and south
    gdf = polygonize(m, None, t, CRS, tile="tile-1-3-t", label="debris")
    assert len(gdf) == 1
    geom = gdf.geometry.iloc[0]
    x0, y0 = t * (3, 2)
    x1, y1 = t * (9, 7)
    assert geom.bounds == pytest.approx((x0, y1, x1, y0))
    assert len(geom.interiors) == 1
    assert geom.area == pytest.approx(gdf["pixels"].iloc[0] * 100) == pytest.approx((30 - 12) * 100)
    assert gdf.crs.to_string() == CRS


def test_polygonize_keeps_the_highest_score_of_each_object_and_the_tile_and_label():
    m = np.zeros((5, 5), dtype=np.uint8)
    m[0, 0:2] = 1
    m[3:5, 3:5] = 1
    score = np.full((5, 5), 0.99, dtype=np.float32)  # outside the objects: not counted
    score[0, 0:2] = [0.25, 0.5]
    score[3:5, 3:5] = [[0.125, 0.75], [np.float32(0.3), 0.5]]
    gdf = polygonize(m, score, ORIGIN, CRS, tile="tile-2-2-t", label="debris")
    assert list(gdf["score"]) == [0.5, 0.75]
    assert gdf["score"].dtype == np.float64 and gdf["pixels"].dtype == np.int64
    assert set(gdf["tile"]) == {"tile-2-2-t"} and set(gdf["class"]) == {"debris"}
    assert list(gdf.columns) == COLUMNS[1:] + ["geometry"]
    no_score = polygonize(m, None, ORIGIN, CRS, tile="t", label="debris")
    assert no_score["score"].isna().all()


def test_polygonize_names_the_scene_that_gave_most_pixels_of_each_object():
    m = np.zeros((4, 8), dtype=np.uint8)
    m[0, 0:5] = 1  # scenes 1, 1, 1, 0, -1: scene 1
    m[2, 0:4] = 1  # scenes 0, 1, 0, 1: a tie goes to the first (most recent) scene
    m[3, 6:8] = 1  # no scene under it (-1)
    si = np.full((4, 8), -1, dtype=np.int16)
    si[0, 0:5] = [1, 1, 1, 0, -1]
    si[2, 0:4] = [1, 0, 1, 0]
    gdf = polygonize(m, None, ORIGIN, CRS, tile="t", label="debris", scene_index=si, scenes=SCENES)
    assert list(gdf["scene"]) == ["S2A_old", "S2B_new", ""]
    assert list(gdf["datetime"]) == ["2024-05-01T11:00:00Z", "2024-05-06T11:00:00Z", ""]
    without = polygonize(m, None, ORIGIN, CRS, tile="t", label="debris")
    assert set(without["scene"]) == {""}


def test_polygonize_of_an_empty_mask_is_an_empty_frame_with_the_columns_and_crs():
    gdf = polygonize(np.zeros((8, 8), dtype=np.uint8), np.ones((8, 8)), ORIGIN, CRS, tile="t", label="debris")
    assert len(gdf) == 0
    assert set(gdf.columns) == set(COLUMNS)
    assert gdf.crs.to_string() == CRS


def test_objects_cut_by_tile_borders_are_one_object_each_as_if_never_cut():
    mask = _mask_64()
    score = np.random.default_rng(1).random(mask.shape)
    whole = polygonize(mask, score, ORIGIN, CRS, tile="whole", label="debris")
    parts = _polygonize_tiles(mask, score)
    assert len(whole) == 7
    assert len(parts) > len(whole) + 5  # the bar, square, U and ring are cut into several parts
    merged = _by_position(merge_across_tiles(parts))
    whole = _by_position(whole)
    assert len(merged) == len(whole)
    np.testing.assert_array_equal(merged["pixels"], whole["pixels"])
    np.testing.assert_array_equal(merged["score"], whole["score"])
    for a, b in zip(merged.geometry, whole.geometry):
        assert a.is_valid and a.geom_type == "Polygon"
        assert shapely.symmetric_difference(a, b).area < 1e-6
        assert a.area == pytest.approx(b.area)
    ring = merged.loc[merged["pixels"] == 9 * 25 - 5 * 21].geometry.iloc[0]
    assert len(ring.interiors) == 1, "the hole of an object cut by a border stays a hole"


def test_objects_of_different_tiles_touching_only_at_a_corner_stay_apart():
    m = np.zeros((64, 64), dtype=np.uint8)
    m[31, 31] = m[32, 32] = 1  # tiles (0, 0) and (1, 1)
    m[31, 33] = 1  # tile (0, 1): touches (32, 32) at a corner too
    parts = _polygonize_tiles(m, np.ones(m.shape))
    assert len(parts) == 3
    assert len(merge_across_tiles(parts)) == 3


def test_merging_keeps_apart_objects_of_neighbouring_tiles_that_do_not_touch():
    m = np.zeros((64, 64), dtype=np.uint8)
    m[10, 30] = m[10, 33] = 1  # two pixels apart across the border
    parts = _polygonize_tiles(m, np.ones(m.shape))
    assert len(merge_across_tiles(parts)) == 2


def test_merging_nothing_gives_nothing():
    empty = polygonize(np.zeros((4, 4), dtype=np.uint8), None, ORIGIN, CRS, tile="t", label="debris")
    assert len(merge_across_tiles(empty)) == 0


def test_a_merged_object_names_the_scene_that_gave_most_of_its_pixels():
    m = np.zeros((64, 64), dtype=np.uint8)
    m[10, 30:64] = 1  # 2 pixels in tile (0, 0), 32 in tile (0, 1)
    si = np.zeros((64, 64), dtype=np.int16)
    si[:, 32:] = 1  # the eastern tile's pixels come from the older scene
    whole = polygonize(m, None, ORIGIN, CRS, tile="whole", label="debris", scene_index=si, scenes=SCENES)
    assert list(whole["scene"]) == ["S2A_old"]
    merged = merge_across_tiles(_polygonize_tiles(m, np.ones(m.shape), si))
    assert list(merged["scene"]) == list(whole["scene"])


def test_finalized_detections_are_in_lonlat_with_areas_ids_and_a_north_to_south_order():
    mask = _mask_64()
    parts = _polygonize_tiles(mask, np.random.default_rng(2).random(mask.shape))
    out = finalize_detections(parts, run_id="run-7", model="fdi")
    assert out.crs.to_epsg() == 4326
    assert list(out.columns) == ["id", "score", "class", "area_m2", "pixels", "scene", "datetime", "run_id", "model", "geometry"]
    assert list(out["id"]) == [f"run-7-{i}" for i in range(7)]
    assert set(out["run_id"]) == {"run-7"} and set(out["model"]) == {"fdi"} and set(out["class"]) == {"debris"}
    np.testing.assert_allclose(out["area_m2"], out["pixels"] * 100.0)  # measured on the 10 m grid, not in degrees
    west, south, east, north = out.total_bounds
    assert -3.01 < west < east < -2.99 and 43.0 < south < north < 43.01
    y = out.to_crs(CRS).geometry.centroid.y.round(3)
    assert (np.diff(y) <= 0).all(), "north to south"
    back = out.to_crs(CRS)
    merged = _by_position(merge_across_tiles(parts))
    assert shapely.symmetric_difference(back.geometry.union_all(), merged.geometry.union_all()).area < 1e-3


def test_finalized_detections_do_not_depend_on_the_order_of_the_parts():
    mask = _mask_64()
    parts = _polygonize_tiles(mask, np.random.default_rng(3).random(mask.shape))
    a = finalize_detections(parts, run_id="r", model="fdi")
    b = finalize_detections(parts.iloc[::-1], run_id="r", model="fdi")
    assert_geodataframe_equal(a, b, check_less_precise=True)


def test_finalized_no_detections_keep_the_columns_and_types_of_some_detections():
    mask = _mask_64()
    some = finalize_detections(_polygonize_tiles(mask, np.ones(mask.shape)), run_id="r", model="fdi")
    none = finalize_detections(
        polygonize(np.zeros((4, 4), dtype=np.uint8), None, ORIGIN, CRS, tile="t", label="debris"), run_id="r", model="fdi"
    )
    assert len(none) == 0 and none.crs.to_epsg() == 4326
    assert list(none.columns) == list(some.columns)
    assert none.dtypes.to_dict() == some.dtypes.to_dict()


def test_read_parts_reads_non_empty_parts_in_tile_key_order_and_skips_leftovers(tmp_path: Path):
    mask = _mask_64()
    score = np.ones(mask.shape)
    written = []
    for r in range(2):
        for c in range(2):
            sl = np.s_[r * TILE : (r + 1) * TILE, c * TILE : (c + 1) * TILE]
            gdf = polygonize(mask[sl], score[sl], ORIGIN * Affine.translation(c * TILE, r * TILE), CRS,
                             tile=f"tile-{r}-{c}-t", label="debris")
            gdf.to_parquet(tmp_path / f"tile-{r}-{c}-t.parquet")
            written.append(gdf)
    empty = polygonize(np.zeros((4, 4), dtype=np.uint8), None, ORIGIN, CRS, tile="tile-9-9-t", label="debris")
    empty.to_parquet(tmp_path / "tile-9-9-t.parquet")
    (tmp_path / "tile-5-5-t.tmp").write_bytes(b"half a part")  # a killed writer's leftover
    got = read_parts(tmp_path, CRS)
    expected = gpd.GeoDataFrame(pd.concat([g for g in written if len(g)], ignore_index=True), crs=CRS)
    assert_geodataframe_equal(got, expected)


def test_read_parts_of_a_run_without_detections_is_empty_with_its_crs(tmp_path: Path):
    assert len(read_parts(tmp_path, CRS)) == 0
    polygonize(np.zeros((4, 4), dtype=np.uint8), None, ORIGIN, CRS, tile="t", label="d").to_parquet(tmp_path / "t.parquet")
    got = read_parts(tmp_path, CRS)
    assert len(got) == 0 and got.crs.to_string() == CRS and set(got.columns) == set(COLUMNS)
