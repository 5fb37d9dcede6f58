"""catalog index on Sentinel-2 products: SAFE folders, zips and loose JPEG 2000 band files, written by GDAL."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
import shapely.geometry
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from safe_products import (
    EPSG,
    NODATA_COLS_10M,
    ULX,
    ULY,
    Product,
    band_dn,
    copy_band_files,
    footprint_lonlat,
    write_safe,
    zip_safe,
)

from geoloom.platform import bands
from geoloom.platform.catalog import scene_from_item, search_scenes
from geoloom.platform.catalog_index import index_folder
from geoloom.platform.errors import CatalogError, GeoloomError, ImageryReadError, ProductError
from geoloom.platform.reading import read_band
from geoloom.platform.region import Region
from geoloom.platform.sensors import (
    REFLECTANCE_BANDS,
    S2_BANDS_BY_RESOLUTION,
    S2_LEVEL_BANDS,
    band_info,
    s2_offset_dn,
    s2_scale_offset,
)

L2A = Product()  # baseline 05.09: BOA_ADD_OFFSET -1000
L1C = Product(level="L1C", baseline="02.04", sensed=dt.datetime(2017, 2, 16, 10, 21, 1, tzinfo=dt.timezone.utc),
              spacecraft="S2A", cloud=3.25, seed=1)
L2A_BANDS = {"coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
             "swir16", "swir22", "scl", "aot", "wvp", "visual"}
#: Asset -> (band file token, native resolution) checked pixel by pixel.
CHECKED = {"blue": ("B02", 10), "rededge1": ("B05", 20), "coastal": ("B01", 60), "nir": ("B08", 10)}


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two products as SAFE folders (each in its own folder) and the L2A one zipped, built once."""
    root = tmp_path_factory.mktemp("s2")
    l2a = write_safe(root / "l2a", L2A)
    l1c = write_safe(root / "l1c", L1C)
    return {"l2a": l2a, "l1c": l1c, "zip": zip_safe(l2a, root / "zip")}


def items_of(catalog: Path) -> dict[str, pystac.Item]:
    return {i.id: i for i in pystac.Catalog.from_file(str(catalog)).get_items(recursive=True)}


def only_item(catalog: Path) -> pystac.Item:
    items = items_of(catalog)
    assert len(items) == 1, sorted(items)
    return next(iter(items.values()))


def expected_reflectance(product: Product, token: str, res: int) -> np.ndarray:
    """(DN + add_offset) / 10000 from the numbers the fixture wrote; NaN where DN is 0 (no data)."""
    dn = band_dn(product, token, res).astype(np.float64)
    out = (dn + product.offset_dn) / 10000.0
    out[dn == 0] = np.nan
    return out


def own_grid(item: pystac.Item, key: str) -> GeoBox:
    """The asset's own pixel grid, from its proj: fields."""
    a = item.assets[key].extra_fields
    return GeoBox(tuple(a["proj:shape"]), rasterio.Affine(*a["proj:transform"]), a["proj:code"])


def assert_reads_as_reflectance(item: pystac.Item, product: Product) -> None:
    """geoloom's reader gives (DN + offset) / 10000 for every checked band, read in memory and warped."""
    scene = scene_from_item(item)
    for key, (token, res) in CHECKED.items():
        for warp in (False, True):
            got = read_band(scene.assets[key], own_grid(item, key), force_warp=warp)
            np.testing.assert_allclose(got, expected_reflectance(product, token, res), rtol=0, atol=2e-7,
                                       err_msg=f"{item.id} {key} warped={warp}")


# ---------------------------------------------------------------------------- SAFE folders


def test_l2a_safe_folder_gives_one_item_with_the_product_metadata(products, tmp_path):
    item = only_item(index_folder(products["l2a"].parent, tmp_path / "cat"))
    assert item.id == L2A.name
    assert item.datetime == L2A.tile_sensing_time  # the granule's SENSING_TIME, microseconds included
    assert item.datetime.isoformat() == "2023-06-06T10:26:05.125508+00:00"
    p = item.properties
    assert p["processing:level"] == "L2A" and p["s2:processing_baseline"] == "05.09"
    assert p["s2:mgrs_tile"] == "33UUU" and p["s2:product_type"] == "S2MSI2A"
    assert p["platform"] == "sentinel-2b" and p["constellation"] == "sentinel-2"
    assert p["eo:cloud_cover"] == pytest.approx(12.5)
    assert p["proj:code"] == f"EPSG:{EPSG}"
    assert any("processing" in e for e in item.stac_extensions)
    assert set(item.assets) == L2A_BANDS

    for key, (token, res) in CHECKED.items():
        a = item.assets[key]
        n = 1200 // res
        assert a.extra_fields["proj:shape"] == [n, n]
        assert a.extra_fields["proj:transform"] == [res, 0.0, ULX, 0.0, -res, ULY]
        assert a.extra_fields["proj:code"] == f"EPSG:{EPSG}"
        assert a.media_type == pystac.MediaType.JPEG2000
        assert a.get_absolute_href().endswith(f"/R{res}m/{L2A.granule_scene}_{token}_{res}m.jp2")  # native copy
        rb = a.extra_fields["raster:bands"][0]
        assert (rb["scale"], rb["offset"], rb["nodata"]) == (pytest.approx(1e-4), pytest.approx(-0.1), 0)
    scl = item.assets["scl"]
    assert scl.get_absolute_href().endswith("_SCL_20m.jp2")
    assert "scale" not in scl.extra_fields["raster:bands"][0]
    assert item.assets["aot"].extra_fields["raster:bands"][0]["scale"] == pytest.approx(1e-3)
    assert item.assets["visual"].roles == ["visual"]
    assert scene_from_item(item).bands == L2A_BANDS - {"visual"}


def test_footprint_comes_from_the_product_metadata(products, tmp_path):
    item = only_item(index_folder(products["l2a"].parent, tmp_path / "cat"))
    footprint = shapely.geometry.shape(item.geometry)
    expected = shapely.geometry.Polygon(footprint_lonlat(L2A))
    assert footprint.symmetric_difference(expected).area < 1e-12
    west, *_ = Transformer.from_crs(EPSG, 4326, always_xy=True).transform(ULX, ULY - 600)
    assert item.bbox[0] > west  # the western quarter (no data) is left out, unlike the raster's bounds


def test_l1c_with_an_old_baseline_has_no_offset_and_a_cirrus_band(products, tmp_path):
    item = only_item(index_folder(products["l1c"].parent, tmp_path / "cat"))
    assert item.id == L1C.name
    assert item.datetime.isoformat() == "2017-02-16T10:21:07.125508+00:00"
    assert item.properties["processing:level"] == "L1C"
    assert item.properties["s2:processing_baseline"] == "02.04"
    assert item.properties["eo:cloud_cover"] == pytest.approx(3.25)
    assert set(item.assets) == set(S2_LEVEL_BANDS["L1C"]) | {"visual"}
    for key in ("blue", "cirrus", "swir22"):
        rb = item.assets[key].extra_fields["raster:bands"][0]
        assert (rb["scale"], rb["offset"]) == (pytest.approx(1e-4), 0.0)
    cirrus = item.assets["cirrus"]
    assert cirrus.get_absolute_href().endswith(f"{L1C.granule_scene}_B10.jp2")
    assert cirrus.extra_fields["eo:bands"][0]["center_wavelength"] == pytest.approx(1.375)
    assert cirrus.extra_fields["proj:shape"] == [20, 20]


@pytest.mark.parametrize("which", ["l2a", "l1c", "zip"])
def test_pixels_read_back_as_reflectance(products, tmp_path, which):
    product = L1C if which == "l1c" else L2A
    item = only_item(index_folder(products[which].parent, tmp_path / "cat"))
    assert_reads_as_reflectance(item, product)


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # the product has no grid, its parts do
def test_gdal_sentinel2_driver_reads_the_same_metadata(products, tmp_path):
    """The fixtures are shaped like ESA's products: GDAL's own reader finds what geoloom finds."""
    item = only_item(index_folder(products["l2a"].parent, tmp_path / "cat"))
    with rasterio.open(str(products["l2a"] / "MTD_MSIL2A.xml")) as src:
        tags = src.tags()
        assert len(src.subdatasets) == 4  # 10 m, 20 m, 60 m, true colour
        ten_m = src.subdatasets[0]
    assert tags["PROCESSING_BASELINE"] == item.properties["s2:processing_baseline"]
    assert float(tags["CLOUD_COVERAGE_ASSESSMENT"]) == item.properties["eo:cloud_cover"]
    gdal_footprint = shapely.from_wkt(tags["FOOTPRINT"])
    assert gdal_footprint.symmetric_difference(shapely.geometry.shape(item.geometry)).area < 1e-12
    with rasterio.open(ten_m) as sub:
        assert sub.crs.to_epsg() == EPSG and sub.res == (10.0, 10.0)
        offset = float(sub.tags(1)["BOA_ADD_OFFSET"]) / float(tags["BOA_QUANTIFICATION_VALUE"])
    assert item.assets["red"].extra_fields["raster:bands"][0]["offset"] == pytest.approx(offset)


# ---------------------------------------------------------------------------- zips


def test_zip_is_read_in_place_through_vsizip(products, tmp_path):
    folder = products["zip"].parent
    before = sorted(p.name for p in folder.rglob("*"))
    cat = index_folder(folder, tmp_path / "cat")
    assert sorted(p.name for p in folder.rglob("*")) == before == [products["zip"].name]  # nothing unpacked
    item = only_item(cat)
    assert item.id == L2A.name and item.properties["processing:level"] == "L2A"
    stored = json.loads(next((tmp_path / "cat").rglob(f"{L2A.name}.json")).read_text())
    href = stored["assets"]["blue"]["href"]
    assert href == f"/vsizip/{products['zip']}/{L2A.name}.SAFE/GRANULE/{L2A.granule_dir}/IMG_DATA/R10m/" \
                   f"{L2A.granule_scene}_B02_10m.jp2"
    with rasterio.open(href) as src:
        assert src.driver == "JP2OpenJPEG" and src.shape == (120, 120)


def test_a_single_zip_or_safe_folder_can_be_indexed_directly(products, tmp_path):
    assert only_item(index_folder(products["zip"], tmp_path / "a")).id == L2A.name
    assert only_item(index_folder(products["l1c"], tmp_path / "b")).id == L1C.name


def test_the_same_product_as_folder_and_zip_is_refused(products, tmp_path):
    shutil.copytree(products["l2a"], tmp_path / "data" / products["l2a"].name)
    shutil.copy2(products["zip"], tmp_path / "data" / products["zip"].name)
    with pytest.raises(CatalogError, match=f"both scene {L2A.name}"):
        index_folder(tmp_path / "data", tmp_path / "cat")


# ---------------------------------------------------------------------------- loose band files


def test_loose_jp2_band_files_with_l1c_and_l2a_names(products, tmp_path):
    copy_band_files(products["l1c"], tmp_path / "data")
    copy_band_files(products["l2a"], tmp_path / "data")  # with the R20m/R60m copies of B02, B8A, SCL, AOT
    assert (tmp_path / "data" / "T33UUU_20170216T102101_B02.jp2").exists()
    assert (tmp_path / "data" / "T33UUU_20230606T102559_B02_60m.jp2").exists()
    items = items_of(index_folder(tmp_path / "data", tmp_path / "cat"))
    assert sorted(items) == ["T33UUU_20170216T102101", "T33UUU_20230606T102559"]

    l1c, l2a = items["T33UUU_20170216T102101"], items["T33UUU_20230606T102559"]
    assert l1c.properties["processing:level"] == "L1C" and l2a.properties["processing:level"] == "L2A"
    assert l1c.properties["s2:mgrs_tile"] == l2a.properties["s2:mgrs_tile"] == "33UUU"
    assert l1c.datetime.isoformat() == "2017-02-16T10:21:01+00:00"
    assert "cirrus" in l1c.assets and "scl" in l2a.assets
    assert "offset" not in l1c.assets["blue"].extra_fields["raster:bands"][0]  # 2017: no add-offset
    rb = l2a.assets["blue"].extra_fields["raster:bands"][0]
    assert (rb["scale"], rb["offset"]) == (pytest.approx(1e-4), pytest.approx(-0.1))  # after 2022-01-25
    for key, (token, res) in {**CHECKED, "nir08": ("B8A", 20), "scl": ("SCL", 20)}.items():
        assert Path(l2a.assets[key].get_absolute_href()).name == f"T33UUU_20230606T102559_{token}_{res}m.jp2"
    assert l2a.assets["blue"].media_type == pystac.MediaType.JPEG2000
    assert_reads_as_reflectance(l1c, L1C)
    assert_reads_as_reflectance(l2a, L2A)


def test_the_indexed_folder_s_own_name_can_say_the_level(products, tmp_path):
    """Band files named as L1C granule files, in a folder a user named for its level (``S2_L2A_...``)."""
    copy_band_files(products["l1c"], tmp_path / "S2_L2A_bay")
    item = next(iter(items_of(index_folder(tmp_path / "S2_L2A_bay", tmp_path / "cat")).values()))
    assert item.properties["processing:level"] == "L2A"


def test_several_granules_and_dates_in_one_folder_are_one_item_each(products, tmp_path):
    later = Product(sensed=dt.datetime(2023, 6, 16, 10, 25, 59, tzinfo=dt.timezone.utc), seed=2)
    other_tile = Product(tile="33UUV", ulx=ULX + 1200, seed=3)
    data = tmp_path / "data"
    shutil.copytree(products["l2a"], data / "june" / products["l2a"].name)
    write_safe(data / "june", later)
    zip_safe(write_safe(tmp_path / "elsewhere", other_tile), data / "zips")
    copy_band_files(products["l1c"], data / "loose", pattern="*_B0[248].jp2")
    items = items_of(index_folder(data, tmp_path / "cat"))
    assert sorted(items) == sorted([L2A.name, later.name, other_tile.name, "T33UUU_20170216T102101"])
    assert sorted(str(i.datetime.date()) for i in items.values()) == ["2017-02-16", "2023-06-06", "2023-06-06",
                                                                       "2023-06-16"]  # two tiles of one datatake
    assert items[other_tile.name].properties["s2:mgrs_tile"] == "33UUV"
    assert items[other_tile.name].bbox[0] > items[L2A.name].bbox[0]
    assert set(items["T33UUU_20170216T102101"].assets) == {"blue", "red", "nir"}
    x0, x1 = ULX + 600, ULX + 1800
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform([x0, x1], [ULY - 1000, ULY - 200])
    found = search_scenes(tmp_path / "cat", Region.from_bbox((lon[0], lat[0], lon[1], lat[1])))
    assert {s.id for s in found} == set(items)


# ---------------------------------------------------------------------------- broken products


def _drop_mtd(safe: Path) -> None:
    (safe / "MTD_MSIL2A.xml").unlink()


def _drop_tile_mtd(safe: Path) -> None:
    next(safe.glob("GRANULE/*/MTD_TL.xml")).unlink()


def _drop_band(safe: Path) -> None:
    next(safe.glob("GRANULE/*/IMG_DATA/R20m/*_B8A_20m.jp2")).unlink()


def _cut_mtd(safe: Path) -> None:
    mtd = safe / "MTD_MSIL2A.xml"
    mtd.write_bytes(mtd.read_bytes()[:2000])


BROKEN = {
    "no product metadata": (_drop_mtd, ProductError, "holds no MTD_MSIL1C.xml or MTD_MSIL2A.xml"),
    "no tile metadata": (_drop_tile_mtd, ProductError, r"cannot read GRANULE/.*/MTD_TL\.xml"),
    "a band missing": (_drop_band, ProductError, r"lacks GRANULE/.*_B8A_20m\.jp2, listed in its MTD_MSIL2A\.xml"),
    "metadata cut short": (_cut_mtd, ProductError, r"MTD_MSIL2A\.xml of .* is not valid XML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_product_gives_one_line_that_says_what_to_do(products, tmp_path, case):
    damage, error, message = BROKEN[case]
    safe = Path(shutil.copytree(products["l2a"], tmp_path / "data" / products["l2a"].name))
    damage(safe)
    with pytest.raises(error, match=message) as info:
        index_folder(tmp_path / "data", tmp_path / "cat")
    text = str(info.value)
    assert isinstance(info.value, GeoloomError) and "\n" not in text
    assert "download" in text and "again" in text
    assert not (tmp_path / "cat").exists()


def test_a_truncated_zip_or_band_file_is_named(products, tmp_path):
    zipped = tmp_path / "z" / products["zip"].name
    zipped.parent.mkdir()
    zipped.write_bytes(products["zip"].read_bytes()[:-5000])
    with pytest.raises(ProductError, match="cannot open the zip .*truncated, download the product again"):
        index_folder(zipped.parent, tmp_path / "cat")

    safe = Path(shutil.copytree(products["l2a"], tmp_path / "s" / products["l2a"].name))
    band = next(safe.glob("GRANULE/*/IMG_DATA/R10m/*_B04_10m.jp2"))
    band.write_bytes(band.read_bytes()[:400])
    with pytest.raises(ImageryReadError) as info:
        index_folder(safe.parent, tmp_path / "cat")
    assert info.value.href == str(band) and "\n" not in str(info.value)
    assert "download the product again" in str(info.value)


def test_a_zip_of_something_else_is_skipped(products, tmp_path):
    import zipfile

    data = tmp_path / "data"
    shutil.copytree(products["l1c"], data / products["l1c"].name)
    with zipfile.ZipFile(data / "shapes.zip", "w") as zf:
        zf.writestr("coast.geojson", "{}")
    assert only_item(index_folder(data, tmp_path / "cat")).id == L1C.name


def test_cli_indexes_products_and_reports_a_broken_one(products, tmp_path):
    from click.testing import CliRunner

    from geoloom.workflows.cli import cli

    runner = CliRunner()
    ok = runner.invoke(cli, ["catalog", "index", str(products["l2a"].parent), "--out", str(tmp_path / "cat")])
    assert ok.exit_code == 0, ok.output
    safe = Path(shutil.copytree(products["l2a"], tmp_path / "bad" / products["l2a"].name))
    _drop_band(safe)
    bad = runner.invoke(cli, ["catalog", "index", str(safe.parent), "--out", str(tmp_path / "cat2")])
    assert bad.exit_code == 2 and "Traceback" not in bad.output and "B8A_20m.jp2" in bad.output


# ---------------------------------------------------------------------------- sensor rules


def test_sensor_rules_have_one_home():
    assert s2_offset_dn("05.09") == s2_offset_dn("04.00") == s2_offset_dn("N0400") == -1000
    assert s2_offset_dn("03.01") == s2_offset_dn("02.04") == s2_offset_dn(None) == s2_offset_dn("x") == 0
    assert s2_scale_offset(-1000) == (1e-4, -0.1)
    assert band_info("B10").name == band_info("cirrus").name == "cirrus"
    assert "cirrus" not in REFLECTANCE_BANDS and len(REFLECTANCE_BANDS) == 12
    assert "cirrus" in S2_LEVEL_BANDS["L1C"] and "cirrus" not in S2_LEVEL_BANDS["L2A"]
    assert S2_BANDS_BY_RESOLUTION[10] == ("blue", "green", "red", "nir")
    assert S2_BANDS_BY_RESOLUTION[60] == ("coastal", "nir09", "cirrus")
    assert bands.band_info is band_info  # bands.py re-exports, it does not copy


# ---------------------------------------------------------------------------- end to end


def test_map_tiles_on_an_indexed_l2a_product_gives_reflectance(products, tmp_path):
    from geoloom.workflows import map_tiles

    cat = index_folder(products["l2a"].parent, tmp_path / "cat")
    x0, x1, y0, y1 = ULX + 400, ULX + 1100, ULY - 1100, ULY - 100  # inside the data footprint
    lon, lat = Transformer.from_crs(EPSG, 4326, always_xy=True).transform([x0, x1, x0, x1], [y0, y0, y1, y1])

    def nir(tile):
        return tile["nir"]

    run = map_tiles((min(lon), min(lat), max(lon), max(lat)), nir, bands=["nir"], catalog=cat,
                    out=tmp_path / "run", runtime="in-process", tile_size=64)
    result = run.dataset["result"]
    got = result.values
    cols = np.round((result["x"].values - ULX) / 10 - 0.5).astype(int)
    rows = np.round((ULY - result["y"].values) / 10 - 0.5).astype(int)
    assert cols.min() >= NODATA_COLS_10M
    expected = expected_reflectance(L2A, "B08", 10)[np.ix_(rows, cols)]
    finite = np.isfinite(got)
    assert finite.mean() > 0.9
    np.testing.assert_allclose(got[finite], expected[finite], rtol=0, atol=2e-7)
    assert np.nanmin(got) < 0  # DN below 1000 is negative reflectance once the offset is applied
