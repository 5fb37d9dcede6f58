"""The mosaic sink: a Zarr v3 store on the plan's grid, written one whole-chunk tile core at a time."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping

# dask.array and rioxarray only for create_store (the client's), yet imported here: workers that skip them
# start 0.1 s sooner but peak 20-30 MB higher on a full tile (A/B, alternating runs), against a memory target
import dask.array as da
import numpy as np
import xarray as xr
import rioxarray  # noqa: F401  (registers .rio)
import zarr
from affine import Affine

from geoloom.platform.composite import geobox_coords
from geoloom.platform.models.card import OutputSpec
from geoloom.platform.plan import Plan, TileTask


def create_store(path: str | Path, plan: Plan, outputs: tuple[OutputSpec, ...] | list[OutputSpec], *, attrs: dict | None = None) -> None:
    """Write the store's metadata (no pixels): one variable per output, chunks = tile cores."""
    h, w = plan.shape_yx
    t = plan.tile_size
    data = {
        o.name: (("y", "x"), da.full((h, w), o.fill_value, chunks=(t, t), dtype=o.dtype), _var_attrs(o))
        for o in outputs
    }
    ds = xr.Dataset(data, coords=geobox_coords(plan.geobox), attrs=attrs or {})
    ds = ds.rio.write_crs(plan.crs).rio.write_transform(Affine(*plan.transform))
    for o in outputs:  # CF: each layer names its grid mapping (explicit encodings drop rioxarray's)
        ds[o.name].attrs["grid_mapping"] = "spatial_ref"
    encoding = {o.name: {"chunks": (t, t), "fill_value": o.fill_value} for o in outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds.to_zarr(str(path), mode="w", compute=False, zarr_format=3, consolidated=False, encoding=encoding)


def _var_attrs(o: OutputSpec) -> dict:
    attrs = {"long_name": o.description or o.name, "kind": o.kind}
    if o.classes:
        attrs["flag_values"] = list(o.classes)
        attrs["flag_meanings"] = " ".join(v.replace(" ", "_") for v in o.classes.values())
    if o.kind == "probability":
        attrs["valid_range"] = [0.0, 1.0]
    return attrs


def write_tile(path: str | Path, task: TileTask, layers: Mapping[str, np.ndarray], *, tile_size: int) -> None:
    """Write one tile core into the store; refuses writes that are not whole chunks."""
    y0, y1, x0, x1 = task.core_yx
    if y0 % tile_size or x0 % tile_size:
        raise RuntimeError(f"tile {task.key} core {task.core_yx} is not aligned to chunks of {tile_size}")
    for name, arr in layers.items():  # every layer is checked before any is written: a tile is whole or absent
        if (y1 - y0, x1 - x0) != arr.shape:
            raise RuntimeError(f"tile {task.key}: layer {name} has shape {arr.shape}, core is {(y1 - y0, x1 - x0)}")
    group = zarr.open_group(str(path), mode="r+")
    for name, arr in layers.items():
        z = group[name]
        if not (y1 % tile_size == 0 or y1 == z.shape[0]) or not (x1 % tile_size == 0 or x1 == z.shape[1]):
            raise RuntimeError(f"tile {task.key} core {task.core_yx} does not end on a chunk border")
        z[y0:y1, x0:x1] = arr.astype(z.dtype, copy=False)


def drop_partial_chunks(path: str | Path) -> int:
    """Remove chunk files a killed writer left half-written (Zarr writes ``<chunk>.<uuid>.partial``, then renames).

    The chunk itself is either absent or whole, so the tile is simply written again; returns how many were removed.
    """
    removed = 0
    for p in Path(path).rglob("*.partial"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def open_store(path: str | Path) -> xr.Dataset:
    """The store as a lazy xarray Dataset with its CRS decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(str(path), consolidated=False, decode_coords="all")
