"""The time stack of a per-date run: each date's store as one step, copied as stored bytes or computed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from shapely.geometry import box

from geoloom.platform.catalog import Scene
from geoloom.platform.models.card import OutputSpec
from geoloom.platform.mosaic import create_store, open_store
from geoloom.platform.plan import Plan, plan_tiles
from geoloom.platform.region import Region
from geoloom.platform.time_stack import stack_dates

SCENE = Scene(id="S2A_MSIL2A_20240501", datetime="2024-05-01T11:00:00Z", cloud_cover=3.5,
              footprint=box(-3.1, 42.9, -2.9, 43.1), assets={}, collection="sentinel-2-l2a")
OUTPUTS = (OutputSpec("probability", "probability", dtype="float32"),
           OutputSpec("debris", "mask", dtype="uint8", nodata=255))
DAYS = ("2024-05-01", "2024-05-06", "2024-05-11")


@pytest.fixture(scope="module")
def plan() -> Plan:
    """A 100 x 92 px grid in 32 px tiles: partial chunks at the right and bottom edges."""
    region = Region.from_bbox((-3.0, 43.0, -2.9989, 43.0009), name="corner")
    return plan_tiles(region, [SCENE], bands=("nir",), resolution=1, halo=0, tile_size=32)


def _date_store(path: Path, plan: Plan, seed: int, *, compressor: dict | None = None) -> dict[str, np.ndarray]:
    """A date's store with random values, one chunk never written (fill); returns what it holds."""
    create_store(path, plan, OUTPUTS)
    rng = np.random.default_rng(seed)
    h, w = plan.shape_yx
    values = {"probability": rng.random((h, w), dtype=np.float32), "debris": rng.integers(0, 2, (h, w), dtype=np.uint8)}
    group = zarr.open_group(str(path), mode="r+")
    for name, v in values.items():
        if compressor is not None:  # the same layer stored with other codecs than the stack's
            attrs = dict(group[name].attrs)
            del group[name]
            arr = group.create_array(name, shape=v.shape, chunks=(32, 32), dtype=v.dtype, compressors=compressor,
                                     fill_value=np.nan if v.dtype.kind == "f" else 255, dimension_names=("y", "x"))
            arr.attrs.update(attrs)
        group[name][32:, :] = v[32:, :]
        group[name][:32, 32:] = v[:32, 32:]
        v[:32, :32] = np.nan if v.dtype.kind == "f" else 255  # the chunk never written
    return values


@pytest.mark.parametrize("codecs", ["as the stack's", "other than the stack's"])
def test_each_date_is_one_time_step_with_its_values(tmp_path: Path, plan: Plan, codecs: str):
    other = codecs.startswith("other")
    stores, expected = {}, {}
    for i, day in enumerate(DAYS):
        stores[day] = tmp_path / day / "result.zarr"
        expected[day] = _date_store(stores[day], plan, i, compressor={"name": "gzip", "configuration": {"level": 1}}
                                    if other and i == 1 else None)
    stack = open_store(stack_dates(stores, tmp_path / "result.zarr"))
    assert list(stack["time"].dt.strftime("%Y-%m-%d").values) == list(DAYS)
    assert stack["probability"].encoding["chunks"] == (1, 32, 32)
    for t, day in enumerate(DAYS):
        for name in ("probability", "debris"):
            got = stack[name].isel(time=t).values
            np.testing.assert_array_equal(got, expected[day][name], err_msg=f"{day} {name}")
    raw = zarr.open_group(str(tmp_path / "result.zarr"), mode="r")["debris"]
    assert raw[0, :32, :32].max() == 255 and raw[2, 40:, 40:].max() <= 1  # fill where never written
    assert not list(tmp_path.glob("result.zarr.*")), "no stacking folder is left behind"
