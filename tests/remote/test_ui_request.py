"""A run started from the UI on a STAC API, with a collection and a filter, equals the CLI's run."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from geoloom.workflows import open_run

from .stac_server import StacApiServer

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
BAY_BBOX = (-0.054, 5.618, -0.027, 5.645)
COLLECTION = "sentinel-2-l2a"
QUERY = "mgrs:utm_zone=31"


def _wait_for_view(at: AppTest, timeout: float = 180) -> Path:
    """Rerun the page, as its polling fragment would, until the finished run is shown."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(1.0)
        at.run()
        assert not at.exception, at.exception
        assert not at.error, [e.value for e in at.error]
        if at.session_state["view_folder"] if "view_folder" in at.session_state else None:
            return Path(at.session_state["view_folder"])
    raise AssertionError("the UI's run did not finish in time")


class MapCalls:
    """Stands in for ``st_folium`` (AppTest runs no components): records the layer groups of each call."""

    def __init__(self) -> None:
        self.groups: list[list[str]] = []

    def __call__(self, fig, key=None, **kwargs):
        self.groups.append([g.layer_name for g in kwargs.get("feature_group_to_add") or []])


def test_the_page_picks_a_stac_api_lists_collections_and_scenes_and_runs_without_a_left_out_scene(
        sample_catalog, tmp_path, monkeypatch):
    import streamlit_folium

    calls = MapCalls()
    monkeypatch.setattr(streamlit_folium, "st_folium", calls)
    for key, value in {"GEOLOOM_CATALOG": str(sample_catalog), "GEOLOOM_RUNS": str(tmp_path / "runs"),
                       "GEOLOOM_RUNTIME": "in-process", "GEOLOOM_UI_PREVIEW": "0", "GEOLOOM_BASEMAP": "none",
                       "GEOLOOM_UI_TRUECOLOUR": "0"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GEOLOOM_SCHEDULER", raising=False)
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        at.selectbox(key="source").set_value("Another STAC API").run()
        at.text_input(key="source_url").set_value(srv.api_url).run()
        assert any(o.startswith(COLLECTION) for o in at.selectbox(key="collection").options)  # listed from the API
        at.selectbox(key="model").set_value("fdi").run()
        at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
        at.button(key="use_bbox").click().run()
        assert not at.error, [e.value for e in at.error]
        assert "Scene footprints" in calls.groups[-1]
        scenes = at.multiselect(key="exclude").options
        assert len(scenes) >= 2
        listed = next(d.value for d in at.dataframe if "scene" in d.value.columns)  # the scenes, with thumbnails
        host = "/".join(srv.api_url.split("/", 3)[:3])  # http://127.0.0.1:PORT
        assert listed["preview"].str.startswith(host).all() and set(listed["scene"]) == set(scenes)
        at.multiselect(key="exclude").set_value([scenes[0]]).run()
        at.button(key="run").click().run()
        run = open_run(_wait_for_view(at))
    assert run.request.imagery.catalog == srv.api_url and run.request.imagery.collection == COLLECTION
    assert run.request.imagery.exclude == (scenes[0],)
    assert scenes[0] not in {s.id for s in run.plan.scenes} and run.ok


def test_a_ui_run_on_a_stac_api_equals_the_cli_run(sample_catalog, tmp_path, monkeypatch, geoloom_cli):
    import streamlit_folium

    monkeypatch.setattr(streamlit_folium, "st_folium", lambda *args, **kwargs: None)  # AppTest runs no components
    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        for key, value in {"GEOLOOM_CATALOG": srv.api_url, "GEOLOOM_RUNS": str(tmp_path / "runs"),
                           "GEOLOOM_RUNTIME": "in-process", "GEOLOOM_UI_PREVIEW": "0", "GEOLOOM_BASEMAP": "none",
                           "GEOLOOM_UI_TRUECOLOUR": "0"}.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("GEOLOOM_SCHEDULER", raising=False)
        at = AppTest.from_file(str(APP), default_timeout=90)
        at.run()
        at.selectbox(key="model").set_value("fdi").run()
        at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
        at.button(key="use_bbox").click().run()
        at.text_input(key="collection").set_value(COLLECTION).run()
        at.text_area(key="query").set_value(QUERY).run()
        at.text_input(key="threshold").set_value("0.04").run()
        at.text_input(key="tile_size").set_value("128").run()
        assert not at.error, [e.value for e in at.error]
        at.button(key="run").click().run()
        ui_folder = _wait_for_view(at)

        cli_folder = tmp_path / "cli"
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        proc = subprocess.run([*geoloom_cli, "run", "--bbox", *map(str, BAY_BBOX), "--model", "fdi", "--catalog",
                               srv.api_url, "--collection", COLLECTION, "--query", QUERY, "--threshold", "0.04",
                               "--tile-size", "128", "--runtime", "in-process", "--out", str(cli_folder)],
                              capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr
    ui_run, cli_run = open_run(ui_folder), open_run(cli_folder)
    assert ui_run.request.imagery.query == {"mgrs:utm_zone": {"eq": 31}}
    assert ui_run.request.to_folder_dict() == cli_run.request.to_folder_dict()
    assert ui_run.run_id == cli_run.run_id and ui_run.plan.token == cli_run.plan.token
    assert all(s.id.split("-")[2].startswith("31") for s in ui_run.plan.scenes)
    a, b = ui_run.dataset, cli_run.dataset
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    assert json.loads((ui_folder / "detections.geojson").read_text())["features"] == \
        json.loads((cli_folder / "detections.geojson").read_text())["features"]
