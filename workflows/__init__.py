"""geoloom's public Python API: regions, models, runs.

    from geoloom.workflows import detect
    run = detect("sample-bay", model="fdi", out="runs/bay")
    run.detections.head()
"""

from __future__ import annotations

from geoloom.platform.errors import (
    BandError,
    CatalogError,
    DateError,
    GeoloomError,
    ImageryReadError,
    ModelError,
    NoImageryError,
    OutputError,
    PlanError,
    RegionError,
    RunError,
)
from geoloom.platform.models.card import ModelCard
from geoloom.platform.models.registry import card_text, get_card, list_cards, model_names
from geoloom.platform.region import Region, as_region, list_places, list_presets
from geoloom.platform.userdata import data_dir, web_assets_dir
from geoloom.runtime.progress import Progress
from geoloom.workflows.api import DEFAULT_MODEL, Run, detect, map_tiles, open_run, plan_run
from geoloom.workflows.runs import default_catalog

__all__ = [
    "BandError", "CatalogError", "DateError", "GeoloomError", "ImageryReadError", "ModelError", "NoImageryError",
    "OutputError", "PlanError", "RegionError", "RunError", "ModelCard", "card_text", "get_card", "list_cards",
    "model_names", "Region", "as_region", "list_places", "list_presets", "Progress", "DEFAULT_MODEL", "Run",
    "detect", "map_tiles", "open_run", "plan_run", "default_catalog", "data_dir", "web_assets_dir",
]
