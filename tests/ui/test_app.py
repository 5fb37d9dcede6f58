"""The UI's logic through Streamlit's AppTest: regions from five sources, validation, a run, history."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from geoloom.workflows import Region

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
BAY_BBOX = (-0.054, 5.618, -0.027, 5.645)  # the sample bay: one tile, debris windrows
TIMEOUT = 90


def new_app() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def errors(at: AppTest) -> list[str]:
    return [str(e.value) for e in at.error]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def assert_region(at: AppTest, name: str) -> None:
    assert not at.exception, at.exception
    assert not errors(at), errors(at)
    assert f"**{name}**" in texts(at)
    assert int(metric(at, "Tiles")) >= 1


def wait_for_run(at: AppTest, timeout: float = 120) -> None:
    """Rerun the page (as the polling fragment would) until the background run has ended."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(1.0)
        at.run()
        assert not at.exception, at.exception
        if at.success or at.error or at.warning or at.info:
            if not any("cancelled" in str(i.value) or "finished" in str(i.value) or "failed" in str(i.value)
                       for i in [*at.success, *at.error, *at.warning, *at.info]):
                continue
            return
    raise AssertionError("the run did not finish in time")


# -- regions ----------------------------------------------------------------------------------


def test_first_page_has_the_map_and_no_region(ui_env, fake_map):
    at = new_app()
    assert [c["key"] for c in fake_map.calls] == ["map"]
    assert "No region yet" in str(at.info[0].value)
    assert at.button(key="run").disabled
    labels = [o for o in at.selectbox(key="model").options]
    assert any("(fdi)" in o for o in labels)


def test_drawn_shape_becomes_the_region(ui_env, fake_map):
    at = new_app()
    fake_map.draw(BAY_BBOX)
    at.run()
    assert_region(at, "drawn area")
    assert "(drawn)" in texts(at)
    # the map now outlines the region and shows the planned tiles
    assert "Tiles" in fake_map.last["groups"]
    assert "Region" in [getattr(c, "layer_name", None) for c in fake_map.last["fig"]._children.values()]


def test_drawn_point_is_refused_in_place(ui_env, fake_map):
    at = new_app()
    point = {"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [0, 5.6]}}
    fake_map.value = {"last_active_drawing": point, "all_drawings": [point]}
    at.run()
    assert any("not an area" in e for e in errors(at))


def test_clicking_a_shape_that_was_not_drawn_keeps_the_region(ui_env, fake_map):
    """streamlit-folium reports a click on a detection or a tile as the last active drawing."""
    at = new_app()
    fake_map.draw(BAY_BBOX)
    at.run()
    assert_region(at, "drawn area")
    w, s, e, n = BAY_BBOX
    clicked = {"type": "Feature", "properties": {"score": "0.9"},
               "geometry": {"type": "Polygon", "coordinates": [[[w, s], [w + 0.001, s], [w + 0.001, s + 0.001], [w, s]]]}}
    fake_map.value = {"last_active_drawing": clicked, "all_drawings": []}
    at.run()
    assert_region(at, "drawn area")
    assert "8.9 km²" in texts(at)


def test_preset_region(ui_env, fake_map):
    at = new_app()
    at.selectbox(key="preset").set_value("sample-bay").run()
    assert_region(at, "sample-bay")


def test_place_search(ui_env, fake_map):
    at = new_app()
    at.text_input(key="place_query").set_value("tema").run()
    assert any("Tema" in o for o in at.selectbox(key="place_pick").options)
    at.button(key="use_place").click().run()
    assert_region(at, "Tema")


def test_unknown_place_is_explained(ui_env, fake_map):
    at = new_app()
    at.text_input(key="place_query").set_value("Atlantis").run()
    assert any("unknown place" in str(w.value) for w in at.warning)


def test_bbox_region(ui_env, fake_map):
    at = new_app()
    at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
    at.button(key="use_bbox").click().run()
    assert_region(at, "bbox")
    assert "8.9 km²" in texts(at)


@pytest.mark.parametrize("text, words", [
    ("1 2 3", "four numbers"),
    ("a 5.5 0.1 5.6", "not a number"),
    ("0.1 5.5 -0.1 5.6 0", "four numbers"),
    ("0 5.7 0.1 5.5", "south"),
    ("-10 -10 10 10", "more than the limit"),
])
def test_bad_bbox_is_explained_in_place(ui_env, fake_map, text, words):
    at = new_app()
    at.text_input(key="bbox_text").set_value(text).run()
    at.button(key="use_bbox").click().run()
    assert not at.exception
    assert any(words in e for e in errors(at)), errors(at)
    assert "No region yet" in str(at.info[0].value)


def test_geojson_upload(ui_env, fake_map):
    at = new_app()
    data = json.dumps(Region.from_bbox(BAY_BBOX).to_geojson()["geometry"]).encode()
    at.file_uploader(key="upload").set_value(("my-bay.geojson", data, "application/geo+json")).run()
    assert_region(at, "my-bay")


@pytest.mark.parametrize("name, data, words", [
    ("broken.geojson", b'{"type": "Polygon", "coordinates": [[[0, 5.6], ', "not valid JSON"),
    ("list.json", b"[1, 2, 3]", "not a GeoJSON object"),
    ("point.geojson", b'{"type": "Point", "coordinates": [0, 5.6]}', "Point"),
    ("big.geojson", b" " * (3 * 1024 * 1024), "limit"),
    ("latin1.geojson", '{"name": "Bahía"}'.encode("latin-1"), "UTF-8"),
])
def test_bad_geojson_is_explained_in_place(ui_env, fake_map, name, data, words):
    at = new_app()
    at.file_uploader(key="upload").set_value((name, data, "application/geo+json")).run()
    assert not at.exception
    assert any(words in e for e in errors(at)), errors(at)


def test_no_imagery_for_the_dates_is_explained(ui_env, fake_map):
    import datetime as dt

    at = new_app()
    at.selectbox(key="preset").set_value("sample-bay").run()
    at.date_input(key="start").set_value(dt.date(2019, 1, 1)).run()
    at.date_input(key="end").set_value(dt.date(2019, 2, 1)).run()
    assert any("scene" in e.lower() or "imagery" in e.lower() for e in errors(at)), errors(at)
    assert at.button(key="run").disabled


# -- a run, its results, the history ----------------------------------------------------------


def test_run_shows_results_and_reopens_from_history(ui_env, fake_map):
    at = new_app()
    at.selectbox(key="model").set_value("fdi").run()
    at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
    at.button(key="use_bbox").click().run()
    at.button(key="run").click().run()
    assert not at.exception, at.exception
    assert "Cancel run" in [b.label for b in at.button], "the run's progress was not shown"
    assert "Tiles" in fake_map.last["groups"] and "Legend" in fake_map.last["groups"]
    wait_for_run(at)
    assert "Run finished" in str(at.success[0].value)
    detections = int(metric(at, "Detections").replace(",", ""))
    assert detections > 0
    assert metric(at, "Tiles done") == "1 / 1"
    groups = fake_map.last["groups"]
    assert "Result: fdi" in groups and "Detections" in groups and "Imagery (true colour)" in groups
    labels = {b.label for b in at.get("download_button")}
    assert {"Map (COG)", "Detections (GeoParquet)", "Detections (GeoJSON)", "Manifest (STAC)"} <= labels
    folder = Path(at.session_state["view_folder"])
    assert folder.parent == ui_env and (folder / "run.json").exists()

    # a row of the table zooms the map to that detection
    at.session_state["det_table"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
    at.run()
    assert fake_map.last["center"] is not None and fake_map.last["zoom"] >= 12
    assert "Selected detection" in fake_map.last["groups"]

    # other layer, other opacity
    at.radio(key="layer").set_value("debris").run()
    assert "Result: debris" in fake_map.last["groups"]

    # a new session opens the run from the history, as it was
    again = new_app()
    assert any("fdi · bbox" in o for o in again.selectbox(key="history_pick").options)
    again.selectbox(key="history_pick").set_value(str(folder)).run()
    again.button(key="open_run").click().run()
    assert not again.exception, again.exception
    assert int(metric(again, "Detections").replace(",", "")) == detections
    assert "**bbox**" in texts(again)
    assert again.selectbox(key="model").value == "fdi"
    assert "Result: fdi" in fake_map.last["groups"]


def test_opening_a_folder_without_a_run_is_explained(ui_env, fake_map):
    at = new_app()
    at.session_state["view_folder"] = str(ui_env / "nothing-here")
    at.run()
    assert any("no finished run" in e for e in errors(at)), errors(at)


def test_zipped_shapefile_upload(ui_env, fake_map, tmp_path):
    import io
    import zipfile

    import geopandas as gpd
    from shapely.geometry import box

    folder = tmp_path / "shp"
    folder.mkdir()
    frame = gpd.GeoDataFrame({"name": ["bay"]}, geometry=[box(*BAY_BBOX)], crs="EPSG:4326").to_crs("EPSG:32630")
    frame.to_file(folder / "bay-outline.shp")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for f in folder.iterdir():
            z.write(f, f.name)
    at = new_app()
    at.file_uploader(key="upload").set_value(("bay-outline.shp.zip", buffer.getvalue(), "application/zip")).run()
    assert_region(at, "bay-outline")
    assert "(file)" in texts(at)
