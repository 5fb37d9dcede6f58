"""One store over time: the per-date result stores of a run stacked along a CF ``time`` axis."""

from __future__ import annotations

import json
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

#: Codecs whose encoded chunk does not depend on the chunk's shape, only on its values in C order.
_SHAPELESS_CODECS = {"bytes", "zstd", "blosc", "gzip", "crc32c"}
_DEFAULT_KEYS = {"name": "default", "configuration": {"separator": "/"}}


def _array_meta(folder: Path) -> dict | None:
    f = folder / "zarr.json"
    return json.loads(f.read_text()) if f.is_file() else None


def _same_chunk_bytes(sources: list[Path], dest: Path) -> bool:
    """True when every source array's chunk files are, byte for byte, chunks of ``dest``'s time steps:
    same dtype, fill value and codecs (none that depends on the shape), the source chunk with a
    leading time step of 1, default chunk keys."""
    d = _array_meta(dest)
    if d is None or d.get("storage_transformers") or d.get("chunk_key_encoding") != _DEFAULT_KEYS:
        return False
    if any(c.get("name") not in _SHAPELESS_CODECS for c in d.get("codecs", [])):
        return False
    chunk = d["chunk_grid"]["configuration"]["chunk_shape"]
    for src in sources:
        s = _array_meta(src)
        if s is None or s.get("storage_transformers") or s.get("chunk_key_encoding") != _DEFAULT_KEYS:
            return False
        same = (s["data_type"] == d["data_type"] and s["codecs"] == d["codecs"] and s["fill_value"] == d["fill_value"]
                and s["shape"] == d["shape"][1:] and chunk[0] == 1
                and s["chunk_grid"]["configuration"]["chunk_shape"] == chunk[1:])
        if not same:
            return False
    return True


def _copy_chunks(src: Path, dest: Path, step: int) -> None:
    """The source array's chunk files as time step ``step`` of ``dest`` (chunks never written stay absent: fill)."""
    root = src / "c"
    if not root.is_dir():
        return
    for f in root.rglob("*"):
        if f.is_file():
            target = dest / "c" / str(step) / f.relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)


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
        # metadata and coordinates now; the layers' chunks as stored bytes where they can be, else computed
        pending = stacked.to_zarr(str(tmp), mode="w", zarr_format=3, consolidated=False, encoding=encoding,
                                  compute=False)
        names = [str(n) for n in stacked.data_vars]
        if all(_same_chunk_bytes([Path(stores[d]) / n for d in days], tmp / n) for n in names):
            for n in names:
                for t, day in enumerate(days):
                    _copy_chunks(Path(stores[day]) / n, tmp / n, t)
        else:
            pending.compute()
    old = out.with_name(f"{out.name}.old-{os.getpid()}")
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)
    return out
