"""Debris objects of one or two pixels leave the mask, windrows stay, and a tile gives the whole scene's
answer inside its halo."""

from __future__ import annotations

import numpy as np

from geoloom.platform.models.marine_debris_card import HALO
from geoloom.platform.models.small_objects import CONTEXT_PX, MIN_OBJECT_PX, drop_small_objects


def test_specks_and_pairs_go_windrows_stay():
    m = np.zeros((40, 40), bool)
    m[5, 5] = True  # a speck
    m[10, 10] = m[10, 11] = True  # a pair
    m[20, 20] = m[21, 21] = m[22, 22] = True  # a 1 px wide diagonal line: 8-connected, one object
    m[30, 5:25] = True  # a windrow
    kept = drop_small_objects(m)
    assert MIN_OBJECT_PX == 3
    assert not kept[5, 5] and not kept[10, 10:12].any()
    assert kept[20, 20] and kept[21, 21] and kept[22, 22] and kept[30, 5:25].all()
    assert kept.sum() == 23
    assert np.array_equal(drop_small_objects(m, 1), m)
    assert not drop_small_objects(np.zeros((4, 4), bool)).any()


def test_a_tile_gives_the_whole_scene_answer_inside_the_halo():
    assert CONTEXT_PX <= HALO
    m = np.random.default_rng(0).random((200, 200)) < 0.12  # many small objects, some cut by the tile edge
    whole = drop_small_objects(m)
    for y0, x0, n in ((40, 60, 80), (3, 3, 50), (120, 10, 64)):
        ya, xa = max(y0 - CONTEXT_PX, 0), max(x0 - CONTEXT_PX, 0)
        tile = drop_small_objects(m[ya:y0 + n + CONTEXT_PX, xa:x0 + n + CONTEXT_PX])
        assert np.array_equal(tile[y0 - ya:y0 - ya + n, x0 - xa:x0 - xa + n], whole[y0:y0 + n, x0:x0 + n])
    # with one pixel less of context the answer differs: a line of 3 px that leaves the tile by 2 px
    line = np.zeros((60, 60), bool)
    line[18:21, 30] = True
    y0, n = 20, 20
    assert drop_small_objects(line)[y0, 30]
    assert drop_small_objects(line[y0 - CONTEXT_PX:y0 + n])[CONTEXT_PX, 30]
    assert not drop_small_objects(line[y0 - CONTEXT_PX + 1:y0 + n])[CONTEXT_PX - 1, 30]
