"""An opened run: its layers on the map, its detections table, failed tiles and downloads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

import geoloom.workflows as gw
from geoloom.workflows import GeoloomError

from geoloom.ui import imagery, jobs, map_view, rendering, timeline
from geoloom.ui.resources import (
    MAX_MAP_DETECTIONS,
    detections_of,
    failed_tiles_table,
    fmt_seconds,
    layer_tiles,
    log,
    ss,
    stamp,
    unexpected,
)


@dataclass
class Opened:
    """A run folder opened for display."""

    run: gw.Run
    layers: list[str]
    table: pd.DataFrame
    detections: dict[str, Any]
    series: gw.Run | None = None  # the per-date run whose date ``run`` is


def open_view() -> Opened | None:
    """The run chosen for display, opened with its layers and detections; None if none or it cannot be read."""
    folder = ss.get("view_folder")
    if not folder:
        return None
    series = None
    try:
        run = gw.open_run(folder)
        if run.per_date and run.dates:  # the map and table show one date; the slider picks it
            series, run = run, run.date(timeline.pick_date(run))
            folder = str(run.folder)
        layers = rendering.layer_names(run)
        table, fc = detections_of(folder, stamp(Path(folder) / "run.json"))
    except GeoloomError as exc:
        st.error(str(exc))
        return None
    except Exception as exc:
        st.error(unexpected(exc, f"opening the run in {folder}"))
        return None
    return Opened(run, layers, table, fc, series)


def layer_panel(opened: Opened) -> None:
    """Pick the result layer and its opacity, and which overlays the map shows."""
    st.subheader("Result layers")
    if opened.series is not None:
        timeline.date_slider(opened.series)
    if ss.get("layer") not in opened.layers:
        ss.layer = opened.layers[0] if opened.layers else None
    if opened.layers:
        st.radio("Layer", opened.layers, key="layer", horizontal=True,
                 format_func=lambda n: f"{n} (primary)" if n == opened.run.dataset.attrs.get("primary") else n)
    st.slider("Layer opacity", 0.0, 1.0, step=0.05, key="opacity")
    c1, c2, c3 = st.columns(3)
    c1.checkbox("Detections", key="show_detections")
    c2.checkbox("True colour", key="show_truecolour")
    c3.checkbox("Tiles", key="show_tiles")


def selected_row(opened: Opened) -> pd.Series | None:
    """The detection selected in the table, or None."""
    sel = ss.get("det_table")
    try:
        rows = list(sel["selection"]["rows"]) if sel else []
    except (KeyError, TypeError):
        rows = []
    if rows and 0 <= rows[0] < len(opened.table):
        return opened.table.iloc[rows[0]]
    return None


def fill_results(content: map_view.MapContent, opened: Opened) -> None:
    """Add the opened run to the map: chosen layer, true colour, detections, tiles, selection and legends."""
    folder = opened.run.folder
    layer = ss.get("layer") or (opened.layers[0] if opened.layers else None)
    legends = []
    if layer:
        try:
            img = layer_tiles(str(folder), layer, stamp(folder / "run.json"))
            content.result, content.result_name, content.opacity = img, f"Result: {layer}", float(ss.get("opacity", 0.75))
            legends.append(img.legend)
        except Exception as exc:
            st.error(unexpected(exc, f"drawing the {layer} layer"))
    tc = folder / "truecolour"
    if ss.get("show_truecolour", True) and (tc / "run.json").exists():
        try:
            content.truecolour = layer_tiles(str(tc), imagery.LAYER, stamp(tc / "run.json"))
        except Exception:
            log.exception("true-colour layer could not be drawn")
    if ss.get("show_detections", True) and opened.detections["features"]:
        content.detections = opened.detections
        legends.append(rendering.Legend("Detections", "classes", entries=((map_view.DETECTION_COLOUR, "detected object"),)))
    try:
        grid = jobs.TileGrid.from_plan(opened.run.plan)
        ledger = opened.run.ledger
        if ss.get("show_tiles", True) and len(ledger):
            states = dict(zip(ledger["key"], ledger["state"], strict=True))
            errors = {k: e for k, e in zip(ledger["key"], ledger["error"], strict=True) if isinstance(e, str) and e}
            content.grid, content.tile_states, content.tile_errors = grid, states, errors
    except Exception:
        log.exception("tiles of %s could not be drawn", folder)
    row = selected_row(opened)
    if row is not None:
        content.focus_bounds = (float(row["west"]), float(row["south"]), float(row["east"]), float(row["north"]))
        feat = next((f for f in opened.detections["features"] if f["properties"]["id"] == row["id"]), None)
        if feat is None:
            w, s, e, n = content.focus_bounds
            feat = {"type": "Feature", "properties": {},
                    "geometry": {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}}
        content.highlight = feat
    content.legends = tuple(legends)


def results_section(opened: Opened, *, on_update: Any = None, busy: bool = False) -> None:
    """The run's summary, failed tiles, detections table and downloads, below the map; for a per-date
    run, that of the date shown, then the run over time (``on_update`` extends it with new dates)."""
    if opened.series is not None:
        timeline_section = lambda: timeline.timeline_section(opened.series, on_update or (lambda s: None), busy)  # noqa: E731
    else:
        timeline_section = None
    run = opened.run
    tiles, timings, request, card = run.tiles, run.timings, run.request, run.card
    cluster = timings.get("cluster", {})
    day = f" on {opened.run.folder.name}" if opened.series is not None else ""
    st.subheader(f"Result: {card.title or card.name} over {request.region.name}{day}")
    secs = sum((timings.get("seconds") or {}).values())
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Detections", f"{len(opened.table):,}")
    c2.metric("Tiles done", f"{tiles.done} / {tiles.total}")
    c3.metric("Failed tiles", f"{tiles.failed}")
    c4.metric("Time", fmt_seconds(secs))
    engine = cluster.get("engine", "?")
    scenes = ", ".join(s.id for s in run.plan.scenes)
    st.caption(f"Ran on {engine}{' at ' + cluster['address'] if cluster.get('address') else ''}: "
               f"{cluster.get('workers', '?')} worker(s), {cluster.get('gpus', 0)} GPU(s) · scenes: "
               f"{scenes} · folder `{run.folder}`")
    if tiles.missing:
        st.info(f"{tiles.missing} tile(s) were not computed (the run was cancelled or interrupted); "
                f"resume it with `geoloom run --resume {run.folder}`.")
    failed = run.failed_tiles
    if failed:
        st.warning(f"{len(failed)} tile(s) failed; their area is empty on the map.")
        failed_tiles_table([{"row": f["row"], "col": f["col"], "key": f["key"], "reason": f["error"]} for f in failed])

    st.markdown("**Detections** (click a row to zoom the map to it)")
    if len(opened.table):
        shown = opened.table[["id", "score", "class", "area_m2", "date", "scene"]]
        st.dataframe(shown, key="det_table", on_select="rerun", selection_mode="single-row", hide_index=True,
                     width="stretch", height=260,
                     column_config={"area_m2": st.column_config.NumberColumn("area (m²)", format="%.0f"),
                                    "score": st.column_config.NumberColumn("score", format="%.3f")})
        if len(opened.table) > MAX_MAP_DETECTIONS:
            st.caption(f"The map shows the {MAX_MAP_DETECTIONS} highest-scoring of {len(opened.table):,} detections.")
    else:
        st.caption("No objects were detected (or this model does not detect objects).")

    st.markdown("**Downloads**")
    files = [("Map (COG)", "result.tif", "image/tiff"),
             ("Detections (GeoParquet)", "detections.parquet", "application/vnd.apache.parquet"),
             ("Detections (GeoJSON)", "detections.geojson", "application/geo+json"),
             ("Manifest (STAC)", "run.json", "application/json")]
    files += [(f"Layer {p.name[len('result-'):-4]} (COG)", p.name, "image/tiff") for p in sorted(run.folder.glob("result-*.tif"))]
    cols = st.columns(min(len(files), 5))
    for i, (label, name, mime) in enumerate(files):
        path = run.folder / name
        with cols[i % len(cols)]:
            if path.is_file():
                st.download_button(label, data=_reader(path), file_name=name, mime=mime, key=f"dl-{name}", on_click="ignore")
    if timeline_section is not None:
        timeline_section()


def _reader(path: Path):
    return lambda: path.read_bytes()


