"""Runs against a STAC API and COG server on 127.0.0.1: same results as local files, through faults."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from geoloom.platform.signing import register_signer
from geoloom.workflows import detect

from .stac_server import StacApiServer

pytestmark = pytest.mark.slow

REGION = "sample-bay"  # 9 tiles of 128 px; the first column is covered by zone-30 scenes only
TILE = 128
COLLECTION = "sentinel-2-l2a"
NEWEST_EAST = "geoloom-S2B-31NBG-20240114"  # the first scene read by the tiles of columns 1 and 2


def _run(catalog: str | Path, out: Path, **kwargs):
    return detect(REGION, model="fdi", catalog=catalog, out=out, runtime="in-process", tile_size=TILE,
                  overwrite=True, **kwargs)


def _arrays(run) -> dict[str, np.ndarray]:
    ds = run.dataset
    return {name: ds[name].values for name in ds.data_vars}


def _assert_same(a, b) -> None:
    x, y = _arrays(a), _arrays(b)
    assert x.keys() == y.keys()
    for name in x:
        np.testing.assert_array_equal(x[name], y[name], err_msg=name)


@pytest.fixture(scope="module")
def local_run(sample_catalog: Path, tmp_path_factory: pytest.TempPathFactory):
    return _run(sample_catalog, tmp_path_factory.mktemp("local") / "run")


def _file_requests(srv: StacApiServer) -> list:
    return srv.requests(path_contains="/files/")


def test_earth_search_api_run_equals_the_local_run_and_reads_only_ranges(sample_catalog, local_run, tmp_path,
                                                                        monkeypatch):
    from geoloom.platform import stac_api

    monkeypatch.setattr(stac_api, "PAGE_SIZE", 1)  # one item per page: the search must follow the next links
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        run = _run(srv.api_url, tmp_path / "es", collection=COLLECTION)
        srv.wait_idle()
        gets = [r for r in _file_requests(srv) if r.method == "GET"]
        pages = srv.requests(path_contains="/search")
    assert len(pages) >= 4  # 4 scenes cover the bay
    assert run.ok
    _assert_same(run, local_run)
    assert gets and all(r.status == 206 and r.range for r in gets), "whole files were downloaded"
    assert not any(r.path.endswith(".jp2") for r in gets), "the JPEG 2000 copies must not be read"
    manifest = json.loads((run.folder / "run.json").read_text())
    assert srv.base_url in json.dumps(manifest)  # the manifest names the remote sources


def test_planetary_computer_signed_run_equals_local_and_writes_no_token(sample_catalog, local_run, tmp_path,
                                                                        monkeypatch):
    secret = "tok3n-from-the-environment"
    monkeypatch.setenv("GEOLOOM_LOOPBACK_SIG", secret)
    register_signer("loopback", lambda href: f"{href}?sig={os.environ['GEOLOOM_LOOPBACK_SIG']}")
    with StacApiServer(sample_catalog, flavor="planetary-computer", require_query_param={"sig": secret}) as srv:
        run = _run(srv.api_url, tmp_path / "pc", collection=COLLECTION, sign="loopback")
        unsigned = _run(srv.api_url, tmp_path / "pc-unsigned", collection=COLLECTION, retries=0)
    assert run.ok
    _assert_same(run, local_run)
    for path in run.folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"{path.name} holds the signing token"
    assert run.request.imagery.sign == "loopback"
    # without the signer the server refuses every read: each tile fails with the plain URL and the reason
    assert not unsigned.ok and unsigned.tiles.failed == unsigned.tiles.total
    assert all("403" in t["error"] and "http://127.0.0.1" in t["error"] for t in unsigned.failed_tiles)


def test_transient_faults_are_retried_and_change_nothing(sample_catalog, local_run, tmp_path):
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        nir = srv.faults.add(f"{NEWEST_EAST}/nir.tif", "status", status=503, times=4, ranged=True)
        red = srv.faults.add(f"{NEWEST_EAST}/red.tif", "cut", times=1, ranged=True)
        busy = srv.faults.add(f"{NEWEST_EAST}/swir16.tif", "status", status=429, times=2)
        run = _run(srv.api_url, tmp_path / "faults", collection=COLLECTION)
    assert (nir.hits, red.hits, busy.hits) == (4, 1, 2)
    assert run.ok
    _assert_same(run, local_run)


def test_missing_asset_fails_its_tiles_with_the_url_and_the_rest_publish(sample_catalog, geoloom_cli, tmp_path):
    out = tmp_path / "missing"
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        srv.faults.add(f"{NEWEST_EAST}/red.tif", "404")
        env = {**os.environ, "GEOLOOM_HTTP_MAX_RETRY": "1"}
        proc = subprocess.run(
            [*geoloom_cli, "run", "--preset", REGION, "--model", "fdi", "--catalog", srv.api_url,
             "--collection", COLLECTION, "--tile-size", str(TILE), "--runtime", "in-process", "--retries", "0",
             "--out", str(out)],
            capture_output=True, text=True, env=env, timeout=400,
        )
    assert proc.returncode == 3, proc.stderr
    assert "item(s) matched" in proc.stderr
    ledger = [json.loads(line) for line in (out / "ledger.jsonl").read_text().splitlines()]
    failed = [r for r in ledger if r["state"] == "failed"]
    done = [r for r in ledger if r["state"] == "done"]
    assert failed and len(done) >= 3 and len(failed) + len(done) == 9
    assert all(r["col"] >= 1 for r in failed)  # only tiles of columns 1-2 read the missing file
    assert all(f"{NEWEST_EAST}/red.tif" in r["error"] and "http://127.0.0.1" in r["error"] for r in failed)
    assert (out / "result.tif").exists() and (out / "run.json").exists()
    assert "geoloom run --resume" in proc.stderr


def test_a_stalled_server_times_out_per_read_and_the_run_moves_on(sample_catalog, tmp_path, monkeypatch):
    monkeypatch.setenv("GEOLOOM_HTTP_TIMEOUT", "1")
    monkeypatch.setenv("GEOLOOM_HTTP_MAX_RETRY", "1")
    events: list[tuple[float, int]] = []
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        srv.faults.add(f"{NEWEST_EAST}/", "slow", delay=4.0, times=None)
        t0 = time.monotonic()
        run = _run(srv.api_url, tmp_path / "slow", collection=COLLECTION, retries=0,
                   progress=lambda p: events.append((time.monotonic() - t0, p.finished)))
        elapsed = time.monotonic() - t0
    assert run.tiles.done >= 3 and run.tiles.failed >= 1
    assert all(t["col"] >= 1 for t in run.failed_tiles)
    assert all("timed out" in t["error"].lower() or "timeout" in t["error"].lower() for t in run.failed_tiles), \
        [t["error"] for t in run.failed_tiles]
    finished = [n for _, n in events]
    assert finished == sorted(finished) and finished[-1] == 9  # progress moved through every tile
    assert elapsed < 9 * 4 * 4, "reads must not wait for the stalled server"


def test_cli_search_reports_matches_and_bad_collections(sample_catalog, geoloom_cli):
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        ok = subprocess.run([*geoloom_cli, "catalog", "search", "--preset", REGION, "--catalog", srv.api_url,
                             "--collection", COLLECTION, "--query", "mgrs:grid_square=BG"],
                            capture_output=True, text=True, timeout=120)
        nocoll = subprocess.run([*geoloom_cli, "catalog", "search", "--preset", REGION, "--catalog", srv.api_url],
                                capture_output=True, text=True, timeout=120)
        wrong = subprocess.run([*geoloom_cli, "run", "--preset", REGION, "--catalog", srv.api_url,
                                "--collection", "landsat-c2-l2", "--out", "unused", "--dry-run"],
                               capture_output=True, text=True, timeout=120)
        cols = subprocess.run([*geoloom_cli, "catalog", "collections", srv.api_url],
                              capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    ids = [line.split("\t")[0] for line in ok.stdout.splitlines()]
    assert ids and all("31NBG" in i for i in ids)
    assert "item(s) matched" in ok.stderr
    assert nocoll.returncode == 2 and "--collection" in nocoll.stderr and COLLECTION in nocoll.stderr
    assert wrong.returncode == 2 and "no collection 'landsat-c2-l2'" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1
    assert cols.returncode == 0 and COLLECTION in cols.stdout


def test_unreachable_api_is_one_line_error(geoloom_cli):
    proc = subprocess.run([*geoloom_cli, "catalog", "search", "--preset", REGION, "--catalog",
                           "http://127.0.0.1:9/v1", "--collection", COLLECTION],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: cannot search the STAC API http://127.0.0.1:9/v1")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_remote_static_catalog_run_equals_the_local_run(sample_catalog, local_run, tmp_path):
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        url = srv.url_for("catalog.json")
        run = _run(url, tmp_path / "static")
        srv.wait_idle()
        tif_gets = [r for r in _file_requests(srv) if r.method == "GET" and r.path.endswith(".tif")]
    assert run.ok
    _assert_same(run, local_run)
    assert tif_gets and all(r.status == 206 for r in tif_gets)
