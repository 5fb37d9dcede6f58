"""Publishing: COGs equal to the store, a quicklook, detections files and a STAC manifest with provenance."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pystac
import pystac.validation
import pytest
import rasterio
import zarr
from affine import Affine
from geopandas.testing import assert_geodataframe_equal
from PIL import Image
from rasterio.enums import Resampling
from pystac.extensions.projection import ProjectionExtension
from shapely.geometry import box, shape

from geoloom.platform.catalog import Scene
from geoloom.platform.models.card import ModelCard, OutputSpec
from geoloom.platform.models.registry import get_card
from geoloom.platform.mosaic import create_store, open_store
from geoloom.platform.plan import Plan, plan_tiles
from geoloom.platform.publish import (
    STAGING_PREFIX,
    build_manifest,
    colorize,
    display_range,
    write_cog,
    write_detections,
    write_quicklook,
)
from geoloom.platform.region import Region
from geoloom.platform.vectors import finalize_detections, polygonize

SCENES = [
    Scene(id="S2A_MSIL2A_20240501", datetime="2024-05-01T11:00:00Z", cloud_cover=3.5,
          footprint=box(-3.1, 42.9, -2.9, 43.1), assets={}, collection="sentinel-2-l2a"),
    Scene(id="S2B_MSIL2A_20240506", datetime="2024-05-06T11:00:00Z", cloud_cover=12.0,
          footprint=box(-3.1, 42.9, -2.9, 43.1), assets={}, collection="sentinel-2-l2a"),
]
CLASSES = OutputSpec("cover", "class", dtype="uint8", nodata=255, classes={0: "water", 3: "debris", 7: "cloud"})


@pytest.fixture(scope="module")
def card() -> ModelCard:
    """The built-in FDI detector's card: a float index layer and a uint8 mask with nodata 255."""
    return get_card("fdi")


@pytest.fixture(scope="module")
def plan() -> Plan:
    """A 445 x 408 px grid at 1 m in UTM 30N (large enough for a COG overview), tiles of 32 px."""
    region = Region.from_bbox((-3.0, 43.0, -2.995, 43.004), name="bay-corner")
    return plan_tiles(region, SCENES, bands=("red", "nir", "swir16"), resolution=1, halo=4, tile_size=32)


@pytest.fixture(scope="module")
def outputs(card: ModelCard) -> tuple[OutputSpec, ...]:
    """The card's layers and a class layer."""
    return (*card.outputs, CLASSES)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, plan: Plan, outputs: tuple[OutputSpec, ...]) -> Path:
    """A store of smooth and checkerboard values (where averaging and nearest differ) and one no-data tile."""
    path = tmp_path_factory.mktemp("publish") / "result.zarr"
    create_store(path, plan, outputs)
    h, w = plan.shape_yx
    yy, xx = np.mgrid[0:h, 0:w]
    checker = (yy + xx) % 2
    fdi = (np.sin(yy / 17.0) * np.cos(xx / 23.0) * 0.05).astype(np.float32)
    fdi[128:256] = 0.1 * checker[128:256]
    layers = {"fdi": fdi, "debris": checker.astype(np.uint8), "cover": (7 * checker).astype(np.uint8)}
    group = zarr.open_group(str(path), mode="r+")
    for name, values in layers.items():
        values[32:64, 64:96] = np.nan if name == "fdi" else 255  # a tile that was never written
        group[name][:] = values
    return path


@pytest.fixture(scope="module")
def cogs(tmp_path_factory: pytest.TempPathFactory, store: Path, plan: Plan, outputs: tuple[OutputSpec, ...]) -> dict[str, Path]:
    """Every layer published as a COG, into a folder of their own."""
    out = tmp_path_factory.mktemp("cogs")
    return {spec.name: write_cog(store, spec, plan, out / f"result-{spec.name}.tif") for spec in outputs}


def test_cogs_are_valid_cloud_optimized_geotiffs_with_overviews(cogs: dict[str, Path]):
    from rio_cogeo.cogeo import cog_validate

    for name, path in cogs.items():
        valid, errors, warnings = cog_validate(str(path))
        assert valid and not errors, (name, errors, warnings)
        with rasterio.open(path) as src:
            assert src.profile["tiled"] and src.block_shapes == [(256, 256)]
            assert src.overviews(1) == [2]
            assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"


def test_cogs_have_the_grid_crs_transform_nodata_and_layer_tags(cogs: dict[str, Path], plan: Plan,
                                                               outputs: tuple[OutputSpec, ...]):
    for spec in outputs:
        with rasterio.open(cogs[spec.name]) as src:
            assert src.crs.to_string() == plan.crs
            assert tuple(src.transform)[:6] == pytest.approx(plan.transform)
            assert src.shape == plan.shape_yx and src.count == 1
            assert src.dtypes[0] == spec.dtype
            assert src.tags(1) == {"name": spec.name, "kind": spec.kind}
    with rasterio.open(cogs["fdi"]) as src:
        assert math.isnan(src.nodata)
    for name in ("debris", "cover"):
        with rasterio.open(cogs[name]) as src:
            assert src.nodata == 255


def test_cog_values_equal_the_store_pixel_for_pixel(cogs: dict[str, Path], store: Path):
    ds = open_store(store)
    for name, path in cogs.items():
        with rasterio.open(path) as src:
            values = src.read(1)
        np.testing.assert_array_equal(values, ds[name].values, err_msg=name)  # NaN where NaN
    with rasterio.open(cogs["debris"]) as src:
        valid = src.read_masks(1) > 0
    assert not valid[32:64, 64:96].any() and valid.sum() == valid.size - 32 * 32


def test_cog_overviews_average_indices_and_keep_class_values(cogs: dict[str, Path]):
    with rasterio.open(cogs["cover"], overview_level=0) as src:
        assert set(np.unique(src.read(1))) == {0, 7, 255}, "a class overview holds class values only"
    with rasterio.open(cogs["fdi"], overview_level=0) as src:
        over = src.read(1)
    checker = over[70:120, 10:190]  # inside the checkerboard of 0 and 0.1 (rows 128-256 at full size)
    assert np.isfinite(checker).all()
    np.testing.assert_allclose(checker, 0.05, atol=0.02)  # averaged, not picked


def test_cogs_leave_no_staging_files_behind(cogs: dict[str, Path]):
    folder = next(iter(cogs.values())).parent
    beside = [p.with_suffix(s).name for p in cogs.values() for s in (".tif", ".qml")]  # each COG and its QGIS style
    assert sorted(p.name for p in folder.iterdir()) == sorted(beside)
    assert not any(p.name.startswith(STAGING_PREFIX) or p.name.endswith(".part") for p in folder.iterdir())


def test_a_cog_written_again_replaces_the_old_one(tmp_path: Path, store: Path, plan: Plan, card: ModelCard):
    dst = tmp_path / "result.tif"
    dst.write_bytes(b"an old, broken file")
    write_cog(store, card.output("debris"), plan, dst)
    with rasterio.open(dst) as src:
        assert src.shape == plan.shape_yx


def test_quicklook_is_a_decimated_rgba_png_with_transparent_nodata(tmp_path: Path, cogs: dict[str, Path], card: ModelCard):
    full = write_quicklook(cogs["debris"], card.output("debris"), tmp_path / "full.png")
    with Image.open(full) as im:
        assert im.format == "PNG" and im.mode == "RGBA" and im.size == (408, 445)
        rgba = np.asarray(im)
    assert (rgba[32:64, 64:96, 3] == 0).all(), "nodata is transparent"
    assert (rgba[:32, :, 3] == 255).all()
    # a mask's 0 and 1 are the ends of the ramp
    np.testing.assert_array_equal(rgba[0, 0], [68, 1, 84, 255])
    np.testing.assert_array_equal(rgba[0, 1], [253, 231, 37, 255])

    small = write_quicklook(cogs["fdi"], card.output("fdi"), tmp_path / "small.png", max_size=100)
    with Image.open(small) as im:
        step = math.ceil(445 / 100)
        assert im.size == (math.ceil(408 / step), math.ceil(445 / step)) == (82, 89)
        assert max(im.size) <= 100
        alpha = np.array(im)[..., 3]
    assert (alpha[8:12, 14:18] == 0).all(), "the no-data tile stays transparent when decimated"
    alpha[6:14, 12:20] = 255
    assert (alpha == 255).all()
    assert not list(tmp_path.glob("*.part"))


def test_colorize_spans_the_ramp_clips_and_makes_nan_transparent():
    rgba = colorize(np.array([[-5.0, 0.0, 0.5, 1.0, 7.0, np.nan]]), 0.0, 1.0)
    assert rgba.dtype == np.uint8 and rgba.shape == (1, 6, 4)
    np.testing.assert_array_equal(rgba[0, 0], rgba[0, 1])  # below the range: the first colour
    np.testing.assert_array_equal(rgba[0, 4], rgba[0, 3])  # above: the last
    np.testing.assert_array_equal(rgba[0, 2], [33, 145, 140, 255])  # the middle stop
    assert list(rgba[0, :5, 3]) == [255] * 5 and rgba[0, 5, 3] == 0
    flat = colorize(np.full((2, 2), 3.0), 3.0, 3.0)  # an empty range does not divide by zero
    assert (flat[..., 3] == 255).all()


def test_display_range_is_fixed_for_probabilities_and_masks_and_robust_for_indices(card: ModelCard):
    values = np.linspace(-1, 1, 101, dtype=np.float32)
    values[0], values[-1] = -100.0, 100.0  # outliers do not stretch the range
    assert display_range(card.output("debris"), values) == (0.0, 1.0)
    lo, hi = display_range(card.output("fdi"), values)
    assert -1.0 < lo < -0.9 and 0.9 < hi < 1.0
    assert display_range(card.output("fdi"), np.full(4, np.nan, dtype=np.float32)) == (0.0, 1.0)
    lo, hi = display_range(card.output("fdi"), np.full(4, 0.25, dtype=np.float32))
    assert lo == 0.25 and hi > lo


def _manifest(plan: Plan, card: ModelCard) -> pystac.Item:
    """A manifest as a run writes it, with fixed timings."""
    return build_manifest(
        run_id="run-20240507-abc",
        plan=plan,
        model_card=card.to_dict(),
        parameters={"threshold": 0.02, "start": "2024-05-01", "end": "2024-05-07"},
        assets={
            "zarr": ("./result.zarr", "application/vnd+zarr", ["data"]),
            "result": ("./result.tif", "image/tiff; application=geotiff; profile=cloud-optimized", ["data"]),
            "quicklook": ("./quicklook.png", "image/png", ["overview"]),
        },
        tiles={"total": len(plan.tiles), "done": len(plan.tiles) - 1, "failed": 1, "missing": 0},
        timings={"seconds": {"execute": 1.5, "publish": 0.25}},
        version="1.2.3",
    )


def test_manifest_is_a_valid_stac_item_that_round_trips_through_json(plan: Plan, card: ModelCard):
    item = _manifest(plan, card)
    d = item.to_dict(include_self_link=False, transform_hrefs=False)
    pystac.validation.validate_dict(d, extensions=[])  # the core Item schema, shipped with pystac (offline)
    text = json.loads(json.dumps(d))
    back = pystac.Item.from_dict(text)
    assert back.to_dict(include_self_link=False, transform_hrefs=False) == text
    proj = ProjectionExtension.ext(back)
    assert proj.code == plan.crs
    assert tuple(proj.transform) == pytest.approx(plan.transform)
    assert tuple(proj.shape) == plan.shape_yx


def test_manifest_records_region_dates_scenes_model_version_grid_and_tiles(plan: Plan, card: ModelCard):
    item = _manifest(plan, card)
    p = item.properties
    assert item.id == "run-20240507-abc"
    assert shape(item.geometry).equals(plan.region.geometry)
    assert item.bbox == pytest.approx(list(plan.region.bbox_lonlat))
    assert item.datetime is None
    assert p["start_datetime"] == "2024-05-01T11:00:00Z" and p["end_datetime"] == "2024-05-06T11:00:00Z"
    assert p["geoloom:region"] == {"name": "bay-corner", "source": "bbox", "area_km2": round(plan.region.area_km2, 4)}
    model = p["geoloom:model"]
    assert model["name"] == "fdi" and model["sha256"] == card.sha256 and model["version"] == card.version
    assert model["bands"] == list(card.bands) and model["halo"] == card.halo and model["threshold"] == card.threshold
    assert p["geoloom:version"] == "1.2.3"
    assert p["geoloom:parameters"]["threshold"] == 0.02
    assert [s["id"] for s in p["geoloom:scenes"]] == [s.id for s in plan.scenes]
    assert {s["id"]: s["cloud_cover"] for s in p["geoloom:scenes"]} == {s.id: s.cloud_cover for s in SCENES}
    assert {s["collection"] for s in p["geoloom:scenes"]} == {"sentinel-2-l2a"}
    assert p["geoloom:tiles"]["failed"] == 1 and p["geoloom:timings"]["seconds"]["execute"] == 1.5
    assert p["geoloom:tile_size"] == 32 and p["geoloom:halo"] == 4
    derived = [link.extra_fields["title"] for link in item.links if link.rel == "derived_from"]
    assert sorted(derived) == sorted(s.id for s in SCENES)
    assert item.assets["result"].media_type.endswith("profile=cloud-optimized")
    assert item.assets["quicklook"].roles == ["overview"] and item.assets["zarr"].href == "./result.zarr"


def test_manifest_of_a_region_across_the_antimeridian_keeps_the_split_geometry(card: ModelCard):
    region = Region.from_bbox((179.99, -16.01, -179.99, -16.0), name="date-line")
    scene = Scene(id="S2A_fiji", datetime="2024-02-01T22:00:00Z", cloud_cover=0.0,
                  footprint=region.geometry, assets={}, collection="sentinel-2-l2a")
    plan = plan_tiles(region, [scene], bands=("red", "nir"), resolution=20, halo=0, tile_size=64)
    item = _manifest(plan, card)
    west, south, east, north = item.bbox
    assert west > east, "the bbox says it crosses the antimeridian (RFC 7946)"
    assert item.geometry["type"] == "MultiPolygon"
    pystac.validation.validate_dict(item.to_dict(include_self_link=False, transform_hrefs=False), extensions=[])
    assert item.properties["start_datetime"] == item.properties["end_datetime"] == "2024-02-01T22:00:00Z"


def _detections() -> gpd.GeoDataFrame:
    """Merged detections of a small mask, as a run publishes them."""
    m = np.zeros((40, 40), dtype=np.uint8)
    m[2:6, 3:9] = m[20:22, 20:30] = m[30, 5] = 1
    score = np.linspace(0, 1, m.size).reshape(m.shape)
    si = np.zeros(m.shape, dtype=np.int16)
    si[20:, :] = 1
    parts = polygonize(m, score, Affine(10, 0, 500_000, 0, -10, 4_761_710), "EPSG:32630", tile="tile-0-0-t",
                       label="fdi", scene_index=si, scenes=tuple((s.id, s.datetime) for s in SCENES))
    return finalize_detections(parts, run_id="run-1", model="fdi")


def test_detections_written_as_parquet_and_geojson_read_back_equal(tmp_path: Path):
    gdf = _detections()
    assert len(gdf) == 3
    pq, gj = write_detections(gdf, tmp_path)
    assert (pq.name, gj.name) == ("detections.parquet", "detections.geojson")
    assert_geodataframe_equal(gpd.read_parquet(pq), gdf)

    back = gpd.read_file(gj)
    assert back.crs.to_epsg() == 4326
    assert list(back.columns) == list(gdf.columns)
    back["datetime"] = pd.to_datetime(back["datetime"]).dt.strftime("%Y-%m-%dT%H:%M:%SZ")  # GDAL reads ISO text as dates
    back["pixels"] = back["pixels"].astype("int64")
    assert_geodataframe_equal(back, gdf, check_less_precise=True, check_dtype=False)
    features = json.loads(gj.read_text())["features"]
    assert [f["properties"]["id"] for f in features] == ["run-1-0", "run-1-1", "run-1-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["detections.geojson", "detections.parquet"]


def test_no_detections_write_an_empty_parquet_with_the_columns_and_an_empty_feature_collection(tmp_path: Path):
    some = _detections()
    none = some.iloc[:0]
    pq, gj = write_detections(some, tmp_path)  # a first publish with detections, then one without
    pq, gj = write_detections(none, tmp_path)
    back = gpd.read_parquet(pq)
    assert len(back) == 0 and list(back.columns) == list(some.columns) and back.crs.to_epsg() == 4326
    assert json.loads(gj.read_text()) == {"type": "FeatureCollection", "features": []}
    assert len(gpd.read_file(gj)) == 0


@pytest.mark.parametrize("shape", [(445, 408), (300, 1030), (256, 256), (4096, 4096)])
def test_cog_overviews_are_the_ones_gdals_cog_driver_builds(tmp_path: Path, shape: tuple[int, int]):
    """The overviews are built in the staging file (cheaper); they are the levels the COG driver would
    build itself, with its pixels where the sides divide (averaged or picked)."""
    from rasterio.shutil import copy as copy_dataset

    from geoloom.platform.publish import cog_overview_factors

    h, w = shape
    rng = np.random.default_rng(h + w)
    for dtype, resampling in (("float32", "AVERAGE"), ("uint8", "NEAREST")):
        values = rng.random((h, w)).astype(dtype) if dtype == "float32" else rng.integers(0, 3, (h, w), dtype=np.uint8)
        nodata = np.nan if dtype == "float32" else 255
        values[: h // 3, : w // 5] = nodata  # no data in a corner (e.g. land), and in specks
        values[rng.random((h, w)) < 0.05] = nodata
        plain, ours, gdals = tmp_path / f"{dtype}-plain.tif", tmp_path / f"{dtype}-ours.tif", tmp_path / f"{dtype}-gdal.tif"
        profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=dtype, crs="EPSG:32630",
                       transform=Affine(1, 0, 500_000, 0, -1, 4_000_000), tiled=True, blockxsize=256, blockysize=256,
                       nodata=nodata)
        with rasterio.open(plain, "w", **profile) as dst:
            dst.write(values, 1)
        copy_dataset(str(plain), str(gdals), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256, OVERVIEW_RESAMPLING=resampling)
        with rasterio.open(plain, "r+") as dst:
            if cog_overview_factors(h, w):
                dst.build_overviews(cog_overview_factors(h, w), Resampling[resampling.lower()])
        copy_dataset(str(plain), str(ours), driver="COG", COMPRESS="DEFLATE", BLOCKSIZE=256, OVERVIEWS="AUTO")
        with rasterio.open(ours) as a, rasterio.open(gdals) as b:
            assert a.overviews(1) == b.overviews(1) == cog_overview_factors(h, w)
            for level, f in enumerate(a.overviews(1)):
                with rasterio.open(ours, overview_level=level) as oa, rasterio.open(gdals, overview_level=level) as ob:
                    if h % f == 0 and w % f == 0:  # the same pixels
                        np.testing.assert_array_equal(oa.read(1), ob.read(1), err_msg=f"{dtype} level {level}")
                    else:  # a side not divisible: the last row/column covers the edge (as gdaladdo makes it)
                        assert oa.shape == (-(-h // f), -(-w // f))
