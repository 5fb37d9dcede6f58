"""Settings, cached resources and small helpers shared by the page's parts."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import geoloom.workflows as gw

from geoloom.ui import assets, imagery, jobs, rendering

log = logging.getLogger("geoloom.ui")

ss = st.session_state
MAX_MAP_DETECTIONS = 2000


# -- settings and cached resources ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``geoloom ui`` passes through the environment."""

    catalog: str
    scheduler: str | None
    runs: Path
    runtime: str
    basemap: str
    preview: bool
    truecolour: bool
    service: str | None = None  # a geoloom job service (GEOLOOM_SERVICE): runs go there, not into this server

    @classmethod
    def from_env(cls) -> Settings:
        """Settings from the GEOLOOM_* variables, with the defaults of ``geoloom ui``."""
        env = os.environ
        flag = lambda name, default="1": env.get(name, default).strip().lower() not in ("0", "false", "no", "off")  # noqa: E731
        return cls(
            catalog=env.get("GEOLOOM_CATALOG") or str(gw.default_catalog()),
            scheduler=env.get("GEOLOOM_SCHEDULER") or None,
            runs=Path(env.get("GEOLOOM_RUNS") or "runs").expanduser().resolve(),
            runtime=env.get("GEOLOOM_RUNTIME") or "dask",
            basemap="none" if env.get("GEOLOOM_BASEMAP", "osm").lower() in ("none", "off", "0") else "osm",
            preview=flag("GEOLOOM_UI_PREVIEW"),
            truecolour=flag("GEOLOOM_UI_TRUECOLOUR"),
            service=env.get("GEOLOOM_SERVICE") or None,
        )


@st.cache_resource(show_spinner=False)
def job_registry() -> jobs.JobRegistry:
    """The one job registry of this server process."""
    return jobs.JobRegistry()


@st.cache_resource(show_spinner=False)
def imagery_preview(catalog: str, runs: str) -> jobs.Preview | None:
    """The catalog's coarse true-colour preview (started once per server, kept on disk)."""
    plan = imagery.preview_plan(catalog)
    if plan is None:
        return None
    preview = jobs.Preview(Path(runs) / ".imagery" / imagery.preview_key(catalog))
    preview.start(plan["region"], catalog, plan["resolution"])
    return preview


@st.cache_resource(show_spinner=False)
def model_cards() -> list[Any]:
    """The cards of every installed model (read once per server)."""
    return gw.list_cards()


@st.cache_resource(show_spinner=False, max_entries=64)
def prepared_run(request_json: str, catalog_stamp: float) -> Any:
    """The dry-run plan of the form's request (nothing read); errors are not cached and show again."""
    return gw.plan_request(gw.RunRequest.from_dict(json.loads(request_json)))


@st.cache_data(show_spinner=False, max_entries=32)
def layer_image(folder: str, layer: str, stamp: float) -> rendering.LayerImage:
    """A run's layer as a coloured map image, cached; ``stamp`` (the run's mtime) renews the cache."""
    return rendering.render_layer(folder, layer)


@st.cache_resource(show_spinner=False)
def tile_server() -> Any:
    """The tile server of this UI process (started once, on Streamlit's address)."""
    from geoloom.ui.tile_server import TileServer

    host = str(st.get_option("server.address") or "127.0.0.1")
    return TileServer(host, int(os.environ.get("GEOLOOM_TILE_PORT", "0") or 0))


@st.cache_resource(show_spinner=False, max_entries=64)
def _tiled(folder: str, layer: str, stamp: float) -> rendering.TiledLayer:
    return rendering.tiled_layer(folder, layer)


def layer_tiles(folder: str, layer: str, stamp: float) -> rendering.TiledLayer:
    """A run's layer as XYZ tiles from its COG, with the URL the browser asks them from."""
    import dataclasses

    tiled = _tiled(folder, layer, stamp)
    server = tile_server()
    key = server.register(tiled.cog, tiled.style)
    return dataclasses.replace(tiled, url=server.url(key, _browser_host()))


def _browser_host() -> str | None:
    """The host name the browser reached the page by (so that it reaches the tile server alike)."""
    try:
        host = st.context.headers.get("Host") or ""
    except Exception:
        return None
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 or host.startswith("[") else host
    return name.strip("[]") or None


@st.cache_data(show_spinner=False, max_entries=16)
def detections_of(folder: str, stamp: float) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The detections as a table (highest score first) and as GeoJSON for the map (top ones)."""
    gdf = gw.Run(Path(folder)).detections
    if len(gdf) == 0:
        empty = pd.DataFrame(columns=["id", "score", "class", "area_m2", "date", "scene", "west", "south", "east", "north"])
        return empty, {"type": "FeatureCollection", "features": []}
    gdf = gdf.sort_values("score", ascending=False).reset_index(drop=True)
    dates = gdf["datetime"].astype(str).str.slice(0, 10) if "datetime" in gdf else ""
    bounds = gdf.geometry.bounds
    table = pd.DataFrame({
        "id": gdf["id"].astype(str), "score": gdf["score"].astype(float).round(4), "class": gdf.get("class", ""),
        "area_m2": gdf["area_m2"].astype(float).round(1), "date": dates, "scene": gdf.get("scene", ""),
        "west": bounds["minx"], "south": bounds["miny"], "east": bounds["maxx"], "north": bounds["maxy"],
    })
    top = gdf.head(MAX_MAP_DETECTIONS)
    features = []
    for i, row in top.iterrows():
        features.append({
            "type": "Feature",
            "geometry": row.geometry.__geo_interface__,
            "properties": {"id": str(row["id"]), "score": f"{row['score']:.3f}", "area": f"{row['area_m2']:,.0f} m²",
                           "date": str(table.at[i, "date"]), "scene": str(row.get("scene", "")),
                           "class": str(row.get("class", ""))},
        })
    return table, {"type": "FeatureCollection", "features": features}


@st.cache_data(show_spinner=False, ttl=5)
def job_owners(service: str) -> dict[str, str]:
    """Who started each run folder, from the job service's records ({} when it cannot be reached)."""
    try:
        return {str(Path(j.out).resolve()): j.user for j in gw.ServiceClient(service).jobs()}
    except gw.GeoloomError:
        return {}


@st.cache_resource(show_spinner=False, ttl=30)
def scheduler_info(address: str) -> dict[str, Any]:
    """Workers, threads and GPUs of a Dask scheduler (or the one-line reason it is unreachable)."""
    try:
        from distributed import Client

        with Client(address, timeout="3s") as client:
            workers = client.scheduler_info().get("workers", {})
    except Exception as exc:  # unreachable or not a scheduler
        return {"error": f"cannot reach the Dask scheduler at {address} ({type(exc).__name__}); "
                         "start it, or fix the scheduler address (geoloom ui --scheduler)"}
    gpus = sum(int((w.get("resources") or {}).get("GPU", 0)) for w in workers.values())
    return {"workers": len(workers), "threads": sum(w.get("nthreads", 1) for w in workers.values()), "gpus": gpus}


@st.cache_resource(show_spinner=False)
def local_gpus() -> int:
    """CUDA GPUs on this machine, asked without importing torch into the web server."""
    from geoloom.workflows import local_gpus as count

    return count()


@st.cache_data(show_spinner=False, max_entries=8)
def catalog_extent(catalog: str, stamp: float) -> tuple[float, float, float, float] | None:
    """The catalog's lon/lat extent, cached; ``stamp`` renews the cache when the catalog changes."""
    return imagery.catalog_extent(catalog)


def catalog_stamp(catalog: str) -> float:
    """The catalog file's mtime, as a cache stamp; 0.0 for a URL."""
    return 0.0 if "://" in catalog else stamp(Path(catalog))


@st.cache_resource(show_spinner="Fetching the map's JavaScript files from the npm registry (once)...")
def fetch_missing_assets() -> str | None:
    """Fetch the map's files into the per-user data folder when no copy is installed; the error, if any."""
    if assets.vendor_dir() is not None:
        return None
    from geoloom.ui import fetch_assets

    try:
        fetch_assets.fetch(quiet=True, folder=assets.user_vendor_dir())
    except (fetch_assets.FetchError, OSError) as exc:
        return str(exc)
    return None


def map_assets() -> assets.MapAssets:
    """The map's asset URLs for this server, fetching the files first if none are installed."""
    fetch_missing_assets()
    return assets.map_assets(static_serving=bool(st.get_option("server.enableStaticServing")),
                             base_path=str(st.get_option("server.baseUrlPath") or ""))


def stamp(path: Path) -> float:
    """A file's mtime, as a cache stamp; 0.0 when it is missing."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def unexpected(exc: BaseException, what: str) -> str:
    """Log the traceback of a bug and return a one-line message for the page."""
    log.exception("%s failed", what)
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{what} failed on an unexpected error ({type(exc).__name__}: {first}); the server log has the details"


def fmt_seconds(s: float) -> str:
    """Seconds as ``42 s`` or ``3 min 05 s``."""
    s = max(0, int(round(s)))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def failed_tiles_table(rows: list[dict[str, Any]]) -> None:
    """A table of failed tiles and why, if there are any."""
    if rows:
        st.markdown("**Failed tiles and why:**")
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


@st.cache_data(show_spinner="Listing the API's collections...", ttl=600)
def collections_of(url: str) -> list[tuple[str, str]]:
    """(id, title) of the collections of a STAC API (cached ten minutes)."""
    return gw.list_collections(url)


def index_local_folder(folder: str, runs: Path) -> Path:
    """Index a folder of imagery into ``<runs>/catalogs/<folder name>-<hash>``; returns the catalog.json."""
    import hashlib

    src = Path(folder).expanduser().resolve()
    key = hashlib.sha256(str(src).encode()).hexdigest()[:8]
    return gw.index_folder(src, runs / "catalogs" / f"{src.name or 'folder'}-{key}")
