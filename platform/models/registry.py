"""The model registry: built-ins, the ``geoloom.models`` entry-point group, and model folders
(given by path, or kept in the per-user models folder, where they are found by folder name)."""

from __future__ import annotations

import difflib
import functools
import importlib
import json
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable

from geoloom.platform.errors import ModelError
from geoloom.platform.models.base import Model
from geoloom.platform.models.card import ModelCard, validate_card

ENTRY_POINT_GROUP = "geoloom.models"

#: name -> "module:attribute" of a model class (or factory) taking ``threshold=``.
BUILTINS: dict[str, str] = {
    "fdi": "geoloom.platform.models.indices:FDIModel",
    "water": "geoloom.platform.models.indices:WaterModel",
    "vegetation": "geoloom.platform.models.indices:VegetationModel",
    "clouds": "geoloom.platform.models.clouds:CloudModel",
    "marine-debris": "geoloom.platform.models.marine_debris:MarineDebrisModel",
}

#: name -> "module:function" giving a built-in's card from the same parameters without building
#: the model (a client plans a run without importing torch; the workers load the network).
BUILTIN_CARDS: dict[str, str] = {
    "marine-debris": "geoloom.platform.models.marine_debris_card:card",
}


def _load_ref(ref: str) -> Callable[..., Model]:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.lru_cache(maxsize=1)
def _factories() -> dict[str, Callable[..., Model]]:
    """Every installed model factory by name (built-ins win over plug-ins of the same name)."""
    found: dict[str, Callable[..., Model]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:  # a broken plug-in must not break the tool
            warnings.warn(f"model plug-in {ep.name!r} ({ep.value}) failed to load: {exc}", stacklevel=2)
    for folder in _user_model_folders():
        found.setdefault(folder.name, functools.partial(_load_folder, folder))
    for name, ref in BUILTINS.items():
        found[name] = functools.partial(_lazy_builtin, ref)
    return found


def _user_model_folders() -> list[Path]:
    """Model folders (a card beside TorchScript weights) in the per-user models folder."""
    from geoloom.platform.userdata import models_dir

    root = models_dir()
    return sorted(p for p in root.iterdir() if is_model_folder(p)) if root.is_dir() else []


def _load_folder(folder: Path, **params: Any) -> Model:
    from geoloom.platform.models.folder import load_model_folder

    return load_model_folder(folder, **params)


def _lazy_builtin(ref: str, **params: Any) -> Model:
    return _load_ref(ref)(**params)


def refresh() -> None:
    """Forget the cached list of models (after installing a plug-in)."""
    _factories.cache_clear()


def model_names() -> list[str]:
    """Names of every installed model, sorted."""
    return sorted(_factories())


def is_model_folder(value: str | Path) -> bool:
    """True for a folder that holds a model card (card.yaml, card.yml or card.json)."""
    p = Path(value)
    return p.is_dir() and any((p / n).exists() for n in ("card.yaml", "card.yml", "card.json"))


def get_model(name_or_path: str | Path, **params: Any) -> Model:
    """A ready model by registry name or model folder path; unknown names list what is installed."""
    if isinstance(name_or_path, Path) or is_model_folder(name_or_path) or "/" in str(name_or_path):
        from geoloom.platform.models.folder import load_model_folder

        return load_model_folder(Path(name_or_path), **params)
    factories = _factories()
    name = str(name_or_path).strip()
    if name not in factories:
        close = difflib.get_close_matches(name, factories, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ModelError(
            f"unknown model {name!r}{hint}; installed models: {', '.join(sorted(factories))} "
            "(or give the path of a model folder)"
        )
    model = factories[name](**params)
    card = getattr(model, "card", None)
    if not isinstance(card, ModelCard):
        raise ModelError(f"model plug-in {name!r} has no valid card; fix the plug-in package")
    validate_card(card)
    return model


def get_card(name_or_path: str | Path, **params: Any) -> ModelCard:
    """The card of a model, checked as building it would check it; built-ins that have a card
    function (BUILTIN_CARDS) are not built."""
    name = str(name_or_path).strip()
    if name in BUILTIN_CARDS and not is_model_folder(name_or_path):
        card = _load_ref(BUILTIN_CARDS[name])(**params)
        validate_card(card)
        return card
    return get_model(name_or_path, **params).card


def list_cards() -> list[ModelCard]:
    """Cards of all installed models; a plug-in that fails to build is skipped with a warning."""
    cards = []
    for name in model_names():
        try:
            cards.append(get_card(name))
        except Exception as exc:
            warnings.warn(f"model {name!r} is unavailable: {exc}", stacklevel=2)
    return cards


def card_text(card: ModelCard) -> str:
    """The card as readable text for ``geoloom models show``."""
    lines = [f"{card.name}: {card.title}", "", card.description, ""]
    lines.append(f"imagery:      {card.imagery}, bands {', '.join(card.bands)}")
    lines.append(f"resolution:   {card.resolution:g} m, tile {card.tile_size} px, halo {card.halo} px")
    lines.append("outputs:      " + "; ".join(f"{o.name} ({o.kind}, {o.dtype})" for o in card.outputs))
    if card.threshold is not None:
        lines.append(f"threshold:    {card.threshold:g} on {card.score or card.primary}")
    lines.append(f"device:       GPU {card.gpu}")
    if card.weights:
        lines.append(f"weights:      {card.weights} (sha256 {card.sha256})")
    lines += _score_lines(card.metrics)
    if card.training:
        t = card.training
        said = [str(t[k]) for k in ("data", "method") if t.get(k)]
        lines.append("training:     " + ("; ".join(said) if said else json.dumps(t, sort_keys=True)))
    if card.metrics or card.training:
        lines.append(f"(every number: geoloom models show {card.name} --json)")
    return "\n".join(lines)


def _f(value: Any) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def _score_lines(metrics: dict[str, Any]) -> list[str]:
    """The card's scores in a few lines: held-out and real-scene scores by model and scene, the rest as JSON."""
    lines: list[str] = []
    rest = dict(metrics)
    for section in ("held_out", "validation"):
        scores = rest.pop(section, None) if isinstance(rest.get(section), dict) else None
        for name, m in (scores or {}).items():
            if isinstance(m, dict) and "f1" in m:
                recall = f", object recall {_f(m['object_recall'])}" if "object_recall" in m else ""
                lines.append(f"{section.replace('_', ' ') + ':':13} {name}: precision {_f(m.get('precision'))}, "
                             f"recall {_f(m.get('recall'))}, F1 {_f(m.get('f1'))}{recall}")
    real = rest.pop("real_scenes", None)
    if isinstance(real, dict):
        for scene, m in (real.get("scenes") or {}).items():
            if m.get("f1_1px") is None:
                lines.append(f"real scene:   {scene} ({m.get('level')}), no debris: detected px/km² of scene "
                             f"{_f(m.get('detected_px_per_km2_scene'))}")
                continue
            lines.append(f"real scene:   {scene} ({m.get('level')}): precision {_f(m.get('precision'))}, recall "
                         f"{_f(m.get('recall'))}, F1 (1 px) {_f(m.get('f1_1px'))}, false px/km² open water "
                         f"{_f(m.get('false_px_per_km2_open_water'))}")
    if rest:
        lines.append("scores:       " + json.dumps(rest, sort_keys=True))
    return lines
