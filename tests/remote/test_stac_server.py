"""Self-check of the loopback STAC API / COG server (tests/remote/stac_server.py).

pystac-client must search it like the real Earth Search / Planetary Computer APIs (filters,
paging by GET and POST), and GDAL must read its COGs over HTTP with range requests, through
injected faults.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pystac
import pystac_client
import pytest
import rasterio
import requests
from rasterio.windows import Window
from shapely.geometry import box, shape

from .stac_server import PC_TO_ES, StacApiServer

FLAVORS = ["earth-search", "planetary-computer"]
GDAL_ENV = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR", "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
            "GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.1"}
WINDOW = Window(700, 900, 300, 200)  # spans two 512 x 512 blocks of a 10 m band


def _sample_items(catalog: Path) -> list[pystac.Item]:
    return list(pystac.Catalog.from_file(str(catalog)).get_items(recursive=True))


def _expected(catalog: Path, bbox, start: datetime, end: datetime, max_cloud: float) -> list[str]:
    hits = [it for it in _sample_items(catalog)
            if shape(it.geometry).intersects(box(*bbox)) and start <= it.datetime <= end
            and it.properties["eo:cloud_cover"] < max_cloud]
    hits.sort(key=lambda it: (it.datetime, it.id), reverse=True)
    return [it.id for it in hits]


def _newest_id(catalog: Path) -> str:
    return max(_sample_items(catalog), key=lambda it: (it.datetime, it.id)).id


def _local_band(catalog: Path, item_id: str, key: str = "blue") -> Path:
    item = next(it for it in _sample_items(catalog) if it.id == item_id)
    return Path(item.assets[key].get_absolute_href())


@pytest.fixture()
def es(sample_catalog: Path):
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        yield srv


# ------------------------------------------------------------------------------ the API


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_search_filters_and_pages(sample_catalog: Path, flavor: str, method: str) -> None:
    items = _sample_items(sample_catalog)
    clouds = sorted(it.properties["eo:cloud_cover"] for it in items)
    max_cloud = (clouds[-1] + clouds[-2]) / 2  # drops the cloudiest scene
    x0, y0 = max(it.bbox[0] for it in items), max(it.bbox[1] for it in items)  # where all scenes overlap
    x1, y1 = min(it.bbox[2] for it in items), min(it.bbox[3] for it in items)
    bbox = [x0 + 0.4 * (x1 - x0), y0 + 0.4 * (y1 - y0), x0 + 0.6 * (x1 - x0), y0 + 0.6 * (y1 - y0)]
    start, end = datetime(2024, 1, 1, tzinfo=timezone.utc), datetime(2024, 1, 31, 23, 59, 59, tzinfo=timezone.utc)
    want = _expected(sample_catalog, bbox, start, end, max_cloud)
    assert len(want) >= 2, "the filters should leave several scenes, to page through"

    with StacApiServer(sample_catalog, flavor=flavor) as srv:
        client = pystac_client.Client.open(srv.api_url)
        search = client.search(collections=["sentinel-2-l2a"], bbox=bbox, datetime="2024-01-01/2024-01-31",
                               query={"eo:cloud_cover": {"lt": max_cloud}}, limit=1, method=method)
        got = [it.id for it in search.items()]
        assert got == want
        assert srv.wait_idle()  # a request is logged on arrival, its status once it was answered
        pages = srv.requests(path_contains="/search", method=method)
        # Earth Search (stac-server) links a next page from every non-empty page: one empty page more
        assert len(pages) == len(want) + (1 if flavor == "earth-search" else 0)
        assert all(r.status == 200 for r in pages)
        if method == "POST":
            assert all(isinstance(r.body, dict) and r.body.get("limit") == 1 for r in pages)
            assert all(("next" if flavor == "earth-search" else "token") in r.body for r in pages[1:])
        else:
            assert all(("next" if flavor == "earth-search" else "token") in r.query for r in pages[1:])

        # the next link has the real APIs' form
        search_url = srv.search_url
        if method == "POST":
            page = requests.post(search_url, json={"collections": ["sentinel-2-l2a"], "limit": 1}, timeout=10).json()
        else:
            page = requests.get(search_url, params={"collections": "sentinel-2-l2a", "limit": 1}, timeout=10).json()
        nxt = next(link for link in page["links"] if link["rel"] == "next")
        assert nxt["method"] == method
        if method == "POST":
            assert nxt["href"] == search_url and "body" in nxt
            assert ("next" if flavor == "earth-search" else "token") in nxt["body"]
        if flavor == "earth-search":
            assert page["numberMatched"] == len(items) and page["numberReturned"] == 1
        else:
            assert page["context"] == {"limit": 1, "returned": 1} and "numberMatched" not in page

        # datetime forms, ids, intersects, cloud operators
        newest = max(it.datetime for it in items)
        n_newest = sum(it.datetime == newest for it in items)
        iso = newest.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert len(list(client.search(datetime=iso, method=method).items())) == n_newest
        assert len(list(client.search(datetime=f"../{iso}", method=method).items())) == len(items)
        assert len(list(client.search(datetime=f"{iso}/..", method=method).items())) == n_newest
        assert [it.id for it in client.search(ids=[want[-1]], method=method).items()] == [want[-1]]
        poly = box(*bbox).__geo_interface__
        assert {it.id for it in client.search(intersects=poly, method=method).items()} == \
            {it.id for it in items if shape(it.geometry).intersects(box(*bbox))}
        assert len(list(client.search(query=["eo:cloud_cover>=0"], method=method).items())) == len(items)
        assert not list(client.search(query={"eo:cloud_cover": {"gt": 100}}, method=method).items())
        assert not list(client.search(collections=["landsat-c2-l2"], method=method).items())


def test_items_endpoint_collection_and_conformance(sample_catalog: Path) -> None:
    with StacApiServer(sample_catalog, flavor="planetary-computer") as srv:
        api = srv.api_url
        assert api.endswith("/api/stac/v1")
        landing = requests.get(api, timeout=10).json()
        assert {"self", "root", "conformance", "data", "search"} <= {link["rel"] for link in landing["links"]}
        assert {link.get("method") for link in landing["links"] if link["rel"] == "search"} == {"GET", "POST"}
        conf = requests.get(api + "/conformance", timeout=10).json()["conformsTo"]
        for c in ("/core", "/item-search", "/ogcapi-features", "/item-search#query"):
            assert any(u.endswith(c) for u in conf), c
        cols = requests.get(api + "/collections", timeout=10).json()["collections"]
        assert [c["id"] for c in cols] == ["sentinel-2-l2a"]
        url, ids = f"{api}/collections/sentinel-2-l2a/items?limit=1", []
        while url:
            page = requests.get(url, timeout=10).json()
            ids += [f["id"] for f in page["features"]]
            url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
        assert ids == srv.item_ids and len(ids) == len(_sample_items(sample_catalog))
        one = requests.get(f"{api}/collections/sentinel-2-l2a/items/{ids[0]}", timeout=10).json()
        assert one["id"] == ids[0] and one["collection"] == "sentinel-2-l2a"
        assert requests.get(f"{api}/collections/nope", timeout=10).status_code == 404
        assert requests.get(api + "/search", params={"bbox": "0,1,2"}, timeout=10).status_code == 400


def test_item_shapes(sample_catalog: Path, tmp_path: Path) -> None:
    with StacApiServer(sample_catalog, flavor="earth-search") as es_srv, \
            StacApiServer(sample_catalog, flavor="planetary-computer") as pc_srv:
        iid = es_srv.item_ids[0]
        es_item, pc_item = es_srv.item(iid), pc_srv.item(iid)
        # Earth Search
        bands = ["coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09",
                 "swir16", "swir22"]
        assert set(bands + ["scl", "visual", "thumbnail"]) <= set(es_item["assets"])
        for k in bands:
            a = es_item["assets"][k]
            assert a["eo:bands"][0]["name"] == k and a["roles"] == ["data", "reflectance"]
            rb = a["raster:bands"][0]
            assert (rb["nodata"], rb["data_type"], rb["bits_per_sample"], rb["scale"], rb["offset"]) == \
                (0, "uint16", 15, 0.0001, 0.0)
            jp2 = es_item["assets"][f"{k}-jp2"]
            assert jp2["type"] == "image/jp2" and requests.head(jp2["href"], timeout=10).status_code == 404
            assert requests.head(a["href"], timeout=10).status_code == 200
        assert "scale" not in es_item["assets"]["scl"]["raster:bands"][0]
        assert requests.head(es_item["assets"]["visual"]["href"], timeout=10).status_code == 404
        p = es_item["properties"]
        assert p["proj:code"].startswith("EPSG:326") and "proj:epsg" not in p
        assert p["s2:processing_baseline"] == "03.01" and p["earthsearch:boa_offset_applied"] is False
        assert p["mgrs:utm_zone"] in (30, 31) and es_item["collection"] == "sentinel-2-l2a"
        # Planetary Computer
        assert set(PC_TO_ES) | {"visual", "preview"} <= set(pc_item["assets"])
        b02 = pc_item["assets"]["B02"]
        assert b02["eo:bands"][0]["name"] == "B02" and b02["eo:bands"][0]["common_name"] == "blue"
        assert all("raster:bands" not in a for a in pc_item["assets"].values())
        assert pc_item["assets"]["preview"]["roles"] == ["thumbnail"]
        pp = pc_item["properties"]
        assert isinstance(pp["proj:epsg"], int) and "proj:code" not in pp and pp["s2:mgrs_tile"][:2] in ("30", "31")
        assert b02["href"] == es_item["assets"]["blue"]["href"].replace(es_srv.base_url, pc_srv.base_url)

        # a shifted copy of a scene: own files, +1000 DN declared as offset -0.1 (Earth Search only)
        shifted = tmp_path / "shifted"
        shifted.mkdir()
        (shifted / "blue.tif").write_bytes(b"not really a tif")
        for srv in (es_srv, pc_srv):
            srv.add_copy(iid, iid + "-n0510", offset_dn=1000, file_root=shifted,
                         properties={"eo:cloud_cover": 1.5})
        es_copy, pc_copy = es_srv.item(iid + "-n0510"), pc_srv.item(iid + "-n0510")
        assert es_copy["assets"]["blue"]["raster:bands"][0]["offset"] == -0.1
        assert es_copy["properties"]["earthsearch:boa_offset_applied"] is True
        assert es_copy["properties"]["s2:processing_baseline"] == "05.10"
        assert pc_copy["properties"]["s2:processing_baseline"] == "05.10"
        assert "/files/~m1/blue.tif" in es_copy["assets"]["blue"]["href"]
        assert requests.get(es_copy["assets"]["blue"]["href"], timeout=10).content == b"not really a tif"
        assert [i.id for i in pystac_client.Client.open(es_srv.api_url).search(
            query={"eo:cloud_cover": {"eq": 1.5}}).items()] == [iid + "-n0510"]
        es_srv.set_override(iid, processing_baseline="04.00", offset_dn=1000)
        assert es_srv.item(iid)["assets"]["red"]["raster:bands"][0]["offset"] == -0.1


# ------------------------------------------------------------------------------ the files


def test_cog_over_http_matches_local(sample_catalog: Path, es: StacApiServer) -> None:
    iid = es.item_ids[0]
    local = _local_band(sample_catalog, iid)
    href = es.item(iid)["assets"]["blue"]["href"]
    with rasterio.open(local) as src:
        ref = src.read(1, window=WINDOW)
    with rasterio.Env(**GDAL_ENV), rasterio.open(href) as src:
        assert src.read(1, window=WINDOW).tolist() == ref.tolist()
    assert es.wait_idle()  # the last answer may still be closing when the client has its bytes
    log = es.requests(path_contains="/blue.tif")
    ranged = [r for r in log if r.range]
    assert ranged and all(r.status == 206 and r.method == "GET" for r in ranged)
    assert sum(r.bytes_sent for r in log) < local.stat().st_size  # only parts of the file
    assert not es.requests(path_contains=".jp2")


def _byte_range(header: str) -> tuple[int, int]:
    first = header.split("=", 1)[1].split(",")[0]
    a, _, b = first.partition("-")
    return int(a or 0), int(b or 2**62)


def _overlaps(x: tuple[int, int], y: tuple[int, int]) -> bool:
    return x[0] <= y[1] and y[0] <= x[1]


def test_503_is_retried_by_gdal(sample_catalog: Path) -> None:
    iid = _newest_id(sample_catalog)
    local = _local_band(sample_catalog, iid, "green")
    with rasterio.open(local) as src:
        ref = src.read(1, window=WINDOW)
    data_block = lambda r: r.range is not None and not r.range.startswith("bytes=0-")  # noqa: E731

    with StacApiServer(sample_catalog) as srv:
        fault = srv.faults.add("/green.tif", "status", status=503, times=1, when=data_block)
        with rasterio.Env(**GDAL_ENV), rasterio.open(srv.url_for(local)) as src:
            assert np.array_equal(src.read(1, window=WINDOW), ref)
        assert fault.hits == 1
        assert srv.wait_idle()
        log = srv.requests(path_contains="/green.tif")
        bad = [r for r in log if r.status == 503]
        assert len(bad) == 1 and bad[0].fault == "status"
        # the failed bytes are asked again (GDAL may merge or split the range when it retries)
        a, b = _byte_range(bad[0].range)
        assert any(r.status == 206 and r.range and _overlaps(_byte_range(r.range), (a, b))
                   for r in log[log.index(bad[0]) + 1:])

    # GDAL reads a failed block up to 3 times on its own; only GDAL_HTTP_MAX_RETRY gets it past 4 503s
    one_block = Window(10, 10, 100, 100)
    with rasterio.open(local) as src:
        ref = src.read(1, window=one_block)
    for retries, ok in (("3", True), ("0", False)):
        with StacApiServer(sample_catalog) as srv:
            srv.faults.add("/green.tif", "status", status=503, times=4, when=data_block)
            with rasterio.Env(**{**GDAL_ENV, "GDAL_HTTP_MAX_RETRY": retries}):
                if ok:
                    with rasterio.open(srv.url_for(local)) as src:
                        assert np.array_equal(src.read(1, window=one_block), ref)
                else:
                    with pytest.raises(rasterio.errors.RasterioIOError), rasterio.open(srv.url_for(local)) as src:
                        src.read(1, window=one_block)
            assert srv.wait_idle()
            assert len(srv.requests(status=503)) == (4 if ok else 3)


def test_file_route_ranges_signing_and_faults(sample_catalog: Path) -> None:
    iid = _newest_id(sample_catalog)
    local = _local_band(sample_catalog, iid, "scl")
    data = local.read_bytes()
    with StacApiServer(sample_catalog, require_query_param={"sig": "s3cret"}) as srv:
        url = srv.url_for(local)
        assert requests.get(url, timeout=10).status_code == 403
        signed = srv.url_for(local, sig="s3cret")
        h = requests.head(signed, timeout=10)
        assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(data)
        assert h.headers["Accept-Ranges"] == "bytes"
        r = requests.get(signed, headers={"Range": "bytes=10-19"}, timeout=10)
        assert r.status_code == 206 and r.content == data[10:20]
        assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        assert requests.get(signed, headers={"Range": "bytes=-5"}, timeout=10).content == data[-5:]
        assert requests.get(signed, headers={"Range": f"bytes={len(data)}-"}, timeout=10).status_code == 416
        r = requests.get(signed, headers={"Range": "bytes=0-3,100-109"}, timeout=10)
        assert r.status_code == 206 and r.headers["Content-Type"].startswith("multipart/byteranges; boundary=")
        assert int(r.headers["Content-Length"]) == len(r.content)
        assert data[0:4] in r.content and data[100:110] in r.content and r.content.count(b"Content-Range") == 2
        assert requests.get(signed, timeout=10).content == data

        srv.faults.add("/scl.tif", "404")
        assert [requests.get(signed, timeout=10).status_code for _ in range(2)] == [404, 404]
        srv.faults.clear()
        srv.faults.add("/scl.tif", "cut", keep=0.25)
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(signed, timeout=10)
        srv.faults.add("/scl.tif", "reset")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(signed, timeout=10)
        srv.faults.add("/scl.tif", "slow", delay=1.0)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(signed, timeout=0.3)
        assert requests.get(signed, timeout=10).content == data  # every fault was used up
        assert srv.wait_idle(5)
        assert [r.fault for r in srv.requests(path_contains="/scl.tif") if r.fault] == \
            ["404", "404", "cut", "reset", "slow"]

        srv.faults.add("/search", "status", status=502, scope="api")
        with pytest.raises(pystac_client.exceptions.APIError):
            list(pystac_client.Client.open(srv.api_url).search(limit=1).items())
        assert srv.wait_idle()
        assert srv.requests(path_contains="/search")[0].status == 502


def test_stop_closes_connections(sample_catalog: Path) -> None:
    def handlers() -> int:
        return sum("process_request_thread" in t.name for t in threading.enumerate())

    before = handlers()
    srv = StacApiServer(sample_catalog).start()
    sess = requests.Session()  # keep-alive connection: its handler thread waits for the next request
    assert sess.get(srv.api_url, timeout=10).status_code == 200
    srv.stop()
    srv.stop()
    deadline = time.monotonic() + 5
    while handlers() > before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert handlers() <= before
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(srv.api_url, timeout=2)
    json.dumps([r.__dict__ for r in srv.requests()], default=str)  # the log stays readable
