"""Models loaded once per worker process, not once per tile."""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

from geoloom.platform.models.base import Model
from geoloom.platform.models.card import ModelCard
from geoloom.platform.models.registry import get_card, get_model


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """How to build a model on a worker: a registry name or folder path and its parameters,
    or (for a user's own function) the model object itself."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    instance: Any = None

    @property
    def cache_key(self) -> str:
        """Name and parameters as one string, the key of the per-process cache."""
        return self.name + json.dumps(self.params, sort_keys=True, default=str)


_CACHE: dict[str, Model] = {}
_LOCK = threading.Lock()
LOADS = {"count": 0}


def model_card(spec: ModelSpec) -> ModelCard:
    """The card of ``spec``'s model, without loading the model where the registry can (no torch in a client)."""
    if spec.instance is not None:
        return spec.instance.card
    return get_card(spec.name, **spec.params)


def load_model(spec: ModelSpec) -> Model:
    """The model for ``spec``, built on first use in this process and kept."""
    if spec.instance is not None:
        return spec.instance
    with _LOCK:
        model = _CACHE.get(spec.cache_key)
        if model is None:
            _limit_threads()
            model = get_model(spec.name, **spec.params)
            _CACHE[spec.cache_key] = model
            LOADS["count"] += 1
        return model


def warm_model(spec: ModelSpec) -> Model:
    """Load ``spec``'s model in this process and, where the model can (``warm_up``), run it once, so
    that the first tile a worker takes costs what every later one does."""
    model = load_model(spec)
    warm_up = getattr(model, "warm_up", None)
    if callable(warm_up):
        warm_up()
    return model


def _limit_threads() -> None:
    """Keep a torch already loaded to the worker's share of cores (Dask sets OMP_NUM_THREADS in its
    workers; torch and ONNX Runtime loaded later read it themselves). Never imports torch: a CPU
    worker on ONNX Runtime stays ~180 MB lighter."""
    n = os.environ.get("OMP_NUM_THREADS")
    torch = sys.modules.get("torch")
    if n and torch is not None:
        try:
            torch.set_num_threads(int(n))
        except Exception:
            pass


def loads_in_this_process() -> int:
    """How many models this process has built (once per model, not once per tile, on a worker)."""
    return LOADS["count"]
