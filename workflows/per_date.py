"""Runs over time: one result per acquisition date, a time series, new dates only, alerts.

A per-date run folder holds one ordinary single-date run per acquisition day under ``dates/<day>/``
(its own ledger, store, COG and detections: exactly what ``geoloom run --start DAY --end DAY``
writes), and, over them, the time-stacked ``result.zarr``, every date's ``detections``, the
``timeseries`` table and chart, ``alerts.geojson`` and the manifest. ``update`` searches the catalog
again and computes only the days the folder does not hold yet.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import geopandas as gpd
import pandas as pd

from geoloom.platform.acquisitions import by_date, date_folder_name
from geoloom.platform.alerts import Alerts, append_history, evaluate, write_alerts
from geoloom.platform.catalog import Scene
from geoloom.platform.errors import NoImageryError, OutputError
from geoloom.platform.hooks import HookOutcome, deliver
from geoloom.platform.ledger import Ledger
from geoloom.platform.publish import build_manifest
from geoloom.platform.time_stack import stack_dates
from geoloom.platform.timeseries import date_row, timeseries_frame, write_timeseries
from geoloom.runtime.executors import ClusterInfo, Executor, make_executor
from geoloom.runtime.progress import Progress, ProgressCallback
from geoloom.workflows.request import RunRequest, request_from_folder

log = logging.getLogger(__name__)

__all__ = ["PER_DATE_FILES", "UpdateResult", "date_request", "execute_per_date", "update_run"]

#: Files and folders only a per-date run has (``overwrite`` removes them with the others of ``RUN_FILES``).
PER_DATE_FILES = ("dates", "timeseries.parquet", "timeseries.csv", "timeseries.png", "alerts.geojson", "alerts.jsonl")


@dataclass(slots=True)
class UpdateResult:
    """What one run or update of a per-date folder did: the days computed, the alerts, the hooks' outcomes."""

    folder: Path
    new_dates: list[str] = field(default_factory=list)
    alerts: Alerts | None = None
    hooks: list[HookOutcome] = field(default_factory=list)

    def summary(self) -> str:
        """One line for people."""
        fired = len(self.alerts.dates) if self.alerts is not None else 0
        days = ", ".join(self.new_dates) if self.new_dates else "none"
        return f"new dates: {days}; alerts: {fired}"


def date_request(request: RunRequest, day: str, folder: Path) -> RunRequest:
    """The single-date request of one day of a per-date run (its own sub-folder, that day only)."""
    imagery = dataclasses.replace(request.imagery, start=day, end=day)
    monitoring = dataclasses.replace(request.monitoring, per_date=False)
    return request.replace(out=str(folder / date_folder_name(day)), imagery=imagery, monitoring=monitoring)


def _date_prepared(prepared: Any, day: str, scenes: list[Scene], folder: Path) -> Any:
    from geoloom.workflows.runs import Prepared, plan_scenes

    request = date_request(prepared.request, day, folder)
    return Prepared(request, prepared.card, scenes, plan_scenes(request, prepared.card, scenes), len(scenes))


def _is_complete(folder: Path) -> bool:
    """True when a date's folder holds a published run with every tile done."""
    manifest = folder / "run.json"
    if not manifest.exists():
        return False
    tiles = json.loads(manifest.read_text())["properties"].get("geoloom:tiles", {})
    return tiles.get("failed", 1) == 0 and tiles.get("missing", 1) == 0


class _DateProgress:
    """Progress over all the days to compute: each day's tile events offset by the days before it."""

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total, self.callback = total, callback
        self.before = self.failed_before = self.skipped_before = 0
        self.last: Progress | None = None
        self.start = time.perf_counter()

    def __call__(self, p: Progress) -> None:
        self.last = p
        if self.callback is None:
            return
        done = self.before + p.done
        elapsed = time.perf_counter() - self.start
        computed = done + self.failed_before + p.failed - self.skipped_before - p.skipped
        left = self.total - done - self.failed_before - p.failed
        eta = elapsed / computed * left if computed > 0 else None
        self.callback(Progress(self.total, done, self.failed_before + p.failed, self.skipped_before + p.skipped,
                               elapsed, eta, p.last))

    def next_day(self, tiles: int) -> None:
        """Close a day: its tiles count as finished from now on."""
        p = self.last
        if p is None:
            self.before += tiles
        else:
            self.before += p.done
            self.failed_before += p.failed
            self.skipped_before += p.skipped
        self.last = None


def execute_per_date(
    prepared: Any,
    *,
    executor: Executor | None = None,
    client: Any = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    cancelled: Callable[[], bool] = lambda: False,
    on_cluster: Callable[[ClusterInfo], None] | None = None,
    update: bool = False,
    since: str | None = None,
    extra_hooks: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
) -> UpdateResult:
    """Run (or, with ``update``, extend) a per-date folder: every acquisition day of the prepared
    scenes that the folder does not hold complete yet, then the stack, series, alerts and manifest."""
    from geoloom.workflows.runs import _check_out_dir, _clear_for_run, _folder_lock, execute, run_id_for

    req = prepared.request
    out = Path(req.out).expanduser().resolve()
    run_id = run_id_for(prepared)
    _check_out_dir(out, run_id, resume=resume or update, overwrite=overwrite)
    days = by_date(prepared.scenes)
    if since:
        days = {d: s for d, s in days.items() if d >= since}
    with _folder_lock(out):
        _clear_for_run(out, resume=resume or update, overwrite=overwrite)
        started = dt.datetime.now(dt.timezone.utc)
        t0 = time.perf_counter()
        held = _held_dates(out)
        todo = {d: s for d, s in days.items() if not _is_complete(out / date_folder_name(d))}
        new_days = list(todo)  # a date is judged once, when it is first complete (a failed tile may delay it)
        if update and not todo and (out / "run.json").exists():
            log.info("%s holds every acquisition date found; nothing to do", out)
            return UpdateResult(out)
        _write_request(out, prepared, run_id, sorted(set(held) | set(days)))
        plans = {d: _date_prepared(prepared, d, s, out) for d, s in todo.items()}
        tracker = _DateProgress(sum(len(p.plan.tiles) for p in plans.values()), progress)
        own = executor is None and bool(plans)
        ex = req.execution
        if own:
            executor = make_executor(ex.runtime, scheduler=ex.cluster, workers=ex.workers, client=client)
        info = None
        try:
            if executor is not None:
                info = executor.info()
                if on_cluster:
                    on_cluster(info)
            for i, (day, sub) in enumerate(plans.items()):
                if cancelled():
                    break
                folder = out / date_folder_name(day)
                folder.parent.mkdir(parents=True, exist_ok=True)
                with warnings.catch_warnings():
                    if i:  # the placement's warnings ("prefers a GPU") were told for the first date
                        warnings.simplefilter("ignore", UserWarning)
                    execute(sub, executor=executor, resume=(folder / "request.json").exists(), progress=tracker,
                            cancelled=cancelled)
                tracker.next_day(len(sub.plan.tiles))
        finally:
            if own and executor is not None:
                executor.close()
        seconds = {"execute": round(time.perf_counter() - t0, 3)}
        result = publish_per_date(out, prepared, run_id=run_id, started=started, seconds=seconds, cluster=info,
                                  judged=[d for d in new_days if _is_complete(out / date_folder_name(d))],
                                  extra_hooks=extra_hooks)
    return result


def _held_dates(out: Path) -> list[str]:
    """The days whose folders hold a published run."""
    root = out / "dates"
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "run.json").exists())


def _write_request(out: Path, prepared: Any, run_id: str, days: list[str]) -> None:
    """``request.json`` of the per-date folder: the request, card, whole-period plan and the days."""
    data = {"run_id": run_id, "request": prepared.request.to_folder_dict(), "card": prepared.card.to_dict(),
            "plan": prepared.plan.to_dict(), "per_date": True, "dates": days}
    tmp = out / "request.json.part"
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, out / "request.json")


def _date_detections(folder: Path, day: str) -> gpd.GeoDataFrame:
    p = folder / "detections.parquet"
    gdf = gpd.read_parquet(p) if p.exists() else gpd.GeoDataFrame(geometry=[], crs="EPSG:4326")
    gdf.insert(0, "date", day)
    return gdf


def publish_per_date(out: Path, prepared: Any, *, run_id: str, started: dt.datetime, seconds: dict[str, float],
                     cluster: ClusterInfo | None, judged: list[str],
                     extra_hooks: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> UpdateResult:
    """Write the time stack, every date's detections, the series, the alerts of ``judged`` days and the manifest."""
    from geoloom.workflows.runs import code_version, pystac_cog

    t0 = time.perf_counter()
    req, card = prepared.request, prepared.card
    days = _held_dates(out)
    if not days:
        raise NoImageryError(f"no acquisition date of {out} could be computed; check the catalog and the dates")
    folders = {d: out / date_folder_name(d) for d in days}
    stack_dates({d: f / "result.zarr" for d, f in folders.items()}, out / "result.zarr")
    detections = {d: _date_detections(f, d) for d, f in folders.items()}
    frames = [g for g in detections.values() if len(g)]
    every = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs="EPSG:4326") if frames else \
        gpd.GeoDataFrame({"date": pd.Series(dtype=str)}, geometry=[], crs="EPSG:4326")
    _write_vectors(every, out)
    pixel_area = float(prepared.plan.resolution) ** 2
    rows = []
    for d, f in folders.items():
        plan = json.loads((f / "request.json").read_text())["plan"]
        scenes = [s["id"] if isinstance(s, dict) else str(s) for s in plan.get("scenes", [])]
        rows.append(date_row(d, Ledger(f / "ledger.jsonl").records().values(), detections[d],
                             pixel_area_m2=pixel_area, scenes=scenes))
    latest = folders[days[-1]] / "quicklook.png"
    if latest.exists():  # the run's quicklook is its most recent date's
        shutil.copyfile(latest, out / "quicklook.png.part")
        os.replace(out / "quicklook.png.part", out / "quicklook.png")
    series = timeseries_frame(rows)
    write_timeseries(series, out, title=f"{card.title}: {req.region.name}")

    result = UpdateResult(out, new_dates=list(judged))
    rules = req.monitoring.alerts
    if rules.active and judged:
        wanted = series[series["date"].dt.strftime("%Y-%m-%d").isin(judged)]
        alerts = evaluate(rules, wanted, every[every["date"].isin(judged)] if len(every) else every)
        result.alerts = alerts
        write_alerts(alerts, out / "alerts.geojson")
        if alerts.fired:
            append_history(out / "alerts.jsonl", alerts)
            for line in alerts.messages():
                log.warning("alert: %s", line)
            m = req.monitoring
            result.hooks = deliver(out / "alerts.geojson", commands=m.on_alert + extra_hooks[0],
                                   webhooks=m.webhooks + extra_hooks[1])
    _write_manifest(out, prepared, run_id=run_id, started=started, seconds=seconds | {"publish": round(time.perf_counter() - t0, 3)},
                    cluster=cluster, days=days, folders=folders, version=code_version(), cog=pystac_cog())
    return result


def _write_vectors(gdf: gpd.GeoDataFrame, out: Path) -> None:
    for name, write in (("detections.parquet", lambda p: gdf.to_parquet(p)),
                        ("detections.geojson", lambda p: gdf.to_file(p, driver="GeoJSON"))):
        tmp = out / f"{name}.part"
        write(tmp)
        os.replace(tmp, out / name)


def _write_manifest(out: Path, prepared: Any, *, run_id: str, started: dt.datetime, seconds: dict[str, float],
                    cluster: ClusterInfo | None, days: list[str], folders: dict[str, Path], version: str, cog: str) -> None:
    """``run.json``: the run's STAC Item over the whole period, with one COG asset per date."""
    req, card, plan = prepared.request, prepared.card, prepared.plan
    assets: dict[str, tuple[str, str, list[str]]] = {"zarr": ("./result.zarr", "application/vnd+zarr", ["data"])}
    for d in days:
        assets[f"result-{d}"] = (f"./{date_folder_name(d)}/result.tif", cog, ["data"])
    assets["detections"] = ("./detections.parquet", "application/vnd.apache.parquet", ["data"])
    assets["detections-geojson"] = ("./detections.geojson", "application/geo+json", ["data"])
    assets["timeseries"] = ("./timeseries.parquet", "application/vnd.apache.parquet", ["data"])
    assets["timeseries-csv"] = ("./timeseries.csv", "text/csv", ["data"])
    assets["timeseries-chart"] = ("./timeseries.png", "image/png", ["overview"])
    if (out / "quicklook.png").exists():
        assets["quicklook"] = ("./quicklook.png", "image/png", ["overview"])
    if (out / "alerts.geojson").exists():
        assets["alerts"] = ("./alerts.geojson", "application/geo+json", ["data"])
    counts = {"total": 0, "done": 0, "failed": 0, "missing": 0}
    for f in folders.values():
        tiles = json.loads((f / "run.json").read_text())["properties"].get("geoloom:tiles", {})
        for k in counts:
            counts[k] += int(tiles.get(k, 0))
    timings = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": seconds,
        "cluster": dataclasses.asdict(cluster) if cluster is not None else None,
    }
    item = build_manifest(run_id=run_id, plan=plan, model_card=card.to_dict(),
                          parameters=req.parameters() | {"per_date": True, "dates": days}, assets=assets,
                          tiles=counts, timings=timings, version=version)
    item.properties["start_datetime"] = f"{days[0]}T00:00:00Z"
    item.properties["end_datetime"] = f"{days[-1]}T23:59:59Z"
    item.properties["geoloom:dates"] = days
    tmp = out / "run.json.part"
    tmp.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2, default=str))
    os.replace(tmp, out / "run.json")


def update_run(folder: str | Path, *, since: str | None = None, client: Any = None, executor: Executor | None = None,
               progress: ProgressCallback | None = None, cancelled: Callable[[], bool] = lambda: False,
               on_alert: tuple[str, ...] = (), webhooks: tuple[str, ...] = (), runtime: str | None = None,
               workers: int | None = None, cluster: str | None = None, retries: int | None = None) -> UpdateResult:
    """Search the run's catalog again (from ``since``, else the run's start, to now) and compute only
    the acquisition days the folder does not hold yet; alerts are judged on those days only.
    Extra ``on_alert`` commands and ``webhooks`` are called too, this time only."""
    from geoloom.workflows.runs import prepare

    folder = Path(folder).expanduser().resolve()
    since = _day(since) if since is not None else None
    data = _request_data(folder)
    if not data.get("per_date"):
        raise OutputError(f"{folder} holds a composite run, not a per-date one; start it with --per-date to update it")
    request = request_from_folder(folder)
    imagery = dataclasses.replace(request.imagery, start=since or request.imagery.start, end=None)
    execution = dataclasses.replace(request.execution, **{k: v for k, v in
                                    {"runtime": runtime, "workers": workers, "cluster": cluster, "retries": retries}.items() if v is not None})
    request = request.replace(imagery=imagery, execution=execution,
                              monitoring=dataclasses.replace(request.monitoring, per_date=True))
    try:
        prepared = prepare(request)
    except NoImageryError as exc:
        log.info("nothing new for %s: %s", folder, exc)
        return UpdateResult(folder)
    return execute_per_date(prepared, update=True, executor=executor, client=client, progress=progress,
                            cancelled=cancelled, since=since, extra_hooks=(tuple(on_alert), tuple(webhooks)))


def _request_data(folder: Path) -> dict[str, Any]:
    f = folder / "request.json"
    if not f.exists():
        raise OutputError(f"{folder} holds no run to update (no request.json); start a run there with --per-date")
    return json.loads(f.read_text())


def _day(value: Any) -> str:
    from geoloom.platform.catalog import parse_date

    day = parse_date(value, what="since")
    return day.isoformat() if hasattr(day, "isoformat") else str(day)
