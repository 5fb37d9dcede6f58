"""Per-pixel compositing of several scenes: the most recent clear observation wins."""

from __future__ import annotations

from typing import Callable

import numpy as np
import xarray as xr
from odc.geo.geobox import GeoBox

from geoloom.platform.band_masks import derivable_bands, derived_scl
from geoloom.platform.bands import SCL_UNCLEAR
from geoloom.platform.catalog import Scene
from geoloom.platform.errors import BandError

ReadFn = Callable[[Scene, str, GeoBox], np.ndarray]

#: Tile attribute set when some scene's classes (``scl``) were derived from its bands, not read.
CLASSES_FROM_BANDS = "geoloom:classes_from_bands"


def composite_tile(
    scenes: list[Scene] | tuple[Scene, ...],
    bands: tuple[str, ...],
    geobox: GeoBox,
    read: ReadFn,
) -> tuple[xr.Dataset, dict[str, int]]:
    """Composite ``bands`` of ``scenes`` (most recent first) onto ``geobox``.

    Per pixel: the most recent observation that is not cloud, cloud shadow or nodata by
    SCL (classified from the bands where a scene has none, :mod:`geoloom.platform.band_masks`);
    where no scene is clear, the least cloudy scene with data. Returns the dataset
    (float32 variables, NaN = no data, plus ``scene_index`` int16, -1 = none) and the
    number of pixels each scene contributed. Where one scene gives every pixel, the dataset holds the
    arrays ``read`` returned (unchanged), not copies.
    """
    h, w = geobox.shape.yx
    pick = np.full((h, w), -1, dtype=np.int16)
    values: dict[str, np.ndarray] = {}  # filled by take(); a band no scene gave stays NaN
    used: dict[str, int] = {}
    fallback_candidates: list[int] = []
    kept: dict[tuple[int, str], np.ndarray] = {}  # bands of fallback candidates, read once per tile
    from_bands: list[str] = []  # scenes whose classes were derived from their bands (no SCL)

    def band(i: int, b: str, keep: bool = False) -> np.ndarray:
        arr = kept.get((i, b))
        if arr is None:
            if b == "scl" and "scl" not in scenes[i].assets:  # classified from the bands (no SCL: Level-1C)
                arr = derived_scl(lambda name: band(i, name, keep=True), scenes[i].bands)
                from_bands.append(scenes[i].id)
            else:
                arr = read(scenes[i], b, geobox)
            if keep or b == "scl":
                kept[(i, b)] = arr
        return arr

    def take(i: int, where: np.ndarray, keep: bool = False) -> None:
        whole = bool(where.all())  # the usual tile: one scene clear everywhere; its bands are the composite
        for b in bands:
            arr = band(i, b, keep)
            if whole:
                values[b] = arr.astype(np.float32, copy=False)  # never written to below: the caller's array stays as read
            else:
                if b not in values:
                    values[b] = np.full((h, w), np.nan, dtype=np.float32)
                np.copyto(values[b], arr, where=where)
        pick[where] = i
        used[scenes[i].id] = used.get(scenes[i].id, 0) + int(where.sum())

    for i, scene in enumerate(scenes):
        offered = derivable_bands(scene.bands)
        missing = [b for b in bands if b not in offered]
        if missing:
            raise BandError(
                f"scene {scene.id} lacks band(s) {', '.join(missing)} the model needs; "
                "pick another model or a catalog with those bands"
            )
        if "scl" in offered:
            scl = band(i, "scl")
            valid = np.isfinite(scl) & (scl != 0)
            clear = valid & ~np.isin(scl, list(SCL_UNCLEAR))
        else:
            valid = np.isfinite(band(i, bands[0]))
            clear = valid
        candidate = bool((valid & ~clear & (pick < 0)).any())
        if candidate:
            fallback_candidates.append(i)
        new = clear & (pick < 0)
        if new.any():
            take(i, new, keep=candidate)
        if (pick >= 0).all():
            break

    if (pick < 0).any() and fallback_candidates:
        order = sorted(fallback_candidates, key=lambda i: (scenes[i].cloud_cover if scenes[i].cloud_cover is not None else 100.0, i))
        for i in order:
            new = np.isfinite(band(i, bands[0])) & (pick < 0)
            if new.any():
                take(i, new)
            if (pick >= 0).all():
                break

    for b in bands:
        if b not in values:
            values[b] = np.full((h, w), np.nan, dtype=np.float32)
    # a pixel counts only when every band has data there
    complete = np.logical_and.reduce([np.isfinite(v) for v in values.values()])
    if not complete.all():
        for b in bands:
            values[b] = np.where(complete, values[b], np.float32(np.nan))
        pick[~complete] = -1
    ds = xr.Dataset(
        {b: (("y", "x"), values[b]) for b in bands} | {"scene_index": (("y", "x"), pick)},
        coords=geobox_coords(geobox),
    )
    if from_bands:  # models may treat classes from the bands with more caution (e.g. a cloud-edge buffer)
        ds.attrs[CLASSES_FROM_BANDS] = 1
    return ds, used


def geobox_coords(geobox: GeoBox) -> dict[str, np.ndarray]:
    """Pixel-centre x and y coordinates of a geobox."""
    t = geobox.transform
    h, w = geobox.shape.yx
    return {
        "y": t.f + t.e * (np.arange(h) + 0.5),
        "x": t.c + t.a * (np.arange(w) + 0.5),
    }
