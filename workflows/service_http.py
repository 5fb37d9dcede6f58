"""The job service's HTTP API (Starlette, served by uvicorn on loopback by default).

``POST /jobs`` (body ``{"request": RunRequest.to_dict(), "user": ..., "overwrite": false, "resume": false}``),
``GET /jobs`` (``?user=&state=``), ``GET /jobs/{id}``, ``POST /jobs/{id}/cancel``, ``GET /health``.
A job is :meth:`JobRecord.to_dict`; an error is ``{"error": one line, "kind": the GeoloomError class}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from geoloom.platform.errors import GeoloomError, RunError
from geoloom.workflows.jobs_db import JOB_STATES
from geoloom.workflows.service import JobService

log = logging.getLogger(__name__)

#: The port ``geoloom serve`` listens on and clients call by default.
DEFAULT_PORT = 8765
DEFAULT_HOST = "127.0.0.1"


def _error(exc: BaseException, status: int) -> JSONResponse:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return JSONResponse({"error": message, "kind": type(exc).__name__}, status_code=status)


async def _call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a service call off the event loop (the database may wait on a lock)."""
    return await run_in_threadpool(fn, *args, **kwargs)


def create_app(service: JobService, *, close_on_shutdown: bool = False) -> Starlette:
    """The Starlette app over a started :class:`JobService` (closed with the server when ``close_on_shutdown``)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if close_on_shutdown:  # here, not after the server: uvicorn re-raises SIGTERM once it has shut down
            await run_in_threadpool(service.close)

    async def health(request: Request) -> JSONResponse:
        info = await _call(service.cluster_info)
        return JSONResponse({"ok": True, "cluster": info.describe(), "workers": info.workers})

    async def submit(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(ValueError(f"the body is not JSON ({exc})"), 400)
        if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
            return _error(ValueError('send {"request": RunRequest.to_dict(), "user": NAME}'), 400)
        job = await _call(service.submit, body["request"], user=str(body.get("user") or ""),
                          overwrite=bool(body.get("overwrite")), resume=bool(body.get("resume")))
        return JSONResponse(job.to_dict(), status_code=201)

    async def list_jobs(request: Request) -> JSONResponse:
        state = request.query_params.get("state")
        if state and state not in JOB_STATES:
            return _error(ValueError(f"unknown state {state!r}; use one of {', '.join(JOB_STATES)}"), 400)
        jobs = await _call(service.list, user=request.query_params.get("user") or None,
                           states=(state,) if state else None)
        return JSONResponse([j.to_dict() for j in jobs])

    async def get_job(request: Request) -> JSONResponse:
        job = await _call(service.store.get, request.path_params["job_id"])
        if job is None:
            return _error(LookupError(f"no job {request.path_params['job_id']!r}; 'geoloom jobs' lists them"), 404)
        return JSONResponse(job.to_dict())

    async def cancel(request: Request) -> JSONResponse:
        job_id = request.path_params["job_id"]
        if await _call(service.store.get, job_id) is None:
            return _error(LookupError(f"no job {job_id!r}; 'geoloom jobs' lists them"), 404)
        job = await _call(service.cancel, job_id)
        return JSONResponse(job.to_dict())

    async def user_error(request: Request, exc: Exception) -> JSONResponse:
        return _error(exc, 400)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/jobs", submit, methods=["POST"]),
            Route("/jobs", list_jobs, methods=["GET"]),
            Route("/jobs/{job_id}", get_job, methods=["GET"]),
            Route("/jobs/{job_id}/cancel", cancel, methods=["POST"]),
        ],
        exception_handlers={GeoloomError: user_error},
        lifespan=lifespan,
    )


def _check_port(host: str, port: int) -> None:
    """Refuse a port that is taken before the cluster starts (uvicorn would find out only after)."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise RunError(f"cannot listen on {host}:{port} ({exc.strerror}); is a service already there? "
                           "give another --port") from None


def serve(*, db: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, scheduler: str | None = None,
          workers: int | None = None, max_jobs: int | None = None,
          on_ready: Callable[[str, Any], None] | None = None) -> None:
    """Start the job service on its cluster and serve the HTTP API until interrupted (SIGINT, SIGTERM).

    ``on_ready(url, cluster_info)`` is called once the cluster is up, before requests are taken.
    """
    import uvicorn

    from geoloom.workflows.jobs_db import open_job_store
    from geoloom.workflows.service import DEFAULT_MAX_JOBS

    store = open_job_store(db, exclusive=True)
    try:
        _check_port(host, port)
    except BaseException:
        store.close()
        raise
    service = JobService(store, scheduler=scheduler, workers=workers, max_jobs=max_jobs or DEFAULT_MAX_JOBS)
    try:
        info = service.start()
        if on_ready:
            on_ready(f"http://{host}:{port}", info)
        server = uvicorn.Server(uvicorn.Config(create_app(service, close_on_shutdown=True), host=host, port=port,
                                               log_level="warning", lifespan="on", access_log=False))
        server.run()
    finally:
        service.close()
        store.close()
