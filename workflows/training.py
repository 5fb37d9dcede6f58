"""Moved: training and evaluation now live in :mod:`geoloom.platform.models.training`.

The evaluation functions there take the pipeline as ``run_detect``; the two below pass
:func:`geoloom.workflows.detect` in, as the names here always did.
"""

from __future__ import annotations

from typing import Any

from geoloom.platform.models import training as _training
from geoloom.platform.models.training import (
    EVAL_SEEDS, TRAIN_SEED0, VAL_SEEDS, add_turbidity, comparison_figure, install_marine_debris, pixel_scores,
    scores_table, train_marine_debris,
)

__all__ = [
    "EVAL_SEEDS", "TRAIN_SEED0", "VAL_SEEDS", "add_turbidity", "comparison_figure", "evaluate", "heldout_report",
    "install_marine_debris", "pixel_scores", "scores_table", "train_marine_debris",
]


def evaluate(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`geoloom.platform.models.training.evaluate` through :func:`geoloom.workflows.detect`."""
    from geoloom.workflows.api import detect

    return _training.evaluate(*args, run_detect=detect, **kwargs)


def heldout_report(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`geoloom.platform.models.training.heldout_report` through :func:`geoloom.workflows.detect`."""
    from geoloom.workflows.api import detect

    return _training.heldout_report(*args, run_detect=detect, **kwargs)
