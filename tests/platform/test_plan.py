"""Tile plans: the output grid of a region, cut into tiles whose cores are whole chunks, read with halos."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from odc.geo.geom import Geometry

from geoloom.platform.catalog import search_scenes
from geoloom.platform.errors import PlanError
from geoloom.platform.plan import output_geobox, plan_tiles, utm_crs_for
from geoloom.platform.region import Region, as_region


@pytest.fixture(scope="module")
def area_scenes(sample_catalog):
    region = as_region("sample-area")
    return region, search_scenes(str(sample_catalog), region)


def test_the_grid_is_the_regions_utm_zone_snapped_to_the_resolution():
    region = Region.from_bbox((2.10, 6.20, 2.30, 6.40))
    assert utm_crs_for(region) == "EPSG:32631"
    assert utm_crs_for(Region.from_bbox((-70.2, -33.6, -70.0, -33.4))) == "EPSG:32719"
    gbox = output_geobox(region, crs=None, resolution=20.0)
    t = gbox.transform
    assert (t.a, t.e) == (20.0, -20.0) and t.c % 20 == 0 and t.f % 20 == 0
    inside = Geometry(region.geometry, "epsg:4326").to_crs(gbox.crs)
    assert gbox.extent.contains(inside)


def test_tile_cores_cover_the_grid_once_and_reads_add_the_halo(area_scenes):
    region, scenes = area_scenes
    plan = plan_tiles(region, scenes, bands=("red", "nir"), resolution=10.0, halo=8, tile_size=256)
    h, w = plan.shape_yx
    hits = np.zeros((h, w), np.int16)
    for t in plan.tiles:
        y0, y1, x0, x1 = t.core_yx
        assert y0 % 256 == 0 and x0 % 256 == 0 and (y1 - y0 == 256 or y1 == h) and (x1 - x0 == 256 or x1 == w)
        hits[y0:y1, x0:x1] += 1
        assert t.read_shape_yx == (y1 - y0 + 16, x1 - x0 + 16)
        gt = plan.geobox.transform
        assert t.read_transform[2] == pytest.approx(gt.c + (x0 - 8) * gt.a)
        assert t.read_transform[5] == pytest.approx(gt.f + (y0 - 8) * gt.e)
    assert hits.max() == 1
    assert len({t.key for t in plan.tiles}) == len(plan.tiles)


def test_each_tile_names_the_scenes_that_reach_its_read_window(area_scenes):
    region, scenes = area_scenes
    plan = plan_tiles(region, scenes, bands=("red",), resolution=10.0, halo=4, tile_size=256)
    by_id = plan.scene_by_id
    for t in plan.tiles:
        window = shapely.box(*t.read_geobox.extent.to_crs("epsg:4326").boundingbox)
        for sid in t.scene_ids:
            assert shapely.intersects(by_id[sid].footprint, window)
        times = [by_id[s].time for s in t.scene_ids]
        assert times == sorted(times, reverse=True)  # the compositor's order


def test_bad_plans_are_user_errors(area_scenes):
    region, scenes = area_scenes
    with pytest.raises(PlanError, match="tile size"):
        plan_tiles(region, scenes, bands=("red",), resolution=10.0, halo=4, tile_size=8)
    with pytest.raises(PlanError, match="halo"):
        plan_tiles(region, scenes, bands=("red",), resolution=10.0, halo=300, tile_size=256)
    with pytest.raises(PlanError, match="resolution"):
        plan_tiles(region, scenes, bands=("red",), resolution=-5, halo=4, tile_size=256)
    with pytest.raises(PlanError, match="geographic"):
        plan_tiles(region, scenes, bands=("red",), resolution=10.0, halo=4, tile_size=256, crs="EPSG:4326")
    with pytest.raises(PlanError, match="unknown CRS"):
        plan_tiles(region, scenes, bands=("red",), resolution=10.0, halo=4, tile_size=256, crs="EPSG:999999")


def test_the_plan_summary_counts_what_will_be_read(area_scenes):
    region, scenes = area_scenes
    plan = plan_tiles(region, scenes, bands=("red", "nir"), resolution=10.0, halo=8, tile_size=256)
    s = plan.summary(mpx_per_s=2.0)
    assert s["tiles"] == len(plan.tiles) and s["pixels"] == int(np.prod(plan.shape_yx))
    assert s["pixels_read"] > s["pixels"] and s["bytes_to_read"] > 0 and s["estimated_seconds"] > 0
    assert s["scenes"] == [sc.id for sc in plan.scenes]
