"""catalog index: real GeoTIFFs written in tmp, indexed, then read back through catalog and reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from affine import Affine

from geoloom.platform.catalog import open_catalog, scene_from_item, search_scenes
from geoloom.platform.catalog_index import INDEX_CATALOG_ID, index_folder
from geoloom.platform.errors import CatalogError, GeoloomError, ImageryReadError, NoImageryError, OutputError
from geoloom.platform.reading import read_band
from geoloom.platform.region import Region

UTM31 = "EPSG:32631"
X0, Y0 = 300_000.0, 10_000.0  # UTM 31N near the equator: about 1.2 E, 0.09 N
S2_SCENE = "T31NBH_20240301T101559"
LANDSAT_SCENE = "LC09_L2SP_198030_20240301_20240305_02_T1"


def write_tif(
    path: Path,
    data: np.ndarray,
    *,
    crs: str = UTM31,
    res: float = 10.0,
    origin: tuple[float, float] = (X0, Y0),
    nodata: float | None = 0,
    descriptions: list[str] | None = None,
    scales: list[float] | None = None,
    offsets: list[float] | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """A small GeoTIFF; ``data`` is (bands, rows, cols) or (rows, cols)."""
    data = data if data.ndim == 3 else data[None]
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(
        driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
        crs=crs, transform=Affine(res, 0.0, origin[0], 0.0, -res, origin[1]), nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, d in enumerate(descriptions or [], 1):
            dst.set_band_description(i, d)
        if scales:
            dst.scales = scales
        if offsets:
            dst.offsets = offsets
        if tags:
            dst.update_tags(**tags)
    return path


def dn(shape: tuple[int, int], seed: int = 0, low: int = 100, high: int = 9000) -> np.ndarray:
    return np.random.default_rng(seed).integers(low, high, size=shape, dtype=np.uint16)


def make_s2_scene(folder: Path, scene: str = S2_SCENE, *, x0: float = X0) -> dict[str, Path]:
    """A Sentinel-2 L2A granule split per band: B02/B03/B04/B08 at 10 m, B8A/B11/SCL at 20 m."""
    paths = {}
    for i, b in enumerate(["B02", "B03", "B04", "B08"]):
        paths[b] = write_tif(folder / f"{scene}_{b}_10m.tif", dn((64, 64), i), origin=(x0, Y0))
    for i, b in enumerate(["B8A", "B11"]):
        paths[b] = write_tif(folder / f"{scene}_{b}_20m.tif", dn((32, 32), 10 + i), res=20, origin=(x0, Y0))
    scl = np.full((32, 32), 6, np.uint8)
    scl[:8, :] = 9  # a quarter cloud (high probability)
    paths["SCL"] = write_tif(folder / f"{scene}_SCL_20m.tif", scl, res=20, origin=(x0, Y0))
    return paths


def make_landsat_scene(folder: Path, scene: str = LANDSAT_SCENE) -> dict[str, Path]:
    paths = {}
    for i in range(2, 8):
        paths[f"SR_B{i}"] = write_tif(
            folder / f"{scene}_SR_B{i}.TIF", dn((32, 32), i, 7000, 30000), res=30
        )
    qa = np.full((32, 32), 21824, np.uint16)  # clear water
    qa[:16, :] = 22280  # cloud bit set
    paths["QA_PIXEL"] = write_tif(folder / f"{scene}_QA_PIXEL.TIF", qa, res=30, nodata=1)
    return paths


def items_of(catalog_path: Path) -> dict[str, pystac.Item]:
    return {i.id: i for i in pystac.Catalog.from_file(str(catalog_path)).get_items(recursive=True)}


def region_around(scene_paths: dict[str, Path]) -> Region:
    with rasterio.open(next(iter(scene_paths.values()))) as src:
        from rasterio.warp import transform_bounds

        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
    return Region.from_bbox((w, s, e, n))


def same_grid_geobox(path: Path) -> GeoBox:
    """The file's own pixel grid, so that bilinear warping returns the stored values."""
    with rasterio.open(path) as src:
        return GeoBox((src.height, src.width), src.transform, str(src.crs))


# --------------------------------------------------------------------------- Sentinel-2


def test_s2_split_scene_is_one_item_with_canonical_band_assets(tmp_path):
    paths = make_s2_scene(tmp_path / "data")
    cat = index_folder(tmp_path / "data", tmp_path / "cat")
    assert cat == (tmp_path / "cat" / "catalog.json").resolve()

    items = items_of(cat)
    assert list(items) == [S2_SCENE]
    item = items[S2_SCENE]
    assert set(item.assets) == {"blue", "green", "red", "nir", "nir08", "swir16", "scl"}
    assert item.datetime.isoformat() == "2024-03-01T10:15:59+00:00"
    assert item.properties["proj:code"] == UTM31
    assert item.properties["constellation"] == "sentinel-2"
    assert item.properties["eo:cloud_cover"] == pytest.approx(25.0)
    assert item.collection_id == "local-imagery"

    blue, nir08 = item.assets["blue"], item.assets["nir08"]
    assert blue.extra_fields["proj:shape"] == [64, 64]
    assert blue.extra_fields["proj:transform"] == [10.0, 0.0, X0, 0.0, -10.0, Y0]
    assert nir08.extra_fields["proj:shape"] == [32, 32]
    assert nir08.extra_fields["proj:transform"] == [20.0, 0.0, X0, 0.0, -20.0, Y0]
    assert blue.extra_fields["proj:code"] == UTM31
    assert blue.roles == ["data"]
    assert "tiff" in blue.media_type
    rb = blue.extra_fields["raster:bands"][0]
    assert rb["data_type"] == "uint16" and rb["nodata"] == 0
    assert "scale" not in rb and "offset" not in rb  # undeclared: the reader's integer default applies
    assert blue.extra_fields["eo:bands"][0]["common_name"] == "blue"
    assert blue.extra_fields["eo:bands"][0]["center_wavelength"] == pytest.approx(0.49)
    assert Path(blue.get_absolute_href()) == paths["B02"].resolve()

    scenes = search_scenes(cat, region_around(paths))
    assert [s.id for s in scenes] == [S2_SCENE]
    scene = scenes[0]
    assert scene.bands == {"blue", "green", "red", "nir", "nir08", "swir16", "scl"}
    assert scene.assets["blue"].scale == pytest.approx(1e-4)
    assert scene.crs == UTM31
    assert Path(scene.assets["swir16"].href) == paths["B11"].resolve()

    with pytest.raises(NoImageryError):
        search_scenes(cat, Region.from_bbox((20.0, 40.0, 20.5, 40.5)))


def test_s2_safe_layout_keeps_finest_copy_and_baseline_offset(tmp_path):
    safe = tmp_path / "data" / "S2A_MSIL2A_20240301T101559_N0510_R065_T31NBH_20240301T140000.SAFE"
    img = safe / "GRANULE" / "L2A_T31NBH_A045000_20240301T101559" / "IMG_DATA"
    write_tif(img / "R10m" / f"{S2_SCENE}_B02_10m.tif", dn((64, 64)))
    write_tif(img / "R20m" / f"{S2_SCENE}_B02_20m.tif", dn((32, 32)), res=20)
    write_tif(img / "R20m" / f"{S2_SCENE}_SCL_20m.tif", np.full((32, 32), 4, np.uint8), res=20)
    item = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))[S2_SCENE]
    assert set(item.assets) == {"blue", "scl"}
    assert item.assets["blue"].extra_fields["proj:shape"] == [64, 64]
    rb = item.assets["blue"].extra_fields["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (pytest.approx(1e-4), pytest.approx(-0.1))
    assert "offset" not in item.assets["scl"].extra_fields["raster:bands"][0]
    assert item.properties["platform"] == "sentinel-2a"


def test_earth_search_folder_of_band_files(tmp_path):
    scene = tmp_path / "data" / "S2B_31NBH_20240305_0_L2A"
    write_tif(scene / "B04.tif", dn((64, 64)))
    write_tif(scene / "B08.tif", dn((64, 64), 1))
    write_tif(scene / "SCL.tif", np.full((32, 32), 6, np.uint8), res=20)
    item = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))["S2B_31NBH_20240305_0_L2A"]
    assert set(item.assets) == {"red", "nir", "scl"}
    assert item.datetime.date().isoformat() == "2024-03-05"


def test_same_band_twice_at_same_resolution_is_an_error(tmp_path):
    write_tif(tmp_path / "data" / "a" / f"{S2_SCENE}_B02_10m.tif", dn((64, 64)))
    write_tif(tmp_path / "data" / "b" / f"{S2_SCENE}_B02_10m.tif", dn((64, 64)))
    with pytest.raises(CatalogError, match="both band blue"):
        index_folder(tmp_path / "data", tmp_path / "cat")
    assert not (tmp_path / "cat").exists()


# --------------------------------------------------------------------------- Landsat


def test_landsat_split_scene_common_names_and_sr_scale(tmp_path):
    paths = make_landsat_scene(tmp_path / "data")
    item = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))[LANDSAT_SCENE]
    assert set(item.assets) == {"blue", "green", "red", "nir", "swir16", "swir22", "qa_pixel"}
    for key in ("blue", "nir", "swir22"):
        rb = item.assets[key].extra_fields["raster:bands"][0]
        assert rb["scale"] == pytest.approx(2.75e-5) and rb["offset"] == pytest.approx(-0.2)
    assert item.assets["nir"].extra_fields["eo:bands"][0]["common_name"] == "nir08"
    assert item.assets["nir"].extra_fields["proj:shape"] == [32, 32]
    assert item.assets["qa_pixel"].extra_fields["raster:bands"][0]["scale"] == 1.0
    assert item.properties["platform"] == "landsat-9"
    assert item.properties["eo:cloud_cover"] == pytest.approx(50.0)  # from QA_PIXEL
    assert item.datetime.isoformat() == "2024-03-01T00:00:00+00:00"  # acquisition, not processing date

    scene = scene_from_item(item)
    assert scene.assets["red"].scale == pytest.approx(2.75e-5)
    assert scene.assets["red"].offset == pytest.approx(-0.2)
    assert scene.assets["qa_pixel"].scale == 1.0
    assert Path(scene.assets["swir16"].href) == paths["SR_B6"].resolve()


def test_landsat_mtl_gives_time_and_cloud_cover(tmp_path):
    make_landsat_scene(tmp_path / "data")
    (tmp_path / "data" / f"{LANDSAT_SCENE}_MTL.txt").write_text(
        'GROUP = LANDSAT_METADATA_FILE\n  CLOUD_COVER = 12.34\n  DATE_ACQUIRED = 2024-03-01\n'
        '  SCENE_CENTER_TIME = "10:21:42.1234560Z"\nEND_GROUP = LANDSAT_METADATA_FILE\nEND\n'
    )
    item = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))[LANDSAT_SCENE]
    assert item.datetime.isoformat() == "2024-03-01T10:21:42+00:00"
    assert item.properties["eo:cloud_cover"] == pytest.approx(12.34)


def test_unknown_sensor_tokens_are_not_taken_for_sentinel2_bands(tmp_path):
    write_tif(tmp_path / "data" / "drone_20240301_B5.tif", dn((16, 16)))
    write_tif(tmp_path / "data" / "drone_20240301_B7.tif", dn((16, 16)))
    item = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))["drone_20240301"]
    assert set(item.assets) == {"band5", "band7"}
    assert scene_from_item(item).bands == {"band5", "band7"}  # not rededge1 / rededge3


# --------------------------------------------------------------------------- other GeoTIFFs


def test_multiband_float_files_become_one_item_each_with_eo_bands(tmp_path):
    data = np.random.default_rng(1).random((3, 20, 30), dtype=np.float32)
    write_tif(tmp_path / "data" / "geo_2024-03-02.tif", data, crs="EPSG:4326", res=0.001, origin=(1.0, 0.1),
              nodata=-9999, descriptions=["B04", "B08", "turbidity"])
    write_tif(tmp_path / "data" / "merc_20240303.tif", data[:2], crs="EPSG:3857", res=100, origin=(111_000, 11_000),
              nodata=None)
    items = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))
    assert set(items) == {"geo_2024-03-02", "merc_20240303"}

    geo = items["geo_2024-03-02"]
    assert list(geo.assets) == ["data"]
    asset = geo.assets["data"]
    assert [b["name"] for b in asset.extra_fields["eo:bands"]] == ["red", "nir", "band3"]
    assert asset.extra_fields["eo:bands"][2]["description"] == "turbidity"
    assert [b["data_type"] for b in asset.extra_fields["raster:bands"]] == ["float32"] * 3
    assert asset.extra_fields["raster:bands"][0]["nodata"] == -9999
    assert geo.properties["proj:code"] == "EPSG:4326"
    assert geo.bbox == pytest.approx([1.0, 0.08, 1.03, 0.1])
    assert geo.datetime.date().isoformat() == "2024-03-02"
    scene = scene_from_item(geo)
    assert scene.bands == {"red", "nir", "band3"}
    assert (scene.assets["nir"].bidx, scene.assets["band3"].bidx) == (2, 3)
    assert scene.assets["red"].scale == 1.0  # float data is already physical

    merc = items["merc_20240303"].assets["data"]
    assert [b["name"] for b in merc.extra_fields["eo:bands"]] == ["band1", "band2"]
    assert merc.extra_fields["proj:code"] == "EPSG:3857"
    assert "nodata" not in merc.extra_fields["raster:bands"][0]


def test_two_scenes_in_one_folder_are_two_items(tmp_path):
    make_s2_scene(tmp_path / "data", "T31NBH_20240301T101559")
    make_s2_scene(tmp_path / "data", "T31NBH_20240306T101601", x0=X0 + 640)
    items = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))
    assert sorted(items) == ["T31NBH_20240301T101559", "T31NBH_20240306T101601"]
    assert items["T31NBH_20240306T101601"].bbox[0] > items["T31NBH_20240301T101559"].bbox[0]
    assert all(len(i.assets) == 7 for i in items.values())


# --------------------------------------------------------------------------- bad input


def test_truncated_file_raises_naming_it_and_writes_nothing(tmp_path):
    paths = make_s2_scene(tmp_path / "data")
    raw = paths["B04"].read_bytes()
    paths["B04"].write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ImageryReadError) as info:
        index_folder(tmp_path / "data", tmp_path / "cat")
    assert str(paths["B04"]) in str(info.value) and info.value.href == str(paths["B04"])
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cat").exists()


def test_not_a_tiff_raises_imagery_read_error(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "notes_20240301.tif").write_text("not a tiff")
    with pytest.raises(ImageryReadError, match="notes_20240301.tif"):
        index_folder(tmp_path / "data", tmp_path / "cat")


def test_missing_or_empty_folder_raises_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="does not exist"):
        index_folder(tmp_path / "nope", tmp_path / "cat")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no imagery here")
    (tmp_path / "empty" / "._hidden_20240301.tif").write_bytes(b"\0" * 10)  # macOS resource fork: skipped
    with pytest.raises(CatalogError, match="no GeoTIFF"):
        index_folder(tmp_path / "empty", tmp_path / "cat")


def test_file_without_any_date_raises_catalog_error(tmp_path):
    write_tif(tmp_path / "data" / "ortho.tif", dn((16, 16)))
    with pytest.raises(CatalogError, match=r"no acquisition date for .*ortho\.tif.*YYYYMMDD"):
        index_folder(tmp_path / "data", tmp_path / "cat")


def test_date_from_tiff_tag_or_parent_folder(tmp_path):
    write_tif(tmp_path / "data" / "ortho.tif", dn((16, 16)), tags={"TIFFTAG_DATETIME": "2023:07:14 09:30:00"})
    write_tif(tmp_path / "data" / "2023-08-01" / "mosaic.tif", dn((16, 16)))
    items = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))
    assert items["ortho"].datetime.isoformat() == "2023-07-14T09:30:00+00:00"
    assert items["mosaic"].datetime.isoformat() == "2023-08-01T00:00:00+00:00"


def test_out_that_is_a_file_or_another_catalog_raises_output_error(tmp_path):
    make_s2_scene(tmp_path / "data")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        index_folder(tmp_path / "data", tmp_path / "afile")
    other = tmp_path / "other"
    pystac.Catalog(id="sample", description="someone else's").normalize_and_save(str(other))
    before = (other / "catalog.json").read_bytes()
    with pytest.raises(OutputError, match="another catalog"):
        index_folder(tmp_path / "data", other)
    assert (other / "catalog.json").read_bytes() == before
    assert issubclass(OutputError, GeoloomError)


# --------------------------------------------------------------------------- determinism, hrefs


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_indexing_twice_gives_identical_files(tmp_path):
    make_s2_scene(tmp_path / "data")
    make_landsat_scene(tmp_path / "data" / "landsat")
    index_folder(tmp_path / "data", tmp_path / "cat1")
    first = _tree(tmp_path / "cat1")
    index_folder(tmp_path / "data", tmp_path / "cat1")  # re-index in place
    index_folder(tmp_path / "data", tmp_path / "cat2")
    assert _tree(tmp_path / "cat1") == first
    assert _tree(tmp_path / "cat2") == first
    assert len(first) == 4  # catalog, collection, two items
    root = json.loads(first["catalog.json"])
    assert root["id"] == INDEX_CATALOG_ID
    text = b"".join(first.values()).decode()
    assert "created" not in text and str(tmp_path) not in text  # no timestamps, no absolute paths


def test_asset_hrefs_are_relative_and_resolve_to_the_original_files(tmp_path):
    paths = make_s2_scene(tmp_path / "imagery" / "s2")
    cat = index_folder(tmp_path / "imagery", tmp_path / "catalogs" / "mine")
    item_json = next((tmp_path / "catalogs" / "mine").rglob(f"{S2_SCENE}.json"))
    href = json.loads(item_json.read_text())["assets"]["red"]["href"]
    assert not Path(href).is_absolute()
    assert (item_json.parent / href).resolve() == paths["B04"].resolve()
    assert paths["B04"].exists()  # the files stay where they are
    assert {s.id for s in open_catalog(cat).get_items(recursive=True)} == {S2_SCENE}


# --------------------------------------------------------------------------- through the reader


def test_read_band_gives_scaled_values_across_catalog_and_reader(tmp_path):
    s2 = make_s2_scene(tmp_path / "data")
    ls = make_landsat_scene(tmp_path / "data" / "landsat")
    scaled = np.stack([dn((20, 20), 5, 10, 200), dn((20, 20), 6, 10, 200)])
    write_tif(tmp_path / "data" / "scaled_20240301.tif", scaled, scales=[0.5, 0.25], offsets=[1.0, -3.0],
              descriptions=["B04", "B08"])
    cat = index_folder(tmp_path / "data", tmp_path / "cat")
    scenes = {s.id: s for s in search_scenes(cat, region_around(s2))}
    assert set(scenes) == {S2_SCENE, LANDSAT_SCENE, "scaled_20240301"}

    with rasterio.open(ls["SR_B4"]) as src:
        raw = src.read(1).astype(np.float64)
    got = read_band(scenes[LANDSAT_SCENE].assets["red"], same_grid_geobox(ls["SR_B4"]))
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, raw * 2.75e-5 - 0.2, rtol=1e-5, atol=1e-6)

    with rasterio.open(s2["B08"]) as src:
        raw = src.read(1).astype(np.float64)
    got = read_band(scenes[S2_SCENE].assets["nir"], same_grid_geobox(s2["B08"]))
    np.testing.assert_allclose(got, raw * 1e-4, rtol=1e-6)

    path = tmp_path / "data" / "scaled_20240301.tif"
    got = read_band(scenes["scaled_20240301"].assets["nir"], same_grid_geobox(path))
    np.testing.assert_allclose(got, scaled[1] * 0.25 - 3.0, rtol=1e-6)


def test_nan_nodata_float_file_reads_through(tmp_path):
    data = np.random.default_rng(2).random((2, 16, 16), dtype=np.float32)
    data[:, :2, :2] = np.nan
    path = write_tif(tmp_path / "data" / "f_20240301.tif", data, nodata=float("nan"))
    item = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))["f_20240301"]
    assert item.assets["data"].extra_fields["raster:bands"][0]["nodata"] == "nan"
    got = read_band(scene_from_item(item).assets["band2"], same_grid_geobox(path))
    np.testing.assert_array_equal(np.isnan(got), np.isnan(data[1]))


# --------------------------------------------------------------------------- CLI


def test_cli_catalog_index(tmp_path):
    click_testing = pytest.importorskip("click.testing")
    from geoloom.workflows.cli import cli

    make_s2_scene(tmp_path / "data")
    runner = click_testing.CliRunner()
    ok = runner.invoke(cli, ["catalog", "index", str(tmp_path / "data"), "--out", str(tmp_path / "cat")])
    assert ok.exit_code == 0, ok.output
    assert ok.output.strip().endswith("catalog.json")
    bad = runner.invoke(cli, ["catalog", "index", str(tmp_path / "nope"), "--out", str(tmp_path / "cat2")])
    assert bad.exit_code == 2
    assert "Traceback" not in bad.output and "does not exist" in bad.output
