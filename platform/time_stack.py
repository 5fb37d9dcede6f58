"""One store over time: the per-date result stores of a run stacked along a CF ``time`` axis."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from geoloom.platform.mosaic import open_store

__all__ = ["stack_dates"]


def stack_dates(stores: Mapping[str, Path], out: str | Path) -> Path:
    """Write ``out`` (Zarr v3): each day's store (``{"2024-01-09": path}``) as one step of a ``time``
    dimension, chunked one tile core per step; replaces an older stack only once the new one is whole."""
    out = Path(out)
    days = sorted(stores)
    if not days:
        raise ValueError("no dates to stack")
    parts = []
    for day in days:
        ds = open_store(stores[day])
        parts.append(ds.expand_dims(time=pd.DatetimeIndex([np.datetime64(day, "ns")])))
    stacked = xr.concat(parts, dim="time", data_vars="all", coords="minimal", compat="override", join="exact")
    stacked["time"].attrs.update(standard_name="time", axis="T", long_name="acquisition date (UTC)")
    stacked.attrs.update(parts[0].attrs)
    stacked.attrs["dates"] = days
    encoding: dict[str, dict] = {}
    for name, var in stacked.data_vars.items():
        src = parts[0][name].encoding
        chunks = src.get("chunks") or src.get("preferred_chunks")
        tile = tuple(chunks)[-2:] if chunks else var.shape[-2:]
        var.encoding = {}
        encoding[name] = {"chunks": (1, *tile), "fill_value": src.get("fill_value", parts[0][name].attrs.get("_FillValue"))}
        if encoding[name]["fill_value"] is None:
            del encoding[name]["fill_value"]
        stacked[name] = var.chunk({"time": 1, "y": tile[0], "x": tile[1]})
    encoding["time"] = {"units": "days since 1970-01-01", "calendar": "proleptic_gregorian", "dtype": "int64"}
    tmp = out.with_name(f"{out.name}.stacking-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stacked.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=False, encoding=encoding)
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out
