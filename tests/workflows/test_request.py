"""The request value: built once from loose values, written to a run folder and read back equal."""

from __future__ import annotations

import json

import pytest

from geoloom.platform.catalog import search_scenes
from geoloom.platform.errors import OutputError, PlanError, RegionError, RunError
from geoloom.platform.plan import Plan, plan_tiles
from geoloom.platform.region import DEFAULT_MAX_AREA_KM2, Region, as_region
from geoloom.runtime.model_cache import ModelSpec
from geoloom.workflows import Execution, Grid, Imagery, RunRequest, build_request, request_from_folder

BAY = (-0.054, 5.618, -0.027, 5.645)


def full_request(out: str = "runs/x") -> RunRequest:
    return build_request(
        "sample-bay", model="marine-debris", out=out, threshold=0.4, catalog="https://example.test/v1",
        collection="sentinel-2-l2a", start="2024-01-01", end="2024-01-31", max_cloud=20,
        query=["s2:mgrs_tile=31NBG", "view:sun_elevation>30"], sign="planetary-computer", resolution=20.0,
        crs="EPSG:32631", tile_size=256, runtime="in-process", cluster=None, workers=3, retries=5,
    )


def test_a_request_reads_back_equal_from_its_dict_and_json():
    req = full_request()
    assert RunRequest.from_dict(req.to_dict()) == req
    assert RunRequest.from_dict(json.loads(json.dumps(req.to_dict()))) == req
    assert req.region.source == "preset" and req.model == ModelSpec("marine-debris", {"threshold": 0.4})
    assert req.imagery.query == {"s2:mgrs_tile": {"eq": "31NBG"}, "view:sun_elevation": {"gt": 30}}
    assert req.grid == Grid(20.0, "EPSG:32631", 256) and req.execution == Execution("in-process", None, 3, 5)


def test_the_folder_copy_leaves_out_where_and_how_it_ran():
    req = full_request()
    stored = req.to_folder_dict()
    assert "out" not in stored and "execution" not in stored
    back = RunRequest.from_dict(stored, out="elsewhere")
    assert back.replace(out=req.out, execution=req.execution) == req


def test_imagery_filters_write_back_as_the_text_users_type():
    im = Imagery("c", query={"s2:mgrs_tile": {"eq": "31NBG"}, "eo:cloud_cover": {"lte": 20.5}})
    assert im.query_expressions() == ["s2:mgrs_tile=31NBG", "eo:cloud_cover<=20.5"]
    assert build_request(BAY, out="o", catalog="c", query=im.query_expressions()).imagery.query == im.query


def test_the_area_limit_has_one_default_and_none_means_no_limit():
    big = (-10.0, -10.0, 10.0, 10.0)
    assert as_region(big, max_area_km2=None).area_km2 > DEFAULT_MAX_AREA_KM2
    with pytest.raises(RegionError, match="limit"):
        build_request(big, out="o", catalog="c")
    assert build_request(big, out="o", catalog="c", max_area_km2=None).region.area_km2 > DEFAULT_MAX_AREA_KM2


def test_bad_values_are_user_errors():
    with pytest.raises(OutputError, match="out="):
        build_request(BAY, out=None, catalog="c")
    with pytest.raises(RunError, match="runtime"):
        build_request(BAY, out="o", catalog="c", runtime="threads")


def test_a_region_reads_back_with_its_name_and_source():
    for region in (as_region("sample-bay"), Region.from_bbox((179.5, 0, -179.5, 1), name="dateline"),
                   Region.from_geometry(Region.from_bbox(BAY).geometry, name="drawn area", source="drawn")):
        back = Region.from_dict(json.loads(json.dumps(region.to_dict())))
        assert back == region and (back.name, back.source) == (region.name, region.source)


def test_a_plan_rebuilds_from_what_defines_it(sample_catalog):
    region = as_region("sample-bay")
    scenes = search_scenes(str(sample_catalog), region)
    plan = plan_tiles(region, scenes, bands=("red", "nir"), resolution=10.0, halo=4, tile_size=128)
    back = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert back == plan and back.token == plan.token
    assert [t.key for t in back.tiles] == [t.key for t in plan.tiles]
    changed = {**plan.to_dict(), "halo": 6}
    with pytest.raises(PlanError, match="does not rebuild"):
        Plan.from_dict(changed)


def test_request_from_folder_refuses_an_older_or_empty_folder(tmp_path):
    with pytest.raises(OutputError, match="no run to resume"):
        request_from_folder(tmp_path)
    (tmp_path / "request.json").write_text(json.dumps({"run_id": "x", "parameters": {}, "region": {}}))
    with pytest.raises(OutputError, match="older geoloom"):
        request_from_folder(tmp_path)


def test_scenes_left_out_are_not_used_and_leaving_out_all_is_explained(sample_catalog):
    from geoloom.platform.errors import NoImageryError
    from geoloom.workflows import plan_request

    full = plan_request(build_request("sample-bay", model="fdi", out="o", catalog=sample_catalog))
    dropped = full.scenes[0].id
    fewer = plan_request(build_request("sample-bay", model="fdi", out="o", catalog=sample_catalog, exclude=[dropped]))
    assert dropped not in {s.id for s in fewer.scenes} and len(fewer.scenes) == len(full.scenes) - 1
    assert fewer.request.imagery.exclude == (dropped,)
    assert RunRequest.from_dict(fewer.request.to_dict()) == fewer.request
    with pytest.raises(NoImageryError, match="left out"):
        plan_request(build_request("sample-bay", model="fdi", out="o", catalog=sample_catalog,
                                   exclude=[s.id for s in full.scenes] + ["x"]))
