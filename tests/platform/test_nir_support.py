"""Both NIR bands must see a detection: windrows seen through B8A's coarser pixel stay, specks seen by B08
alone go, and the check gives the same answer on a tile as on the whole scene."""

from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage

from geoloom.platform.models.marine_debris_card import HALO
from geoloom.platform.models.nir_support import BACKGROUND_PX, CONTEXT_PX, nir_supported, window_nanmedian


def _water(seed: int, shape: tuple[int, int] = (120, 120), noise: float = 0.0015) -> np.ndarray:
    """Open water in the NIR at TOA-like level with detector noise."""
    return (0.03 + np.random.default_rng(seed).normal(0, noise, shape)).astype(np.float32)


def _as_20m(b08: np.ndarray) -> np.ndarray:
    """What B8A shows of the same surface: 2 x 2 block means, read back bilinearly onto the 10 m grid."""
    h, w = b08.shape
    blocks = b08.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return ndimage.zoom(blocks, 2, order=1, grid_mode=True, mode="nearest").astype(np.float32)


def _windrow(shape: tuple[int, int]) -> np.ndarray:
    """A 1 px wide diagonal windrow, 40 px long."""
    m = np.zeros(shape, bool)
    idx = np.arange(40)
    m[30 + idx, 20 + idx] = True
    return m


def test_a_windrow_seen_through_the_coarser_band_is_kept():
    line = _windrow((120, 120))
    surface = _water(0) + 0.02 * line  # half-covered pixels of debris, bright in the NIR
    b8a = _as_20m(surface) + np.random.default_rng(1).normal(0, 0.0015, line.shape).astype(np.float32)
    kept = nir_supported(surface, b8a, line)
    assert kept.sum() >= 0.95 * line.sum()


def test_a_speck_seen_by_b08_alone_is_dropped():
    b08, b8a = _water(2), _as_20m(_water(3, noise=0.0005))  # B8A: bigger pixels, less noise
    specks = np.zeros(b08.shape, bool)
    specks[[20, 50, 80, 100], [30, 90, 40, 70]] = True
    b08[specks] += 0.03  # bright in B08 only: noise, a moving boat, an artefact
    assert not nir_supported(b08, b8a, specks).any()
    # the same specks in both bands are kept
    assert nir_supported(b08, _as_20m(b08), specks)[specks].all()


def test_a_detection_darker_than_the_water_is_dropped():
    b08 = _water(4)
    dark = np.zeros(b08.shape, bool)
    dark[60, 60] = True
    b08[60, 60] -= 0.02
    assert not nir_supported(b08, _as_20m(b08), dark).any()


def test_a_tile_gives_the_whole_scene_answer_inside_the_halo():
    assert CONTEXT_PX <= HALO
    rng = np.random.default_rng(5)
    b08, b8a = _water(6, (160, 160)), _water(7, (160, 160))
    candidates = rng.random(b08.shape) < 0.05
    b08[candidates] += rng.uniform(0, 0.03, int(candidates.sum())).astype(np.float32)
    b8a[candidates] += rng.uniform(0, 0.02, int(candidates.sum())).astype(np.float32)
    whole = nir_supported(b08, b8a, candidates)
    y0, y1, x0, x1 = 40, 120, 30, 130  # a tile, read with its halo
    tile = nir_supported(b08[y0 - HALO:y1 + HALO, x0 - HALO:x1 + HALO], b8a[y0 - HALO:y1 + HALO, x0 - HALO:x1 + HALO],
                         candidates[y0 - HALO:y1 + HALO, x0 - HALO:x1 + HALO])
    assert np.array_equal(tile[HALO:-HALO, HALO:-HALO], whole[y0:y1, x0:x1])
    assert 0 < whole.sum() < candidates.sum()  # the check decided some both ways


def test_the_window_median_is_numpys_nanmedian_to_the_bit():
    rng = np.random.default_rng(8)
    windows = rng.normal(0.03, 0.002, (400, BACKGROUND_PX * BACKGROUND_PX)).astype(np.float32)
    windows[100:200] = np.round(windows[100:200], 3)  # ties
    for i, share in enumerate((0.01, 0.2, 0.5, 0.99)):  # no data in part of the window: odd and even counts
        rows = slice(200 + 50 * i, 250 + 50 * i)
        windows[rows][rng.random(windows[rows].shape) < share] = np.nan
    windows[399] = np.nan  # a window without data
    with warnings.catch_warnings():  # numpy warns of the window without data
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(windows, axis=1)
    got = window_nanmedian(windows)
    assert got.dtype == np.float32 and np.isnan(got[399])
    assert np.array_equal(got, expected, equal_nan=True)
