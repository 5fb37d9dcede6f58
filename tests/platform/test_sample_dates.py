"""Sample data over time: the same coast on N dates, debris drifting and forming between them."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from geoloom.platform.classes import DEBRIS
from geoloom.platform.sampledata import (
    ACQUISITIONS, COLLECTION_ID, SampleDataError, generate_sample_data, sample_acquisition, sample_world,
)
from geoloom.platform.scene_world import PatchFrame, World
from geoloom.platform.scenes import render_window, strokes_to_pixels

SCALE = 0.08  # small scenes: the 12 files of a date in well under a second


@pytest.fixture(scope="module")
def four_dates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_sample_data(tmp_path_factory.mktemp("dates4"), seed=2, dates=4, _scale=SCALE).parent


def _items(root: Path) -> list[pystac.Item]:
    return list(pystac.Catalog.from_file(str(root / "catalog.json")).get_items(recursive=True))


def _hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under each item folder, keyed by its path in the collection."""
    coll = root / COLLECTION_ID
    return {str(p.relative_to(coll)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(coll.rglob("*")) if p.is_file() and p.parent != coll}


def _debris_xy(world: World) -> np.ndarray:
    return np.concatenate([s.xy for s in world.strokes if s.kind == "debris"])


def _mouth(world: World) -> np.ndarray:
    """World metres of the bay's river mouth: where its channel starts."""
    return next(s for s in world.strokes if s.kind == "river").xy[0]


def test_n_dates_give_both_granules_on_each_date(four_dates: Path) -> None:
    items = _items(four_dates)
    assert len(items) == 8
    by_date: dict = {}
    for item in items:
        by_date.setdefault(item.datetime, []).append(item)
    assert len(by_date) == 4
    for a, date in enumerate(sorted(by_date)):
        acq = sample_acquisition(a)
        assert date.isoformat().replace("+00:00", "Z") == acq.datetime
        assert sorted(i.id.split("-")[2] for i in by_date[date]) == ["30NZM", "31NBG"]
        for item in by_date[date]:
            assert item.id.endswith(acq.datetime[:10].replace("-", ""))
            assert item.properties["platform"] == acq.platform == ("sentinel-2a", "sentinel-2b")[a % 2]
            assert 0.0 <= item.properties["eo:cloud_cover"] <= 100.0
            assert item.properties["view:sun_azimuth"] == acq.sun_azimuth
    assert [sample_acquisition(a) for a in range(2)] == list(ACQUISITIONS)
    days = np.diff([np.datetime64(sample_acquisition(a).datetime[:10]) for a in range(6)]).astype(int)
    assert (days == 5).all()


def test_first_dates_match_a_shorter_run_byte_for_byte(four_dates: Path, tmp_path: Path) -> None:
    three = _hashes(generate_sample_data(tmp_path / "three", seed=2, dates=3, _scale=SCALE).parent)
    four = _hashes(four_dates)
    assert len(three) == 6 * 15 and len(four) == 8 * 15
    assert {k: four[k] for k in three} == three
    plain = _hashes(generate_sample_data(tmp_path / "plain", seed=2, _scale=SCALE).parent)
    assert {k: four[k] for k in plain} == plain  # the default is the first two dates


def test_rendered_scenes_differ_between_dates(four_dates: Path) -> None:
    items = sorted((i for i in _items(four_dates) if "30NZM" in i.id), key=lambda i: i.datetime)
    bands = []
    for item in items[2:4]:
        with rasterio.open(item.assets["labels"].get_absolute_href()) as src:
            bands.append(src.read(1))
    assert bands[0].shape == bands[1].shape and not np.array_equal(bands[0], bands[1])


def test_debris_drifts_and_forms_between_dates() -> None:
    worlds = {a: sample_world(0, a) for a in range(2, 8)}
    a, b = _debris_xy(worlds[2]), _debris_xy(worlds[3])
    assert a.shape != b.shape or not np.allclose(a, b)
    assert sample_world(0, 3).strokes[0].xy.tolist() == worlds[3].strokes[0].xy.tolist()  # deterministic
    # The bay holds debris on most dates, in amounts that vary visibly.
    mouth = _mouth(worlds[2])
    frame = PatchFrame(mouth[0] - 2400.0, mouth[1] + 200.0)
    counts = []
    for world in worlds.values():
        r = render_window(world, frame, strokes_to_pixels(world.strokes, frame), 0, 320, 0, 480)
        counts.append(int((r.labels == DEBRIS).sum()))
    assert sum(c > 0 for c in counts) >= 4 and max(counts) > 1.5 * max(1, min(counts)), counts
    # After rain (the fifth date), fresh debris lies off the river mouth.
    for seed in (0, 1):
        near, mouth = [], _mouth(sample_world(seed, 2))
        for d in (2, 3, 4):
            xy = _debris_xy(sample_world(seed, d))
            near.append(int((np.hypot(*(xy - mouth).T) < 900.0).sum()))
        assert near[2] > max(near[:2]), (seed, near)


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3", True])
def test_bad_dates_raise_a_user_error(bad: object, tmp_path: Path) -> None:
    with pytest.raises(SampleDataError, match="dates"):
        generate_sample_data(tmp_path, dates=bad)  # type: ignore[arg-type]


def test_dates_need_the_small_size(tmp_path: Path) -> None:
    with pytest.raises(SampleDataError, match="small"):
        generate_sample_data(tmp_path, size="tile", dates=2)
