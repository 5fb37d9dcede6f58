"""Alert rules on per-date statistics and detections, the alerts file, and the hooks that receive it."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pytest
import shapely

from geoloom.platform.alerts import (
    ALERT_COLUMNS,
    AlertError,
    AlertRules,
    append_history,
    evaluate,
    read_alerts,
    read_history,
    write_alerts,
)
from geoloom.platform.errors import GeoloomError
from geoloom.platform.hooks import HookOutcome, deliver, post_webhook, redact_url, run_command

CRS = "EPSG:32630"
X0, Y0 = 500_000, 4_761_710  # UTM 30N, Bay of Biscay
DETECTION_COLUMNS = ["id", "score", "class", "area_m2", "pixels", "scene", "datetime", "run_id", "model"]


def _square(i: int, side_m: float):
    return shapely.box(X0 + 1000 * i, Y0, X0 + 1000 * i + side_m, Y0 + side_m)


def _detections() -> gpd.GeoDataFrame:
    """Four detections on three dates, in the columns of finalized detections plus the caller's date."""
    rows = [("2024-01-14", 10), ("2024-01-19", 20), ("2024-01-19", 60), ("2024-01-24", 30)]
    geoms = [_square(i, side) for i, (_, side) in enumerate(rows)]
    gdf = gpd.GeoDataFrame({
        "id": [f"run-{i}" for i in range(len(rows))],
        "score": [0.6, 0.7, 0.9, 0.8],
        "class": "debris",
        "area_m2": [g.area for g in geoms],
        "pixels": [int(g.area // 100) for g in geoms],
        "scene": [f"S2A_{d}" for d, _ in rows],
        "datetime": [f"{d}T11:00:00Z" for d, _ in rows],
        "run_id": "run",
        "model": "marine-debris",
    }, geometry=geoms, crs=CRS)
    gdf["date"] = [d for d, _ in rows]
    return gdf


def _stats() -> pd.DataFrame:
    return pd.DataFrame({
        "date": ["2024-01-14", "2024-01-19", "2024-01-24"],
        "clear_water_km2": [100.0, 100.0, 0.0],
        "debris_pixels": [100, 520, 9],
        "debris_px_per_km2": [1.0, 5.2, float("nan")],
        "objects": [1, 2, 1],
        "largest_object_m2": [100.0, 3600.0, 900.0],
    })


# ---------------------------------------------------------------- rules


def test_density_fires_only_on_the_date_above_the_threshold():
    alerts = evaluate(AlertRules(density_per_km2=3), _stats(), _detections())
    assert alerts.dates == [{"date": "2024-01-19", "rule": "density", "value": 5.2, "threshold": 3.0, "detections": 2}]
    f = alerts.features
    assert f.crs.to_epsg() == 4326
    assert list(f.columns[:4]) == ALERT_COLUMNS and set(DETECTION_COLUMNS) <= set(f.columns)
    assert list(f["id"]) == ["run-1", "run-2"] and set(f["rule"]) == {"density"}
    assert list(f["value"]) == [5.2, 5.2] and list(f["threshold"]) == [3.0, 3.0]
    assert f.geometry.total_bounds[0] < 0  # longitude west of Greenwich: reprojected from UTM
    assert alerts.messages() == ["density 5.2 px/km2 > 3 on 2024-01-19 (2 detections)"]


def test_object_fires_only_for_large_objects():
    alerts = evaluate(AlertRules(object_m2=1000), _stats(), _detections())
    assert list(alerts.features["id"]) == ["run-2"]  # 3600 m2; 100, 400 and 900 m2 do not fire
    assert list(alerts.features["value"]) == [3600.0]
    assert alerts.dates == [{"date": "2024-01-19", "rule": "object", "value": 3600.0, "threshold": 1000.0,
                             "detections": 1}]


def test_a_detection_meeting_both_rules_is_listed_once_per_rule():
    alerts = evaluate(AlertRules(density_per_km2=3, object_m2=1000), _stats(), _detections())
    f = alerts.features
    assert list(zip(f["id"], f["rule"], strict=True)) == [("run-1", "density"), ("run-2", "density"), ("run-2", "object")]
    assert [(d["date"], d["rule"]) for d in alerts.dates] == [("2024-01-19", "density"), ("2024-01-19", "object")]


def test_only_the_dates_in_the_statistics_are_evaluated():
    alerts = evaluate(AlertRules(object_m2=500), _stats().iloc[:2], _detections())
    assert list(alerts.features["id"]) == ["run-2"]  # run-3 (900 m2) is on a date not given


def test_nothing_fires_gives_an_empty_frame_with_the_same_columns():
    alerts = evaluate(AlertRules(density_per_km2=50, object_m2=10_000), _stats(), _detections())
    full = evaluate(AlertRules(object_m2=0), _stats(), _detections()).features
    assert not alerts.fired and alerts.dates == []
    assert len(alerts.features) == 0 and alerts.features.crs.to_epsg() == 4326
    assert list(alerts.features.columns) == list(full.columns)
    assert not evaluate(AlertRules(), _stats(), _detections()).fired


def test_density_on_a_date_without_polygons_is_reported_without_features():
    dets = _detections()
    alerts = evaluate(AlertRules(density_per_km2=3), _stats(), dets[dets["date"] != "2024-01-19"])
    assert len(alerts.features) == 0
    assert alerts.dates == [{"date": "2024-01-19", "rule": "density", "value": 5.2, "threshold": 3.0, "detections": 0}]
    assert evaluate(AlertRules(density_per_km2=3), _stats(), None).dates[0]["detections"] == 0


def test_the_date_comes_from_the_datetime_when_there_is_no_date_column():
    alerts = evaluate(AlertRules(object_m2=1000), _stats(), _detections().drop(columns="date"))
    assert list(alerts.features["date"]) == ["2024-01-19"]


@pytest.mark.parametrize("bad", [{"density_per_km2": -1}, {"object_m2": float("nan")}, {"object_m2": float("inf")},
                                 {"density_per_km2": "3"}, {"object_m2": True}])
def test_bad_rules_raise_an_alert_error(bad):
    with pytest.raises(AlertError) as info:
        AlertRules(**bad)
    assert isinstance(info.value, GeoloomError) and isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


def test_rules_round_trip_through_a_dict():
    rules = AlertRules(density_per_km2=3, object_m2=None)
    assert rules.to_dict() == {"density_per_km2": 3.0} and rules.active and not AlertRules().active
    assert AlertRules.from_dict(json.loads(json.dumps(rules.to_dict()))) == rules
    assert AlertRules.from_dict(None) == AlertRules()
    with pytest.raises(AlertError, match="unknown alert rule"):
        AlertRules.from_dict({"density": 3})


def test_alerts_file_is_geojson_with_the_fired_dates(tmp_path):
    alerts = evaluate(AlertRules(density_per_km2=3, object_m2=1000), _stats(), _detections())
    path = write_alerts(alerts, tmp_path / "alerts.geojson")
    fc = json.loads(path.read_text())
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 3
    assert fc["alerts"] == alerts.dates and fc["rules"] == {"density_per_km2": 3.0, "object_m2": 1000.0}
    assert fc["features"][0]["properties"]["rule"] == "density"
    assert not list(tmp_path.glob("*.part"))
    back = read_alerts(path)
    assert back.dates == alerts.dates and back.rules == alerts.rules
    assert list(back.features["id"]) == list(alerts.features["id"])
    assert gpd.read_file(path).shape[0] == 3  # an ordinary reader ignores the foreign members

    empty = write_alerts(evaluate(AlertRules(object_m2=1e9), _stats(), _detections()), tmp_path / "none.geojson")
    assert json.loads(empty.read_text()) == {"type": "FeatureCollection", "features": [], "alerts": [],
                                             "rules": {"object_m2": 1e9}}
    assert len(read_alerts(empty).features) == 0


def test_history_has_one_line_per_fired_date_and_rule(tmp_path):
    path = tmp_path / "alerts.jsonl"
    assert read_history(path) == []
    alerts = evaluate(AlertRules(density_per_km2=3, object_m2=1000), _stats(), _detections())
    assert append_history(path, alerts, "2024-01-20T06:00:00+00:00") == 2
    with open(path, "a") as f:
        f.write('{"torn": ')  # a crash mid-line
    append_history(path, alerts, "2024-01-25T06:00:00+00:00")
    history = read_history(path)
    assert [(h["when"][:10], h["date"], h["rule"]) for h in history] == [
        ("2024-01-20", "2024-01-19", "density"), ("2024-01-20", "2024-01-19", "object"),
        ("2024-01-25", "2024-01-19", "density"), ("2024-01-25", "2024-01-19", "object")]
    assert history[0]["value"] == 5.2 and history[0]["threshold"] == 3.0


# ---------------------------------------------------------------- webhooks


@pytest.fixture(autouse=True)
def _loopback_without_proxy(monkeypatch):
    """Loopback requests go straight to the test receiver even where a proxy is configured."""
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@contextmanager
def receiver(statuses=(200,), *, delay_s: float = 0.0):
    """A real HTTP server on loopback answering each POST with the next status (the last one repeats)."""
    got: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            got.append((self.headers.get("Content-Type"), body))
            if delay_s:
                time.sleep(delay_s)
            status = statuses[min(len(got), len(statuses)) - 1]
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up waiting

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook?token=secret", got
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def alerts_file(tmp_path) -> Path:
    alerts = evaluate(AlertRules(density_per_km2=3), _stats(), _detections())
    return write_alerts(alerts, tmp_path / "alerts.geojson")


def test_webhook_receives_the_exact_body_once(alerts_file):
    with receiver() as (url, got):
        out = post_webhook(url, alerts_file, timeout_s=2, retries=3, backoff_s=0.01)
    assert out.ok and out.attempts == 1 and out.code == 200 and out.kind == "webhook"
    assert got == [("application/geo+json", alerts_file.read_bytes())]
    assert "secret" not in out.target and out.target.endswith("/hook")
    assert json.loads(json.dumps(out.to_dict())) == out.to_dict()


def test_webhook_retries_server_errors_until_it_succeeds(alerts_file):
    with receiver((500, 500, 200)) as (url, got):
        out = post_webhook(url, alerts_file, timeout_s=2, retries=3, backoff_s=0.01)
    assert out.ok and out.attempts == 3 and len(got) == 3


def test_webhook_does_not_retry_a_client_error(alerts_file):
    with receiver((404,)) as (url, got):
        out = post_webhook(url, alerts_file, timeout_s=2, retries=3, backoff_s=0.01)
    assert not out.ok and out.attempts == 1 and out.code == 404 and len(got) == 1


def test_webhook_to_a_closed_port_fails_after_its_retries(alerts_file):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = post_webhook(f"http://127.0.0.1:{port}/", alerts_file, timeout_s=1, retries=3, backoff_s=0.01)
    assert not out.ok and out.attempts == 3 and "connect" in out.detail


def test_webhook_to_a_hanging_receiver_times_out(alerts_file):
    with receiver(delay_s=2.0) as (url, got):
        start = time.monotonic()
        out = post_webhook(url, alerts_file, timeout_s=0.3, retries=2, backoff_s=0.01)
        took = time.monotonic() - start
    assert not out.ok and out.timed_out and out.attempts == 2 and len(got) == 2
    assert took < 2 * 0.3 + 1.0


@pytest.mark.parametrize("url", ["ftp://example.org/x", "file:///etc/passwd", "not a url", "http://", "http://h:99999/"])
def test_an_invalid_webhook_url_is_a_failed_outcome(url, alerts_file):
    out = post_webhook(url, alerts_file, retries=1)
    assert not out.ok and out.attempts == 0 and "http" in out.detail


def test_redacted_urls_keep_host_and_path():
    assert redact_url("https://user:pw@hooks.example.org:8443/a/b?key=1#x") == "https://hooks.example.org:8443/a/b"


# ---------------------------------------------------------------- commands


def test_command_gets_the_file(alerts_file, tmp_path):
    out = run_command(f"cp {{file}} {tmp_path}/got.geojson", alerts_file, timeout_s=10)
    assert out.ok and out.code == 0 and out.kind == "command" and not out.timed_out
    assert (tmp_path / "got.geojson").read_bytes() == alerts_file.read_bytes()


def test_a_failing_command_is_a_failed_outcome(alerts_file):
    out = run_command("echo broken >&2; exit 3", alerts_file, timeout_s=10)
    assert not out.ok and out.code == 3 and "broken" in out.detail


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # killed but not yet reaped by its new parent
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_a_hanging_command_is_killed_with_its_children(alerts_file, tmp_path):
    pidfile = tmp_path / "sleep.pid"
    start = time.monotonic()
    out = run_command(f"sleep 30 & echo $! > {pidfile}; wait", alerts_file, timeout_s=1)
    assert time.monotonic() - start < 5
    assert not out.ok and out.timed_out
    pid = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid)


def test_a_path_with_spaces_and_quotes_is_quoted(tmp_path):
    src = tmp_path / "my alerts 'today'.geojson"
    src.write_text('{"type": "FeatureCollection", "features": []}')
    out = run_command(f'cp {{file}} "{tmp_path}/got.geojson" && test "$GEOLOOM_ALERTS_FILE" = {{file}}', src)
    assert out.ok, out.detail
    assert (tmp_path / "got.geojson").read_text() == src.read_text()


def test_deliver_calls_every_hook_and_logs_failures(alerts_file, tmp_path, caplog):
    with receiver() as (url, got):
        outs = deliver(alerts_file, commands=[f"cp {{file}} {tmp_path}/c.geojson", "exit 1"],
                       webhooks=[url, "gopher://x"], retries=1, backoff_s=0.01)
    assert [o.ok for o in outs] == [True, False, True, False] and all(isinstance(o, HookOutcome) for o in outs)
    assert len(got) == 1 and (tmp_path / "c.geojson").exists()
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and r.name == "geoloom.platform.hooks"]
    assert len(warnings) == 2
