"""Read scene bands warped onto a tile grid, with windowed reads only."""

from __future__ import annotations

import os
from contextlib import ExitStack
from typing import Iterator

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from odc.geo.geobox import GeoBox

from geoloom.platform.bands import CATEGORICAL_BANDS
from geoloom.platform.catalog import AssetRef
from geoloom.platform.errors import ImageryReadError

#: GDAL settings for many small windowed reads in worker processes (see FIELD_NOTES).
GDAL_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_CACHEMAX": 256,
    "GDAL_NUM_THREADS": 1,
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "VSI_CACHE": "TRUE",
    "GDAL_HTTP_MAX_RETRY": 3,
    "GDAL_HTTP_RETRY_DELAY": 1,
}


#: Warp approximation error in source pixels. GDAL's default (0.125) makes a pixel's value
#: depend on the window it is read in (seams); 0 is refused by rasterio's WarpedVRT.
EXACT_TOLERANCE = 1e-9


def gdal_env() -> rasterio.Env:
    """A rasterio environment with the read settings geoloom uses everywhere."""
    return rasterio.Env(**GDAL_ENV)


def read_band(asset: AssetRef, geobox: GeoBox) -> np.ndarray:
    """One band warped onto ``geobox`` as float32 physical values, NaN where there is no data.

    Reflectance is resampled bilinearly, classes (SCL) with nearest neighbour. A near-exact
    transformer (tolerance 1e-9 px) makes each output pixel independent of the tile it lies in,
    which is what makes stitched tiles seamless.
    """
    categorical = asset.band in CATEGORICAL_BANDS
    h, w = geobox.shape.yx
    try:
        with ExitStack() as stack:
            src = stack.enter_context(rasterio.open(asset.href))
            if asset.bidx > src.count:
                raise ImageryReadError(
                    f"{asset.href} has {src.count} band(s), band {asset.bidx} ({asset.band}) was expected; "
                    "re-index the folder with 'geoloom catalog index'",
                    href=asset.href,
                )
            src_nodata = asset.nodata if asset.nodata is not None else src.nodata
            vrt = stack.enter_context(
                WarpedVRT(
                    src,
                    crs=geobox.crs.to_wkt(),
                    transform=geobox.transform,
                    width=w,
                    height=h,
                    resampling=Resampling.nearest if categorical else Resampling.bilinear,
                    src_nodata=src_nodata,
                    nodata=src_nodata if src_nodata is not None else 0,
                    dtype="float32",
                    tolerance=EXACT_TOLERANCE,
                )
            )
            data = vrt.read(asset.bidx, masked=True)
    except ImageryReadError:
        raise
    except (RasterioError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ImageryReadError(
            f"cannot read {asset.href}: {reason}; check the file exists and is a complete GeoTIFF", href=asset.href
        ) from None
    out = np.asarray(data.filled(np.nan), dtype=np.float32)
    if not categorical and (asset.scale != 1.0 or asset.offset != 0.0):
        out = out * np.float32(asset.scale) + np.float32(asset.offset)
    return out


def iter_band_reads(assets: dict[str, AssetRef], bands: tuple[str, ...], geobox: GeoBox) -> Iterator[tuple[str, np.ndarray]]:
    """Read several bands of one scene in order."""
    for band in bands:
        yield band, read_band(assets[band], geobox)


def check_readable(href: str) -> None:
    """Open a raster's header only; raise ImageryReadError if that fails."""
    if not (href.startswith(("http://", "https://", "/vsi", "s3://")) or os.path.exists(href)):
        raise ImageryReadError(f"raster {href} does not exist; re-index the catalog or restore the file", href=href)
    try:
        with rasterio.open(href):
            pass
    except (RasterioError, OSError) as exc:
        raise ImageryReadError(f"cannot open {href}: {exc}; check it is a complete GeoTIFF", href=href) from None
