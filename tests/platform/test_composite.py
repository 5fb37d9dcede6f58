"""Compositing: the most recent clear pixel wins, the least cloudy scene fills the rest, each band read once."""

from __future__ import annotations

from collections import Counter

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from shapely.geometry import box

from geoloom.platform.catalog import AssetRef, Scene
from geoloom.platform.composite import composite_tile

GEOBOX = GeoBox((4, 4), Affine(10, 0, 500_000, 0, -10, 4_000_000), "EPSG:32630")
CLEAR, CLOUD, WATER = 4, 9, 6


def _scene(name: str, cloud_cover: float) -> Scene:
    assets = {b: AssetRef(href=f"{name}/{b}.tif", band=b) for b in ("red", "nir", "scl")}
    return Scene(id=name, datetime="2024-01-01T00:00:00Z", cloud_cover=cloud_cover, footprint=box(0, 0, 1, 1),
                 assets=assets)


def test_cloudy_pixels_fall_back_to_the_least_cloudy_scene_reading_each_band_once():
    newest, oldest = _scene("newest", 60.0), _scene("oldest", 20.0)
    scl = {
        "newest": np.array([[WATER, WATER, CLOUD, CLOUD]] * 4, dtype=np.float32),
        "oldest": np.array([[CLOUD, WATER, WATER, CLOUD]] * 4, dtype=np.float32),
    }
    value = {"newest": 1.0, "oldest": 2.0}
    reads: Counter[tuple[str, str]] = Counter()

    def read(scene: Scene, band: str, geobox: GeoBox) -> np.ndarray:
        reads[(scene.id, band)] += 1
        if band == "scl":
            return scl[scene.id]
        return np.full(geobox.shape.yx, value[scene.id] * (10 if band == "nir" else 1), dtype=np.float32)

    ds, used = composite_tile([newest, oldest], ("red", "nir"), GEOBOX, read)
    # columns: clear in newest | clear in both (newest wins) | clear in oldest only | cloudy in both
    np.testing.assert_array_equal(ds["red"].values[0], [1.0, 1.0, 2.0, 2.0])  # last column: oldest is less cloudy
    np.testing.assert_array_equal(ds["nir"].values[0], [10.0, 10.0, 20.0, 20.0])
    np.testing.assert_array_equal(ds["scene_index"].values[0], [0, 0, 1, 1])
    assert used == {"newest": 8, "oldest": 8}
    assert max(reads.values()) == 1, reads


def test_a_plan_lists_scenes_most_recent_first_ties_by_id_whatever_order_they_come_in():
    """The compositor's order is a total order of the plan, not of the list a caller passes."""
    from itertools import permutations

    from geoloom.platform.plan import plan_tiles
    from geoloom.platform.region import as_region

    def scene(name: str, when: str) -> Scene:
        return Scene(id=name, datetime=when, cloud_cover=0.0, footprint=box(-3.1, 40.9, -2.9, 41.1),
                     assets={"red": AssetRef(href=f"{name}/red.tif", band="red")})

    scenes = [scene("c", "2024-01-01T10:00:00+00:00"), scene("a", "2024-01-02T10:00:00+00:00"),
              scene("b", "2024-01-02T10:00:00+00:00"), scene("d", "2024-01-02T10:00:30+00:00")]
    region = as_region((-3.01, 40.99, -2.99, 41.01))
    plans = [plan_tiles(region, list(order), bands=("red",), resolution=10, halo=4, tile_size=64)
             for order in permutations(scenes)]
    for plan in plans:
        assert [s.id for s in plan.scenes] == ["d", "b", "a", "c"]
        assert all(t.scene_ids == ("d", "b", "a", "c") for t in plan.tiles)
    assert len({p.token for p in plans}) == 1


def test_a_scene_clear_everywhere_is_the_composite_and_what_was_read_stays_as_read():
    scene = _scene("only", 5.0)
    band = {"scl": np.full((4, 4), WATER, np.float32), "red": np.full((4, 4), 1.0, np.float32),
            "nir": np.full((4, 4), 10.0, np.float32)}
    band["nir"][2, 3] = np.nan  # one pixel without NIR: no band counts there
    cached = {k: v.copy() for k, v in band.items()}

    ds, used = composite_tile([scene], ("red", "nir", "scl"), GEOBOX, lambda sc, b, gb: cached[b])
    assert np.isnan(ds["red"].values[2, 3]) and ds["scene_index"].values[2, 3] == -1
    assert np.nansum(ds["red"].values) == 15 and (ds["scene_index"].values >= 0).sum() == 15
    for k in band:  # the reader's arrays (a cache, say) were not written to
        np.testing.assert_array_equal(cached[k], band[k])
    assert used == {"only": 16}
