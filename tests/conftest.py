"""Shared fixtures: the generated sample catalog, made once per test session."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest

REPO = Path(__file__).resolve().parents[1]

# The tests never read or write the user's own data folder (sample data, installed models, web
# assets): the session gets an empty one, inherited by every subprocess it starts.
_DATA_DIR = tempfile.mkdtemp(prefix="geoloom-test-data-")
os.environ["GEOLOOM_DATA_DIR"] = _DATA_DIR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_DATA_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default small sample catalog (seed 0), generated into a temporary folder."""
    from geoloom.platform.sampledata import generate_sample_data

    out = tmp_path_factory.mktemp("sample")
    return Path(generate_sample_data(out, seed=0, size="small"))


@pytest.fixture()
def catalog_copy(sample_catalog: Path, tmp_path: Path) -> Path:
    """A private copy of the sample catalog that a test may damage."""
    dst = tmp_path / "catalog"
    shutil.copytree(sample_catalog.parent, dst)
    return dst / "catalog.json"


@pytest.fixture(scope="session")
def geoloom_cli() -> list[str]:
    """The installed console script, run as a real subprocess."""
    exe = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "geoloom"
    if not exe.exists():
        exe = Path(shutil.which("geoloom") or "geoloom")
    return [str(exe)]


def _dask_workers_below(root: Any = None) -> list[Any]:
    """The embedded clusters' Dask worker processes (``dask spec``) below ``root`` (default: this process)."""
    import psutil

    found = []
    for p in (root or psutil.Process()).children(recursive=True):
        try:
            if "distributed.cli.dask_spec" in " ".join(p.cmdline()):
                found.append(p)
        except psutil.Error:
            pass
    return found


@pytest.fixture(scope="session")
def dask_workers_below() -> Callable[..., list[Any]]:
    """``dask_workers_below(root=None)``: the Dask worker processes below a process (default: this one)."""
    return _dask_workers_below
