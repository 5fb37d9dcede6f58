"""Reads of bands that already lie on the run's grid: windowed reads and in-memory upsampling, no warp.

A Sentinel-2 band in the run's own UTM zone shares the run's 10 m pixel edges: a 10 m band is
the grid itself, a 20 m or 60 m band is the grid with every pixel 2 or 6 grid pixels wide. Such
a band needs no warper: geoloom reads the source window under the tile and upsamples it in
memory with the same kernels GDAL's warper uses: bilinear between source pixel centres for
reflectance, nearest for classes, "no data" left out of the weights, and no data wherever the
source pixel under a grid pixel's centre has none. Every output pixel is a fixed function of its
2 x 2 source neighbourhood, so its value does not depend on the tile that reads it (no seams),
and a tile reads only the source pixels under it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.windows import Window

#: How far from a whole number a ratio or an offset may be and still count as aligned (in pixels).
TOLERANCE = 1e-6


@dataclass(frozen=True, slots=True)
class Alignment:
    """A source raster whose pixels are ``factor`` x ``factor`` blocks of the grid's pixels.

    ``row`` and ``col``: the grid pixel offset of the source's top-left corner, i.e. grid pixel
    ``(r, c)`` is pixel ``(r + row, c + col)`` of the source upsampled by ``factor``.
    """

    factor: int
    row: int
    col: int


def _whole(x: float) -> int | None:
    r = round(x)
    return int(r) if abs(x - r) <= TOLERANCE else None


def alignment(src_crs: CRS | None, src_transform: Affine, grid_crs: str, grid_transform: Affine) -> Alignment | None:
    """How a source raster lies on the grid, or None when it needs a warp.

    Aligned: the same CRS, both north-up, the source pixel a whole number (1 or more) of grid
    pixels wide and high, and the source's corner on a grid pixel edge.
    """
    if src_crs is None:
        return None
    s, g = src_transform, grid_transform
    if s.b or s.d or g.b or g.d or g.a <= 0 or g.e >= 0 or s.a <= 0 or s.e >= 0:
        return None
    try:
        if CRS.from_user_input(grid_crs) != src_crs:
            return None
    except Exception:  # noqa: BLE001 - an unparseable CRS is simply not aligned
        return None
    fx, fy = _whole(s.a / g.a), _whole(s.e / g.e)
    if fx is None or fx != fy or fx < 1:
        return None
    col, row = _whole((g.c - s.c) / g.a), _whole((g.f - s.f) / g.e)
    if col is None or row is None:
        return None
    return Alignment(fx, row, col)


def _source_window(src: object, bidx: int, rows: tuple[int, int], cols: tuple[int, int], nodata: float | None) -> np.ndarray:
    """Source pixels ``rows[0]:rows[1]``, ``cols[0]:cols[1]`` as float32; NaN outside the raster and for no data."""
    r0, r1 = rows
    c0, c1 = cols
    out = np.full((r1 - r0, c1 - c0), np.nan, dtype=np.float32)
    rr0, rr1 = max(r0, 0), min(r1, src.height)  # type: ignore[attr-defined]
    cc0, cc1 = max(c0, 0), min(c1, src.width)  # type: ignore[attr-defined]
    if rr1 <= rr0 or cc1 <= cc0:
        return out
    win = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
    data = src.read(bidx, window=win)  # type: ignore[attr-defined]
    part = data.astype(np.float32)
    if nodata is not None and not np.isnan(nodata):
        part[data == nodata] = np.nan
    elif nodata is None and MaskFlags.all_valid not in src.mask_flag_enums[bidx - 1]:  # type: ignore[attr-defined]
        part[src.read_masks(bidx, window=win) == 0] = np.nan  # an internal mask or alpha band, as the warper uses it
    out[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0] = part
    return out


def _bilinear_axis(fine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """For fine pixel indices: the source index left of the sample point and the weight of the next one."""
    x = (fine + 0.5) / factor - 0.5
    i0 = np.floor(x).astype(np.int64)
    return i0, x - i0


def read_aligned(
    src: object, bidx: int, al: Alignment, row0: int, col0: int, shape_yx: tuple[int, int], *,
    nodata: float | None, categorical: bool,
) -> np.ndarray:
    """Grid pixels ``row0 .. row0+h`` x ``col0 .. col0+w`` of an aligned band, float32, NaN for no data."""
    h, w = shape_yx
    fy = np.arange(h, dtype=np.int64) + row0 + al.row
    fx = np.arange(w, dtype=np.int64) + col0 + al.col
    f = al.factor
    if f == 1 or categorical:  # nearest: the source pixel that contains the grid pixel
        iy, ix = fy // f, fx // f
        v = _source_window(src, bidx, (int(iy[0]), int(iy[-1]) + 1), (int(ix[0]), int(ix[-1]) + 1), nodata)
        return v if f == 1 else np.ascontiguousarray(v[(iy - iy[0])[:, None], (ix - ix[0])[None, :]])
    iy, ty = _bilinear_axis(fy, f)
    ix, tx = _bilinear_axis(fx, f)
    v = _source_window(src, bidx, (int(iy[0]), int(iy[-1]) + 2), (int(ix[0]), int(ix[-1]) + 2), nodata)
    valid = ~np.isnan(v)
    ly, lx = iy - iy[0], ix - ix[0]
    wy, wx = ty.astype(np.float32)[:, None], tx.astype(np.float32)[None, :]
    wy0, wx0 = 1 - wy, 1 - wx

    def interpolate(a: np.ndarray) -> np.ndarray:  # separable: along rows, then along columns
        rows = wy0 * np.take(a, ly, axis=0)
        rows += wy * np.take(a, ly + 1, axis=0)
        out = np.take(rows, lx, axis=1)
        out *= wx0
        nxt = np.take(rows, lx + 1, axis=1)
        nxt *= wx
        out += nxt
        return out

    # the weights of the neighbours that have data, and their weighted sum: the same arithmetic
    # for every pixel wherever the tile lies, so neighbouring tiles agree to the last bit
    full = bool(valid.all())
    if full:  # the usual case: the weights of all-ones rows, the same sums without the gathers
        num = interpolate(v)
        rows = wy0 + wy
        den = wx0 * rows + wx * rows
    else:
        num = interpolate(np.where(valid, v, np.float32(0)))
        den = interpolate(valid.astype(np.float32))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[~(den > 1e-5)] = np.nan
    # as in GDAL's warper: no data where the source pixel under the grid pixel's centre has none
    # (or lies outside the source raster)
    if not full:
        out[np.isnan(v[(fy // f - iy[0])[:, None], (fx // f - ix[0])[None, :]])] = np.nan
    return out
