"""Background runs: a registry of jobs, each a worker thread calling ``detect``.

The registry lives in ``st.cache_resource`` so runs survive reruns and page reloads. Worker
threads never call Streamlit: they update their :class:`Job` under a lock, and the page polls
:meth:`Job.snapshot` from a fragment.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odc.geo.geobox import GeoBox

from geoloom.workflows import GeoloomError, Imagery, Plan, Progress, Region, Run, RunRequest, ServiceClient, run_request

from geoloom.ui import imagery

log = logging.getLogger("geoloom.ui")

RUNNING_STATES = ("starting", "running", "finishing")


@dataclass(frozen=True, slots=True)
class TileGrid:
    """What the map needs of a plan to draw its tiles: the output grid, the tile size and the tiles."""

    geobox: GeoBox
    tile_size: int
    tiles: tuple[tuple[str, int, int], ...]  # (key, row, col), in submission order

    @classmethod
    def from_plan(cls, plan: Plan) -> TileGrid:
        """The grid, tile size and tiles of a dry-run plan."""
        return cls(plan.geobox, int(plan.tile_size), tuple((t.key, int(t.row), int(t.col)) for t in plan.tiles))


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A background run: the request every front door builds, and whether to add a true-colour layer."""

    request: RunRequest
    resolution: float = 10.0
    truecolour: bool = True
    resume: bool = False  # finish or extend the run already in the folder (a per-date run's new dates)

    @property
    def out(self) -> Path:
        """The run's output folder."""
        return Path(self.request.out)


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """A consistent copy of a job's state for the page."""

    id: str
    spec: JobSpec
    grid: TileGrid
    state: str  # starting | running | finishing | done | cancelled | failed
    phase: str
    total: int
    done: int
    failed: int
    eta_s: float | None
    elapsed_s: float
    tile_states: dict[str, str]
    tile_errors: dict[str, str]
    error: str | None
    notes: tuple[str, ...]
    cancel_requested: bool

    @property
    def running(self) -> bool:
        """True while the job has not ended."""
        return self.state in RUNNING_STATES

    @property
    def fraction(self) -> float:
        """Share of the tiles with an outcome (done or failed), 0.0 for a run without tiles."""
        return (self.done + self.failed) / self.total if self.total else 0.0

    def states_with_running(self, slots: int) -> dict[str, str]:
        """Tile states with the next ``slots`` unfinished tiles (in submission order) shown as running."""
        states = dict(self.tile_states)
        if self.state == "running" and not self.cancel_requested:
            for key, _, _ in self.grid.tiles:
                if slots <= 0:
                    break
                if key not in states:
                    states[key] = "running"
                    slots -= 1
        return states


class Job:
    """One background run."""

    def __init__(self, spec: JobSpec, grid: TileGrid) -> None:
        self.id = uuid.uuid4().hex[:10]
        self.spec = spec
        self.grid = grid
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._state = "starting"
        self._phase = "starting the cluster"
        self._progress: Progress | None = None
        self._tiles: dict[str, str] = {}
        self._errors: dict[str, str] = {}
        self._error: str | None = None
        self._notes: list[str] = []
        self._t0 = time.monotonic()
        self._t_end: float | None = None
        self.thread = threading.Thread(target=self._work, name=f"geoloom-job-{self.id}", daemon=True)

    # -- called from the page ------------------------------------------------------------

    def cancel(self) -> None:
        """Ask the run to stop after the tiles in flight; tiles finished so far are kept."""
        self._cancel.set()

    def snapshot(self) -> JobSnapshot:
        """The job's state, progress and tile states, copied under the lock."""
        with self._lock:
            p = self._progress
            return JobSnapshot(
                id=self.id, spec=self.spec, grid=self.grid, state=self._state, phase=self._phase,
                total=p.total if p else len(self.grid.tiles), done=p.done if p else 0, failed=p.failed if p else 0,
                eta_s=p.eta_s if p else None, elapsed_s=(self._t_end or time.monotonic()) - self._t0,
                tile_states=dict(self._tiles), tile_errors=dict(self._errors), error=self._error,
                notes=tuple(self._notes), cancel_requested=self._cancel.is_set(),
            )

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the job's thread to end (at most ``timeout`` seconds); True when it has."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    # -- the worker thread ---------------------------------------------------------------

    def _on_progress(self, p: Progress) -> None:
        with self._lock:
            self._progress = p
            if self._state == "starting":
                self._state, self._phase = "running", "running the model on each tile"
            if p.last is not None:
                self._tiles[p.last.key] = p.last.state
                if p.last.error:
                    self._errors[p.last.key] = p.last.error

    def _set(self, **values: Any) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(self, f"_{k}", v)

    def _work(self) -> None:
        s = self.spec
        try:
            run_request(s.request, resume=s.resume, progress=self._on_progress, cancelled=self._cancel.is_set)
            if self._cancel.is_set():
                self._set(state="cancelled", phase="cancelled; the tiles finished so far are saved")
                return
            if s.truecolour:
                self._set(state="finishing", phase="rendering the imagery's true colour")
                try:
                    im = s.request.imagery
                    imagery.make_truecolours(s.request.region, s.out, imagery=im, resolution=s.resolution)
                except GeoloomError as exc:
                    with self._lock:
                        self._notes.append(f"no true-colour layer: {exc}")
            self._set(state="done", phase="finished")
        except GeoloomError as exc:
            self._set(state="failed", phase="failed", error=str(exc))
        except Exception as exc:  # a bug: keep the page alive, put the traceback in the server log only
            log.exception("run %s failed", self.id)
            first = str(exc).splitlines()[0] if str(exc) else ""
            self._set(state="failed", phase="failed",
                      error=f"the run stopped on an unexpected error ({type(exc).__name__}: {first}); "
                            "the server log has the details")
        finally:
            with self._lock:
                self._t_end = time.monotonic()


#: The job service's states as the page names them.
SERVICE_STATES = {"queued": "starting", "running": "running", "done": "done", "failed": "failed",
                  "cancelled": "cancelled"}


class ServiceJob:
    """A run done by the geoloom job service (``geoloom serve``), with the face of :class:`Job`: the page
    polls its state from the service and its tiles from the run folder's ledger."""

    def __init__(self, spec: JobSpec, grid: TileGrid, service: str, user: str | None = None) -> None:
        self.client = ServiceClient(service)
        self.spec, self.grid = spec, grid
        self.id = self.client.submit(spec.request, user=user, resume=spec.resume).id
        self._t0 = time.monotonic()
        self._cancel = False
        self._last: JobSnapshot | None = None
        self._finishing: threading.Thread | None = None
        self._notes: list[str] = []

    @classmethod
    def attach(cls, job_id: str, spec: JobSpec, grid: TileGrid, service: str) -> ServiceJob:
        """Follow a job the service already has (a reloaded page after the web server restarted)."""
        job = cls.__new__(cls)
        job.client = ServiceClient(service)
        job.spec, job.grid, job.id = spec, grid, job_id
        job._t0 = time.monotonic()
        job._cancel = False
        job._last = None
        job._finishing = None
        job._notes = []
        return job

    def _truecolour_state(self) -> str:
        """After the service's run: the imagery's true-colour layer, made here ("finishing" until it is)."""
        if not self.spec.truecolour:
            return "done"
        if self._finishing is None:
            def work() -> None:
                try:
                    imagery.make_truecolours(self.spec.request.region, self.spec.out,
                                             imagery=self.spec.request.imagery, resolution=self.spec.resolution)
                except GeoloomError as exc:
                    self._notes.append(f"no true-colour layer: {exc}")
                except Exception:
                    log.exception("true-colour layer of %s failed", self.id)
                    self._notes.append("no true-colour layer (see the server log)")

            self._finishing = threading.Thread(target=work, name=f"geoloom-truecolour-{self.id}", daemon=True)
            self._finishing.start()
        return "finishing" if self._finishing.is_alive() else "done"

    def cancel(self) -> None:
        """Ask the service to stop the job (the tiles done are kept)."""
        self._cancel = True
        self.client.cancel(self.id)

    def snapshot(self) -> JobSnapshot:
        """The job as the service and the ledger say now (the last known state if the service is away)."""
        try:
            rec = self.client.job(self.id)
        except GeoloomError as exc:
            if self._last is not None:
                return self._last
            rec_state, error, total, done, failed = "running", str(exc), len(self.grid.tiles), 0, 0
        else:
            rec_state, error = rec.state, rec.error
            total, done, failed = rec.tiles_total or len(self.grid.tiles), rec.tiles_done, rec.tiles_failed
        state = SERVICE_STATES.get(rec_state, "running")
        if state == "done":
            state = self._truecolour_state()
        states, errors = ledger_states(Path(self.spec.request.out))
        phase = {"starting": "waiting for the job service", "running": "running the model on each tile",
                 "finishing": "rendering the imagery's true colour", "done": "finished", "failed": "failed",
                 "cancelled": "cancelled; the tiles finished so far are saved"}[state]
        snap = JobSnapshot(
            id=self.id, spec=self.spec, grid=self.grid, state=state, phase=phase, total=total, done=done,
            failed=failed, eta_s=None, elapsed_s=time.monotonic() - self._t0, tile_states=states, tile_errors=errors,
            error=error if state == "failed" else None, notes=tuple(self._notes), cancel_requested=self._cancel,
        )
        self._last = snap
        return snap

    def wait(self, timeout: float | None = None) -> bool:
        """Poll until the job has ended (or ``timeout`` seconds); True if it has."""
        end = None if timeout is None else time.monotonic() + timeout
        while self.snapshot().state not in ("done", "failed", "cancelled"):
            if end is not None and time.monotonic() > end:
                return False
            time.sleep(0.5)
        return True


def ledger_states(folder: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Tile states and errors from a run folder's ledger (empty before the first tile); for a per-date
    run, the ledger of the date computed last."""
    dated = [p.parent for p in (folder / "dates").glob("*/ledger.jsonl")] if (folder / "dates").is_dir() else []
    if dated:
        folder = max(dated, key=lambda p: (p / "ledger.jsonl").stat().st_mtime)
    try:
        records = Run(folder).ledger
    except (OSError, ValueError):
        return {}, {}
    if not len(records):
        return {}, {}
    states = dict(zip(records["key"], records["state"], strict=True))
    errors = {k: e for k, e in zip(records["key"], records["error"], strict=True) if isinstance(e, str) and e}
    return states, errors


class JobRegistry:
    """All jobs of this server process, by id; at most one running job per output folder."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job | ServiceJob] = {}
        self._lock = threading.Lock()

    def start(self, spec: JobSpec, grid: TileGrid, *, service: str | None = None,
              user: str | None = None) -> Job | ServiceJob:
        """Start a job for ``spec``: on the job service when one is given, else in a thread of this server."""
        job: Job | ServiceJob
        if service:
            job = ServiceJob(spec, grid, service, user)
        else:
            job = Job(spec, grid)
            job.thread.start()
        with self._lock:
            self._jobs[job.id] = job
        return job

    def add(self, job: Job | ServiceJob) -> None:
        """Keep a job started elsewhere (a service job this page follows)."""
        with self._lock:
            self._jobs[job.id] = job

    def get(self, job_id: str | None) -> Job | ServiceJob | None:
        """The job with this id, or None (also for a None id)."""
        with self._lock:
            return self._jobs.get(job_id) if job_id else None

    def running(self) -> list[Job | ServiceJob]:
        """The jobs that have not ended yet."""
        with self._lock:
            return [j for j in self._jobs.values() if j.snapshot().running]


@dataclass
class Preview:
    """The catalog's coarse true-colour preview, made once in the background."""

    folder: Path
    state: str = "pending"  # pending | running | ready | unavailable
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    def start(self, region: Region, catalog: str, resolution: float) -> None:
        """Render the preview in a background thread, unless the folder already holds one."""
        if (self.folder / "run.json").exists():
            self.state = "ready"
            return
        self.state = "running"

        def work() -> None:
            try:
                imagery.make_truecolour(region, self.folder, imagery=Imagery(catalog=catalog), resolution=resolution)
                self.state = "ready"
            except GeoloomError as exc:
                self.state, self.error = "unavailable", str(exc)
            except Exception as exc:
                log.exception("imagery preview failed")
                self.state, self.error = "unavailable", f"{type(exc).__name__}: {exc}"

        self.thread = threading.Thread(target=work, name="geoloom-preview", daemon=True)
        self.thread.start()


def run_folder_name(model: str, region: Region, now: dt.datetime | None = None) -> str:
    """``<date>-<time>-<model>-<region>``, safe as a folder name."""
    now = now or dt.datetime.now()
    slug = re.sub(r"[^a-z0-9]+", "-", region.name.lower()).strip("-")[:40] or "region"
    model_slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")[:30] or "model"
    return f"{now:%Y%m%d-%H%M%S}-{model_slug}-{slug}"


def unique_folder(parent: Path, name: str) -> Path:
    """``parent/name``, or ``name-2``, ``name-3``... if that exists already."""
    path = parent / name
    n = 2
    while path.exists():
        path = parent / f"{name}-{n}"
        n += 1
    return path


__all__ = ["Job", "JobRegistry", "JobSnapshot", "JobSpec", "Preview", "ServiceJob", "TileGrid", "run_folder_name",
           "unique_folder"]
