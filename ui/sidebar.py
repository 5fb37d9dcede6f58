"""The sidebar: the model and its card, imagery filters, compute, and the run history."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import geoloom.workflows as gw

from geoloom.ui import history, identity
from geoloom.ui.resources import (
    job_owners,
    Settings, collections_of, index_local_folder, local_gpus, model_cards, scheduler_info, ss,
)


def sidebar(cfg: Settings, running: bool) -> Any:
    """Draw the sidebar; the chosen model's card, or None when no model is installed."""
    cards = model_cards()
    by_name = {c.name: c for c in cards}
    with st.sidebar:
        st.header("Model")
        if not cards:
            st.error("No model is installed; reinstall geoloom")
            return None
        if ss.get("model") not in by_name:
            preferred = [n for n in ("marine-debris", gw.DEFAULT_MODEL) if n in by_name]
            ss.model = preferred[0] if preferred else cards[0].name
        st.selectbox("Model", list(by_name), key="model", disabled=running,
                     format_func=lambda n: f"{by_name[n].title} ({n})")
        card = by_name[ss.model]
        model_card(card)

        st.header("Imagery")
        imagery_source(cfg, running)
        c1, c2 = st.columns(2)
        c1.date_input("From", key="start", format="YYYY-MM-DD", disabled=running)
        c2.date_input("To", key="end", format="YYYY-MM-DD", disabled=running)
        st.slider("Cloud limit (%)", 0, 100, key="cloud", disabled=running,
                  help="Scenes with more cloud cover than this are not used.")
        advanced_options(card, running)

        st.header("Compute")
        compute_panel(cfg, card, running)

        st.header("Run history")
        identity.user_panel()
        history_panel(cfg, running)
    return card


#: The imagery sources the page offers: label -> (STAC API URL or None, signer).
SOURCES: dict[str, tuple[str | None, str | None]] = {
    "Sample data": (None, None),
    "Earth Search (AWS, open)": ("https://earth-search.aws.element84.com/v1", None),
    "Microsoft Planetary Computer": ("https://planetarycomputer.microsoft.com/api/stac/v1", "planetary-computer"),
    "Another STAC API": (None, None),
    "A static STAC catalog": (None, None),
    "A folder of imagery on this machine": (None, None),
}


def imagery_source(cfg: Settings, running: bool) -> None:
    """Where the scenes come from; sets ``ss.catalog`` (and the collection and signer an API needs)."""
    st.selectbox("Source", list(SOURCES), key="source", disabled=running)
    source = ss.get("source") or "Sample data"
    url, signer = SOURCES[source]
    if source == "Sample data":
        ss.catalog = cfg.catalog
    elif source in ("Another STAC API", "A static STAC catalog"):
        st.text_input("URL or path", key="source_url", disabled=running,
                      placeholder="https://.../v1" if source == "Another STAC API" else "catalog.json (path or URL)")
        ss.catalog = (ss.get("source_url") or "").strip() or cfg.catalog
    elif source == "A folder of imagery on this machine":
        folder_source(cfg, running)
    else:
        ss.catalog = url
    if signer and not ss.get("sign"):
        ss.sign = signer
    if url or source == "Another STAC API":
        api_collections(ss.catalog, running)
    st.caption(f"Catalog: `{ss.catalog}`")


def api_collections(url: str, running: bool) -> None:
    """The collections of a STAC API to pick from (typed by hand when the API cannot be reached)."""
    if "://" not in url:
        return
    try:
        listed = collections_of(url)
    except gw.GeoloomError as exc:
        st.warning(f"{exc}")
        return
    ids = [cid for cid, _ in listed]
    if ids and ss.get("collection") not in ids:
        ss.collection = next((c for c in ids if "sentinel-2-l2a" in c), ids[0])
    if ids:
        titles = dict(listed)
        st.selectbox("Collection", ids, key="collection", disabled=running,
                     format_func=lambda c: f"{c} ({titles[c]})" if titles.get(c) else c)


def folder_source(cfg: Settings, running: bool) -> None:
    """A folder of GeoTIFFs, band files or Sentinel-2 products, indexed into a catalog under the runs folder."""
    st.text_input("Folder", key="source_folder", disabled=running, placeholder="/data/S2B_MSIL1C_..._T33UUU_...")
    ss.setdefault("catalog", cfg.catalog)
    if st.button("Index this folder", key="index_folder", disabled=running or not ss.get("source_folder")):
        try:
            with st.spinner("Indexing the folder..."):
                ss.catalog = str(index_local_folder(ss.source_folder, cfg.runs))
            ss.source_error = None
        except gw.GeoloomError as exc:
            ss.source_error = str(exc)
    if ss.get("source_error"):
        st.error(ss.source_error)


def advanced_options(card: Any, running: bool) -> None:
    """The rest of what ``geoloom run`` can set: collection, filters, signing, threshold and the grid."""
    with st.expander("More options (collection, filters, threshold, grid)"):
        if not ss.get("source", "").startswith(("Earth Search", "Microsoft", "Another STAC API")):
            st.text_input("Collection", key="collection", disabled=running,
                          help="Needed with a STAC API, e.g. sentinel-2-l2a.")
        st.text_area("Filters, one per line", key="query", disabled=running, height=68,
                     help="Item properties, as PROP OP VALUE: s2:mgrs_tile=31NBG, view:sun_elevation>30.")
        st.text_input("Sign asset URLs", key="sign", disabled=running,
                      help="planetary-computer, or module:function.")
        default = f"{card.threshold:g}" if card is not None and card.threshold is not None else "the card's"
        st.text_input("Threshold", key="threshold", disabled=running, placeholder=default,
                      help="Detection threshold between 0 and 1 (empty: the model card's).")
        c1, c2, c3 = st.columns(3)
        c1.text_input("Resolution (m)", key="resolution", disabled=running, placeholder="model's")
        c2.text_input("Tile size (px)", key="tile_size", disabled=running, placeholder="model's")
        c3.text_input("CRS", key="crs", disabled=running, placeholder="UTM zone")


def model_card(card: Any) -> None:
    """What a model looks at, gives and runs on, its measured scores and the full card."""
    st.markdown(f"**{card.title}**")
    st.write(card.description)
    outputs = "; ".join(f"{o.name} ({o.kind}{': ' + o.description if o.description else ''})" for o in card.outputs)
    lines = [
        f"- **Looks at:** {card.imagery}, bands {', '.join(card.bands)}, at {card.resolution:g} m",
        f"- **Gives:** {outputs}" + ("; and the objects it finds as polygons" if card.detection else ""),
        "- **Runs on:** " + {"none": "CPU", "prefers": "a GPU when one is available, else CPU",
                               "requires": "a GPU only"}.get(card.gpu, card.gpu),
    ]
    if card.threshold is not None:
        lines.append(f"- **Threshold:** {card.threshold:g} on {card.score or card.primary}")
    st.markdown("\n".join(lines))
    if card.metrics:
        st.markdown("**How good it is** (measured scores):")
        st.dataframe(pd.DataFrame(flatten_metrics(card.metrics), columns=["score", "value"]), hide_index=True)
    else:
        st.caption("No measured scores are recorded for this model: check its detections before trusting them.")
    if card.training:
        st.caption("Trained/evaluated on: " + "; ".join(f"{k}: {v}" for k, v in flatten_metrics(card.training)))
    with st.expander("Full model card"):
        st.code(gw.card_text(card), language=None)


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics as (``outer / inner`` name, formatted value) rows."""
    rows: list[tuple[str, str]] = []
    for k, v in metrics.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            rows += flatten_metrics(v, prefix=f"{name} / ")
        elif isinstance(v, float):
            rows.append((name, f"{v:.3g}"))
        else:
            rows.append((name, str(v)))
    return rows


def compute_panel(cfg: Settings, card: Any, running: bool) -> None:
    """Where the run will execute, its workers and GPUs, and a warning when the model needs a GPU."""
    if cfg.runtime in ("in-process", "local", "inprocess"):
        st.markdown("Runs **inside the app's process**, one tile at a time (GEOLOOM_RUNTIME=in-process).")
        gpus = 0
    elif cfg.scheduler:
        info = scheduler_info(cfg.scheduler)
        if "error" in info:
            st.error(info["error"])
            return
        gpus = info["gpus"]
        st.markdown(f"**Dask scheduler** at `{cfg.scheduler}`: {info['workers']} worker(s), "
                    f"{info['threads']} thread(s), {gpus} GPU(s).")
    else:
        cpus = os.cpu_count() or 1
        gpus = local_gpus()
        st.number_input("Workers", min_value=1, max_value=max(64, cpus), value=cpus, key="workers", disabled=running,
                        help="Worker processes of the local Dask cluster started for the run.")
        st.markdown(f"A **local Dask cluster** on this machine: {ss.get('workers', cpus)} worker(s), "
                    f"{gpus} GPU(s) ({cpus} CPU cores).")
    if card is not None and card.gpu == "requires" and gpus == 0:
        st.warning(f"{card.name} needs a GPU and none is available here; pick another model or connect a GPU cluster.")
    elif card is not None and card.gpu == "prefers" and gpus == 0:
        st.caption(f"{card.name} prefers a GPU; without one it runs on the CPU, more slowly.")


def history_panel(cfg: Settings, running: bool) -> None:
    """Previous runs to pick and open."""
    entries = history.list_runs(cfg.runs, owners=job_owners(cfg.service) if cfg.service else None)
    if not entries:
        st.caption(f"No runs yet in `{cfg.runs}`.")
        return
    users = sorted({e.user for e in entries if e.user})
    if users:
        me = identity.current_user()
        choices = ["everyone"] + (["mine"] if me else []) + [u for u in users if u != me]
        whose = st.selectbox("Whose runs", choices, key="history_whose",
                             format_func=lambda c: {"everyone": "Everyone's", "mine": f"Mine ({me})"}.get(c, c))
        wanted = me if whose == "mine" else (None if whose == "everyone" else whose)
        if wanted is not None:
            entries = [e for e in entries if e.user == wanted]
    labels = {str(e.folder): e.label for e in entries}
    st.selectbox("Previous runs", list(labels), key="history_pick", index=None, format_func=labels.get,
                 placeholder="Pick a run to open")
    st.button("Open run", key="open_run", on_click=open_from_history, disabled=running or not ss.get("history_pick"))


def open_from_history() -> None:
    """Open the picked run and fill the form with the request it was started with."""
    folder = Path(ss.history_pick)
    region = history.region_of(folder)
    if region is not None:
        ss.region = region
        ss.region_error = None
    try:
        request = history.read_request(folder)
    except (OSError, ValueError, KeyError, gw.GeoloomError):
        request = None
    if request is not None:
        if request.model.name in {c.name for c in model_cards()}:
            ss.model = request.model.name
        im, grid = request.imagery, request.grid
        ss.start, ss.end = _date(im.start), _date(im.end)
        ss.cloud = int(im.max_cloud) if im.max_cloud is not None else 100
        ss.collection, ss.sign = im.collection or "", im.sign or ""
        ss.query = "\n".join(im.query_expressions())
        threshold = request.model.params.get("threshold")
        ss.threshold = "" if threshold is None else f"{threshold:g}"
        ss.resolution = "" if grid.resolution is None else f"{grid.resolution:g}"
        ss.tile_size = "" if grid.tile_size is None else str(grid.tile_size)
        ss.crs = grid.crs or ""
        watch = request.monitoring  # the form shows the run's choice over time, and its alert rules
        ss.per_date_model = request.model.name
        ss.per_date = bool(json.loads((folder / "request.json").read_text()).get("per_date"))
        ss.alert_density, ss.alert_object = watch.alerts.density_per_km2, watch.alerts.object_m2
    ss.view_folder = str(folder)
    ss.pop("view_date", None)
    ss.job_id = None
    ss.run_error = None
    ss.pop("det_table", None)


def _date(value: Any) -> Any:
    try:
        return dt.date.fromisoformat(str(value)[:10]) if value else None
    except ValueError:
        return None


