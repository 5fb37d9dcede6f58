"""Talking to a job service over HTTP (standard library only): submit runs, follow and cancel jobs.

The service's address comes from ``service=`` (``--service``), else ``$GEOLOOM_SERVICE``, else
``http://127.0.0.1:8765``.
"""

from __future__ import annotations

import getpass
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from geoloom.platform import errors
from geoloom.platform.errors import GeoloomError, RunError
from geoloom.platform.region import DEFAULT_MAX_AREA_KM2
from geoloom.workflows.jobs_db import JobRecord
from geoloom.workflows.request import DEFAULT_MODEL, RunRequest, build_request

#: The environment variable that names the job service.
SERVICE_ENV = "GEOLOOM_SERVICE"
DEFAULT_SERVICE = "http://127.0.0.1:8765"
#: Seconds between polls while waiting for a job.
POLL_S = 0.5


def service_url(service: str | None = None) -> str:
    """The job service's base URL: ``service``, else ``$GEOLOOM_SERVICE``, else the loopback default."""
    url = (service or os.environ.get(SERVICE_ENV, "").strip() or DEFAULT_SERVICE).rstrip("/")
    return url if "://" in url else f"http://{url}"


def current_user() -> str:
    """The login name that jobs are recorded under unless a user is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class ServiceClient:
    """The HTTP API of one job service, as Python calls returning :class:`JobRecord` values."""

    def __init__(self, service: str | None = None, *, timeout_s: float = 30.0) -> None:
        self.url = service_url(service)
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _remote_error(exc) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RunError(f"cannot reach the geoloom job service at {self.url} ({reason}); start it with "
                           f"'geoloom serve', or give --service URL (or {SERVICE_ENV})") from None

    def health(self) -> dict[str, Any]:
        """The service's cluster, when it answers."""
        return self._call("GET", "/health")

    def submit(self, request: RunRequest, *, user: str | None = None, overwrite: bool = False,
               resume: bool = False) -> JobRecord:
        """Queue a run request; the new job."""
        body = {"request": portable_request(request).to_dict(), "user": user or current_user(),
                "overwrite": overwrite, "resume": resume}
        return JobRecord.from_dict(self._call("POST", "/jobs", body))

    def jobs(self, *, user: str | None = None, state: str | None = None) -> list[JobRecord]:
        """Every job of the service, oldest first (optionally of one user or in one state)."""
        query = urllib.parse.urlencode({k: v for k, v in (("user", user), ("state", state)) if v})
        return [JobRecord.from_dict(d) for d in self._call("GET", "/jobs" + (f"?{query}" if query else ""))]

    def job(self, job_id: str) -> JobRecord:
        """One job, now."""
        return JobRecord.from_dict(self._call("GET", f"/jobs/{urllib.parse.quote(job_id)}"))

    def cancel(self, job_id: str) -> JobRecord:
        """Cancel a job (a running one stops after its tiles in flight; the tiles done are kept)."""
        return JobRecord.from_dict(self._call("POST", f"/jobs/{urllib.parse.quote(job_id)}/cancel"))

    def wait(self, job_id: str, *, timeout_s: float | None = None, poll_s: float = POLL_S) -> JobRecord:
        """Poll a job until it is done, failed or cancelled; a RunError after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.job(job_id)
            if job.final:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise RunError(f"job {job_id} is still {job.state} after {timeout_s:g} s; wait again or cancel it")
            time.sleep(poll_s)


def _remote_error(exc: urllib.error.HTTPError) -> GeoloomError:
    """The service's error as the same GeoloomError class (RunError where the class is not one)."""
    try:
        data = json.loads(exc.read() or b"{}")
    except ValueError:
        data = {}
    message = data.get("error") or f"the job service answered HTTP {exc.code}"
    cls = getattr(errors, str(data.get("kind")), None)
    if isinstance(cls, type) and issubclass(cls, GeoloomError):
        return cls(message)
    return RunError(message)


def portable_request(request: RunRequest) -> RunRequest:
    """The request with absolute local paths (out folder, catalog, model folder): the service runs elsewhere."""
    imagery = request.imagery
    catalog = imagery.catalog
    if "://" not in catalog:
        catalog = str(Path(catalog).expanduser().resolve())
    model = request.model
    if ("/" in model.name or model.name.startswith(".")) and Path(model.name).expanduser().exists():
        model = replace(model, name=str(Path(model.name).expanduser().resolve()))
    return request.replace(out=str(Path(request.out).expanduser().resolve()), model=model,
                           imagery=replace(imagery, catalog=catalog))


@dataclass(frozen=True)
class JobProgress:
    """A job's state and tile counts at one moment."""

    state: str
    total: int
    done: int
    failed: int

    @property
    def fraction(self) -> float:
        """Share of the tiles with an outcome (0 before the plan is known)."""
        return (self.done + self.failed) / self.total if self.total else 0.0


class Job:
    """A handle on a submitted job: ``.id``, ``.state``, ``.progress()``, ``.cancel()``, ``.result()``."""

    def __init__(self, job_id: str, client: ServiceClient) -> None:
        self.id = job_id
        self.client = client

    @property
    def record(self) -> JobRecord:
        """The job's row, read now."""
        return self.client.job(self.id)

    @property
    def state(self) -> str:
        """queued, running, done, failed or cancelled (read now)."""
        return self.record.state

    def progress(self) -> JobProgress:
        """State and tile counts now."""
        r = self.record
        return JobProgress(r.state, r.tiles_total, r.tiles_done, r.tiles_failed)

    def cancel(self) -> str:
        """Ask the service to cancel the job; the state after asking."""
        return self.client.cancel(self.id).state

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the job and return its :class:`~geoloom.workflows.api.Run`; a RunError if it failed or was cancelled."""
        from geoloom.workflows.api import Run

        job = self.client.wait(self.id, timeout_s=timeout)
        if job.state == "failed":
            raise RunError(f"job {job.id} failed: {job.error}")
        if job.state == "cancelled":
            raise RunError(f"job {job.id} was cancelled ({job.tiles_done} of {job.tiles_total} tiles done, kept in "
                           f"{job.out}); finish it with: geoloom submit --resume {job.out}")
        return Run(Path(job.out))

    def __repr__(self) -> str:
        return f"Job({self.id!r}, service={self.client.url!r})"


def submit(
    region: Any,
    *,
    model: str = DEFAULT_MODEL,
    out: str | Path,
    catalog: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
    max_cloud: float | None = None,
    threshold: float | None = None,
    tile_size: int | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    retries: int = 2,
    overwrite: bool = False,
    max_area_km2: float | None = DEFAULT_MAX_AREA_KM2,
    collection: str | None = None,
    query: Any = None,
    sign: str | None = None,
    service: str | None = None,
    user: str | None = None,
    per_date: bool | None = None,
    alert_density: float | None = None,
    alert_object_m2: float | None = None,
    on_alert: Any = (),
    webhooks: Any = (),
) -> Job:
    """Submit a run to a job service (the keywords of :func:`detect`) and return a :class:`Job` handle at once.

    ``service``: its URL (default ``$GEOLOOM_SERVICE``, else http://127.0.0.1:8765); ``user``: recorded
    with the job (default the login name).
    """
    req = build_request(region, model=model, out=out, threshold=threshold, catalog=catalog, collection=collection,
                        start=start, end=end, max_cloud=max_cloud, query=query, sign=sign, resolution=resolution,
                        crs=crs, tile_size=tile_size, retries=retries, max_area_km2=max_area_km2, per_date=per_date,
                        alert_density=alert_density, alert_object_m2=alert_object_m2, on_alert=on_alert,
                        webhooks=webhooks)
    client = ServiceClient(service)
    return Job(client.submit(req, user=user, overwrite=overwrite).id, client)
