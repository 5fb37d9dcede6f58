"""Read scene bands onto a tile grid: windowed reads, upsampled in memory when aligned, warped otherwise."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window
from affine import Affine
from odc.geo.geobox import GeoBox

from geoloom.platform.aligned_read import alignment, read_aligned
from geoloom.platform.bands import CATEGORICAL_BANDS
from geoloom.platform.catalog import AssetRef
from geoloom.platform.errors import ImageryReadError
from geoloom.platform.signing import redact, sign_href

#: GDAL settings for many small windowed reads in worker processes, local or over HTTP (see FIELD_NOTES).
GDAL_ENV: dict[str, Any] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    # decoded blocks, in bytes (a bare 32 would be 32 bytes through rasterio): enough for the
    # blocks a tile shares with the next one in its row of tiles on the same worker
    "GDAL_CACHEMAX": 32 * 2**20,
    "GDAL_NUM_THREADS": 1,
    # HTTP: only raster files, one request for neighbouring blocks, HTTP/2 over TLS, header read at open
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_INGESTED_BYTES_AT_OPEN": 32768,
    "GDAL_HTTP_USERAGENT": "geoloom",
    # bounded caches: a per-file read cache and the process-wide cache of downloaded blocks
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": 16 * 2**20,
    "CPL_VSIL_CURL_CACHE_SIZE": 128 * 2**20,
    # retries with exponential backoff on 429/5xx and dropped connections; a timeout per request
    "GDAL_HTTP_MAX_RETRY": 5,
    "GDAL_HTTP_RETRY_DELAY": 0.5,
    "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
    "GDAL_HTTP_CONNECTTIMEOUT": 10,
    "GDAL_HTTP_TIMEOUT": 60,
}

#: Environment variables that override the HTTP settings (e.g. a shorter timeout on a slow link).
HTTP_OVERRIDES = {
    "GEOLOOM_HTTP_TIMEOUT": "GDAL_HTTP_TIMEOUT",
    "GEOLOOM_HTTP_MAX_RETRY": "GDAL_HTTP_MAX_RETRY",
    "GEOLOOM_HTTP_RETRY_DELAY": "GDAL_HTTP_RETRY_DELAY",
}


def gdal_settings() -> dict[str, Any]:
    """GDAL_ENV with the overrides set in this process's environment."""
    settings = dict(GDAL_ENV)
    for var, key in HTTP_OVERRIDES.items():
        if os.environ.get(var):
            settings[key] = os.environ[var]
    return settings


def gdal_env() -> rasterio.Env:
    """A rasterio environment with the read settings geoloom uses everywhere."""
    return rasterio.Env(**gdal_settings())


def _is_remote(href: str) -> bool:
    return href.startswith(("http://", "https://", "/vsicurl", "s3://", "gs://", "az://"))


@functools.lru_cache(maxsize=1)
def _vsicurl_clear() -> Any:
    """GDAL's ``VSICurlPartialClearCache`` from the GDAL that rasterio loaded, or None."""
    libs = Path(rasterio.__file__).resolve().parent.parent / "rasterio.libs"
    candidates = sorted(libs.glob("libgdal*.so*")) + [Path(p) for p in filter(None, [ctypes.util.find_library("gdal")])]
    for lib in candidates:
        try:
            fn = ctypes.CDLL(str(lib)).VSICurlPartialClearCache
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_char_p], None
        return fn
    return None


def forget_remote_file(url: str) -> None:
    """Drop what GDAL cached about ``url`` in this process.

    After a failed open (a timeout, a 5xx) GDAL remembers the file as missing for the life of
    the process, so a retry of the tile, or the next tile in the same worker, would fail at
    once. Forgetting it makes every attempt a real one.
    """
    clear = _vsicurl_clear()
    if clear is not None and url.startswith(("http://", "https://")):
        clear(("/vsicurl/" + url.split("?")[0]).encode())


#: Local rasters kept open per thread: a closed dataset drops its decoded blocks from GDAL's
#: cache, and neighbouring tiles (run on one worker, see DaskExecutor affinity) share blocks.
MAX_OPEN_DATASETS = 64
_open_datasets = threading.local()


def _identity(path: str) -> tuple[str, int, int] | None:
    """A local file as it is now (path, size, mtime), so a replaced file is opened afresh; a band inside a
    local zip (``/vsizip/<file.zip>/...``, a zipped Sentinel-2 product) by the zip's size and mtime."""
    local = path
    if path.startswith("/vsizip/"):
        inner = path[len("/vsizip/"):]
        cut = inner.lower().find(".zip/")
        if cut < 0:
            return None
        local = inner[: cut + 4]
    try:
        st = os.stat(local)
    except OSError:
        return None
    return path, st.st_size, st.st_mtime_ns


@contextmanager
def _dataset(url: str) -> Iterator[Any]:
    """``rasterio.open(url)``; a local file stays open in this thread for the next tile."""
    kept = not _is_remote(url) and (not url.startswith("/vsi") or url.startswith("/vsizip/"))
    ident = _identity(url) if kept else None
    if ident is None:  # remote (each handle has its own read cache: do not keep many) or not there
        with rasterio.open(url) as src:
            yield src
        return
    lru: OrderedDict[tuple[str, int, int], Any] = getattr(_open_datasets, "lru", None) or OrderedDict()
    _open_datasets.lru = lru
    src = lru.get(ident)
    if src is None or src.closed:
        for stale in [k for k in lru if k[0] == url]:
            lru.pop(stale).close()
        with rasterio.Env(VSI_CACHE=False):  # the per-handle read cache (16 MB) is for HTTP; kept local files skip it
            src = lru[ident] = rasterio.open(url)
        while len(lru) > MAX_OPEN_DATASETS:
            lru.popitem(last=False)[1].close()
    lru.move_to_end(ident)
    yield src


def _forget_dataset(url: str) -> None:
    """Close and drop a kept dataset after a failed read (the next attempt opens it again)."""
    lru = getattr(_open_datasets, "lru", None) or {}
    for key in [k for k in lru if k[0] == url]:
        lru.pop(key).close()


@dataclass(frozen=True, slots=True)
class WarpGrid:
    """The fixed grid that every warp of a run is anchored to.

    GDAL's warper picks its source windows, approximations and kernel scales per chunk of
    output, so the same output pixel can get slightly different values when it is warped
    as part of different windows (a seam between tiles). geoloom therefore warps only
    whole blocks of one run-wide grid, which makes every pixel's value independent of the
    tile that reads it.
    """

    crs: str
    transform: tuple[float, ...]
    shape_yx: tuple[int, int]
    block: int

    @classmethod
    def around(cls, geobox: GeoBox, *, halo: int = 0, block: int = 128) -> WarpGrid:
        """``geobox`` padded by whole blocks (enough for ``halo``), blocks aligned to its origin."""
        pad = -(-halo // block) * block
        g = geobox.pad(pad) if pad else geobox
        return cls(str(g.crs), tuple(g.transform)[:6], tuple(g.shape.yx), block)

    def offset_of(self, geobox: GeoBox) -> tuple[int, int]:
        """Row and column of ``geobox``'s top-left pixel in this grid (it must lie on the grid)."""
        t = Affine(*self.transform)
        col, row = ~t * (geobox.transform.c, geobox.transform.f)
        r, c = round(row), round(col)
        if abs(row - r) > 1e-6 or abs(col - c) > 1e-6:
            raise ValueError("the tile grid is not aligned with the run's warp grid")
        return r, c


def block_size_for(tile_size: int) -> int:
    """The warp block: the largest of 128..16 that divides the tile size (tile cores are whole blocks).

    A tile reads every block its core and halo touch, so the halo costs up to a ring of blocks:
    with 512 px tiles and a 20 px halo, 256 px blocks warp 1024 x 1024 px for a 552 px read and
    128 px blocks 768 x 768 px; below 128 the per-block overhead of the warper wins
    (measured: 12.0 s, 5.0 s, 7.9 s and 14.9 s per 4-scene marine-debris tile for 256, 128, 64, 32).
    """
    for b in (128, 64, 32, 16):
        if tile_size % b == 0:
            return b
    return 16


def read_band(asset: AssetRef, geobox: GeoBox, grid: WarpGrid | None = None, *, force_warp: bool = False) -> np.ndarray:
    """One band resampled onto ``geobox`` as float32 physical values, NaN where there is no data.

    Reflectance is resampled bilinearly, classes (SCL) with nearest neighbour. A band that
    already lies on the grid (same CRS, pixel edges on the grid) is read and upsampled in memory
    (see aligned_read); any other is warped by GDAL block by block on ``grid`` (see WarpGrid);
    without a grid, on one anchored at ``geobox``. ``force_warp`` warps an aligned band too (the
    two give the same values; the warp is the slower reference).
    """
    grid = grid or WarpGrid.around(geobox)
    categorical = asset.band in CATEGORICAL_BANDS
    h, w = geobox.shape.yx
    row0, col0 = grid.offset_of(geobox)
    gh, gw = grid.shape_yx
    if row0 < 0 or col0 < 0 or row0 + h > gh or col0 + w > gw:
        raise ValueError("the tile lies outside the run's warp grid")
    out = np.full((h, w), np.nan, dtype=np.float32)
    url = asset.href
    try:
        url = sign_href(asset.href, asset.sign)
        with ExitStack() as stack:
            src = stack.enter_context(_dataset(url))
            if asset.bidx > src.count:
                raise ImageryReadError(
                    f"{asset.href} has {src.count} band(s), band {asset.bidx} ({asset.band}) was expected; "
                    "re-index the folder with 'geoloom catalog index'",
                    href=asset.href,
                )
            src_nodata = asset.nodata if asset.nodata is not None else src.nodata
            aligned = alignment(src.crs, src.transform, grid.crs, Affine(*grid.transform))
            if aligned is not None and not force_warp:  # already on the grid: a windowed read, upsampled in memory
                out = read_aligned(src, asset.bidx, aligned, row0, col0, (h, w), nodata=src_nodata,
                                   categorical=categorical)
                return _scaled(out, asset, categorical)
            vrt = stack.enter_context(
                WarpedVRT(
                    src,
                    crs=grid.crs,
                    transform=Affine(*grid.transform),
                    width=gw,
                    height=gh,
                    resampling=Resampling.nearest if categorical else Resampling.bilinear,
                    src_nodata=src_nodata,
                    nodata=np.nan,  # "no data" comes out as NaN: one warp per block, no mask band to warp
                    dtype="float32",
                )
            )
            b = grid.block
            for br in range(row0 // b, (row0 + h - 1) // b + 1):
                for bc in range(col0 // b, (col0 + w - 1) // b + 1):
                    win = Window(bc * b, br * b, min(b, gw - bc * b), min(b, gh - br * b))
                    block = vrt.read(asset.bidx, window=win)
                    y0, y1 = max(br * b, row0), min(br * b + win.height, row0 + h)
                    x0, x1 = max(bc * b, col0), min(bc * b + win.width, col0 + w)
                    out[y0 - row0 : y1 - row0, x0 - col0 : x1 - col0] = block[y0 - br * b : y1 - br * b, x0 - bc * b : x1 - bc * b]
    except ImageryReadError:
        _forget_dataset(url)
        raise
    except (RasterioError, OSError, ValueError) as exc:
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, url, asset.href)
        _forget_dataset(url)
        forget_remote_file(url)
        hint = ("check the URL is reachable (geoloom retried it)" if _is_remote(asset.href)
                else "check the file exists and is a complete raster (GeoTIFF, JPEG 2000)")
        raise ImageryReadError(f"cannot read {asset.href}: {reason}; {hint}", href=asset.href) from None
    return _scaled(out, asset, categorical)


def _scaled(out: np.ndarray, asset: AssetRef, categorical: bool) -> np.ndarray:
    """Stored values to physical ones (the asset's scale and offset; classes stay codes)."""
    if not categorical and (asset.scale != 1.0 or asset.offset != 0.0):
        out = out * np.float32(asset.scale) + np.float32(asset.offset)
    return out


def read_overview(asset: AssetRef, shape_yx: tuple[int, int]) -> np.ndarray:
    """The whole raster of a band, decimated to ``shape_yx`` (nearest; COG overviews and JPEG 2000
    resolution levels make this cheap), as float32 physical values with NaN where there is no data."""
    url = asset.href
    try:
        url = sign_href(asset.href, asset.sign)
        with gdal_env(), rasterio.open(url) as src:
            data = src.read(asset.bidx, out_shape=shape_yx, resampling=Resampling.nearest).astype(np.float32)
            nodata = asset.nodata if asset.nodata is not None else src.nodata
    except (RasterioError, OSError) as exc:
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, url, asset.href)
        raise ImageryReadError(f"cannot read {asset.href}: {reason}; check the file or URL", href=asset.href) from None
    if nodata is not None:
        data[data == np.float32(nodata)] = np.nan
    return _scaled(data, asset, asset.band in CATEGORICAL_BANDS)


def check_readable(href: str, sign: str | None = None) -> None:
    """Open a raster's header only; raise ImageryReadError if that fails."""
    if not (_is_remote(href) or href.startswith("/vsi") or os.path.exists(href)):
        raise ImageryReadError(f"raster {href} does not exist; re-index the catalog or restore the file", href=href)
    url = href
    try:
        url = sign_href(href, sign)
        with rasterio.open(url):
            pass
    except (RasterioError, OSError) as exc:
        reason = redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, url, href)
        forget_remote_file(url)
        raise ImageryReadError(f"cannot open {href}: {reason}; check it is a complete raster (GeoTIFF, JPEG 2000)", href=href) from None
