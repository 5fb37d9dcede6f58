"""The mosaic sink: a Zarr v3 store on the plan's grid, written whole chunks at a time."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from affine import Affine
from pyproj import CRS
from shapely.geometry import box

from geoloom.platform.catalog import Scene
from geoloom.platform.models.card import OutputSpec
from geoloom.platform.mosaic import create_store, drop_partial_chunks, open_store, write_tile
from geoloom.platform.plan import Plan, TileTask, plan_tiles
from geoloom.platform.region import Region

OUTPUTS = (
    OutputSpec("prob", "probability", description="debris probability"),
    OutputSpec("cls", "class", dtype="uint8", nodata=255, classes={1: "debris", 2: "open water"}),
    OutputSpec("mask", "mask", dtype="uint8"),
)


@pytest.fixture(scope="module")
def plan() -> Plan:
    """A 90 x 82 px grid at 10 m in UTM 30N, tiles of 32 px (the last row and column are partial)."""
    region = Region.from_bbox((-3.0, 43.0, -2.99, 43.008), name="tiny")
    scene = Scene(id="S2A_1", datetime="2024-05-01T11:00:00Z", cloud_cover=3.0,
                  footprint=box(-3.1, 42.9, -2.9, 43.1), assets={}, collection="sentinel-2-l2a")
    return plan_tiles(region, [scene], bands=("red", "nir"), resolution=10, halo=2, tile_size=32)


@pytest.fixture()
def store(tmp_path: Path, plan: Plan) -> Path:
    """An empty store for the plan."""
    path = tmp_path / "result.zarr"
    create_store(path, plan, OUTPUTS, attrs={"run_id": "run-1", "model": "fdi"})
    return path


def _tile_values(task: TileTask) -> dict[str, np.ndarray]:
    """Layers that name the tile they came from (value = row * 10 + col + 1)."""
    v = task.row * 10 + task.col + 1
    shape = task.core_shape_yx
    return {
        "prob": np.full(shape, v / 100, dtype=np.float64),  # float64 in, float32 in the store
        "cls": np.full(shape, v, dtype=np.int64),
        "mask": np.full(shape, v % 2, dtype=bool),
    }


def _chunk_files(path: Path) -> set[str]:
    """Chunk files of the data layers, as ``layer/c/i/j``."""
    return {str(p.relative_to(path)) for name in ("prob", "cls", "mask") for p in (path / name).rglob("*") if p.is_file()
            and p.name != "zarr.json"}


def test_plan_has_partial_edge_tiles(plan: Plan):
    assert plan.shape_yx == (90, 82) and plan.tile_size == 32 and len(plan.tiles) == 9
    assert {t.core_shape_yx for t in plan.tiles} == {(32, 32), (32, 18), (26, 32), (26, 18)}


def test_store_has_the_plan_grid_readable_by_xarray_and_rioxarray(store: Path, plan: Plan):
    ds = open_store(store)
    assert set(ds.data_vars) == {"prob", "cls", "mask"}
    assert ds.sizes == {"y": 90, "x": 82}
    t = Affine(*plan.transform)
    np.testing.assert_allclose(ds.x.values, t.c + t.a * (np.arange(82) + 0.5))
    np.testing.assert_allclose(ds.y.values, t.f + t.e * (np.arange(90) + 0.5))
    assert ds.rio.crs.to_string() == plan.crs
    assert tuple(ds.rio.transform())[:6] == pytest.approx(plan.transform)
    assert tuple(ds.rio.transform(recalc=True))[:6] == pytest.approx(plan.transform)
    for name in ("prob", "cls", "mask"):
        assert ds[name].rio.crs.to_string() == plan.crs
        assert ds[name].dims == ("y", "x")
    assert ds.attrs["run_id"] == "run-1" and ds.attrs["model"] == "fdi"


def test_store_grid_mapping_is_cf_for_plain_xarray(store: Path, plan: Plan):
    with xr.open_zarr(str(store), consolidated=False) as ds:  # no rioxarray decoding
        for name in ("prob", "cls", "mask"):
            gm = ds[name].attrs.get("grid_mapping") or ds[name].encoding.get("grid_mapping")
            assert gm == "spatial_ref"
        assert CRS.from_cf(ds["spatial_ref"].attrs) == CRS(plan.crs)
        gt = [float(v) for v in ds["spatial_ref"].attrs["GeoTransform"].split()]
        assert Affine.from_gdal(*gt) == Affine(*plan.transform)


def test_store_is_metadata_only_with_tile_chunks_and_declared_fill(store: Path):
    assert _chunk_files(store) == set()
    meta = json.loads((store / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    group = zarr.open_group(str(store), mode="r")
    for name in ("prob", "cls", "mask"):
        assert group[name].chunks == (32, 32)
    assert group["prob"].dtype == np.float32 and np.isnan(group["prob"].fill_value)
    assert group["cls"].dtype == np.uint8 and group["cls"].fill_value == 255
    assert group["mask"].dtype == np.uint8 and group["mask"].fill_value == 0
    ds = open_store(store)
    assert np.isnan(ds["prob"].values).all()
    assert (ds["cls"].values == 255).all()
    assert (ds["mask"].values == 0).all()


def test_layer_attributes_describe_kind_classes_and_range(store: Path):
    ds = open_store(store)
    assert ds["prob"].attrs["long_name"] == "debris probability"
    assert ds["prob"].attrs["kind"] == "probability"
    assert list(ds["prob"].attrs["valid_range"]) == [0.0, 1.0]
    assert list(ds["cls"].attrs["flag_values"]) == [1, 2]
    assert ds["cls"].attrs["flag_meanings"] == "debris open_water"
    assert ds["mask"].attrs["long_name"] == "mask" and "flag_values" not in ds["mask"].attrs


def test_tile_writes_land_on_their_cores_including_partial_edge_tiles(store: Path, plan: Plan):
    expected = {
        "prob": np.full(plan.shape_yx, np.nan, dtype=np.float32),
        "cls": np.full(plan.shape_yx, 255, dtype=np.uint8),
        "mask": np.zeros(plan.shape_yx, dtype=np.uint8),
    }
    for task in reversed(plan.tiles):  # any order
        layers = _tile_values(task)
        write_tile(store, task, layers, tile_size=plan.tile_size)
        y0, y1, x0, x1 = task.core_yx
        for name, arr in layers.items():
            expected[name][y0:y1, x0:x1] = arr
    ds = open_store(store)
    for name, arr in expected.items():
        assert ds[name].dtype == arr.dtype
        np.testing.assert_array_equal(ds[name].values, arr, err_msg=name)
    assert not np.isnan(ds["prob"].values).any(), "the tiles cover the whole grid"


def test_one_tile_write_touches_only_its_own_chunk(store: Path, plan: Plan):
    task = next(t for t in plan.tiles if (t.row, t.col) == (1, 2))  # 32 x 18, on the east edge
    write_tile(store, task, {"prob": np.full(task.core_shape_yx, 0.5)}, tile_size=plan.tile_size)
    assert _chunk_files(store) == {"prob/c/1/2"}
    values = open_store(store)["prob"].values
    y0, y1, x0, x1 = task.core_yx
    assert (values[y0:y1, x0:x1] == 0.5).all()
    values[y0:y1, x0:x1] = np.nan
    assert np.isnan(values).all()


def test_a_tile_written_again_replaces_its_values(store: Path, plan: Plan):
    task = plan.tiles[0]
    write_tile(store, task, {"cls": np.full(task.core_shape_yx, 1)}, tile_size=plan.tile_size)
    write_tile(store, task, {"cls": np.full(task.core_shape_yx, 2)}, tile_size=plan.tile_size)
    assert (open_store(store)["cls"].values[:32, :32] == 2).all()


@pytest.mark.parametrize(
    "core",
    [(16, 48, 0, 32), (0, 32, 8, 40), (0, 20, 0, 32), (32, 64, 32, 50)],
    ids=["starts-mid-chunk-y", "starts-mid-chunk-x", "ends-mid-chunk-y", "ends-mid-chunk-x"],
)
def test_a_core_that_is_not_whole_chunks_is_refused_and_nothing_is_written(store: Path, plan: Plan, core):
    task = replace(plan.tiles[0], core_yx=core, key="tile-x")
    y0, y1, x0, x1 = core
    with pytest.raises(RuntimeError, match="tile-x"):
        write_tile(store, task, {"prob": np.ones((y1 - y0, x1 - x0))}, tile_size=plan.tile_size)
    assert _chunk_files(store) == set()


def test_a_layer_of_the_wrong_shape_is_refused(store: Path, plan: Plan):
    task = plan.tiles[0]
    with pytest.raises(RuntimeError, match="shape"):
        write_tile(store, task, {"prob": np.ones((32, 31))}, tile_size=plan.tile_size)
    assert _chunk_files(store) == set()


def test_a_refused_layer_leaves_the_other_layers_of_the_tile_unwritten(store: Path, plan: Plan):
    task = plan.tiles[0]
    layers = {"prob": np.ones((32, 32)), "cls": np.ones((30, 32))}  # the second layer is wrong
    with pytest.raises(RuntimeError, match="cls"):
        write_tile(store, task, layers, tile_size=plan.tile_size)
    assert _chunk_files(store) == set(), "a tile is written whole or not at all"


def test_drop_partial_chunks_removes_only_partial_leftovers(store: Path, plan: Plan):
    for task in plan.tiles[:2]:
        write_tile(store, task, _tile_values(task), tile_size=plan.tile_size)
    before = open_store(store).load()
    whole = _chunk_files(store)
    leftovers = [store / "prob" / "c" / "0" / "0.0a1b2c3d.partial", store / "cls" / "c" / "2" / "2.ffee0011.partial"]
    for p in leftovers:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"half a chunk")
    (store / "mask" / "c" / "odd.partial").mkdir(parents=True)  # a folder, not a leftover file
    (store / "notes.partial.txt").write_text("kept")

    assert drop_partial_chunks(store) == 2
    assert not any(p.exists() for p in leftovers)
    assert (store / "mask" / "c" / "odd.partial").is_dir() and (store / "notes.partial.txt").exists()
    assert _chunk_files(store) == whole
    xr.testing.assert_identical(open_store(store).load(), before)
    assert drop_partial_chunks(store) == 0


def test_drop_partial_chunks_of_a_missing_store_removes_nothing(tmp_path: Path):
    assert drop_partial_chunks(tmp_path / "absent.zarr") == 0


def test_open_store_is_lazy(store: Path):
    ds = open_store(store)
    assert ds["prob"].chunks == ((32, 32, 26), (32, 32, 18))
