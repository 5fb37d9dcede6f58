"""The job commands of ``geoloom``: ``serve`` (the service), ``submit`` (a run as a job), ``jobs`` (list,
cancel, wait). Thin: each parses, calls the service or its client, prints."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from geoloom.workflows.options import (
    grid_options, imagery_options, max_area_option, model_options, monitoring_options, out_option, pick_region,
    region_options,
)

service_option = click.option(
    "--service", default=None, metavar="URL", envvar="GEOLOOM_SERVICE", show_envvar=True,
    help="The job service (default http://127.0.0.1:8765).")


def _final_exit(job: Any) -> None:
    """Exit as ``geoloom run`` would for how the job ended: 0 done, 3 some tiles failed or missing, 2 failed or cancelled."""
    from geoloom.platform.errors import RunError
    from geoloom.workflows.cli import EXIT_PARTIAL

    if job.state == "failed":
        raise RunError(f"job {job.id} failed: {job.error}")
    if job.state == "cancelled":
        raise RunError(f"job {job.id} was cancelled ({job.tiles_done} of {job.tiles_total} tiles done, kept in {job.out}); "
                       f"finish it with: geoloom submit --resume {job.out}")
    if job.tiles_failed or job.tiles_done < job.tiles_total:
        click.echo(f"job {job.id}: {job.tiles_failed} of {job.tiles_total} tiles failed; the rest is published in "
                   f"{job.out}. Fix the cause and run: geoloom submit --resume {job.out}", err=True)
        sys.exit(EXIT_PARTIAL)


@click.command()
@click.option("--db", default=None, metavar="PATH|URL", envvar="GEOLOOM_JOBS_DB", show_envvar=True,
              help="The job database: a SQLite file, or a PostgreSQL URL postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
                   "(needs geoloom[postgres]) shared by hosts (default: jobs.sqlite in the per-user data folder).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for all).")
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True)
@click.option("--scheduler", "--address", "cluster", default=None, metavar="ADDRESS",
              help="Run the jobs on an existing Dask scheduler tcp://HOST:PORT (default: an embedded cluster).")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Workers of the embedded cluster (default: cores).")
@click.option("--max-jobs", type=click.IntRange(1, 64), default=None, help="Jobs that run at once (default 4).")
def serve(db, host, port, cluster, workers, max_jobs) -> None:
    """Run the job service: one warm cluster for every job, a job database, an HTTP API (loopback by default)."""
    from geoloom.workflows.service_http import serve as serve_http

    def ready(url: str, info: Any) -> None:
        click.echo(f"geoloom job service on {url}; cluster: {info.describe()}", err=True)

    serve_http(db=db, host=host, port=port, scheduler=cluster, workers=workers, max_jobs=max_jobs, on_ready=ready)


@click.command()
@region_options
@imagery_options
@model_options
@grid_options
@monitoring_options
@click.option("--retries", type=click.IntRange(0, 20), default=2, show_default=True, help="Retries of a failing tile.")
@out_option
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Finish an interrupted or cancelled run in DIR.")
@click.option("--overwrite", is_flag=True, help="Replace the run already in --out.")
@max_area_option
@click.option("--user", default=None, help="Who the job is recorded for (default: the login name).")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the job and exit as 'geoloom jobs wait' does.")
@service_option
def submit(bbox, geojson, region_file, preset, place, resume_dir, overwrite, retries, out, max_area_km2, user, wait_,
           service, **options: Any) -> None:
    """Submit a run to the job service; prints the job id."""
    from geoloom.workflows.request import Execution, build_request, request_from_folder
    from geoloom.workflows.service_client import ServiceClient

    if resume_dir:
        req = request_from_folder(resume_dir).replace(execution=Execution(retries=retries))
    else:
        region = pick_region(bbox, geojson, preset, place, region_file=region_file, max_area_km2=max_area_km2)
        if out is None:
            raise click.UsageError("give --out DIR, a folder for the run's files")
        options["query"] = list(options["query"]) or None
        options["on_alert"], options["webhooks"] = list(options["on_alert"]), list(options["webhooks"])
        req = build_request(region, out=out, retries=retries, max_area_km2=None, **options)
    client = ServiceClient(service)
    job = client.submit(req, user=user, overwrite=overwrite, resume=bool(resume_dir))
    click.echo(job.id)
    if wait_:
        _final_exit(client.wait(job.id))


def _row(job: Any) -> dict[str, Any]:
    """What ``geoloom jobs`` shows of a job."""
    request = job.request
    region = (request.get("region", {}).get("properties") or {}).get("name", "region")
    return {"id": job.id, "user": job.user, "region": region, "model": request.get("model", {}).get("name"),
            "state": job.state, "progress": f"{job.tiles_done + job.tiles_failed}/{job.tiles_total}",
            "failed": job.tiles_failed, "started": job.started or "", "finished": job.finished or "",
            "out": job.out, "error": job.error}


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the jobs as JSON.")
@click.option("--user", default=None, help="Only this user's jobs.")
@click.option("--state", type=click.Choice(["queued", "running", "done", "failed", "cancelled"]), default=None,
              help="Only jobs in this state.")
@service_option
@click.pass_context
def jobs(ctx, as_json, user, state, service) -> None:
    """List the service's jobs (id, user, region, model, state, progress, started); cancel or wait for one."""
    ctx.ensure_object(dict)
    ctx.obj["service"] = service
    if ctx.invoked_subcommand is not None:
        return
    from geoloom.workflows.service_client import ServiceClient

    rows = [_row(j) for j in ServiceClient(service).jobs(user=user, state=state)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        click.echo(f"{r['id']}  {r['user']:10s} {r['region']:16s} {r['model'] or '':14s} {r['state']:9s} "
                   f"{r['progress']:>9s}  {r['started']}")


@jobs.command("cancel")
@click.argument("job_id", metavar="ID")
@service_option
@click.pass_context
def jobs_cancel(ctx, job_id, service) -> None:
    """Cancel a job (a running one stops after its tiles in flight; the tiles done are kept)."""
    from geoloom.workflows.service_client import ServiceClient

    job = ServiceClient(service or ctx.obj.get("service")).cancel(job_id)
    click.echo(f"{job.id} {job.state if job.final else 'cancelling'}")


@jobs.command("wait")
@click.argument("job_id", metavar="ID")
@click.option("--timeout", type=float, default=None, help="Give up after this many seconds (exit 2).")
@service_option
@click.pass_context
def jobs_wait(ctx, job_id, timeout, service) -> None:
    """Wait for a job; exit 0 when done, 3 when some tiles failed, 2 when it failed or was cancelled."""
    from geoloom.workflows.service_client import ServiceClient

    job = ServiceClient(service or ctx.obj.get("service")).wait(job_id, timeout_s=timeout)
    click.echo(job.out)
    _final_exit(job)
