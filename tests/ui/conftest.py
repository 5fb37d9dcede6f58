"""Fixtures for the UI tests: a catalog, a runs folder, the app's environment, a stand-in map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ui_catalog(request: pytest.FixtureRequest) -> Path:
    """The sample catalog: the one ``geoloom sample-data`` made, else a fresh one for the session."""
    from geoloom.workflows import default_catalog

    path = Path(default_catalog())
    if path.is_file():
        return path
    return request.getfixturevalue("sample_catalog")


@pytest.fixture()
def ui_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ui_catalog: Path) -> Path:
    """The app's environment: sample catalog, runs in tmp, in-process runtime, no online basemap."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("GEOLOOM_CATALOG", str(ui_catalog))
    monkeypatch.setenv("GEOLOOM_RUNS", str(runs))
    monkeypatch.setenv("GEOLOOM_RUNTIME", "in-process")
    monkeypatch.setenv("GEOLOOM_UI_PREVIEW", "0")
    monkeypatch.setenv("GEOLOOM_BASEMAP", "none")
    monkeypatch.delenv("GEOLOOM_SCHEDULER", raising=False)
    return runs


class FakeMap:
    """Stands in for ``st_folium`` (a custom component AppTest cannot run): records each call and
    returns what the browser would, e.g. a drawn shape."""

    def __init__(self) -> None:
        self.value: dict[str, Any] | None = None
        self.calls: list[dict[str, Any]] = []

    def __call__(self, fig, key=None, **kwargs: Any) -> dict[str, Any] | None:
        groups = kwargs.get("feature_group_to_add") or []
        self.calls.append({"key": key, "fig": fig, "groups": [g.layer_name for g in groups],
                           "center": kwargs.get("center"), "zoom": kwargs.get("zoom")})
        return self.value

    @property
    def last(self) -> dict[str, Any]:
        return self.calls[-1]

    def draw(self, bbox: tuple[float, float, float, float]) -> None:
        w, s, e, n = bbox
        feature = {"type": "Feature", "properties": {},
                   "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
        self.value = {"last_active_drawing": feature, "all_drawings": [feature]}


@pytest.fixture()
def fake_map(monkeypatch: pytest.MonkeyPatch) -> FakeMap:
    import streamlit_folium

    fake = FakeMap()
    monkeypatch.setattr(streamlit_folium, "st_folium", fake)
    return fake
