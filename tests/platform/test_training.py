"""Training is deterministic for a seed; evaluation runs models through the pipeline and scores them
against the label rasters of held-out generated catalogs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from geoloom.platform.classes import DEBRIS, FOAM, SHIP, WATER
from geoloom.platform.models.card import file_sha256
from geoloom.platform.models.marine_debris import CARD_FILE, WEIGHTS_FILE, DebrisNet
from geoloom.platform.models.training import heldout_report, pixel_scores, train_marine_debris
from geoloom.platform.models.training.scores import _count, _summary

TINY = dict(epochs=1, steps_per_epoch=2, batch_size=2, patch=64, train_scenes=2, val_scenes=1, scene_size=192)


def test_tiny_training_is_deterministic(tmp_path, monkeypatch):
    from geoloom.platform.models.marine_debris_card import active_files
    from geoloom.platform.models.training import install_marine_debris

    monkeypatch.setenv("GEOLOOM_DATA_DIR", str(tmp_path / "data"))
    shipped = file_sha256(WEIGHTS_FILE), CARD_FILE.read_text()
    a = train_marine_debris(tmp_path / "a", seed=5, **TINY)
    b = train_marine_debris(tmp_path / "b", seed=5, **TINY)
    c = train_marine_debris(tmp_path / "c", seed=6, **TINY)
    assert file_sha256(a) == file_sha256(b) != file_sha256(c)
    data = json.loads((tmp_path / "a" / "marine-debris.json").read_text())
    assert data["sha256"] == file_sha256(a) and 0 < data["threshold"] < 1
    assert data["training"]["seed"] == 5 and len(data["training"]["history"]) == 1
    assert set(data["metrics"]["validation"]) >= {"marine-debris", "fdi"}
    DebrisNet(fused=True).load_state_dict(torch.load(a, weights_only=True))
    assert active_files() == (WEIGHTS_FILE, CARD_FILE)  # nothing installed without install=True
    installed = install_marine_debris(tmp_path / "a")
    assert installed.parent == tmp_path / "data" / "models" / "marine-debris"
    assert active_files()[0] == installed and file_sha256(installed) == file_sha256(a)
    assert (file_sha256(WEIGHTS_FILE), CARD_FILE.read_text()) == shipped  # the shipped model stays as it was


def test_scores_count_pixels_objects_and_false_positives_by_class():
    labels = np.full((8, 8), WATER, dtype=np.uint8)
    labels[1, 1:4] = DEBRIS  # object 1: 3 px
    labels[5, 5] = DEBRIS  # object 2: 1 px, missed
    labels[6, 0:2] = FOAM
    labels[0, 7] = SHIP
    labels[7, 7] = 0  # no label: ignored
    pred = np.zeros((8, 8), dtype=np.uint8)
    pred[1, 2:5] = 1  # 2 hits, 1 false positive on water
    pred[6, 0:2] = 1  # foam
    pred[0, 7] = 1  # ship
    pred[7, 7] = 1  # unlabelled: not counted
    s = _summary([_count(pred, labels)])
    assert (s["tp"], s["fp"], s["fn"]) == (2, 4, 2)
    assert s["objects"] == 2 and s["objects_hit"] == 1 and s["object_recall"] == 0.5
    assert s["false_positives_by_class"]["foam"] == 2 and s["false_positives_by_class"]["ship"] == 1
    assert s["false_positives_by_class"]["water"] == 1 and s["false_positives_hard_negatives"] == 3
    assert s == {**s, **pixel_scores(2, 4, 2)}


@pytest.fixture(scope="module")
def small_heldout_catalog(tmp_path_factory) -> Path:
    """A reduced generated catalog of an evaluation seed (never used for training or validation)."""
    from geoloom.platform.sampledata import generate_sample_data

    return Path(generate_sample_data(tmp_path_factory.mktemp("heldout"), seed=2, _scale=0.3))


def test_heldout_report_through_the_pipeline(small_heldout_catalog, tmp_path):
    from geoloom.workflows import detect

    card = tmp_path / "card.json"
    card.write_text(json.dumps({"threshold": 0.5}))
    report = heldout_report([small_heldout_catalog], run_detect=detect, workdir=tmp_path / "work", card_file=card)
    md, fdi = report["marine-debris"], report["fdi"]
    assert len(md["runs"]) == 2  # one pipeline run per acquisition date
    for r in (md, fdi):
        assert r["tp"] + r["fn"] > 0 and r["objects"] > 0
        assert {"foam", "turbid water", "sargassum", "ship"} <= set(r["false_positives_by_class"])
    assert md["f1"] > fdi["f1"] + 0.2 and md["object_recall"] > 0.5
    assert md["false_positives_hard_negatives"] < fdi["false_positives_hard_negatives"]
    written = json.loads(card.read_text())
    assert written["threshold"] == 0.5 and written["metrics"]["held_out"]["marine-debris"]["f1"] == md["f1"]


def test_training_code_stays_in_the_bottom_layer():
    """The pipeline comes in as ``run_detect``: no module of the training code imports an upper layer,
    at the top or inside a function."""
    import ast

    import geoloom.platform.models.training as training

    upper = ("geoloom.runtime", "geoloom.workflows", "geoloom.ui")
    for path in Path(training.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not [n for n in names if n.startswith(upper)], f"{path.name}:{node.lineno} imports {names}"
