"""The page: region, what the run will do, the run and its progress, the map; it puts together
the sidebar (:mod:`geoloom.ui.sidebar`) and an opened run's results (:mod:`geoloom.ui.results`).

Every error a user can cause arrives as a ``GeoloomError`` and is shown in place with
``st.error``; anything else is logged on the server and reported in one line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import streamlit as st
import streamlit_folium

import geoloom.workflows as gw
from geoloom.workflows import GeoloomError

from geoloom.ui import assets, identity, imagery, jobs, map_view, regions, rendering, timeline
from geoloom.ui.resources import (
    Settings,
    catalog_extent,
    catalog_stamp,
    failed_tiles_table,
    fetch_missing_assets,
    fmt_seconds,
    imagery_preview,
    job_registry,
    layer_image,
    log,
    map_assets,
    model_cards,
    prepared_run,
    scheduler_info,
    ss,
    stamp,
    unexpected,
)
from geoloom.ui.results import fill_results, layer_panel, open_view, results_section
from geoloom.ui.sidebar import sidebar

POLL_S = 1.0


# -- state ----------------------------------------------------------------------------------


def init_state(cfg: Settings) -> None:
    """Set the session's defaults once, and re-attach a reloaded page to a run still going on this server."""
    ss.setdefault("region", None)
    ss.setdefault("region_error", None)
    ss.setdefault("drawing_seen", None)
    ss.setdefault("job_id", None)
    ss.setdefault("job_reported", None)
    ss.setdefault("view_folder", None)
    ss.setdefault("run_error", None)
    ss.setdefault("upload_seen", None)
    # widget defaults live in the session state, so that opening a run can set them
    ss.setdefault("start", None)
    ss.setdefault("end", None)
    ss.setdefault("cloud", 100)
    ss.setdefault("opacity", 0.75)
    ss.setdefault("show_detections", True)
    ss.setdefault("show_truecolour", True)
    ss.setdefault("show_tiles", True)
    if ss.job_id is None:  # a page reload re-attaches to a run still going on this server, or on the service
        running = job_registry().running() or service_jobs_of(cfg, identity.current_user())
        if running:
            ss.job_id = running[-1].id
            ss.region = running[-1].spec.request.region


def service_jobs_of(cfg: Settings, user: str | None) -> list[Any]:
    """The user's unfinished jobs on the job service, followed by this page from now on (none without a
    service or a user): after the web server restarted, a reloaded page finds its run again."""
    if not cfg.service or not user:
        return []
    try:
        records = [r for r in gw.ServiceClient(cfg.service).jobs(user=user) if not r.final]
    except GeoloomError:
        return []
    found = []
    for rec in records[-1:]:
        try:
            request = gw.RunRequest.from_dict(rec.request)
            plan = plan_of(rec.out, request)
        except (GeoloomError, OSError, ValueError, KeyError):
            log.exception("job %s cannot be followed", rec.id)
            continue
        spec = jobs.JobSpec(request, resolution=float(plan.resolution), truecolour=cfg.truecolour)
        job = jobs.ServiceJob.attach(rec.id, spec, jobs.TileGrid.from_plan(plan), cfg.service)
        job_registry().add(job)
        found.append(job)
    return found


def plan_of(out: str, request: gw.RunRequest) -> Any:
    """A job's plan: from its folder once it has started, else planned again (a search, no pixels)."""
    stored = Path(out) / "request.json"
    if stored.exists():
        return gw.Plan.from_dict(json.loads(stored.read_text())["plan"])
    return gw.plan_request(request).plan


def set_region(region: gw.Region) -> None:
    """Make ``region`` the region of the form; closes an opened run and clears the last region error."""
    ss.region = region
    ss.region_error = None
    ss.view_folder = None
    ss.pop("det_table", None)


def region_failed(source: str, exc: BaseException) -> None:
    """Keep why the region from ``source`` could not be read, to show beside that input."""
    ss.region_error = (source, str(exc) if isinstance(exc, GeoloomError) else unexpected(exc, f"reading the {source}"))


def _try_region(source: str, make) -> None:
    try:
        set_region(make())
    except Exception as exc:
        region_failed(source, exc)


def use_preset() -> None:
    """Use the picked preset as the region."""
    if ss.get("preset"):
        _try_region("preset", lambda: regions.from_preset(ss.preset))


def use_place() -> None:
    """Use the picked place (or the typed name) as the region."""
    pick = ss.get("place_pick")
    if pick:
        _try_region("place", lambda: regions.from_place(pick))
    elif ss.get("place_query"):
        _try_region("place", lambda: regions.from_place(ss.place_query))


def use_bbox() -> None:
    """Use the typed bounding box as the region."""
    _try_region("bounding box", lambda: regions.from_bbox_text(ss.get("bbox_text", "")))


def take_upload() -> None:
    """Read a newly uploaded region file into the region (once per file)."""
    up = ss.get("upload")
    if up is None:
        ss.upload_seen = None
        return
    ident = getattr(up, "file_id", None) or f"{up.name}:{up.size}"
    if ident == ss.upload_seen:
        return
    ss.upload_seen = ident
    _try_region("region file", lambda: regions.from_upload(up.name, up.getvalue()))


def take_drawing(value: dict[str, Any] | None) -> bool:
    """Use a new shape drawn on the map as the region; True when the region changed.

    streamlit-folium also reports a click on any other shape (a detection, a tile) as the "last
    active drawing"; only shapes that are among the drawn ones count."""
    feature = (value or {}).get("last_active_drawing")
    if not feature:
        return False
    drawn = [f.get("geometry") for f in (value or {}).get("all_drawings") or [] if isinstance(f, dict)]
    if feature.get("geometry") not in drawn:
        return False
    sig = json.dumps(feature, sort_keys=True)
    if sig == ss.drawing_seen:
        return False
    ss.drawing_seen = sig
    _try_region("drawn shape", lambda: regions.from_drawing(feature))
    return True


# -- region, plan and run -------------------------------------------------------------------


def region_panel(running: bool) -> None:
    """Section 1: the five ways to give a region, and why the last one given could not be used."""
    st.subheader("1 · Region")
    tabs = st.tabs(["Draw", "Preset", "Place", "Bounding box", "File"])
    with tabs[0]:
        st.markdown("Pick the **rectangle** ▭ or **polygon** ⬠ tool at the top left of the map and draw the area. "
                    "The shape becomes the region at once.")
    with tabs[1]:
        presets = gw.list_presets()
        if presets:
            st.selectbox("Preset region", presets, index=None, key="preset", on_change=use_preset,
                         placeholder="Pick a preset", disabled=running)
        else:
            st.caption("No preset regions are installed.")
    with tabs[2]:
        st.text_input("Search a place", key="place_query", placeholder="e.g. Tema, Accra, Ghana", disabled=running)
        query = ss.get("place_query") or ""
        matches = regions.search_places(query) if query.strip() else []
        if matches:
            names = [p["name"] for p in matches]
            if ss.get("place_pick") not in names:
                ss.place_pick = names[0]
            labels = {p["name"]: regions.place_label(p) for p in matches}
            st.selectbox("Places found", names, key="place_pick", format_func=labels.get, disabled=running)
        elif query.strip():
            ss.place_pick = None
            try:
                gw.Region.from_place(query)
            except GeoloomError as exc:
                st.warning(str(exc))
        st.button("Use this place", key="use_place", on_click=use_place, disabled=running or not query.strip())
    with tabs[3]:
        st.text_input("West South East North (degrees)", key="bbox_text", placeholder="-0.06 5.57 -0.02 5.61",
                      disabled=running)
        st.button("Use bounding box", key="use_bbox", on_click=use_bbox, disabled=running)
    with tabs[4]:
        st.file_uploader(f"Region file: {regions.UPLOAD_FORMATS} (all its polygons, any CRS; GeoJSON in lon/lat; "
                         f"up to {regions.MAX_UPLOAD_BYTES // (1024 * 1024)} MB)", type=list(regions.UPLOAD_TYPES),
                         key="upload", max_upload_size=max(1, regions.MAX_UPLOAD_BYTES // (1024 * 1024)),
                         disabled=running)
    if ss.region_error:
        source, text = ss.region_error
        st.error(f"The {source} cannot be used: {text}")


def plan_panel(cfg: Settings, card: Any) -> Any:
    """Show what the run will do (area, tiles, estimate); return the dry-run plan or None."""
    st.subheader("2 · What the run will do")
    region = ss.region
    if region is None:
        st.info("No region yet: draw one on the map, or pick one above.")
        return None
    st.markdown(f"**{region.name}** ({region.source}) · **{region.area_km2:,.1f} km²**")
    if card is None:
        return None
    try:
        prep = form_plan(cfg, card, region)
    except GeoloomError as exc:
        st.error(str(exc))
        return None
    except Exception as exc:
        st.error(unexpected(exc, "planning the run"))
        return None
    s = prep.summary()
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Tiles", f"{s['tiles']}")
    c2.metric("Pixels", f"{s['pixels'] / 1e6:,.1f} M")
    c3.metric("To read", f"{s['bytes_to_read'] / 1e6:,.0f} MB")
    est = s.get("estimated_seconds")
    c4.metric("Model time", f"~{est:,.0f} s" if est is not None and est >= 1 else ("< 1 s" if est is not None else "n/a"))
    dates = sorted({str(sc.datetime)[:10] for sc in prep.scenes if getattr(sc, "datetime", None)})
    st.caption(f"{len(s['scenes'])} scene(s){' from ' + ', '.join(dates) if dates else ''} · grid {s['crs']} at "
               f"{s['resolution_m']:g} m · tile {s['tile_size']} px · bands {', '.join(s['bands'])}")
    if prep.per_date:
        days = sorted({str(sc.datetime)[:10] for sc in prep.scenes})
        st.caption(f"One result per acquisition date: {len(days)} date(s), {len(days) * s['tiles']} tile runs in all.")
    scenes_panel(prep)
    return prep


def scenes_panel(prep: Any) -> None:
    """The scenes the run will use (date, cloud, level), with the choice to leave some out."""
    left_out = list(ss.get("exclude") or [])
    thumbs = any(sc.thumbnail for sc in prep.scenes)
    rows = [({"preview": sc.thumbnail} if thumbs else {}) | {
             "scene": sc.id, "date": str(sc.datetime)[:16].replace("T", " "),
             "cloud %": None if sc.cloud_cover is None else round(float(sc.cloud_cover), 1),
             "level": sc.level or "", "collection": sc.collection or ""} for sc in prep.scenes]
    with st.expander(f"Scenes ({len(rows)} used{f', {len(left_out)} left out' if left_out else ''})"):
        st.dataframe(rows, hide_index=True, width="stretch", row_height=64 if thumbs else None,
                     column_config={"preview": st.column_config.ImageColumn("preview", width="small")})
        st.multiselect("Leave out", sorted({r["scene"] for r in rows} | set(left_out)), key="exclude",
                       help="Scenes not to use (clouds the filter missed, a bad acquisition). Their footprints "
                            "are on the map.")


def form_plan(cfg: Settings, card: Any, region: gw.Region) -> Any:
    """The dry-run plan of what the form says now (cached per request and catalog state)."""
    request = form_request(cfg, card, region)
    return prepared_run(json.dumps(request.to_dict(), sort_keys=True), catalog_stamp(active_catalog(cfg)))


def active_catalog(cfg: Settings) -> str:
    """The catalog the sidebar's imagery source points at (the configured one by default)."""
    return str(ss.get("catalog") or cfg.catalog)


def form_request(cfg: Settings, card: Any, region: gw.Region) -> gw.RunRequest:
    """The run the form describes, built as every front door builds it (the folder comes at Run)."""
    return gw.build_request(
        region, model=card.name, out=".", threshold=_number("threshold", float, "Threshold"), catalog=active_catalog(cfg),
        collection=(ss.get("collection") or "").strip() or None, start=_iso(ss.get("start")), end=_iso(ss.get("end")),
        max_cloud=_cloud(), query=[q.strip() for q in (ss.get("query") or "").splitlines() if q.strip()] or None,
        sign=(ss.get("sign") or "").strip() or None, resolution=_number("resolution", float, "Resolution"),
        crs=(ss.get("crs") or "").strip() or None, tile_size=_number("tile_size", int, "Tile size"),
        exclude=list(ss.get("exclude") or []), runtime=cfg.runtime, cluster=cfg.scheduler,
        **timeline.monitoring_options(card),
    )


def _number(key: str, kind: type, label: str) -> Any:
    text = str(ss.get(key) or "").strip()
    if not text:
        return None
    try:
        return kind(text)
    except ValueError:
        raise gw.PlanError(f"{label} {text!r} is not a {'whole ' if kind is int else ''}number; "
                           "correct it in More options, or leave it empty for the default") from None


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def _cloud() -> float | None:
    v = ss.get("cloud", 100)
    return None if v is None or v >= 100 else float(v)


def run_panel(cfg: Settings, card: Any, prep: Any, running: bool) -> None:
    """Section 3: the Run button, disabled while a run goes on or the Dask scheduler is unreachable."""
    st.subheader("3 · Run")
    timeline.monitoring_form(card)
    label = f"Run {card.name}" if card is not None else "Run"
    no_cluster = bool(cfg.scheduler) and cfg.runtime == "dask" and "error" in scheduler_info(cfg.scheduler)
    st.button(label, key="run", type="primary", disabled=prep is None or running or no_cluster, on_click=start_run,
              args=(cfg, prep), width="stretch")
    if no_cluster:
        st.caption("The Dask scheduler cannot be reached (see Compute in the sidebar).")
    if ss.run_error:
        st.error(ss.run_error)


def start_run(cfg: Settings, prep: Any) -> None:
    """Start the run the form describes at the click, in a new folder under the runs folder, as a
    background job. The plan is made again from the form's present state: ``prep`` is the one drawn
    with the button, which a change made just before the click (a box unticked) may not have reached."""
    ss.run_error = None
    try:
        region = ss.region
        card = next((c for c in model_cards() if c.name == ss.get("model")), prep.card)
        if region is not None:
            prep = form_plan(cfg, card, region)
        cfg.runs.mkdir(parents=True, exist_ok=True)
        out = jobs.unique_folder(cfg.runs, jobs.run_folder_name(prep.card.name, region))
        workers = int(ss.get("workers")) if cfg.runtime == "dask" and not cfg.scheduler and ss.get("workers") else None
        request = prep.request.replace(out=str(out), execution=gw.Execution(runtime=cfg.runtime, cluster=cfg.scheduler,
                                                                            workers=workers))
        spec = jobs.JobSpec(request, resolution=float(prep.plan.resolution), truecolour=cfg.truecolour)
        job = job_registry().start(spec, jobs.TileGrid.from_plan(prep.plan), service=cfg.service,
                                   user=identity.current_user())
    except OSError as exc:
        ss.run_error = f"cannot start the run: the runs folder {cfg.runs} is not writable ({exc.strerror or exc})"
        return
    except GeoloomError as exc:  # e.g. the job service cannot be reached, or the form no longer plans
        ss.run_error = str(exc)
        return
    except Exception as exc:
        ss.run_error = unexpected(exc, "starting the run")
        return
    follow(job)


def follow(job: Any) -> None:
    """Make ``job`` the page's running job (its progress and tiles replace the opened run)."""
    ss.job_id = job.id
    ss.job_reported = None
    ss.view_folder = None
    ss.pop("det_table", None)


def start_update(cfg: Settings, series: gw.Run) -> None:
    """Extend an opened per-date run with the acquisition dates it does not hold yet, as a background job."""
    ss.run_error = None
    try:
        request = series.request
        request = request.replace(
            imagery=gw.Imagery.from_dict(request.imagery.to_dict() | {"end": None}),
            execution=gw.Execution(runtime=cfg.runtime, cluster=cfg.scheduler))
        spec = jobs.JobSpec(request, resolution=float(series.plan.resolution), truecolour=cfg.truecolour, resume=True)
        job = job_registry().start(spec, jobs.TileGrid.from_plan(series.plan), service=cfg.service,
                                   user=identity.current_user())
    except GeoloomError as exc:
        ss.run_error = str(exc)
        return
    follow(job)


def progress_text(snap: jobs.JobSnapshot) -> str:
    """The progress bar's text: tiles finished and failed, time left, and the phase."""
    parts = [f"{snap.done + snap.failed} of {snap.total} tiles"]
    if snap.failed:
        parts.append(f"{snap.failed} failed")
    if snap.state == "running" and snap.eta_s is not None:
        parts.append(f"about {fmt_seconds(snap.eta_s)} left")
    parts.append(snap.phase)
    return " · ".join(parts)


def slots_for(snap: jobs.JobSnapshot) -> int:
    """How many tiles can run at once, to show that many as running on the map."""
    ex = snap.spec.request.execution
    if ex.runtime in ("in-process", "local", "inprocess"):
        return 1
    if ex.cluster:
        info = scheduler_info(ex.cluster)
        return max(1, int(info.get("threads", 1)))
    return max(1, ex.workers or os.cpu_count() or 1)


@st.fragment(run_every=POLL_S)
def progress_box() -> None:
    """Progress bar, ETA and cancel of the running job, refreshed every second; the whole page
    reruns (and the tile map updates) only when a tile finishes or the job ends."""
    job = job_registry().get(ss.job_id)
    if job is None:
        return
    snap = job.snapshot()
    if ss.get("job_sig") != job_sig(snap):  # the page last drew an older state
        st.rerun()
    st.progress(min(1.0, snap.fraction), text=progress_text(snap))
    c1, c2 = st.columns([1, 4])
    c1.button("Cancel run", key="cancel", on_click=job.cancel, disabled=snap.cancel_requested)
    c2.caption(f"Output folder: `{snap.spec.out}` · {fmt_seconds(snap.elapsed_s)} so far"
               + (" · cancelling after the tiles in flight…" if snap.cancel_requested else ""))


def job_sig(snap: jobs.JobSnapshot) -> tuple[Any, ...]:
    """What changes when a tile finishes or the job ends, so the page redraws only then."""
    return (snap.id, snap.state, snap.done, snap.failed, snap.cancel_requested)


def live_content(cfg: Settings, snap: jobs.JobSnapshot) -> map_view.MapContent:
    """The map while a run goes on: its region and its tiles coloured by state."""
    content = base_content(cfg)
    content.region = snap.spec.request.region
    content.grid = snap.grid
    content.tile_states = snap.states_with_running(slots_for(snap))
    content.tile_errors = snap.tile_errors
    content.legends = (tiles_legend(),)
    return content


def tiles_legend() -> rendering.Legend:
    """The legend of the tile states' colours."""
    return rendering.Legend("Tiles", "classes", entries=tuple(
        (map_view.TILE_COLOURS[s], map_view.TILE_LABELS[s]) for s in ("pending", "running", "done", "failed")))


def report_job(cfg: Settings) -> None:
    """Say once how the session's last job ended, and open its result."""
    job = job_registry().get(ss.job_id)
    if job is None:
        return
    snap = job.snapshot()
    if snap.running:
        return
    if ss.job_reported != snap.id:
        ss.job_reported = snap.id
        if snap.state in ("done", "cancelled") and (snap.spec.out / "run.json").exists():
            ss.view_folder = str(snap.spec.out)
            ss.pop("det_table", None)
            ss.pop("view_date", None)  # a per-date run opens on its most recent date
    if snap.state == "failed":
        st.error(f"The run failed: {snap.error}")
        failed_tiles_table([{"row": r, "col": c, "key": k, "reason": snap.tile_errors[k]}
                            for k, r, c in snap.grid.tiles if k in snap.tile_errors])
    elif snap.state == "cancelled":
        st.info(f"Run cancelled after {snap.done + snap.failed} of {snap.total} tiles; the finished tiles are shown.")
    elif snap.state == "done":
        msg = f"Run finished in {fmt_seconds(snap.elapsed_s)}: {snap.done} of {snap.total} tiles."
        if snap.failed:
            st.warning(msg + f" {snap.failed} tile(s) failed; see below.")
        else:
            st.success(msg)
    for note in snap.notes:
        st.caption(note)


# -- map ------------------------------------------------------------------------------------


def base_content(cfg: Settings) -> map_view.MapContent:
    """What every map shows: the assets, the basemap, the imagery preview when ready and the catalog's extent."""
    content = map_view.MapContent(assets=map_assets(), basemap=cfg.basemap)
    preview = imagery_preview(active_catalog(cfg), str(cfg.runs)) if cfg.preview else None
    if preview is not None and preview.state == "ready":
        try:
            content.preview = layer_image(str(preview.folder), imagery.LAYER, stamp(preview.folder / "run.json"))
        except Exception:
            log.exception("imagery preview could not be drawn")
    content.extent_lonlat = catalog_extent(active_catalog(cfg), catalog_stamp(active_catalog(cfg)))
    return content


def show_map(content: map_view.MapContent, *, key: str, interactive: bool) -> dict[str, Any] | None:
    """Draw the map; with ``interactive``, return what was drawn on it."""
    args = map_view.build_map(content)
    return streamlit_folium.st_folium(
        args.fig, key=key, height=map_view.MAP_HEIGHT, use_container_width=True,
        returned_objects=["last_active_drawing", "all_drawings"] if interactive else [],
        feature_group_to_add=args.feature_groups or None, layer_control=args.layer_control,
        center=args.center, zoom=args.zoom,
    )


@st.fragment(run_every=3.0)
def preview_watch(cfg: Settings) -> None:
    """Rerun the page once the imagery preview is ready (it is made in the background)."""
    preview = imagery_preview(active_catalog(cfg), str(cfg.runs))
    if preview is not None and preview.state != "running":
        st.rerun()


def main_map(cfg: Settings, prep: Any, opened: Any, live: jobs.JobSnapshot | None) -> None:
    """The one map of the page: planned tiles, the running job's tiles, or an opened run's results.

    It keeps its place in the page and its base layers in every state, so streamlit-folium
    updates it in place instead of reloading it."""
    if live is not None:
        content = live_content(cfg, live)
    else:
        content = base_content(cfg)
        content.region = ss.region
        if opened is not None:
            fill_results(content, opened)
        elif prep is not None:
            content.grid = jobs.TileGrid.from_plan(prep.plan)
            content.scenes = [(sc.id, sc.footprint) for sc in prep.scenes]
    if not assets_ok(content.assets):
        return
    value = show_map(content, key="map", interactive=live is None)
    if live is None and take_drawing(value):
        st.rerun()


def assets_ok(a: assets.MapAssets) -> bool:
    """True when the map's JavaScript is installed; otherwise say how to fetch it."""
    if a.mode == "missing":
        why = fetch_missing_assets() or "not installed"
        st.error(f"The map's JavaScript files are missing ({why}); run `python -m geoloom.ui.fetch_assets --user` "
                 "where the npm registry can be reached, then reload the page.")
        fetch_missing_assets.clear()  # a reload tries again
        return False
    return True


# -- the page -------------------------------------------------------------------------------


def main() -> None:
    """The whole page, drawn again on every rerun."""
    cfg = Settings.from_env()
    if not identity.gate():  # GEOLOOM_LOGIN=required with an OIDC login configured
        return
    init_state(cfg)
    take_upload()
    job = job_registry().get(ss.job_id)
    live = job.snapshot() if job is not None else None
    running = live is not None and live.running

    st.title("geoloom")
    st.caption("Draw or pick a region, pick a model, run it, and explore the result on the map.")
    card = sidebar(cfg, running)

    left, right = st.columns([3, 2], gap="medium")
    with right:
        region_panel(running)
        prep = plan_panel(cfg, card)
        run_panel(cfg, card, prep, running)
    opened = None
    with left:
        with st.container():
            if running:
                ss.job_sig = job_sig(live)
                progress_box()
            else:
                report_job(cfg)
                opened = open_view()
        if opened is not None:
            with right:
                layer_panel(opened)
        main_map(cfg, prep, opened, live if running else None)
        preview = imagery_preview(active_catalog(cfg), str(cfg.runs)) if cfg.preview else None
        if preview is not None and preview.state == "running" and not running:
            st.caption("Preparing the imagery preview for the map…")
            preview_watch(cfg)
    if opened is not None:
        results_section(opened, on_update=lambda series: start_update(cfg, series), busy=running)


__all__ = ["main", "Settings"]
