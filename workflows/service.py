"""The job service: runs from a job database on one shared, warm Dask cluster, a thread per running job.

The cluster starts once (or is an existing scheduler) and every job runs on it, so workers and the
models they hold are reused from job to job. Concurrent jobs take turns tile by tile (the i-th tile of
every job has Dask priority ``-i``), so a new job starts within a tile or two and none starves.
Each job writes its run folder as ``geoloom run`` does (ledger, store, lock); a service killed mid-job
and started again on the same database resumes its unfinished jobs from their ledgers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoloom.platform.errors import GeoloomError, OutputError, RunError
from geoloom.runtime.executors import ClusterInfo, DaskExecutor, take_turns
from geoloom.runtime.progress import Progress
from geoloom.workflows.jobs_db import JobRecord, JobStore, now_utc
from geoloom.workflows.request import DEFAULT_MODEL, RunRequest

log = logging.getLogger(__name__)

#: Jobs that run at once unless the service is told otherwise (the rest wait, queued).
DEFAULT_MAX_JOBS = 4
#: Seconds between progress writes of one job to the database (its first tile and its end are always written).
PROGRESS_EVERY_S = 0.25
#: Seconds a stopping service waits for its running jobs to wind down.
STOP_GRACE_S = 60.0


@dataclass(slots=True)
class _Running:
    """A job this service is running now: its thread and its cancel flag."""

    thread: threading.Thread
    cancel: threading.Event


class JobService:
    """Runs the jobs of a :class:`JobStore` on one shared Dask cluster (embedded, or ``scheduler``)."""

    def __init__(self, store: JobStore, *, scheduler: str | None = None, workers: int | None = None,
                 max_jobs: int = DEFAULT_MAX_JOBS) -> None:
        self.store = store
        self.scheduler, self.workers, self.max_jobs = scheduler, workers, max(1, max_jobs)
        self._executor: DaskExecutor | None = None
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._dispatcher: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> ClusterInfo:
        """Start (or connect to) the cluster, put jobs a killed service left running back in the queue,
        and start taking jobs; returns what the cluster offers."""
        self._executor = DaskExecutor(self.scheduler, workers=self.workers)
        # the first tile of the first job need not wait for imports, nor for the default model's first run
        for address, why in self._executor.client.run(warm_worker).items():
            if why:
                log.warning("worker %s could not warm %s: %s", address, DEFAULT_MODEL, why)
        for job in self.store.list(states=("running",)):
            self.store.update(job.id, state="queued")  # keeps ``started``: the job resumes from its ledger
        self._dispatcher = threading.Thread(target=self._dispatch, name="geoloom-jobs", daemon=True)
        self._dispatcher.start()
        return self._executor.info()

    def close(self) -> None:
        """Stop taking jobs, let running ones wind down (they are resumed at the next start), end the cluster."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + STOP_GRACE_S
        for running in list(self._running.values()):
            running.thread.join(max(0.0, deadline - time.monotonic()))
        if self._dispatcher is not None:
            self._dispatcher.join(5)
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def cluster_info(self) -> ClusterInfo:
        """What the shared cluster offers now (workers, threads, GPUs)."""
        if self._executor is None:
            raise RunError("the job service is not started")
        return self._executor.info()

    # -- what the HTTP API calls -----------------------------------------------------------

    def submit(self, request: dict[str, Any], *, user: str, overwrite: bool = False, resume: bool = False) -> JobRecord:
        """Queue a run request (``RunRequest.to_dict``); refused when another unfinished job writes into its folder."""
        try:
            req = RunRequest.from_dict(request)
        except GeoloomError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise RunError(f"the job's request is not a run request ({type(exc).__name__}: {exc}); "
                           "send RunRequest.to_dict()") from None
        if not Path(req.out).expanduser().is_absolute():
            raise OutputError(f"the job's out folder {req.out!r} is relative; give an absolute folder (the service runs elsewhere)")
        out = str(Path(req.out).expanduser().resolve())
        if resume and not (Path(out) / "request.json").exists():
            raise OutputError(f"{out} holds no run to resume; submit it without --resume")
        with self._lock:
            for other in self.store.list(states=("queued", "running")):
                if other.out == out:
                    raise OutputError(f"job {other.id} already writes into {out}; wait for it, cancel it "
                                      f"(geoloom jobs cancel {other.id}) or pick a new --out")
            job = self.store.add(JobRecord(id="", user=user or "unknown", request=req.replace(out=out).to_dict(), out=out,
                                           overwrite=overwrite, resume=resume))
        self._wake.set()
        return job

    def get(self, job_id: str) -> JobRecord:
        """The job with this id; a RunError names the way to list them when there is none."""
        job = self.store.get(job_id)
        if job is None:
            raise RunError(f"no job {job_id!r} in this service; 'geoloom jobs' lists them")
        return job

    def list(self, *, user: str | None = None, states: tuple[str, ...] | None = None) -> list[JobRecord]:
        """Every job, oldest first (optionally of one user or in some states)."""
        return self.store.list(user=user, states=states)

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job: a queued one at once, a running one after its tiles in flight (the tiles done are kept)."""
        with self._lock:
            job = self.get(job_id)
            if job.final:
                return job
            running = self._running.get(job_id)
            if running is None:
                self.store.update(job_id, state="cancelled", finished=now_utc())
            else:
                running.cancel.set()
        return self.get(job_id)

    # -- running jobs --------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start queued jobs, oldest first, while fewer than ``max_jobs`` run."""
        while not self._stopping.is_set():
            self._wake.wait(1.0)
            self._wake.clear()
            with self._lock:
                for job_id in [k for k, r in self._running.items() if not r.thread.is_alive()]:
                    del self._running[job_id]
                if self._stopping.is_set():
                    return
                for job in self.store.list(states=("queued",)):
                    if len(self._running) >= self.max_jobs:
                        break
                    if job.id in self._running:
                        continue
                    cancel = threading.Event()
                    thread = threading.Thread(target=self._run, args=(job, cancel), name=f"geoloom-job-{job.id}",
                                              daemon=True)
                    self._running[job.id] = _Running(thread, cancel)
                    self.store.update(job.id, state="running", started=job.started or now_utc(), error=None)
                    thread.start()

    def _run(self, job: JobRecord, cancel: threading.Event) -> None:
        """Run one job into its folder and record how it ended."""
        try:
            state, fields = self._execute(job, cancel)
        except GeoloomError as exc:
            state, fields = "failed", {"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__}
        except Exception as exc:  # a bug: logged with its traceback, recorded in one line
            log.exception("job %s failed", job.id)
            first = str(exc).splitlines()[0] if str(exc) else ""
            state, fields = "failed", {"error": f"unexpected {type(exc).__name__}: {first}"}
        if state == "queued":  # the service is stopping: the next start resumes the job
            self.store.update(job.id, state="queued", **fields)
        else:
            self.store.update(job.id, state=state, finished=now_utc(), **fields)
        self._wake.set()

    def _execute(self, job: JobRecord, cancel: threading.Event) -> tuple[str, dict[str, Any]]:
        """Plan and execute the job on the shared cluster; its final state and the columns to record."""
        from geoloom.workflows.api import Run
        from geoloom.workflows.runs import execute, prepare, run_id_for

        assert self._executor is not None
        prepared = prepare(RunRequest.from_dict(job.request))
        resume = job.resume or (job.started is not None and _holds_run(Path(job.out), run_id_for(prepared)))
        self.store.update(job.id, tiles_total=len(prepared.plan.tiles))
        executor = DaskExecutor(client=self._executor.client, priority=take_turns)
        folder = execute(prepared, executor=executor, resume=resume, overwrite=job.overwrite and not resume,
                         progress=_ProgressWriter(self.store, job.id),
                         cancelled=lambda: cancel.is_set() or self._stopping.is_set())
        tiles = Run(folder).tiles
        counts = {"tiles_total": tiles.total, "tiles_done": tiles.done, "tiles_failed": tiles.failed}
        if cancel.is_set():
            return "cancelled", counts
        if self._stopping.is_set() and tiles.missing:
            return "queued", counts
        return "done", counts


class _ProgressWriter:
    """Writes a job's tile counts to the store as its tiles finish (throttled; first tile and end always)."""

    def __init__(self, store: JobStore, job_id: str) -> None:
        self.store, self.job_id = store, job_id
        self.last = 0.0
        self.computed = 0

    def __call__(self, progress: Progress) -> None:
        computed = progress.done + progress.failed - progress.skipped
        now = time.monotonic()
        if computed == 1 and self.computed == 0 or progress.finished >= progress.total or now - self.last >= PROGRESS_EVERY_S:
            self.store.update(self.job_id, tiles_total=progress.total, tiles_done=progress.done, tiles_failed=progress.failed)
            self.last = now
        self.computed = computed


def warm_worker(model: str | None = DEFAULT_MODEL) -> str | None:
    """Import what a tile task needs and load ``model`` warm (see ``warm_model``), in a worker (run once
    per worker when the service starts); returns why the model could not be warmed, or None. A model
    that fails here fails again, with its own message, in the job that asks for it."""
    import geoloom.runtime.tasks  # noqa: F401

    if model is None:
        return None
    from geoloom.runtime.model_cache import ModelSpec, warm_model

    try:
        warm_model(ModelSpec(model))
    except Exception as exc:  # noqa: BLE001 - warming is an optimisation; the job reports the error
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def _holds_run(out: Path, run_id: str) -> bool:
    """True when ``out`` holds (part of) the run ``run_id``: a recovered job resumes it."""
    try:
        return json.loads((out / "request.json").read_text()).get("run_id") == run_id
    except (OSError, ValueError):
        return False
