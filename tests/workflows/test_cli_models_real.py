"""``geoloom models eval NAME --real PATH|registry``: real-scene scores from the CLI (no network)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geoloom.platform.models.training.real_scenes import write_scene_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
from test_real_scenes import stand_in  # noqa: E402 - the generated stand-in of the real-scene tests


@pytest.fixture(scope="module")
def band_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Loose Sentinel-2 band files of two scenes: the stand-in at Level-1C and, 5 days later, at Level-2A."""
    root = tmp_path_factory.mktemp("real") / "mine"
    write_scene_folder(stand_in("L1C"), root)
    later = dt.datetime(2021, 6, 6, 10, 30, tzinfo=dt.timezone.utc)
    write_scene_folder(dataclasses.replace(stand_in("L2A"), when=later), root)
    return root


def _cli(geoloom_cli: list[str], *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*geoloom_cli, "models", "eval", *args], capture_output=True, text=True, timeout=300,
                          env=env)


def test_real_path_scores_each_scene_prints_a_table_and_writes_the_card_only_when_asked(band_folder, tmp_path,
                                                                                        geoloom_cli):
    proc = _cli(geoloom_cli, "fdi", "--real", str(band_folder), "--seeds", "1")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["model"] == "fdi" and report["seeds"] == 1 and "card_file" not in report
    scores = report["scores"]
    assert sorted(scores) == ["T31TDG-20210601T103000", "T31TDG-20210606T103000"]
    l1c, l2a = scores["T31TDG-20210601T103000"], scores["T31TDG-20210606T103000"]
    assert (l1c["level"], l2a["level"]) == ("L1C", "L2A")
    assert l2a["recall"] > 0.7 and l2a["false_px_per_km2_open_water"] == 0 and l2a["water_kept"] == 1.0
    assert l2a["implant_seeds"] == 1 and "whole scene" in l2a["note"]
    runs = {s["scene"]: s["variants"][s["scene"]]["models"]["fdi"]["geoloom_read"]["levels"] for s in report["scenes"]}
    assert runs == {"T31TDG-20210601T103000": ["L1C"], "T31TDG-20210606T103000": ["L2A"]}  # read as the level it is
    assert "| scene | level | model | precision | recall | F1 (1 px) | false px/km² open water | water kept |" in proc.stderr
    assert "| T31TDG-20210606T103000 | L2A | fdi |" in proc.stderr

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"threshold": 0.5, "metrics": {"held_out": {"kept": True}}}))
    proc = _cli(geoloom_cli, "fdi", "--real", str(band_folder), "--seeds", "1", "--card-file", str(card))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(card.read_text())
    assert data["metrics"]["held_out"] == {"kept": True} and data["threshold"] == 0.5
    real = data["metrics"]["real_scenes"]
    assert "1 px tolerance" in real["method"]
    assert real["scenes"] == json.loads(proc.stdout)["scores"]
    assert {"level", "precision", "recall", "f1_1px", "false_px_per_km2_open_water", "water_kept",
            "note"} <= set(real["scenes"]["T31TDG-20210606T103000"])


def test_a_stac_catalog_of_the_folder_gives_the_same_scenes(band_folder, tmp_path):
    from geoloom.platform.catalog_index import index_folder
    from geoloom.platform.models.training.real_sources import real_scenes_from_catalog

    catalog = index_folder(band_folder, tmp_path / "catalog")
    from_catalog, from_folder = real_scenes_from_catalog(catalog), real_scenes_from_catalog(band_folder)
    assert [s.name for s in from_catalog] == [s.name for s in from_folder]
    for a, b in zip(from_catalog, from_folder, strict=True):
        assert a.level == b.level and sorted(a.bands) == sorted(b.bands)
        np.testing.assert_array_equal(a.bands["nir"], b.bands["nir"])


def _dated_geotiff(folder: Path) -> None:
    folder.mkdir()
    profile = {"driver": "GTiff", "height": 8, "width": 8, "count": 1, "dtype": "uint16", "crs": "EPSG:32631",
               "transform": Affine(10, 0, 500000, 0, -10, 4650000)}
    with rasterio.open(folder / "dem_20240301.tif", "w", **profile) as dst:
        dst.write(np.ones((1, 8, 8), "uint16"))


@pytest.mark.parametrize("case, message", [
    ("unknown-model", "unknown model 'no-such-model'"),
    ("not-a-detector", "model 'water' makes no detection layer"),
    ("missing-path", "does not exist; give a folder of Sentinel-2 imagery"),
    ("no-sentinel2", "no Sentinel-2 scene with the 12 reflectance bands"),
    ("registry-offline", "cannot download s2cloudless==1.2.2 from PyPI with pip"),
    ("threshold", "leave out --catalog and --threshold"),
])
def test_errors_are_one_line_and_exit_2(case, message, band_folder, tmp_path, geoloom_cli):
    env = dict(os.environ)
    args = ["fdi", "--real", str(band_folder)]
    if case == "unknown-model":
        args[0] = "no-such-model"
    elif case == "not-a-detector":
        args[0] = "water"
    elif case == "missing-path":
        args[2] = str(tmp_path / "missing")
    elif case == "no-sentinel2":
        _dated_geotiff(tmp_path / "dem")
        args[2] = str(tmp_path / "dem")
    elif case == "registry-offline":  # an empty cache and an index that refuses connections: pip fails at once
        args[2] = "registry"
        env = {k: v for k, v in env.items() if not k.startswith("PIP_")}
        env.update(GEOLOOM_DATA_DIR=str(tmp_path / "data"), PIP_INDEX_URL="http://127.0.0.1:9/simple",
                   PIP_CONFIG_FILE=os.devnull)
    else:
        args += ["--threshold", "0.3"]
    proc = _cli(geoloom_cli, *args, env=env)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
