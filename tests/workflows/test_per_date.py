"""Runs over time: one result per acquisition date, the time series, ``update`` and alerts."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from geoloom.platform.ledger import Ledger
from geoloom.workflows import detect, open_run, update

BAY = "sample-bay"
#: Open sea east of the bay with windrows on both dates (the bay lies under cloud on 2024-01-14).
DEBRIS_ON_BOTH_DATES = (0.036, 5.584, 0.063, 5.611)


def run_per_date(catalog: Path, out: Path, region: object = BAY, **kw) -> object:
    return detect(region, catalog=catalog, out=out, runtime="in-process", progress=False, per_date=True, **kw)


def test_per_date_steps_equal_single_date_runs(sample_catalog: Path, tmp_path: Path) -> None:
    run = run_per_date(sample_catalog, tmp_path / "per-date")
    assert run.per_date and run.dates == ["2024-01-09", "2024-01-14"]
    ds = run.dataset
    assert ds.sizes["time"] == 2 and list(ds["time"].dt.strftime("%Y-%m-%d").values) == run.dates
    assert ds["time"].attrs["standard_name"] == "time"  # CF: a decoded time axis with units
    for i, day in enumerate(run.dates):
        single = detect(BAY, catalog=sample_catalog, out=tmp_path / f"single-{day}", start=day, end=day,
                        runtime="in-process", progress=False, per_date=False)
        one = single.dataset
        for name in ("probability", "debris"):
            a, b = ds[name].isel(time=i).values, one[name].values
            assert a.shape == b.shape
            np.testing.assert_array_equal(np.isnan(a) if a.dtype.kind == "f" else a, np.isnan(b) if b.dtype.kind == "f" else b)
            np.testing.assert_array_equal(np.nan_to_num(a), np.nan_to_num(b))
        # the date's own COG is the single-date run's COG
        import rasterio

        with rasterio.open(run.path(f"dates/{day}/result.tif")) as f, rasterio.open(single.path("result.tif")) as g:
            np.testing.assert_array_equal(np.nan_to_num(f.read(1)), np.nan_to_num(g.read(1)))
    # the two dates differ (the second is mostly cloud), so the comparison above could fail
    assert not np.array_equal(np.nan_to_num(ds["probability"].isel(time=0).values),
                              np.nan_to_num(ds["probability"].isel(time=1).values))


def test_timeseries_and_detections_carry_the_dates(sample_catalog: Path, tmp_path: Path) -> None:
    run = run_per_date(sample_catalog, tmp_path / "ts")
    ts = run.timeseries
    assert list(ts["date"].dt.strftime("%Y-%m-%d")) == run.dates
    assert (ts["clear_water_km2"] > 0).all() and ts.loc[1, "cloud_pct"] > ts.loc[0, "cloud_pct"]
    first = ts.iloc[0]
    assert first["debris_px_per_km2"] == pytest.approx(first["debris_pixels"] / first["clear_water_km2"], rel=1e-3)
    det = run.detections
    assert set(det["date"]) <= set(run.dates) and det["datetime"].str[:10].eq(det["date"]).all()
    assert (det.groupby("date").size().reindex(run.dates, fill_value=0).values == ts["objects"].values).all()
    csv = pd.read_csv(run.path("timeseries.csv"))
    assert list(csv["date"]) == run.dates
    assert run.path("timeseries.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = run.manifest
    assert m["properties"]["start_datetime"].startswith("2024-01-09") and m["properties"]["end_datetime"].startswith("2024-01-14")
    assert {"result-2024-01-09", "result-2024-01-14", "timeseries", "timeseries-csv"} <= set(m["assets"])
    assert m["properties"]["geoloom:parameters"]["per_date"] is True and m["properties"]["geoloom:dates"] == run.dates
    # a model that reads no SCL does not know the clouds: its series says so instead of 0 %
    fdi = run_per_date(sample_catalog, tmp_path / "fdi", model="fdi")
    assert fdi.timeseries["cloud_pct"].isna().all() and (fdi.timeseries["clear_water_km2"] > 0).all()


class Receiver(http.server.BaseHTTPRequestHandler):
    """A loopback webhook receiver: keeps every body it is sent."""

    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers.get("Content-Length", 0))
        type(self).bodies.append(self.rfile.read(n))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def receiver():
    Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", Receiver.bodies
    server.shutdown()


def test_update_computes_only_the_new_date_and_alerts_once(sample_catalog: Path, tmp_path: Path, receiver) -> None:
    url, bodies = receiver
    got = tmp_path / "from-command.geojson"
    out = tmp_path / "monitor"
    run = run_per_date(sample_catalog, out, DEBRIS_ON_BOTH_DATES, end="2024-01-10", alert_density=0.0,
                       on_alert=[f"cp {{file}} {got}"], webhooks=[url])
    assert run.dates == ["2024-01-09"]
    # the first date was judged when it was first computed: one alert, both hooks called
    assert len(bodies) == 1 and got.exists()
    first_ledger = (out / "dates/2024-01-09/ledger.jsonl").read_bytes()
    got.unlink()

    result = update(out, progress=False, runtime="in-process")
    assert result.new_dates == ["2024-01-14"]
    run = open_run(out)
    assert run.dates == ["2024-01-09", "2024-01-14"] and run.dataset.sizes["time"] == 2
    assert (out / "dates/2024-01-09/ledger.jsonl").read_bytes() == first_ledger  # not computed again
    assert len(Ledger(out / "dates/2024-01-14/ledger.jsonl").records()) == 1
    # the new date fired once: the alerts file holds that date's detections only, and both hooks got it
    assert [d["date"] for d in result.alerts.dates] == ["2024-01-14"]
    alerts = json.loads((out / "alerts.geojson").read_text())
    assert alerts["features"] and {f["properties"]["date"] for f in alerts["features"]} == {"2024-01-14"}
    assert len(bodies) == 2 and json.loads(bodies[1]) == alerts
    assert json.loads(got.read_text()) == alerts
    history = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert [h["date"] for h in history] == ["2024-01-09", "2024-01-14"]

    # nothing new: nothing computed, nothing sent, nothing rewritten
    stamp = (out / "run.json").stat().st_mtime_ns
    again = update(out, progress=False, runtime="in-process")
    assert again.new_dates == [] and len(bodies) == 2
    assert (out / "run.json").stat().st_mtime_ns == stamp


def test_failing_hooks_leave_the_run_complete(sample_catalog: Path, tmp_path: Path, geoloom_cli) -> None:
    out = tmp_path / "hooks"
    cmd = [*geoloom_cli, "run", "--preset", BAY, "--catalog", str(sample_catalog), "--out", str(out), "--per-date",
           "--runtime", "in-process", "--end", "2024-01-10", "--alert-object", "0",
           "--on-alert", "exit 7", "--webhook", "http://127.0.0.1:9/closed"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    run = open_run(out)
    assert run.ok and run.dates == ["2024-01-09"] and len(run.alerts) > 0
    assert "failed" in p.stderr  # the hooks' failures are told, not fatal
    p = subprocess.run([*geoloom_cli, "update", str(out), "--runtime", "in-process"], capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    assert "new dates: 2024-01-14" in p.stderr and open_run(out).dates == ["2024-01-09", "2024-01-14"]


def test_wrong_uses_get_one_line_errors(sample_catalog: Path, tmp_path: Path, geoloom_cli) -> None:
    composite = detect(BAY, catalog=sample_catalog, out=tmp_path / "composite", runtime="in-process", progress=False,
                       per_date=False)
    p = subprocess.run([*geoloom_cli, "update", str(composite.folder)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "composite run, not a per-date one" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([*geoloom_cli, "run", "--preset", BAY, "--catalog", str(sample_catalog), "--out",
                        str(tmp_path / "x"), "--composite", "--alert-density", "3"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 2 and "--per-date" in p.stderr and not (tmp_path / "x" / "run.json").exists()
    p = subprocess.run([*geoloom_cli, "update", str(tmp_path / "composite"), "--since", "yesterday"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "YYYY-MM-DD" in p.stderr


def test_six_dates_then_a_seventh(tmp_path: Path, receiver) -> None:
    """The monitoring story over a coast seen on 6 dates: 6 steps equal to 6 single-date runs; a seventh
    date arrives and ``update`` computes only it; a density rule fires on exactly the dates above it."""
    from geoloom.platform.sampledata import generate_sample_data

    url, bodies = receiver
    catalog = generate_sample_data(tmp_path / "coast", seed=0, dates=6, _scale=0.5)
    baseline = run_per_date(catalog, tmp_path / "baseline")
    days = baseline.dates
    assert len(days) == 6 and baseline.dataset.sizes["time"] == 6
    for i, day in enumerate(days):
        single = detect(BAY, catalog=catalog, out=tmp_path / f"single-{day}", start=day, end=day,
                        runtime="in-process", progress=False, per_date=False)
        for name in ("probability", "debris"):
            np.testing.assert_array_equal(np.nan_to_num(baseline.dataset[name].isel(time=i).values),
                                          np.nan_to_num(single.dataset[name].values))
    density = baseline.timeseries.set_index(baseline.timeseries["date"].dt.strftime("%Y-%m-%d"))["debris_px_per_km2"]
    assert density.nunique() > 3  # debris drifts and forms: the dates differ
    threshold = float(density.median())

    watch = run_per_date(catalog, tmp_path / "watch", alert_density=threshold, webhooks=[url])
    fired = [json.loads(line)["date"] for line in (watch.folder / "alerts.jsonl").read_text().splitlines()]
    assert fired == [d for d in days if density[d] > threshold] and len(bodies) == 1
    ledgers = {d: (watch.folder / f"dates/{d}/ledger.jsonl").read_bytes() for d in days}

    generate_sample_data(tmp_path / "coast", seed=0, dates=7, _scale=0.5)  # a seventh date arrives
    result = update(watch.folder, progress=False, runtime="in-process")
    watch = open_run(watch.folder)
    seventh = result.new_dates
    assert len(seventh) == 1 and seventh[0] > days[-1] and watch.dates == [*days, *seventh]
    assert {d: (watch.folder / f"dates/{d}/ledger.jsonl").read_bytes() for d in days} == ledgers  # only the new date ran
    assert watch.dataset.sizes["time"] == 7 and len(watch.timeseries) == 7
    new_density = float(watch.timeseries["debris_px_per_km2"].iloc[-1])
    assert result.alerts.fired == (new_density > threshold)
    assert len(bodies) == 1 + int(new_density > threshold)
    fired_after = [json.loads(line)["date"] for line in (watch.folder / "alerts.jsonl").read_text().splitlines()]
    assert fired_after == fired + (seventh if new_density > threshold else [])
