"""The UI over time: a per-date run with alert rules ("watch this region"), its date slider, chart,
alert history, and "Check for new imagery" (through AppTest; the browser test shows the same page)."""

from __future__ import annotations

import json
from pathlib import Path

from test_app import BAY_BBOX, errors, metric, new_app, wait_for_run


def test_watch_a_region_then_check_for_new_imagery(ui_env, fake_map):
    at = new_app()
    at.selectbox(key="model").set_value("fdi").run()
    at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
    at.button(key="use_bbox").click().run()
    assert not at.checkbox(key="per_date").value  # fdi's card: one composite by default
    at.checkbox(key="per_date").check().run()
    at.number_input(key="alert_object").set_value(0.0).run()
    at.date_input(key="end").set_value("2024-01-10").run()
    assert not errors(at), errors(at)
    assert any("One result per acquisition date: 1 date(s)" in str(c.value) for c in at.caption)
    at.button(key="run").click().run()
    wait_for_run(at)
    assert not errors(at), errors(at)
    folder = Path(at.session_state["view_folder"])
    request = json.loads((folder / "request.json").read_text())
    assert request["per_date"] is True and request["request"]["monitoring"]["alerts"] == {"object_m2": 0.0}
    assert (folder / "dates" / "2024-01-09" / "truecolour" / "run.json").exists()  # the date's own true colour
    assert "Result: fdi" in fake_map.last["groups"] and "Imagery (true colour)" in fake_map.last["groups"]
    assert any("Watching for" in str(m.value) for m in at.markdown)
    assert len(at.dataframe) >= 3  # detections, the table per date, the alert history
    assert int(metric(at, "Detections").replace(",", "")) > 0

    # new imagery: the dates the run lacks are computed, the slider and chart then span both
    at.button(key="update_run").click().run()
    wait_for_run(at)
    assert not errors(at), errors(at)
    at.run()
    slider = at.select_slider(key="view_date")
    assert list(slider.options) == ["2024-01-09", "2024-01-14"] and slider.value == "2024-01-14"
    assert any("on 2024-01-14" in str(h.value) for h in at.subheader)
    slider.set_value("2024-01-09").run()
    assert any("on 2024-01-09" in str(h.value) for h in at.subheader)
    history = [json.loads(line) for line in (folder / "alerts.jsonl").read_text().splitlines()]
    assert [h["date"] for h in history] == ["2024-01-09", "2024-01-14"]
    assert len(at.get("vega_lite_chart")) == 2  # the chart per date: density, and clear water and cloud


def test_run_takes_the_form_as_it_is_at_the_click(ui_env, fake_map):
    """A box ticked just before Run (the page not yet drawn again in between) is in the run."""
    at = new_app()
    at.selectbox(key="model").set_value("fdi").run()
    at.text_input(key="bbox_text").set_value(" ".join(map(str, BAY_BBOX))).run()
    at.button(key="use_bbox").click().run()
    at.date_input(key="end").set_value("2024-01-10").run()
    assert not at.checkbox(key="per_date").value
    at.checkbox(key="per_date").check()
    at.button(key="run").click().run()  # one rerun carries both: the button's plan was drawn unticked
    wait_for_run(at)
    assert not errors(at), errors(at)
    request = json.loads((Path(at.session_state["view_folder"]) / "request.json").read_text())
    assert request.get("per_date") is True
