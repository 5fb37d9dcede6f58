"""geoloom's public Python API: regions, models, runs.

    from geoloom.workflows import detect
    run = detect("sample-bay", model="fdi", out="runs/bay")
    run.detections.head()
"""

from __future__ import annotations

# xyz_tiles (rio-tiler) at import, not on first use: loaded later, it fell inside the UI's first run
# (Run click to the first tile on the map 1.1 s later)
from geoloom.platform import styles, xyz_tiles
from geoloom.platform.alerts import AlertRules
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
from geoloom.platform.catalog_index import index_folder
from geoloom.platform.devices import local_gpus
from geoloom.platform.plan import Plan
from geoloom.platform.region import DEFAULT_MAX_AREA_KM2, Region, as_region, list_places, list_presets, region_hints
from geoloom.platform.stac_api import list_collections
from geoloom.platform.userdata import data_dir, web_assets_dir
from geoloom.runtime.progress import Progress
from geoloom.workflows.api import (
    Run, TileCounts, detect, map_tiles, open_run, plan_request, plan_run, run_request, update,
)
from geoloom.workflows.by_rows import RunSet, open_runs
from geoloom.workflows.request import (
    DEFAULT_MODEL, Execution, Grid, Imagery, Monitoring, RunRequest, build_request, default_catalog, request_from_folder,
)
from geoloom.workflows.runs import Prepared
from geoloom.workflows.service_client import Job, ServiceClient, submit

__all__ = [
    "BandError", "CatalogError", "DateError", "GeoloomError", "ImageryReadError", "ModelError", "NoImageryError",
    "OutputError", "PlanError", "RegionError", "RunError", "ModelCard", "card_text", "get_card", "list_cards",
    "model_names", "Plan", "DEFAULT_MAX_AREA_KM2", "Region", "as_region", "list_places", "list_presets", "region_hints",
    "Progress",
    "DEFAULT_MODEL", "Execution", "Grid", "Imagery", "Prepared", "Run", "RunRequest", "TileCounts", "build_request",
    "detect", "map_tiles", "open_run", "plan_request", "plan_run", "request_from_folder", "run_request", "default_catalog",
    "data_dir", "web_assets_dir", "index_folder", "local_gpus", "list_collections", "ServiceClient", "styles", "xyz_tiles",
    "Job", "submit", "Monitoring", "update", "AlertRules", "RunSet", "open_runs",
]
