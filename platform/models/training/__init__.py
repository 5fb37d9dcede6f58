"""Training and evaluating the built-in detectors on generated scenes: ``train_marine_debris`` and ``evaluate``.

Seeds never overlap: training scenes are ``synthesize_scene`` seeds from 1000 up, validation
scenes seeds 500-599, and the held-out evaluation uses the catalogs that
``generate_sample_data`` writes for seeds 0-3 (a different world generator altogether).
Evaluation runs models through the pipeline, which lives in the layer above: pass
``run_detect=geoloom.workflows.detect`` to :func:`evaluate` and :func:`heldout_report`.
"""

from __future__ import annotations

from geoloom.platform.models.training.data import EVAL_SEEDS, TRAIN_SEED0, VAL_SEEDS, add_turbidity
from geoloom.platform.models.training.evaluate import evaluate, heldout_report
from geoloom.platform.models.training.figures import comparison_figure
from geoloom.platform.models.training.fit import train_marine_debris
from geoloom.platform.models.training.install import install_marine_debris
from geoloom.platform.models.training.real_scenes import RealScene, evaluate_real_scene
from geoloom.platform.models.training.real_sources import fetch_registry_scenes, real_scenes_from_catalog
from geoloom.platform.models.training.scores import pixel_scores, scores_table

__all__ = [
    "EVAL_SEEDS", "TRAIN_SEED0", "VAL_SEEDS", "RealScene", "add_turbidity", "comparison_figure", "evaluate",
    "evaluate_real_scene", "fetch_registry_scenes", "heldout_report", "install_marine_debris", "pixel_scores",
    "real_scenes_from_catalog", "scores_table", "train_marine_debris",
]
