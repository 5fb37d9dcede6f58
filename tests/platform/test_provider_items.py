"""Items as real archives write them: band names, scale/offset, processing baselines, projections."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio

from geoloom.platform.catalog import boa_offset, scene_from_item
from geoloom.platform.errors import CatalogError
from geoloom.platform.reading import gdal_env, read_band
from geoloom.platform.stac_api import datetime_range, is_api_url, matches_query, parse_query

FOOT = {"type": "Polygon", "coordinates": [[[0, 5], [1, 5], [1, 6], [0, 6], [0, 5]]]}


def _item(assets: dict[str, dict], **props) -> pystac.Item:
    d = {
        "type": "Feature", "stac_version": "1.0.0", "id": "S2B_31NBG_20240114_0_L2A", "geometry": FOOT,
        "bbox": [0, 5, 1, 6], "properties": {"datetime": "2024-01-14T10:26:41Z", **props}, "links": [],
        "assets": assets, "collection": "sentinel-2-l2a",
    }
    return pystac.Item.from_dict(d)


def _earth_search_asset(key: str, href: str, *, offset: float | None = -0.1, jp2: bool = False) -> dict:
    rb = {"nodata": 0, "data_type": "uint16", "bits_per_sample": 15, "spatial_resolution": 10}
    if offset is not None:
        rb |= {"scale": 0.0001, "offset": offset}
    return {
        "href": href, "type": "image/jp2" if jp2 else "image/tiff; application=geotiff; profile=cloud-optimized",
        "eo:bands": [{"name": key, "common_name": key}], "raster:bands": [rb], "roles": ["data", "reflectance"],
    }


def _pc_asset(key: str, common: str, href: str) -> dict:
    return {"href": href, "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "eo:bands": [{"name": key, "common_name": common}], "roles": ["data"], "gsd": 10.0}


def test_earth_search_item_reads_cogs_not_jp2_and_keeps_declared_offset():
    item = _item(
        {
            "blue": _earth_search_asset("blue", "https://example.test/B02.tif"),
            "blue-jp2": _earth_search_asset("blue", "https://example.test/B02.jp2", jp2=True),
            "scl": {"href": "https://example.test/SCL.tif", "type": "image/tiff; application=geotiff",
                    "roles": ["data"], "raster:bands": [{"nodata": 0, "data_type": "uint8"}]},
            "visual": {"href": "https://example.test/TCI.tif", "type": "image/tiff", "roles": ["visual"],
                       "eo:bands": [{"name": "red"}, {"name": "green"}, {"name": "blue"}]},
            "thumbnail": {"href": "https://example.test/thumb.jpg", "type": "image/jpeg", "roles": ["thumbnail"]},
        },
        **{"proj:code": "EPSG:32631", "s2:processing_baseline": "05.10", "earthsearch:boa_offset_applied": False},
    )
    scene = scene_from_item(item)
    assert scene.bands == {"blue", "scl"}
    assert scene.assets["blue"].href.endswith("B02.tif")
    assert (scene.assets["blue"].scale, scene.assets["blue"].offset) == (0.0001, -0.1)
    assert (scene.assets["scl"].scale, scene.assets["scl"].offset) == (1.0, 0.0)
    assert scene.crs == "EPSG:32631"


def test_planetary_computer_item_maps_band_ids_and_infers_the_baseline_offset():
    item = _item(
        {
            "B02": _pc_asset("B02", "blue", "https://pc.test/B02.tif"),
            "B8A": _pc_asset("B8A", "nir08", "https://pc.test/B8A.tif"),
            "SCL": {"href": "https://pc.test/SCL.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                    "eo:bands": [{"name": "SCL"}]},
            "visual": {"href": "https://pc.test/TCI.tif", "type": "image/tiff; application=geotiff", "roles": ["data"],
                       "eo:bands": [{"name": "B04", "common_name": "red"}, {"name": "B03", "common_name": "green"},
                                    {"name": "B02", "common_name": "blue"}]},
        },
        **{"proj:epsg": 32631, "s2:processing_baseline": "05.09"},
    )
    scene = scene_from_item(item, sign="planetary-computer")
    assert {"blue", "nir08", "scl"} <= scene.bands
    assert scene.assets["blue"].href.endswith("B02.tif")  # the one-band file, not the true-colour one
    assert (scene.assets["blue"].scale, scene.assets["blue"].offset) == (0.0001, -0.1)
    assert scene.assets["scl"].offset == 0.0 and scene.assets["scl"].scale == 1.0
    assert scene.assets["blue"].sign == "planetary-computer"
    assert scene.crs == "EPSG:32631"


@pytest.mark.parametrize(
    ("props", "offset"),
    [
        ({"s2:processing_baseline": "03.01"}, 0.0),
        ({"s2:processing_baseline": "04.00"}, -0.1),
        ({"s2:processing_baseline": "05.11"}, -0.1),
        ({"s2:processing_baseline": "05.11", "earthsearch:boa_offset_applied": True}, 0.0),
        ({}, 0.0),
    ],
)
def test_boa_offset_follows_the_processing_baseline(props, offset):
    assert boa_offset(props) == offset


def test_baseline_offset_and_plain_scene_give_the_same_reflectance(sample_catalog: Path, tmp_path: Path):
    """The same pixels stored as before baseline 04.00 and with the +1000 DN offset read the same."""
    from odc.geo.geobox import GeoBox

    cat = pystac.Catalog.from_file(str(sample_catalog))
    src_item = next(cat.get_items(recursive=True))
    plain_href = src_item.assets["red"].get_absolute_href()
    with rasterio.open(plain_href) as src:
        profile, dn = src.profile, src.read(1)
        bounds, crs = src.bounds, src.crs
    shifted = np.where(dn > 0, dn + 1000, 0).astype(dn.dtype)
    offset_href = tmp_path / "red_offset.tif"
    with rasterio.open(offset_href, "w", **{**profile, "driver": "GTiff"}) as dst:
        dst.write(shifted, 1)

    plain = _item({"red": _pc_asset("B04", "red", plain_href)}, **{"s2:processing_baseline": "03.01"})
    new_pc = _item({"red": _pc_asset("B04", "red", str(offset_href))}, **{"s2:processing_baseline": "05.09"})
    new_es = _item({"red": _earth_search_asset("red", str(offset_href))}, **{"s2:processing_baseline": "05.09"})
    w = min(512, int((bounds.right - bounds.left) / 10))
    geobox = GeoBox.from_bbox((bounds.left, bounds.top - 10 * w, bounds.left + 10 * w, bounds.top), crs, resolution=10)
    with gdal_env():
        reads = [read_band(scene_from_item(i).assets["red"], geobox) for i in (plain, new_pc, new_es)]
    assert np.isfinite(reads[0]).mean() > 0.5
    for other in reads[1:]:
        np.testing.assert_allclose(other, reads[0], atol=1e-6, equal_nan=True)


def test_query_expressions_become_stac_query_filters():
    q = parse_query(["s2:mgrs_tile=31NBG", "view:sun_elevation>30", "eo:cloud_cover<=20.5"])
    assert q == {"s2:mgrs_tile": {"eq": "31NBG"}, "view:sun_elevation": {"gt": 30}, "eo:cloud_cover": {"lte": 20.5}}
    assert matches_query({"s2:mgrs_tile": "31NBG", "view:sun_elevation": 52, "eo:cloud_cover": 3}, q)
    assert not matches_query({"s2:mgrs_tile": "30NZM", "view:sun_elevation": 52, "eo:cloud_cover": 3}, q)
    assert not matches_query({"s2:mgrs_tile": "31NBG"}, q)  # a filtered property that is missing fails
    with pytest.raises(CatalogError, match="PROPERTY OP VALUE"):
        parse_query(["cloudy"])


def test_catalog_kinds_and_date_ranges():
    assert is_api_url("https://earth-search.aws.element84.com/v1")
    assert not is_api_url("https://example.test/stac/catalog.json")
    assert not is_api_url("sample_data/generated/catalog.json")
    assert datetime_range(dt.date(2024, 1, 9), None) == "2024-01-09T00:00:00Z/.."
    assert datetime_range(None, dt.date(2024, 1, 9)) == "../2024-01-09T23:59:59.999Z"
    assert datetime_range(None, None) is None


def test_signers_by_name_module_path_and_unknown():
    from geoloom.platform.signing import get_signer, redact, sign_href

    assert sign_href("https://x.test/a.tif", None) == "https://x.test/a.tif"
    assert get_signer("os.path:basename")("https://x.test/a.tif") == "a.tif"
    with pytest.raises(CatalogError, match="unknown signer 'nope'"):
        get_signer("nope")
    signed = "https://x.test/a.tif?st=2024&sig=SECRET"
    msg = redact(f"HTTP response code: 403 - {signed}", signed, "https://x.test/a.tif")
    assert "SECRET" not in msg and "https://x.test/a.tif" in msg
    assert "SECRET" not in redact("curl failed for https://y.test/b.tif?sig=SECRET", signed, "https://x.test/a.tif")
