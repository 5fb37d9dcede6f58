"""Pixel counts of a tile's core: what was seen, what was cloud, how much clear water, how much detected.

The counts travel in the tile's ledger record, so a run's (or a date's) statistics are sums over
its records, with no second pass over the pixels.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import xarray as xr

from geoloom.platform.sensors import SCL_CLOUD, SCL_SHADOW

__all__ = ["SCL_WATER", "core_counts"]

#: The SCL code of water.
SCL_WATER = 6


def core_counts(tile: xr.Dataset, core: Mapping[str, np.ndarray], *, halo: int, primary: str,
                detection: str | None = None) -> dict[str, int]:
    """Counts over the tile's core: ``pixels``, ``observed`` (imagery with data), ``cloud`` (cloud or
    shadow by SCL), ``clear_water`` (SCL water where the model gave a value) and ``detected``.

    Without an SCL band (a model that does not read it), clouds are not known (no ``cloud`` count) and
    every observed pixel with a value counts as clear water.
    """
    any_layer = np.asarray(core[primary])
    cy, cx = any_layer.shape
    crop = (slice(halo, halo + cy), slice(halo, halo + cx))
    reflectance = [v for v in tile.data_vars if v not in ("scl", "scene_index")]
    if reflectance:
        observed = np.isfinite(np.asarray(tile[reflectance[0]].values[crop], dtype=np.float32))
    elif "scl" in tile:  # a tile decided by its classes alone (no band read): observed where SCL has data
        scl = np.asarray(tile["scl"].values[crop], dtype=np.float32)
        observed = np.isfinite(scl) & (scl != 0)
    else:
        observed = np.zeros((cy, cx), dtype=bool)
    value = np.isfinite(any_layer) if any_layer.dtype.kind == "f" else np.ones((cy, cx), dtype=bool)
    if "scl" in tile:
        scl = np.nan_to_num(np.asarray(tile["scl"].values[crop], dtype=np.float32), nan=0.0).astype(np.int16)
        cloud = observed & np.isin(scl, list(SCL_CLOUD | SCL_SHADOW))
        water = observed & ~cloud & (scl == SCL_WATER) & value
    else:
        cloud = None
        water = observed & value
    counts = {"pixels": cy * cx, "observed": int(observed.sum()), "clear_water": int(water.sum())}
    if cloud is not None:
        counts["cloud"] = int(cloud.sum())
    if detection is not None:
        counts["detected"] = int((np.asarray(core[detection]) == 1).sum())
    return counts
