"""The geoloom web UI (Streamlit); ``geoloom ui`` starts it."""

from __future__ import annotations

from pathlib import Path


def app_path() -> Path:
    """The Streamlit script of the app."""
    return Path(__file__).with_name("app.py")
