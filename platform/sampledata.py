"""Deterministic sample data: generated Sentinel-2 L2A-like scenes near Accra/Tema, as a static STAC catalog.

The sample area straddles the 0 degree meridian, so its scenes fall in UTM zones 30N and
31N as real Sentinel-2 tiles there do. One world per date (coast, river plumes, debris
windrows, Sargassum, ships, clouds) is defined in world metres around (0 E, 5.59 N) and
rendered into each scene's own UTM grid, so overlapping scenes agree where they overlap.
Dates after the first two continue the second: debris clusters drift with a current, some
disperse or strand, and new ones form (after rain, at the bay's river mouth).
Scenes are written strip by strip into plain GeoTIFFs and converted to COGs, so memory
stays flat even for a full 10980 x 10980 tile.
"""

from __future__ import annotations

import math
import os
import queue
import shutil
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pystac
import rasterio
import rasterio.shutil
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from rasterio.transform import Affine
from rasterio.windows import Window
from shapely.geometry import Polygon, mapping

from geoloom.platform.bands import REFLECTANCE_BANDS, S2_BANDS, SCL_CLASSES, band_info
from geoloom.platform.classes import LABEL_CLASSES, LABEL_NODATA
from geoloom.platform.errors import OutputError
from geoloom.platform.outputs import check_catalog_folder, items_extent, write_catalog
from geoloom.platform.sample_dates import (
    ACQUISITIONS, BAY_LON, LAT0, LON0, M_PER_DEG_X, M_PER_DEG_Y, Acquisition, SampleDataError, _clusters, _coast,
    _drifted_debris, _extent, _first_debris, _inside, _rain, _water_km2, _wx, _wy, sample_acquisition,
)
from geoloom.platform.sensors import S2_QUANTIFICATION, SCL_CLOUD
from geoloom.platform.scenes import (
    PIXEL_M, Clouds, Plume, Stroke, World, block_all, block_mean, mix_bands, quantize, render_window, river,
    sargassum_group, ship, strokes_to_pixels, synthesize_scene,
)

__all__ = [
    "COLLECTION_ID", "SAMPLE_BBOX_LONLAT", "SampleDataError", "default_sample_dir", "generate_sample_data",
    "sample_acquisition", "sample_world", "synthesize_scene",
]

CATALOG_ID = "geoloom-sample"
COLLECTION_ID = "geoloom-sample-s2l2a"
#: The sample area (W, S, E, N): the coast at Accra/Tema, Ghana, across the 0 degree meridian.
SAMPLE_BBOX_LONLAT = (-0.15, 5.48, 0.15, 5.70)

EXTENSIONS = [
    "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
    "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
    "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
    "https://stac-extensions.github.io/classification/v1.1.0/schema.json",
    "https://stac-extensions.github.io/view/v1.0.0/schema.json",
    "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
]


_WORKERS = 2  # scenes (or strips of one scene) rendered at once; numpy and GDAL release the GIL


def default_sample_dir() -> Path:
    """Where ``geoloom sample-data`` writes by default: ``sample`` in the per-user data folder."""
    from geoloom.platform.userdata import sample_dir

    return sample_dir()


def lonlat_to_world(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longitude/latitude to the sample world's metres."""
    return (np.asarray(lon) - LON0) * M_PER_DEG_X, (np.asarray(lat) - LAT0) * M_PER_DEG_Y


def world_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sample world's metres to longitude/latitude."""
    return np.asarray(x) / M_PER_DEG_X + LON0, np.asarray(y) / M_PER_DEG_Y + LAT0


_local = threading.local()


def _transformer(src: int, dst: int) -> Transformer:
    """A cached lon/lat-aware transformer; one per thread, as pyproj transformers are not shared."""
    cache = _local.__dict__.setdefault("transformers", {})
    if (src, dst) not in cache:
        cache[src, dst] = Transformer.from_crs(src, dst, always_xy=True)
    return cache[src, dst]


@dataclass(frozen=True, slots=True)
class UtmFrame:
    """A scene's 10 m UTM pixel grid, mapped to world metres through longitude/latitude."""

    epsg: int
    x0: float  # upper-left corner, metres
    y0: float

    def geobox(self, shape_yx: tuple[int, int], resolution: float = PIXEL_M) -> GeoBox:
        """The scene's grid at ``resolution`` metres (``shape_yx`` in 10 m pixels)."""
        k = int(round(resolution / PIXEL_M))
        return GeoBox((shape_yx[0] // k, shape_yx[1] // k), Affine(resolution, 0.0, self.x0, 0.0, -resolution, self.y0),
                      f"EPSG:{self.epsg}")

    def world_xy(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World metres of pixel centres given by row and column."""
        rows, cols = np.broadcast_arrays(rows, cols)
        lon, lat = _transformer(self.epsg, 4326).transform(self.x0 + cols * PIXEL_M, self.y0 - rows * PIXEL_M)
        return lonlat_to_world(lon, lat)

    def to_pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (column, row) of world metres in this grid."""
        lon, lat = world_to_lonlat(x, y)
        ux, uy = _transformer(4326, self.epsg).transform(lon, lat)
        return (np.asarray(ux) - self.x0) / PIXEL_M, (self.y0 - np.asarray(uy)) / PIXEL_M


@dataclass(frozen=True, slots=True)
class SceneSpec:
    """One scene to write: its id, MGRS granule, pixel grid and date."""

    item_id: str
    mgrs: str
    frame: UtmFrame
    shape_yx: tuple[int, int]
    acquisition: int
    swath_edge: bool = True  # False: the whole grid has data

    def coverage(self) -> tuple[float, float, float, float] | None:
        """The swath edge that cuts this scene (a point and the normal towards the data), or None: all data."""
        return sample_acquisition(self.acquisition).coverage() if self.swath_edge else None


# Footprints (W, S, E, N) of the two granules; they overlap by about 8 km around 0 degrees.
_FOOTPRINTS = (("30NZM", 32630, (-0.155, 5.475, 0.035, 5.705)), ("31NBG", 32631, (-0.035, 5.475, 0.155, 5.705)))
_TILE = ("30NZM", 32630, (799980.0, 700020.0), 10980)  # the real tile's origin and size


def _grid_for(epsg: int, bbox_lonlat: tuple[float, float, float, float], scale: float
              ) -> tuple[UtmFrame, tuple[int, int]]:
    """The 10 m grid in ``epsg`` that covers a lon/lat box, on the 60 m grid, sized in multiples of 12."""
    w, s, e, n = bbox_lonlat
    if scale != 1.0:  # a smaller box around the same centre (fast tests)
        cx, cy = (w + e) / 2, (s + n) / 2
        w, e, s, n = cx + (w - cx) * scale, cx + (e - cx) * scale, cy + (s - cy) * scale, cy + (n - cy) * scale
    lon = np.concatenate([np.linspace(w, e, 50), np.full(50, e), np.linspace(e, w, 50), np.full(50, w)])
    lat = np.concatenate([np.full(50, s), np.linspace(s, n, 50), np.full(50, n), np.linspace(n, s, 50)])
    ux, uy = _transformer(4326, epsg).transform(lon, lat)
    step = 12 * PIXEL_M  # origins on the 60 m grid, sizes a multiple of 12 pixels
    x0, x1 = math.floor(min(ux) / step) * step, math.ceil(max(ux) / step) * step
    y0, y1 = math.floor(min(uy) / step) * step, math.ceil(max(uy) / step) * step
    return UtmFrame(epsg, x0, y1), (int(round((y1 - y0) / PIXEL_M)), int(round((x1 - x0) / PIXEL_M)))


def _scenes(size: str, scale: float, dates: int | None = None) -> list[SceneSpec]:
    if size == "tile":
        mgrs, epsg, (x0, y0), n = _TILE
        acq = ACQUISITIONS[0]
        return [SceneSpec(_item_id(acq, mgrs) + "-tile", mgrs, UtmFrame(epsg, x0, y0), (n, n), 0, swath_edge=False)]
    out = []
    for a in range(len(ACQUISITIONS) if dates is None else dates):
        acq = sample_acquisition(a)
        for mgrs, epsg, bbox in _FOOTPRINTS:
            frame, shape = _grid_for(epsg, bbox, scale)
            out.append(SceneSpec(_item_id(acq, mgrs), mgrs, frame, shape, a))
    return out


def _item_id(acq: Acquisition, mgrs: str) -> str:
    return f"geoloom-S2{acq.platform[-1].upper()}-{mgrs}-{acq.datetime[:10].replace('-', '')}"


# --------------------------------------------------------------------------- the world
def sample_world(seed: int, acquisition: int, bbox_lonlat: tuple[float, float, float, float] = SAMPLE_BBOX_LONLAT
                 ) -> World:
    """The world at acquisition date ``acquisition`` (0, 1, ...): the same for every scene of that date."""
    acq = sample_acquisition(acquisition)
    base = np.random.SeedSequence([seed, 0xC0A57]).generate_state(4)
    coast = _coast(seed)
    dx, dy = acq.shadow_offset()
    if acquisition == 0:
        clear = ((_wx(BAY_LON), _wy(5.632), 2500.0), (0.0, _wy(5.549), 2500.0))
    elif acquisition >= len(ACQUISITIONS):  # the bay mostly clear, the rest as the date's threshold has it
        clear_r = float(np.random.default_rng([seed, acquisition, 0xC1EA]).uniform(1500.0, 3000.0))
        clear = ((_wx(BAY_LON), _wy(5.632), clear_r),)
    else:
        clear = ()
    clouds = Clouds(seed=int(np.random.SeedSequence([seed, acquisition, 0xC10D]).generate_state(1)[0]),
                    threshold=acq.cloud_threshold, shadow_dx_m=dx, shadow_dy_m=dy, clear=clear)
    world = World(seed=int(base[1]), coast=coast, clouds=clouds)
    rng_fixed = np.random.default_rng([seed, 0x12])  # rivers do not move between dates
    flood = 1.7 if _rain(seed, acquisition) else 1.0  # the bay's river in spate after rain
    strokes: list[Stroke] = []
    plumes = []
    for lon, length, width, plume_len, plume_w, bend in ((BAY_LON, 7000.0, 45.0, 1500.0 * flood, 260.0, 0.5),
                                                         (0.085, 4500.0, 30.0, 1300.0, 260.0, 0.7)):
        mx, my, inland = coast.point(_wx(lon))
        strokes.append(river(rng_fixed, mx, my, inland, length, width))
        plumes.append(Plume(mx, my, inland + math.pi, plume_len, plume_w, bend=bend, seed=int(base[2]) + len(plumes)))

    rng = np.random.default_rng([seed, acquisition, 0x0B])
    water_km2 = _water_km2(coast, bbox_lonlat)
    if acquisition < len(ACQUISITIONS):
        strokes += _first_debris(rng, world, bbox_lonlat, water_km2)[0]
    else:
        strokes += _drifted_debris(rng, world, _clusters(seed, acquisition, bbox_lonlat))
    x0, y0, x1, y1 = _extent(bbox_lonlat)

    def spot(margin: float = 300.0) -> tuple[float, float]:
        return world.sea_spot(rng, (x0, y0, x1, y1), margin)

    # Sargassum: drifting groups offshore and one near the bay.
    if _inside(bbox_lonlat, -0.033, 5.624):
        strokes += sargassum_group(rng, world, _wx(-0.033), _wy(5.624), radius=300.0, mats=4)
    for _ in range(max(1, round(water_km2 / 150.0))):
        strokes += sargassum_group(rng, world, *spot(), radius=rng.uniform(400, 1500), mats=int(rng.integers(3, 9)))
    # Ships: the anchorage off Tema, plus ships under way.
    if _inside(bbox_lonlat, 0.03, 5.59):
        h = rng.uniform(0, 2 * math.pi)
        for _ in range(7):
            strokes += ship(rng, _wx(rng.uniform(0.005, 0.06)), _wy(rng.uniform(5.572, 5.603)),
                            h + rng.normal(0, 0.3), rng.uniform(90, 230), moving=False)
    if _inside(bbox_lonlat, 0.006, 5.556):
        strokes += ship(rng, _wx(0.006), _wy(5.556), rng.uniform(2.6, 3.4), rng.uniform(50, 90), moving=True)
    for _ in range(max(2, round(water_km2 / 100.0))):
        strokes += ship(rng, *spot(800.0), rng.uniform(0, 2 * math.pi), rng.uniform(30, 200), moving=True)
    return World(seed=world.seed, coast=coast, clouds=clouds, plumes=tuple(plumes), strokes=tuple(strokes))


# --------------------------------------------------------------------------- writing
_RES_BANDS = {res: tuple(b for b in REFLECTANCE_BANDS if band_info(b).resolution_m == res) for res in (10, 20, 60)}


def _scl(fr: dict[str, np.ndarray], valid20: np.ndarray) -> np.ndarray:
    """ESA scene classification at 20 m from 2 x 2 block means of the 10 m fields."""
    m = {k: block_mean(fr[k], 2) for k in ("cloud", "cloud_shadow", "land", "vegetation", "sargassum")}
    scl = np.full(valid20.shape, 6, dtype=np.uint8)
    land = m["land"] >= 0.5
    scl[land] = np.where(m["vegetation"][land] >= 0.5 * m["land"][land], 4, 5)
    scl[m["sargassum"] >= 0.5] = 4
    scl[m["cloud_shadow"] >= 0.4] = 3
    scl[(m["cloud"] >= 0.08) & (m["cloud"] < 0.3)] = 10
    scl[(m["cloud"] >= 0.3) & (m["cloud"] < 0.6)] = 8
    scl[m["cloud"] >= 0.6] = 9
    scl[~valid20] = 0
    return scl


def _assets() -> list[tuple[str, int, str]]:
    """(asset key, resolution in metres, dtype) of every raster written per scene."""
    out = [(b.name, b.resolution_m, "uint8" if b.name == "scl" else "uint16") for b in S2_BANDS]
    return out + [("labels", 10, "uint8")]


def _strip_rows(width: int, pixels: int) -> int:
    """Rows per rendered strip: about ``pixels`` 10 m pixels, a multiple of 12."""
    return max(12, (pixels // width) // 12 * 12)


def _render_strip(spec: SceneSpec, world: World, strokes: list, seed: int, index: int,
                  r0: int, r1: int) -> dict[str, np.ndarray]:
    """Every asset's pixels for scene rows [r0:r1] (10 m rows), keyed by asset."""
    w = spec.shape_yx[1]
    rr = render_window(world, spec.frame, strokes, r0, r1, 0, w, coverage=spec.coverage())
    rng = np.random.default_rng([seed, index, r0])
    out: dict[str, np.ndarray] = {}
    for res, names in _RES_BANDS.items():
        k = res // 10
        dn = quantize(mix_bands(rr.abundances, names, k), names, rng, block_all(rr.valid, k))
        out.update(zip(names, dn, strict=True))
    out["scl"] = _scl(rr.fractions, block_all(rr.valid, 2))
    out["labels"] = rr.labels
    return out


def _write_scene(spec: SceneSpec, world: World, seed: int, index: int, item_dir: Path,
                 tmp_dir: Path, tick: Callable[[], None], *, strip_pixels: int, workers: int) -> dict[int, int]:
    """Render one scene strip by strip into plain GeoTIFFs, convert each to a COG; return SCL counts.

    With ``workers`` > 1, that many strips are rendered at once; they are written in order.
    """
    h, w = spec.shape_yx
    crs = f"EPSG:{spec.frame.epsg}"
    strokes = strokes_to_pixels(world.strokes, spec.frame)
    rows = _strip_rows(w, strip_pixels)
    res_of = {key: res for key, res, _ in _assets()}
    files = {}
    for key, res, dtype in _assets():
        grid = spec.frame.geobox(spec.shape_yx, res)
        gh, gw = grid.shape.yx
        files[key] = rasterio.open(tmp_dir / f"{key}.tif", "w", driver="GTiff", width=gw, height=gh, count=1,
                                   dtype=dtype, crs=crs, transform=grid.transform, nodata=0)
    scl_counts = np.zeros(256, dtype=np.int64)

    def write(r0: int, r1: int, strip: dict[str, np.ndarray]) -> None:
        for key, arr in strip.items():
            k = res_of[key] // 10
            files[key].write(arr, 1, window=Window(0, r0 // k, w // k, (r1 - r0) // k))
        scl_counts[:] += np.bincount(strip["scl"].ravel(), minlength=256)
        tick()

    strips = [(r0, min(h, r0 + rows)) for r0 in range(0, h, rows)]
    try:
        if workers > 1:
            with ThreadPoolExecutor(workers, thread_name_prefix="sample-strip") as pool:
                pending: deque = deque()
                for r0, r1 in strips:
                    pending.append((r0, r1, pool.submit(_render_strip, spec, world, strokes, seed, index, r0, r1)))
                    if len(pending) > workers:
                        a, b, fut = pending.popleft()
                        write(a, b, fut.result())
                while pending:
                    a, b, fut = pending.popleft()
                    write(a, b, fut.result())
        else:
            for r0, r1 in strips:
                write(r0, r1, _render_strip(spec, world, strokes, seed, index, r0, r1))
    finally:
        for f in files.values():
            f.close()

    def convert(key: str) -> None:
        categorical = key in ("scl", "labels")
        rasterio.shutil.copy(tmp_dir / f"{key}.tif", item_dir / f"{key}.tif", driver="COG", COMPRESS="DEFLATE",
                             LEVEL="1", PREDICTOR="YES", BLOCKSIZE="512" if res_of[key] == 10 else "256",
                             OVERVIEW_RESAMPLING="MODE" if categorical else "AVERAGE", NUM_THREADS="1",
                             BIGTIFF="IF_SAFER")
        (tmp_dir / f"{key}.tif").unlink()
        tick()

    if workers > 1:
        with ThreadPoolExecutor(workers, thread_name_prefix="sample-cog") as pool:
            list(pool.map(convert, res_of))
    else:
        for key in res_of:
            convert(key)
    return {int(c): int(n) for c, n in enumerate(scl_counts) if n}


def _footprint(spec: SceneSpec) -> Polygon:
    """The scene's data footprint in longitude/latitude."""
    h, w = spec.shape_yx
    x0, y0 = spec.frame.x0, spec.frame.y0
    x1, y1 = x0 + w * PIXEL_M, y0 - h * PIXEL_M
    lon, lat = _transformer(spec.frame.epsg, 4326).transform([x0, x1, x1, x0], [y0, y0, y1, y1])
    poly = Polygon(zip(lon, lat, strict=True))
    cov = spec.coverage()
    if cov is not None:  # clip to the half-plane inside the swath
        cx, cy, nx, ny = cov
        tx, ty, big = -ny, nx, 1e6
        hx = np.array([cx - tx * big, cx + tx * big, cx + (tx + nx) * big, cx + (nx - tx) * big])
        hy = np.array([cy - ty * big, cy + ty * big, cy + (ty + ny) * big, cy + (ny - ty) * big])
        poly = poly.intersection(Polygon(zip(*world_to_lonlat(hx, hy), strict=True)))
    return poly


def _round_geom(geom: dict) -> dict:
    def rnd(c):  # noqa: ANN001, ANN202
        return [rnd(x) for x in c] if isinstance(c[0], (list, tuple)) else [round(float(v), 7) for v in c]
    return {"type": geom["type"], "coordinates": rnd(geom["coordinates"])}


def _item(spec: SceneSpec, item_dir: Path, scl_counts: dict[int, int], seed: int) -> pystac.Item:
    """The STAC item of a written scene; cloud cover is measured from its SCL counts."""
    acq = sample_acquisition(spec.acquisition)
    poly = _footprint(spec)
    valid = sum(n for c, n in scl_counts.items() if c != 0)
    cloudy = sum(n for c, n in scl_counts.items() if c in SCL_CLOUD)
    code = f"EPSG:{spec.frame.epsg}"
    props = {
        "platform": acq.platform, "constellation": "sentinel-2", "instruments": ["msi"],
        "eo:cloud_cover": round(100.0 * cloudy / max(valid, 1), 2), "proj:code": code, "proj:epsg": spec.frame.epsg,
        "view:sun_azimuth": acq.sun_azimuth, "view:sun_elevation": acq.sun_elevation,
        "mgrs:utm_zone": int(spec.mgrs[:2]), "mgrs:latitude_band": spec.mgrs[2], "mgrs:grid_square": spec.mgrs[3:],
        "geoloom:synthetic": True, "geoloom:seed": seed,
    }
    item = pystac.Item(spec.item_id, _round_geom(mapping(poly)), [round(v, 7) for v in poly.bounds],
                       datetime.fromisoformat(acq.datetime.replace("Z", "+00:00")), props,
                       stac_extensions=list(EXTENSIONS))
    h, w = spec.shape_yx
    for key, res, dtype in _assets():
        grid = spec.frame.geobox(spec.shape_yx, res)
        extra = {"gsd": res, "proj:code": code, "proj:epsg": spec.frame.epsg, "proj:shape": list(grid.shape.yx),
                 "proj:transform": list(grid.transform)[:6],
                 "raster:bands": [{"nodata": 0, "data_type": dtype, "spatial_resolution": res}]}
        if key == "labels":
            title, roles = "Class labels (generated ground truth, not imagery)", ["labels"]
            extra["classification:classes"] = [{"value": v, "name": n.replace(" ", "_"), "description": n}
                                               for v, n in LABEL_CLASSES.items()]
            extra["geoloom:label_nodata"] = LABEL_NODATA
        elif key == "scl":
            title, roles = "Scene classification map (SCL)", ["data"]
            extra["classification:classes"] = [{"value": v, "name": n.replace(" ", "_"), "description": n}
                                               for v, n in SCL_CLASSES.items()]
        else:
            b = band_info(key)
            title, roles = f"{b.description} ({b.s2_id}) - {res}m", ["data", "reflectance"]
            extra["eo:bands"] = [{"name": key, "common_name": b.common_name,
                                  "description": f"{b.description} ({b.s2_id})", "center_wavelength": b.center_um}]
            extra["raster:bands"][0].update({"scale": 1 / S2_QUANTIFICATION, "offset": 0.0, "unit": "reflectance"})
        item.add_asset(key, pystac.Asset(str(item_dir / f"{key}.tif"), title=title, media_type=pystac.MediaType.COG,
                                         roles=roles, extra_fields=extra))
    return item


def generate_sample_data(out: str | Path | None = None, *, seed: int = 0, size: Literal["small", "tile"] = "small",
                         dates: int | None = None, progress: Callable[[int, int], None] | None = None,
                         _scale: float = 1.0) -> Path:
    """Write a static STAC catalog of generated Sentinel-2 L2A-like scenes; returns the catalog.json path.

    ``size="small"``: 4 overlapping scenes (2 granules in UTM 30N/31N x 2 dates) over the
    Accra/Tema sample area; with ``dates=N``, the 2 granules on N dates (the first two as
    without it, then every 5 days), debris drifting between them. ``size="tile"``: one full
    10980 x 10980 tile, for benchmarks. ``progress(done, total)`` is called from the calling
    thread as work completes. The same seed gives byte-identical files, and the first k
    dates are the same whatever N >= k. ``_scale`` shrinks the small scenes (tests).
    """
    if size not in ("small", "tile"):
        raise SampleDataError(f"unknown sample size {size!r}; use 'small' or 'tile'.")
    if not isinstance(seed, int | np.integer) or isinstance(seed, bool) or seed < 0:
        raise SampleDataError(f"the seed must be a whole number >= 0, not {seed!r}.")
    if dates is not None and (not isinstance(dates, int | np.integer) or isinstance(dates, bool) or dates < 1):
        raise SampleDataError(f"dates must be a whole number of acquisition dates >= 1, not {dates!r}.")
    if dates is not None and size != "small":
        raise SampleDataError("dates works with size='small' only; leave it unset for size='tile'.")
    out = Path(out).absolute() if out is not None else default_sample_dir()  # items name their files by absolute path
    tmp_root = _prepare_output(out)
    specs = _scenes(size, _scale, None if dates is None else int(dates))
    if size == "tile":
        f = specs[0].frame
        side = specs[0].shape_yx[1] * PIXEL_M
        lon, lat = _transformer(f.epsg, 4326).transform([f.x0, f.x0 + side] * 2, [f.y0] * 2 + [f.y0 - side] * 2)
        bbox = (min(lon), min(lat), max(lon), max(lat))
    else:
        bbox = SAMPLE_BBOX_LONLAT
    worlds = {a: sample_world(seed, a, bbox) for a in sorted({s.acquisition for s in specs})}

    # Scenes in parallel when there are several; the strips of a single scene otherwise.
    cores = max(1, min(_WORKERS, os.cpu_count() or 1))
    workers = min(cores, len(specs))
    strip_workers = cores if workers == 1 else 1
    strip_pixels = 1_200_000 if len(specs) > 1 else 600_000  # fixed per size: the noise follows the strips
    total = sum(-(-s.shape_yx[0] // _strip_rows(s.shape_yx[1], strip_pixels)) + len(_assets()) for s in specs) + 1
    ticks: queue.SimpleQueue[int] = queue.SimpleQueue()
    stop = threading.Event()
    done = 0

    def tick() -> None:
        if stop.is_set():
            raise _Cancelled
        ticks.put(1)

    def report() -> None:
        nonlocal done
        while not ticks.empty():
            done += ticks.get()
            if progress is not None:
                progress(done, total)

    def work(i: int, spec: SceneSpec) -> pystac.Item:
        item_dir = out / COLLECTION_ID / spec.item_id
        item_dir.mkdir(parents=True)
        (tmp_root / str(i)).mkdir()
        with rasterio.Env(GDAL_CACHEMAX=128 * 2**20):
            counts = _write_scene(spec, worlds[spec.acquisition], seed, i, item_dir, tmp_root / str(i), tick,
                                  strip_pixels=strip_pixels, workers=strip_workers)
        return _item(spec, item_dir, counts, seed)

    try:
        with ThreadPoolExecutor(workers, thread_name_prefix="sample-data") as pool:
            futures = [pool.submit(work, i, spec) for i, spec in enumerate(specs)]
            try:
                pending = set(futures)
                while pending:
                    finished, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                    report()
                    for f in finished:
                        f.result()
            except BaseException:
                stop.set()  # running scenes stop at their next strip
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            items = [f.result() for f in futures]
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    _write_catalog(out, items)
    ticks.put(1)
    report()
    return out / "catalog.json"


class _Cancelled(Exception):
    """Raised inside a worker after another worker failed or the user interrupted."""


def _prepare_output(out: Path) -> Path:
    """Check and prepare the output folder; return a fresh folder for intermediate files."""
    check_catalog_folder(out, CATALOG_ID)
    try:
        out.mkdir(parents=True, exist_ok=True)
        if (out / COLLECTION_ID).exists():
            shutil.rmtree(out / COLLECTION_ID)
        tmp_root = out / f".tmp-sample-{os.getpid()}"
        shutil.rmtree(tmp_root, ignore_errors=True)
        tmp_root.mkdir()
    except OSError as exc:
        raise OutputError(f"cannot write sample data to {out} ({exc.strerror}); "
                          "pick another folder with --out.") from exc
    return tmp_root


def _write_catalog(out: Path, items: list[pystac.Item]) -> None:
    """Save the root catalog, its one collection and the items, with relative links only."""
    collection = pystac.Collection(
        COLLECTION_ID,
        "Generated Sentinel-2 L2A-like scenes of the coast at Accra/Tema, Ghana, with per-pixel class labels "
        "(marine debris, Sargassum, ships, foam, turbid water, clouds, land). Synthetic data, not real imagery.",
        items_extent(items),
        title="geoloom sample Sentinel-2 L2A scenes (generated)", license="CC0-1.0",
        keywords=["sentinel-2", "synthetic", "marine debris", "sample data"],
        summaries=pystac.Summaries({"platform": sorted({i.properties["platform"] for i in items}),
                                    "constellation": ["sentinel-2"],
                                    "proj:code": sorted({i.properties["proj:code"] for i in items})}),
    )
    collection.add_items(items)
    catalog = pystac.Catalog(CATALOG_ID, "geoloom sample data: generated Sentinel-2 L2A-like scenes.",
                             title="geoloom sample data")
    catalog.add_child(collection)
    write_catalog(out, catalog)
