"""Executors: one protocol (run a function over items, yield results as they complete), three engines."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Protocol

from geoloom.platform.devices import local_gpus

log = logging.getLogger(__name__)

#: Set in the environment of the workers geoloom starts. Dask's nanny sets MALLOC_TRIM_THRESHOLD_,
#: which also stops glibc from raising its mmap threshold, so every array over 128 KB became a
#: fresh mmap, page-faulted on first touch: tile reads ran 2x slower in workers than in a plain
#: process. A fixed 16 MB threshold keeps tile-sized arrays on the heap (and holds where a worker
#: is started without a nanny too); 32 MB was no faster and kept ~40 MB more per worker.
#: The same trim setting gave every freed tile's pages back to the system at the end of each tile,
#: and the next tile faulted them in again (11,000 page faults, about 45 MB, per 512 px tile): a
#: 32 MB top pad keeps that much free heap in the worker between tiles: 10x fewer faults, tiles
#: 12-17 % faster, 6-15 MB more peak memory per worker (64 MB: no faster, 25-30 MB more).
WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": str(16 * 2**20), "MALLOC_TOP_PAD_": str(32 * 2**20)}


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one item: its value, or the exception that its task died of."""

    item: Any
    value: Any = None
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    """What a run will use: engine, address, workers, threads and GPUs."""

    engine: str
    address: str | None = None
    dashboard: str | None = None
    workers: int = 1
    threads: int = 1
    gpus: int = 0
    resources: dict[str, float] = field(default_factory=dict)

    def describe(self) -> str:
        """One line for logs and the UI: engine, address, workers, threads and GPUs."""
        where = f" at {self.address}" if self.address else ""
        gpu = f", {self.gpus} GPU(s)" if self.gpus else ", no GPU"
        return f"{self.engine}{where}: {self.workers} worker(s), {self.threads} thread(s){gpu}"


class Executor(Protocol):
    """Runs ``fn(item, *args)`` for every item; yields an Outcome per item as each completes."""

    def info(self) -> ClusterInfo:
        """What the engine has to work with."""

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
        """Run ``fn(item, *args)`` for each item and yield Outcomes as they complete; stop when ``cancelled()``."""

    def close(self) -> None:
        """Release what the executor started (client, cluster)."""


class InProcessExecutor:
    """Runs every item in this process, one after the other (debugging, tests)."""

    def info(self) -> ClusterInfo:
        """One worker with one thread, and this machine's GPUs."""
        return ClusterInfo(engine="in-process", workers=1, threads=1, gpus=_local_gpus())

    def imap_unordered(self, fn, items, *args, key, resources=None, cancelled=lambda: False,
                       affinity=None) -> Iterator[Outcome]:
        """Run the items one after the other; ``key``, ``resources`` and ``affinity`` are ignored."""
        for item in items:
            if cancelled():
                return
            try:
                yield Outcome(item, fn(item, *args))
            except Exception as exc:  # the task function records its own failures; this is a crash
                yield Outcome(item, error=exc)

    def close(self) -> None:
        """Nothing to release."""
        pass


def _local_gpus() -> int:
    """CUDA GPUs on this machine (see :func:`geoloom.platform.devices.local_gpus`)."""
    return local_gpus()


class DaskExecutor:
    """Dask distributed: an embedded cluster (``local_cluster``), or an existing scheduler at ``address``.

    ``priority(i)``: the Dask priority of the i-th item a call submits (higher runs first); with
    :func:`take_turns` the runs that share one cluster alternate tile by tile.
    """

    def __init__(self, address: str | None = None, *, workers: int | None = None, client: Any = None,
                 priority: Callable[[int], int] | None = None) -> None:
        from distributed import Client

        self.priority = priority
        self._own_cluster = None
        self._own_client = client is None
        if client is not None:
            self.client = client
        else:
            address = address or os.environ.get("DASK_SCHEDULER_ADDRESS")
            if address:
                from geoloom.platform.errors import RunError

                try:
                    self.client = Client(address, timeout="10s")
                except OSError as exc:
                    raise RunError(
                        f"cannot reach the Dask scheduler at {address} ({exc}); start it with 'dask scheduler' "
                        "or leave out --scheduler to use a local cluster"
                    ) from None
            else:
                from geoloom.runtime.local_cluster import start_local_cluster

                self._own_cluster, self.client = start_local_cluster(
                    workers or os.cpu_count() or 1, gpus=_local_gpus(), dashboard=_has_bokeh(), environ=WORKER_ENVIRON)

    def info(self) -> ClusterInfo:
        """Workers, threads, GPUs and resources the scheduler reports now."""
        sched = self.client.scheduler_info()
        workers = sched.get("workers", {})
        resources: dict[str, float] = {}
        for w in workers.values():
            for k, v in (w.get("resources") or {}).items():
                resources[k] = resources.get(k, 0) + v
        return ClusterInfo(
            engine="dask",
            address=self.client.scheduler.address,
            dashboard=getattr(self.client, "dashboard_link", None),
            workers=len(workers),
            threads=sum(w.get("nthreads", 1) for w in workers.values()),
            gpus=int(resources.get("GPU", 0)),
            resources=resources,
        )

    def imap_unordered(self, fn, items, *args, key, resources=None, cancelled=lambda: False,
                       affinity: Callable[[Any], float] | None = None) -> Iterator[Outcome]:
        """Submit in batches (one message each), keep a bounded number in flight, gather as they finish.

        ``affinity(item)`` in [0, 1) asks for a worker by position (loosely: an idle worker still
        takes what another has queued, and a lost worker's items run elsewhere): neighbouring
        tiles then run on one worker, which finds the source blocks they share in its cache.
        """
        from distributed import as_completed

        nonce = uuid.uuid4().hex[:6]
        submitted = 0
        workers = max(1, len(self.client.scheduler_info().get("workers", {})))
        window = max(64, 32 * workers)
        it = iter(items)
        by_key: dict[str, Any] = {}
        shared = [self.client.scatter(a, broadcast=True, hash=False) if not isinstance(a, (int, float, str)) else a for a in args]

        addresses = sorted(self.client.scheduler_info().get("workers", {})) if affinity and not resources else []

        def where_for(item: Any) -> str | None:
            return addresses[min(int(affinity(item) * len(addresses)), len(addresses) - 1)] if addresses else None

        def submit_batch(n: int) -> list[Any]:
            nonlocal submitted
            batch = [item for _, item in zip(range(n), it)]
            if not batch:
                return []
            first, submitted = submitted, submitted + len(batch)
            if self.priority is not None:  # a task per item: client.map takes one priority for all
                return [self._submit_one(fn, item, shared, f"{key(item)}-{nonce}", self.priority(first + i), by_key,
                                         resources, where_for(item)) for i, item in enumerate(batch)]
            groups: dict[str | None, list[Any]] = {}
            for item in batch:
                groups.setdefault(where_for(item), []).append(item)
            futures = []
            for where, group in groups.items():
                keys = [f"{key(item)}-{nonce}" for item in group]
                by_key.update(zip(keys, group))
                futures += self.client.map(fn, group, *[[a] * len(group) for a in shared], key=keys, resources=resources,
                                           pure=False, workers=[where] if where else None,
                                           allow_other_workers=where is not None)
            return futures

        ac = as_completed(submit_batch(window), with_results=True, raise_errors=False)
        in_flight = len(by_key)
        for fut, result in ac:
            item = by_key.pop(fut.key)
            in_flight -= 1
            if cancelled():
                for other in list(ac.futures):
                    other.cancel()
                return
            if fut.status == "error" or isinstance(result, BaseException):
                yield Outcome(item, error=result if isinstance(result, BaseException) else RuntimeError(str(result)))
            else:
                yield Outcome(item, result)
            if in_flight < window // 2:
                more = submit_batch(window - in_flight)
                in_flight += len(more)
                ac.update(more)

    def _submit_one(self, fn: Callable[..., Any], item: Any, shared: list[Any], key: str, priority: int,
                    by_key: dict[str, Any], resources: dict[str, float] | None, where: str | None) -> Any:
        """One item as its own task, with its own priority."""
        by_key[key] = item
        return self.client.submit(fn, item, *shared, key=key, priority=priority, resources=resources, pure=False,
                                  workers=[where] if where else None, allow_other_workers=where is not None)

    def close(self) -> None:
        """Close the client and the local cluster if this executor started them; the workers of a
        local cluster that run no task are killed rather than asked to exit (their output is written)."""
        if self._own_cluster is not None and self._idle():
            from geoloom.runtime.local_cluster import end_quickly

            end_quickly(self._own_cluster)
        if self._own_client:
            self.client.close()
        if self._own_cluster is not None:
            self._own_cluster.close()

    def _idle(self) -> bool:
        """Whether the scheduler knows of no task on any worker (False when it cannot be asked)."""
        try:
            return not any(self.client.processing().values())
        except Exception:
            return False


def take_turns(i: int) -> int:
    """The priority of a run's i-th tile: ``-i``, so runs on one cluster alternate and a new one is never starved."""
    return -i


def _has_bokeh() -> bool:
    try:
        import bokeh  # noqa: F401

        return True
    except ImportError:
        return False


def make_executor(runtime: str = "dask", *, scheduler: str | None = None, workers: int | None = None, client: Any = None) -> Executor:
    """The executor for a runtime name: ``dask`` (default), ``in-process`` or ``ray``."""
    from geoloom.platform.errors import RunError

    if client is not None:
        return DaskExecutor(client=client)
    if runtime in ("in-process", "local", "inprocess"):
        return InProcessExecutor()
    if runtime == "dask":
        return DaskExecutor(scheduler, workers=workers)
    if runtime == "ray":
        try:
            from geoloom.runtime.ray_executor import RayExecutor
        except ImportError:
            raise RunError("the Ray runtime needs the extra: pip install 'geoloom[ray]'") from None
        return RayExecutor(scheduler, workers=workers)
    raise RunError(f"unknown runtime {runtime!r}; use dask, ray or in-process")
