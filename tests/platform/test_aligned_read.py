"""Bands already on the run grid are read and upsampled in memory, with the values GDAL's warper gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.crs import CRS

from geoloom.platform.aligned_read import Alignment, alignment
from geoloom.platform.catalog import AssetRef, scene_from_item
from geoloom.platform.reading import WarpGrid, gdal_env, read_band

UTM = CRS.from_epsg(32630)


def test_alignment_accepts_whole_ratios_on_pixel_edges_only():
    grid = Affine(10, 0, 800_000, 0, -10, 700_000)
    assert alignment(UTM, Affine(10, 0, 799_980, 0, -10, 700_020), "EPSG:32630", grid) == Alignment(1, 2, 2)
    assert alignment(UTM, Affine(20, 0, 799_990, 0, -20, 700_030), "EPSG:32630", grid) == Alignment(2, 3, 1)
    assert alignment(UTM, Affine(60, 0, 800_000, 0, -60, 700_000), "EPSG:32630", grid) == Alignment(6, 0, 0)
    assert alignment(UTM, Affine(10, 0, 799_985, 0, -10, 700_000), "EPSG:32630", grid) is None  # half a pixel off
    assert alignment(UTM, Affine(15, 0, 800_000, 0, -15, 700_000), "EPSG:32630", grid) is None  # 1.5 pixels
    assert alignment(UTM, Affine(5, 0, 800_000, 0, -5, 700_000), "EPSG:32630", grid) is None  # finer than the grid
    assert alignment(CRS.from_epsg(32631), Affine(10, 0, 800_000, 0, -10, 700_000), "EPSG:32630", grid) is None
    assert alignment(UTM, Affine(10, 0.5, 800_000, 0, -10, 700_000), "EPSG:32630", grid) is None  # rotated


def _scenes(catalog: Path):
    cat = pystac.Catalog.from_file(str(catalog))
    return [scene_from_item(i) for i in cat.get_items(recursive=True)]


@pytest.mark.parametrize("offset", [(0, 0), (301, 517), (-37, -11)])
def test_aligned_reads_equal_the_warp_for_every_band(sample_catalog, offset):
    """10, 20 and 60 m bands and SCL, at even and odd offsets and across the scene's edge."""
    compared = 0
    for scene in _scenes(sample_catalog):
        with rasterio.open(scene.assets["red"].href) as src:
            t, crs, (h, w) = src.transform, src.crs, src.shape
        r, c = offset if offset[0] >= 0 else (h + offset[0] - 100, w + offset[1] - 100)  # last: past the edge
        geobox = GeoBox((150, 140), t * Affine.translation(c, r), crs)
        grid = WarpGrid.around(geobox, halo=20, block=64)
        with gdal_env():
            for band, asset in scene.assets.items():
                if band == "labels":
                    continue
                fast = read_band(asset, geobox, grid)
                ref = read_band(asset, geobox, grid, force_warp=True)
                assert fast.shape == ref.shape == (150, 140)
                np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref), err_msg=f"{scene.id} {band} no-data")
                np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-6, err_msg=f"{scene.id} {band}")
                compared += int(np.isfinite(fast).sum())
    assert compared > 100_000


def _write(path: Path, data: np.ndarray, transform: Affine, nodata: float) -> str:
    with rasterio.open(path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
                       dtype=data.dtype, crs=UTM, transform=transform, nodata=nodata, tiled=True,
                       blockxsize=16, blockysize=16) as dst:
        dst.write(data, 1)
    return str(path)


@pytest.mark.parametrize("res", [20, 60])
def test_no_data_holes_are_left_out_of_the_weights_as_gdal_does(tmp_path, res):
    rng = np.random.default_rng(res)
    data = rng.integers(1, 10_000, size=(40, 40), dtype=np.uint16)
    data[5:9, 7:12] = 0  # a hole
    data[20, :] = 0  # a missing line
    data[30:, 30:] = 0  # a corner
    href = _write(tmp_path / f"b{res}.tif", data, Affine(res, 0, 500_000, 0, -res, 4_000_000), nodata=0)
    asset = AssetRef(href=href, band="rededge1", scale=1e-4, offset=-0.1)
    size = 40 * res // 10 + 10
    geobox = GeoBox((size, size - 3), Affine(10, 0, 499_970, 0, -10, 4_000_050), UTM)  # odd offsets, over the edges
    grid = WarpGrid.around(geobox, block=32)
    with gdal_env():
        fast = read_band(asset, geobox, grid)
        ref = read_band(asset, geobox, grid, force_warp=True)
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_allclose(fast, ref, rtol=1e-6, atol=1e-6)
    assert np.isnan(fast).any() and np.isfinite(fast).sum() > 0.5 * fast.size


def test_aligned_tiles_are_seamless(sample_catalog):
    """A window read whole equals the same window read as four tiles (one pixel, one value)."""
    scene = _scenes(sample_catalog)[0]
    with rasterio.open(scene.assets["red"].href) as src:
        t, crs = src.transform, src.crs
    whole = GeoBox((200, 200), t * Affine.translation(111, 223), crs)
    grid = WarpGrid.around(whole, block=50)
    with gdal_env():
        for band in ("swir16", "coastal", "scl"):
            full = read_band(scene.assets[band], whole, grid)
            parts = np.vstack([
                np.hstack([read_band(scene.assets[band], whole[y:y + 100, x:x + 100], grid) for x in (0, 100)])
                for y in (0, 100)
            ])
            np.testing.assert_array_equal(full, parts, err_msg=band)


def test_a_kept_open_file_that_is_replaced_is_read_afresh(tmp_path):
    """Local rasters stay open between tiles (their decoded blocks stay cached); a rewritten file must not be stale."""
    t = Affine(10, 0, 500_000, 0, -10, 4_000_000)
    path = tmp_path / "red.tif"
    asset = AssetRef(href=str(path), band="red")
    geobox = GeoBox((20, 20), t, UTM)
    with gdal_env():
        _write(path, np.full((40, 40), 7, dtype=np.uint16), t, nodata=0)
        assert np.all(read_band(asset, geobox) == 7)
        path.unlink()
        _write(path, np.full((40, 48), 9, dtype=np.uint16), t, nodata=0)
        assert np.all(read_band(asset, geobox) == 9)
        path.write_bytes(b"not a tiff")
        with pytest.raises(Exception, match="cannot read"):
            read_band(asset, geobox)


def test_an_internal_mask_without_a_nodata_value_is_honoured_as_the_warper_does(tmp_path):
    t = Affine(20, 0, 500_000, 0, -20, 4_000_000)
    data = np.arange(1, 40 * 40 + 1, dtype=np.uint16).reshape(40, 40)
    mask = np.full((40, 40), 255, dtype=np.uint8)
    mask[10:20, 5:25] = 0
    path = tmp_path / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        with rasterio.open(path, "w", driver="GTiff", height=40, width=40, count=1, dtype="uint16", crs=UTM,
                           transform=t, tiled=True, blockxsize=16, blockysize=16) as dst:
            dst.write(data, 1)
            dst.write_mask(mask)
    asset = AssetRef(href=str(path), band="red", nodata=None)
    geobox = GeoBox((70, 70), Affine(10, 0, 500_010, 0, -10, 3_999_990), UTM)
    with gdal_env():
        fast = read_band(asset, geobox, WarpGrid.around(geobox, block=32))
        ref = read_band(asset, geobox, WarpGrid.around(geobox, block=32), force_warp=True)
    assert np.isnan(fast).sum() > 400
    np.testing.assert_array_equal(np.isnan(fast), np.isnan(ref))
    np.testing.assert_allclose(fast, ref, rtol=1e-6)


@pytest.mark.parametrize("res", [10, 20])
def test_a_raster_that_ends_inside_the_window_reads_the_same_for_every_halo_and_split(tmp_path, res):
    """Slanted no-data collar and raster edges inside the window: in-memory == warp, whole == parts, any grid padding."""
    n = 60
    rr, cc = np.mgrid[0:n, 0:n]
    data = (1000 + 7 * rr + 3 * cc + (rr * cc) % 11).astype(np.uint16)
    data[cc < 0.4 * rr - 5] = 0  # a slanted collar on the west
    data[cc > n - 12 + 0.3 * rr] = 0  # and on the east
    href = _write(tmp_path / f"edge{res}.tif", data, Affine(res, 0, 500_000, 0, -res, 4_000_000), nodata=0)
    asset = AssetRef(href=href, band="red")
    start = n * res // 10 - 70  # grid pixels: the raster's east and south edges lie inside the window
    whole = GeoBox((96, 96), Affine(10, 0, 500_000 + 10 * start, 0, -10, 4_000_000 - 10 * start), UTM)
    h, w = whole.shape.yx
    ref = None
    with gdal_env():
        for halo in (0, 4, 20):
            grid = WarpGrid.around(whole, halo=halo, block=16)
            full = read_band(asset, whole, grid)
            np.testing.assert_allclose(full, read_band(asset, whole, grid, force_warp=True), rtol=1e-6, atol=1e-6)
            parts = np.vstack([np.hstack([read_band(asset, whole[y:y + 32, x:x + 32], grid) for x in range(0, w, 32)])
                               for y in range(0, h, 32)])
            np.testing.assert_array_equal(full, parts)
            ref = full if ref is None else ref
            np.testing.assert_array_equal(full, ref, err_msg=f"halo {halo}")
    assert np.isnan(ref).any() and np.isfinite(ref).sum() > 0.3 * ref.size
