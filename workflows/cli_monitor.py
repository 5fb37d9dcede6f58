"""The monitoring command of ``geoloom``: ``update`` (new acquisition dates of a per-date run, alerts).
Thin: parses, calls :func:`geoloom.workflows.per_date.update_run`, prints."""

from __future__ import annotations

import sys
from typing import Any

import click

from geoloom.workflows.options import execution_options, hook_options


@click.command()
@click.argument("run_dir", metavar="RUN_DIR", type=click.Path(file_okay=False, exists=True))
@click.option("--since", default=None, metavar="YYYY-MM-DD",
              help="Search from this day (default: the run's first day); days the run holds are never computed again.")
@hook_options
@execution_options
@click.pass_context
def update(ctx: click.Context, run_dir: str, since: str | None, on_alert: tuple[str, ...], webhooks: tuple[str, ...],
           runtime: str, cluster: str | None, workers: int | None, retries: int) -> None:
    """Compute the acquisition dates a per-date run does not hold yet, append them and check its alert rules.

    Safe to call from cron or a scheduler: a second update while one runs is refused, and an update with
    nothing new changes nothing. Exit 0 when there is nothing new or all went well, 3 when tiles failed."""
    from geoloom.runtime.progress import ProgressBar
    from geoloom.workflows.cli import EXIT_PARTIAL, _quiet
    from geoloom.workflows.per_date import update_run

    quiet = _quiet(ctx)
    bar = ProgressBar(disable=True if quiet else None)
    try:
        result = update_run(run_dir, since=since, on_alert=on_alert, webhooks=webhooks, progress=bar,
                            runtime=runtime, cluster=cluster, workers=workers, retries=retries)
    finally:
        bar.close()
    click.echo(str(result.folder))
    if not quiet:
        click.echo(f"  {result.summary()}", err=True)
        if result.alerts is not None:
            for line in result.alerts.messages():
                click.echo(f"  alert: {line}", err=True)
        for hook in result.hooks:
            click.echo(f"  {hook.kind} {hook.target}: {'ok' if hook.ok else 'FAILED'} ({hook.detail})", err=True)
    if _partial(result.folder):
        click.echo(f"some tiles failed; run again to retry them: geoloom update {result.folder}", err=True)
        sys.exit(EXIT_PARTIAL)


def _partial(folder: Any) -> bool:
    """True when a date of the run has failed or missing tiles."""
    from geoloom.workflows.api import Run

    t = Run(folder).tiles
    return bool(t.failed or t.missing)
