"""Ray: tiles as Ray tasks on a local Ray started here, or on an existing cluster at an address.

Needs the optional extra ``geoloom[ray]``. Importing this module without Ray raises ImportError,
which ``make_executor`` turns into a message naming the extra.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator

import ray

from geoloom.runtime.executors import ClusterInfo, Outcome

log = logging.getLogger(__name__)

#: Retries of a task whose worker process died (a task that *raises* is retried by the task itself).
WORKER_DEATH_RETRIES = 2


class RayExecutor:
    """Runs each item as a Ray task, a bounded window in flight, yielding results as they complete.

    ``address``: ``ray://HOST:10001`` (Ray client), ``auto`` or ``HOST:PORT`` (a cluster this machine
    is part of); ``None`` honours ``RAY_ADDRESS`` and otherwise starts a local Ray with ``workers``
    CPUs (default: all cores). A Ray already initialised in this process (by the caller) is used as
    it is. ``close()`` shuts down only what this executor started or connected; the processes of a
    cluster it connected to keep running.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None) -> None:
        from geoloom.platform.errors import RunError

        self._own = not ray.is_initialized()
        self._dashboard: str | None = None
        self._address = address = address or os.environ.get("RAY_ADDRESS") or None
        if not self._own:
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address is None:
            kwargs["num_cpus"] = workers or os.cpu_count() or 1
        try:
            ctx = ray.init(address=address, **kwargs)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError, by address kind and Ray version
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise RunError(
                f"cannot start or reach {where} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                "check the address (ray://HOST:10001 or auto) or leave it out to start a local Ray"
            ) from None
        self._dashboard = getattr(ctx, "dashboard_url", None) or None

    def info(self) -> ClusterInfo:
        """Alive nodes as workers, CPUs as threads (one task per CPU), GPUs and the other resources."""
        total = ray.cluster_resources()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        resources = {k: float(v) for k, v in total.items() if not k.startswith("node:") and k not in ("memory", "object_store_memory")}
        return ClusterInfo(
            engine="ray",
            address=self._gcs_address(),
            dashboard=f"http://{self._dashboard}" if self._dashboard and "://" not in self._dashboard else self._dashboard,
            workers=len(nodes),
            threads=int(total.get("CPU", 0)),
            gpus=int(total.get("GPU", 0)),
            resources=resources,
        )

    def imap_unordered(
        self,
        fn: Callable[..., Any],
        items: Iterable[Any],
        *args: Any,
        key: Callable[[Any], str],
        resources: dict[str, float] | None = None,
        cancelled: Callable[[], bool] = lambda: False,
        affinity: Callable[[Any], float] | None = None,
    ) -> Iterator[Outcome]:
        """``fn(item, *args)`` per item as a Ray task; ``args`` are put in the object store once.

        A task whose worker dies is run again by Ray (``max_retries``) on another worker, so a
        killed process costs only the tiles it held. An error that survives is the item's Outcome.
        ``affinity`` is accepted for the protocol and not used (Ray places tasks itself).
        """
        options = task_options(resources)
        remote = ray.remote(fn)
        shared = [ray.put(a) for a in args]  # one copy of the TileJob / model spec, not one per task
        window = max(8, 4 * max(1, int(ray.cluster_resources().get("CPU", 1))))
        it = iter(items)
        by_ref: dict[Any, Any] = {}

        def submit_next() -> bool:
            item = next(it, _END)
            if item is _END:
                return False
            ref = remote.options(**options, name=key(item)).remote(item, *shared)
            by_ref[ref] = item
            return True

        for _ in range(window):
            if not submit_next():
                break
        try:
            while by_ref:
                ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=1.0)
                if cancelled():
                    return
                for ref in ready:
                    item = by_ref.pop(ref)
                    try:
                        yield Outcome(item, ray.get(ref))
                    except Exception as exc:
                        yield Outcome(item, error=_cause(exc))
                    submit_next()
                    if cancelled():
                        return
        finally:
            for ref in by_ref:  # cancelled, or the consumer stopped early: drop what has not run
                ray.cancel(ref)

    def _gcs_address(self) -> str | None:
        try:
            return ray.get_runtime_context().gcs_address
        except Exception:  # Ray client (ray://) sessions may not expose it
            return self._address

    def close(self) -> None:
        """Stop the local Ray this executor started, or disconnect from the cluster it joined."""
        if self._own and ray.is_initialized():
            ray.shutdown()


_END = object()


def task_options(resources: dict[str, float] | None) -> dict[str, Any]:
    """Ray task options for the placement's resources: ``{"GPU": 1}`` becomes ``num_gpus=1``."""
    resources = dict(resources or {})
    options: dict[str, Any] = {
        "num_cpus": resources.pop("CPU", 1),
        "num_gpus": resources.pop("GPU", 0),
        "max_retries": WORKER_DEATH_RETRIES,
        "retry_exceptions": False,
    }
    if resources:
        options["resources"] = resources
    return options


def _cause(exc: BaseException) -> BaseException:
    """The user's exception inside a RayTaskError; Ray's own errors (worker died, ...) as they are."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc
