"""The imagery's own true-colour composite, made with the public ``map_tiles`` API.

It is the map's offline basemap (a coarse preview of the whole catalog) and a layer of each
run (at the run's resolution). Red, green and blue reflectance are packed into one uint32
layer (``r<<16 | g<<8 | b``, 0 = no data) because ``map_tiles`` stitches one layer per run.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from geoloom.workflows import Imagery, Region, Run, map_tiles, open_run

TRUECOLOUR_BANDS = ("red", "green", "blue")
LAYER = "truecolour"

#: Reflectance mapped to the top of the 8-bit range.
REFLECTANCE_MAX = 0.4

#: Longest side of a true-colour grid, in pixels.
MAX_SIDE_PX = 2048


def truecolour(ds: xr.Dataset) -> xr.DataArray:
    """Pack a tile's red, green and blue reflectance into one uint32 layer (0 = no data)."""
    def q(band: str) -> xr.DataArray:
        v = ds[band]
        scaled = (v.clip(0, REFLECTANCE_MAX) / REFLECTANCE_MAX * 254 + 1).fillna(0)
        return scaled.astype("uint32")

    packed = (q("red") << 16) | (q("green") << 8) | q("blue")
    valid = ds["red"].notnull() & ds["green"].notnull() & ds["blue"].notnull()
    return packed.where(valid, 0).astype("uint32").rename(LAYER)


def resolution_for(region: Region, resolution: float) -> float:
    """The finer of ``resolution`` and what keeps the grid under MAX_SIDE_PX pixels a side."""
    w, s, e, n = region.bbox_lonlat
    lat = math.radians((s + n) / 2)
    width_m = abs(e - w) % 360 * 111_320 * max(math.cos(lat), 0.05)
    height_m = abs(n - s) * 110_574
    return max(resolution, math.ceil(max(width_m, height_m) / MAX_SIDE_PX))


def make_truecolour(region: Region, out: Path, *, imagery: Imagery, resolution: float) -> Run:
    """The composite over ``region`` from the run's ``imagery``, in ``out`` (reused when it is already there)."""
    if (out / "run.json").exists():
        return open_run(out)
    return map_tiles(
        region, truecolour, bands=list(TRUECOLOUR_BANDS), out=out, resolution=resolution_for(region, resolution),
        name=LAYER, dtype="uint32", catalog=imagery.catalog, collection=imagery.collection, start=imagery.start,
        end=imagery.end, max_cloud=imagery.max_cloud, query=imagery.query, sign=imagery.sign,
        runtime="in-process", retries=0, overwrite=True, max_area_km2=None,
    )


def make_truecolours(region: Region, out: Path, *, imagery: Imagery, resolution: float) -> None:
    """The true-colour layer of a finished run: one per acquisition date for a per-date run (each date's
    own scenes, in ``dates/<day>/truecolour``), else one composite in ``truecolour``."""
    days = sorted(p.parent.name for p in (out / "dates").glob("*/run.json")) if (out / "dates").is_dir() else []
    if not days:
        make_truecolour(region, out / "truecolour", imagery=imagery, resolution=resolution)
        return
    for day in days:
        one = Imagery.from_dict(imagery.to_dict() | {"start": day, "end": day})
        make_truecolour(region, out / "dates" / day / "truecolour", imagery=one, resolution=resolution)


def catalog_extent(catalog: str, *, max_items: int = 500) -> tuple[float, float, float, float] | None:
    """The lon/lat box of a local static STAC catalog's items; None for remote or unreadable catalogs."""
    if "://" in catalog and not catalog.startswith("file://"):
        return None
    path = Path(catalog.removeprefix("file://"))
    if not path.is_file():
        return None
    try:
        import pystac

        root = pystac.read_file(str(path))
        boxes = []
        for i, item in enumerate(root.get_items(recursive=True)):  # type: ignore[union-attr]
            if i >= max_items:
                return None
            if item.bbox:
                boxes.append(item.bbox[:4] if len(item.bbox) == 4 else item.bbox[:2] + item.bbox[3:5])
    except Exception:
        return None
    if not boxes:
        return None
    arr = np.array(boxes, dtype="float64")
    return (float(arr[:, 0].min()), float(arr[:, 1].min()), float(arr[:, 2].max()), float(arr[:, 3].max()))


def preview_key(catalog: str) -> str:
    """A folder name for the catalog's preview that changes when the catalog file changes."""
    path = Path(catalog.removeprefix("file://"))
    stamp = f"{path.resolve()}:{path.stat().st_mtime_ns if path.exists() else 0}"
    return hashlib.sha256(stamp.encode()).hexdigest()[:12]


def preview_plan(catalog: str, *, max_area_km2: float = 20_000, side_px: int = 700) -> dict[str, Any] | None:
    """Region and resolution of the catalog's coarse true-colour preview, or None when it would be too big."""
    extent = catalog_extent(catalog)
    if extent is None:
        return None
    try:
        region = Region.from_bbox(extent, name="imagery preview")
    except Exception:
        return None
    if region.area_km2 > max_area_km2:
        return None
    side_m = math.sqrt(region.area_km2) * 1000
    return {"region": region, "resolution": max(60.0, round(side_m / side_px, -1)), "extent": extent}
