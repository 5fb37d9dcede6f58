"""Where geoloom keeps what it makes for a user: generated sample data, trained models, web assets.

Never inside the installed package (site-packages may be read-only, and a reinstall would lose
it): ``$GEOLOOM_DATA_DIR`` when set, else the per-user data folder of the platform
(``~/.local/share/geoloom`` on Linux, from ``platformdirs``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_DIR_ENV", "data_dir", "models_dir", "sample_dir", "web_assets_dir"]

DATA_DIR_ENV = "GEOLOOM_DATA_DIR"


def data_dir() -> Path:
    """The per-user data folder (not created here)."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    if env:
        return Path(env).expanduser().absolute()
    import platformdirs

    return Path(platformdirs.user_data_dir("geoloom", appauthor=False))


def sample_dir() -> Path:
    """Where ``geoloom sample-data`` writes by default."""
    return data_dir() / "sample"


def models_dir() -> Path:
    """Trained and installed models, one folder each (found by the model registry)."""
    return data_dir() / "models"


def web_assets_dir() -> Path:
    """The map's JavaScript and CSS when the installed package does not carry them."""
    return data_dir() / "web" / "vendor"
