"""Overlapping same-day scenes whose rasters end inside tiles: halo runs lose nothing and have no seams.

The fixtures have the geometry of two Landsat scenes of one path and adjacent rows indexed with
``catalog index``: per-band GeoTIFFs at 30 m, nodata 0, slanted nodata collars, raster extents
offset diagonally so that each ends inside the other, the same acquisition date. One pair is in
a north-zone CRS with negative northings and pixel edges off the output grid (as
USGS stores southern-hemisphere scenes: warped), the other in the south-zone CRS geoloom picks,
on the output grid (read in memory).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import xarray as xr
from affine import Affine
from odc.geo.geom import Geometry
from pyproj import Transformer
from scipy import ndimage

from geoloom.platform.catalog import search_scenes
from geoloom.platform.catalog_index import index_folder
from geoloom.platform.composite import composite_tile
from geoloom.platform.plan import Plan, plan_tiles
from geoloom.platform.reading import gdal_env, read_band
from geoloom.platform.region import as_region
from geoloom.workflows import map_tiles

SIZE = 300  # pixels a side of each scene
SHIFT_YX = (200, -75)  # the second row of the path: further south, further west
HALO = 4


@dataclass(frozen=True)
class Pair:
    """Two indexed same-day scenes and a bbox (lon/lat) that spans both."""

    name: str
    catalog: Path
    bbox: tuple[float, float, float, float]


def _collar(size: int, angle_deg: float = 12.5, half: float = 0.4) -> np.ndarray:
    """True inside a rotated rectangle: the valid data of a scene, nodata in slanted corners."""
    r, c = np.mgrid[0:size, 0:size].astype(np.float64)
    t, mid = math.radians(angle_deg), (size - 1) / 2
    u = (c - mid) * math.cos(t) + (r - mid) * math.sin(t)
    v = -(c - mid) * math.sin(t) + (r - mid) * math.cos(t)
    return (np.abs(u) <= half * size) & (np.abs(v) <= half * size * 1.03)


def _scene(transform: Affine, seed: int, bias: int) -> np.ndarray:
    """Ground texture (the same for both scenes) plus a scene's own bias and noise, uint16 with nodata 0."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    x, y = transform.c + (c + 0.5) * transform.a, transform.f + (r + 0.5) * transform.e
    ground = 8000 + 400 * np.sin(y / 1100.0) + 300 * np.cos(x / 700.0)
    data = np.rint(ground + bias + rng.normal(0, 25, ground.shape)).astype(np.uint16)
    data[~_collar(SIZE)] = 0
    return data


def _write_pair(folder: Path, *, epsg: int, x0: float, y0: float, path_row: tuple[str, str]) -> tuple[float, ...]:
    """Write the red band of two scenes of one path, one day; return a lon/lat bbox spanning both."""
    folder.mkdir(parents=True)
    for k, (pr, (dy, dx), bias) in enumerate(zip(path_row, [(0, 0), SHIFT_YX], [3, -3])):
        transform = Affine(30, 0, x0 + 30 * dx, 0, -30, y0 - 30 * dy)
        with rasterio.open(folder / f"LC08_L1TP_{pr}_20200815_20200822_01_T1_B4.TIF", "w", driver="GTiff",
                           height=SIZE, width=SIZE, count=1, dtype="uint16", crs=f"EPSG:{epsg}",
                           transform=transform, nodata=0) as dst:
            dst.write(_scene(transform, seed=k, bias=bias), 1)
    (dy, dx), m = SHIFT_YX, 30
    xs = (x0 + 30 * (min(0, dx) + m), x0 + 30 * (max(0, dx) + SIZE - m))
    ys = (y0 - 30 * m, y0 - 30 * (dy + SIZE - m))
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform([xs[0], xs[1], xs[0], xs[1]],
                                                                          [ys[0], ys[0], ys[1], ys[1]])
    return (min(lon), min(lat), max(lon), max(lat))


PAIRS = ("north-zone-negative-northings", "south-zone")


def _make_pair(name: str, root: Path) -> Pair:
    """One pair of scenes, indexed with ``catalog index``."""
    if name == "south-zone":  # on the output grid: the in-memory path
        bbox = _write_pair(root / "img", epsg=32721, x0=399_900, y0=9_500_010, path_row=("001066", "001067"))
    else:  # USGS: EPSG:32621, negative northings, pixel edges at 15 m: warped onto EPSG:32721
        bbox = _write_pair(root / "img", epsg=32621, x0=399_885, y0=-499_995, path_row=("227062", "227063"))
    return Pair(name, index_folder(root / "img", root / "catalog"), bbox)


@pytest.fixture(scope="module", params=PAIRS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    return _make_pair(request.param, tmp_path_factory.mktemp(request.param))


def identity(tile: xr.Dataset) -> xr.DataArray:
    """The red band as read."""
    return tile["red"]


def mean9(tile: xr.Dataset) -> xr.DataArray:
    """9x9 mean (needs a halo of 4); NaN wherever the window holds a pixel without data."""
    v = np.pad(np.asarray(tile["red"].values, dtype=np.float64), HALO, mode="edge")
    windows = np.lib.stride_tricks.sliding_window_view(v, (2 * HALO + 1, 2 * HALO + 1))
    return xr.DataArray(windows.mean(axis=(-2, -1)).astype(np.float32), dims=("y", "x"))


def _run(pair: Pair, fn, out: Path, *, halo: int, tile_size: int, crs: str | None = None, **kw) -> np.ndarray:
    run = map_tiles(pair.bbox, fn, bands=["red"], halo=halo, tile_size=tile_size, resolution=30, crs=crs,
                    catalog=pair.catalog, out=out, **({"runtime": "in-process"} | kw))
    assert run.ok
    return run.dataset["result"].values


def _plan(pair: Pair, *, halo: int, tile_size: int, crs: str | None = None) -> Plan:
    """The plan map_tiles makes for this pair."""
    region = as_region(pair.bbox)
    scenes = search_scenes(pair.catalog, region)
    return plan_tiles(region, scenes, bands=("red",), resolution=30, halo=halo, tile_size=tile_size, crs=crs)


def _whole_region(plan: Plan, fn) -> tuple[np.ndarray, dict[str, int]]:
    """``fn`` applied to the plan's whole grid (with its halo) read at once; and each scene's pixel count."""
    h = plan.halo
    gbox = plan.geobox.pad(h) if h else plan.geobox
    with gdal_env():
        ds, used = composite_tile(list(plan.scenes), plan.bands, gbox,
                                  lambda s, b, g: read_band(s.assets[b], g, plan.warp_grid))
    out = np.asarray(fn(ds))
    return (out[h:-h, h:-h] if h else out), used


def _edges_inside_read_windows(plan: Plan) -> int:
    """How many (tile, scene) pairs have the scene's raster end inside the tile's read window."""
    count = 0
    for scene in plan.scenes:
        footprint = Geometry(scene.footprint, "epsg:4326").to_crs(plan.crs).geom
        for task in plan.tiles:
            g = task.read_geobox
            window = shapely.box(*g.boundingbox)
            count += bool(footprint.intersects(window) and not footprint.contains(window))
    return count


def _assert_same(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected), err_msg=f"{what}: pixels without data")
    ok = np.isfinite(expected)
    np.testing.assert_allclose(got[ok], expected[ok], atol=1e-6, rtol=0, err_msg=what)


@pytest.mark.parametrize("tile_size,crs", [(64, None), (512, None), (64, "EPSG:32621")],
                         ids=["64px", "512px", "64px-north-zone-grid"])
def test_halo_mean_over_tiles_equals_the_whole_region(pair, tmp_path, tile_size, crs):
    plan = _plan(pair, halo=HALO, tile_size=tile_size, crs=crs)
    expected, used = _whole_region(plan, mean9)
    assert len(used) == 2 and min(used.values()) > 10_000, used  # both scenes give pixels
    assert _edges_inside_read_windows(plan) >= (4 if tile_size == 64 else 2)
    got = _run(pair, mean9, tmp_path / "run", halo=HALO, tile_size=tile_size, crs=crs)
    assert got.shape == expected.shape == plan.shape_yx
    assert 0.4 < np.isfinite(got).mean() < 0.95  # data, slanted collars and the gaps of the pair inside
    _assert_same(got, expected, f"{pair.name}, {tile_size} px tiles")


@pytest.mark.parametrize("tile_size", [64, 512])
def test_a_halo_run_loses_no_pixel_that_has_data(pair, tmp_path, tile_size):
    """NaN in the 9x9 mean only within 4 px of a pixel without data; elsewhere the mean of the identity run."""
    ident = _run(pair, identity, tmp_path / "identity", halo=0, tile_size=tile_size)
    whole, _ = _whole_region(_plan(pair, halo=0, tile_size=tile_size), identity)
    _assert_same(ident, whole, "identity run")
    got = _run(pair, mean9, tmp_path / "mean", halo=HALO, tile_size=tile_size)
    inner = np.zeros(got.shape, dtype=bool)
    inner[HALO:-HALO, HALO:-HALO] = True  # the halo run also sees data beyond the grid's border
    fringe = ndimage.binary_dilation(np.isnan(ident), np.ones((2 * HALO + 1,) * 2, dtype=bool))
    lost = np.isnan(got) & ~fringe & inner
    assert not lost.any(), f"{int(lost.sum())} pixels with data lost, e.g. at {np.argwhere(lost)[:3].tolist()}"
    expected = mean9(xr.Dataset({"red": (("y", "x"), ident)})).values
    both = inner & ~fringe
    assert both.sum() > 50_000
    np.testing.assert_allclose(got[both], expected[both], atol=1e-6, rtol=0)


def test_the_dask_runtime_gives_the_in_process_result(tmp_path):
    import cloudpickle

    pair = _make_pair(PAIRS[0], tmp_path / "pair")

    def smooth(tile: xr.Dataset) -> xr.DataArray:
        return mean9(tile)

    local = _run(pair, mean9, tmp_path / "in-process", halo=HALO, tile_size=64)
    module = sys.modules[__name__]
    cloudpickle.register_pickle_by_value(module)  # workers cannot import a test module: ship it by value
    try:
        dask = _run(pair, smooth, tmp_path / "dask", halo=HALO, tile_size=64, runtime="dask", workers=2)
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    np.testing.assert_array_equal(dask, local)
