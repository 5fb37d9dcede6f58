"""Building run requests from CLI options or from a run folder (for --resume)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geoloom.platform.errors import OutputError
from geoloom.platform.region import Region
from geoloom.runtime.model_cache import ModelSpec
from geoloom.workflows.runs import RunRequest, default_catalog


def request_from_options(region: Region, *, model: str, threshold: float | None, catalog: str | None, out: str,
                         **options: Any) -> RunRequest:
    params = {"threshold": threshold} if threshold is not None else {}
    if options.get("query") is not None:
        from geoloom.platform.stac_api import parse_query

        options["query"] = parse_query(options["query"]) or None
    return RunRequest(region=region, model=ModelSpec(model, params), catalog=str(catalog or default_catalog()),
                      out=str(out), **options)


def request_from_folder(folder: str | Path) -> RunRequest:
    """The request of the run in ``folder``, as it was started."""
    f = Path(folder).expanduser() / "request.json"
    if not f.exists():
        raise OutputError(f"{folder} holds no run to resume (no request.json); start a run there without --resume")
    data = json.loads(f.read_text())
    p = data["parameters"]
    region = Region.from_geojson(data["region"])
    region = Region(region.geometry, name=data["region"].get("properties", {}).get("name", region.name),
                    source=data["region"].get("properties", {}).get("source", "geojson"))
    return RunRequest(
        region=region, model=ModelSpec(p["model"], p.get("model_params") or {}), catalog=p["catalog"],
        out=str(Path(folder).expanduser()), start=p.get("start"), end=p.get("end"), max_cloud=p.get("max_cloud"),
        tile_size=p.get("tile_size"), resolution=p.get("resolution"), crs=p.get("crs"), retries=p.get("retries", 2),
        collection=p.get("collection"), query=p.get("query"), sign=p.get("sign"),
    )
