"""The embedded Dask cluster: a scheduler in this process, each worker its own ``dask spec`` process.

Dask's ``LocalCluster`` starts workers with multiprocessing's ``spawn``, which re-imports the
caller's ``__main__`` in every worker: a script without an ``if __name__ == "__main__":`` guard
would run its own ``detect(...)`` again inside each worker. Here each worker is a plain
subprocess (``python -m distributed.cli.dask_spec``, as ``dask worker`` starts one), so nothing of
the caller's script runs in it; functions defined there still reach the workers, pickled by value.
A worker that dies (killed, out of memory) is started again under the same name, as Dask's nanny
would, and every worker ends with the process that started it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

#: Seconds between a worker's death and its restart (a crash loop stays slow).
RESTART_DELAY_S = 1.0
#: Seconds a closing worker gets to leave the scheduler before it is killed.
CLOSE_GRACE_S = 5.0
#: Dask's statistical profiler walks the running task's stack every 10 ms while holding the GIL.
#: The tile ledger already times each tile's read, model and write; with it on, tiles ran 6-10 %
#: slower on two workers sharing two cores. Set this variable to True to get the dashboard's
#: profile back.
PROFILER_SETTING = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"


def worker_environment(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a worker process: ours, what Dask's nanny would set before starting a worker
    (one BLAS/OpenMP thread, malloc trimming), ``extra``, this process's Dask config, quiet logs, and
    Dask's statistical profiler off unless this process's environment turns it on."""
    import dask.config

    nanny = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **dask.config.get("distributed.nanny.environ", {})}
    env = {**os.environ, **{k: str(v) for k, v in nanny.items()}, **extra}
    paths = caller_paths()
    if paths:  # the caller's own modules import in the workers, as they would in a spawned process
        env["PYTHONPATH"] = os.pathsep.join([*paths, *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    env["DASK_INTERNAL_INHERIT_CONFIG"] = dask.config.serialize(dask.config.global_config)
    env.setdefault("DASK_LOGGING__DISTRIBUTED", "error")
    env.setdefault(PROFILER_SETTING, "False")
    env["GEOLOOM_PARENT_PID"] = str(os.getpid())
    return env


def caller_paths() -> list[str]:
    """This process's import path beyond the interpreter's own: the script's folder (or the current
    one), PYTHONPATH and anything the caller added to ``sys.path``."""
    import site
    import sysconfig

    own = {os.path.realpath(p) for p in sysconfig.get_paths().values()}
    own |= {os.path.realpath(p) for p in site.getsitepackages() + [site.getusersitepackages()]}
    paths: list[str] = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if os.path.isdir(path) and path not in own and not path.endswith("lib-dynload") and path not in paths:
            paths.append(path)
    return paths


def _spec_worker_class() -> Any:
    from distributed.deploy.spec import ProcessInterface

    class SpecWorkerProcess(ProcessInterface):
        """One Dask worker in a subprocess of its own, restarted if it dies before the cluster closes."""

        def __init__(self, scheduler: str, name: str, worker_options: dict[str, Any], env: dict[str, str]) -> None:
            super().__init__(scheduler=scheduler, name=name)
            self.scheduler, self.name = scheduler, name
            self._options = {**worker_options, "name": name,
                             "preload": ["geoloom.runtime.worker_guard"]}
            self._env = env
            self._process: asyncio.subprocess.Process | None = None
            self._watcher: asyncio.Task | None = None
            self._closing = False
            #: Set when the worker holds no task: it is then killed, not asked to exit (see :func:`end_quickly`).
            self.quick_exit = False

        async def _launch(self) -> None:
            cmd = [sys.executable, "-m", "distributed.cli.dask_spec", self.scheduler,
                   "--spec", json.dumps({"cls": "distributed.Worker", "opts": self._options})]
            self._process = await asyncio.create_subprocess_exec(*cmd, env=self._env, stdin=asyncio.subprocess.DEVNULL)

        async def _watch(self) -> None:
            while not self._closing:
                assert self._process is not None
                code = await self._process.wait()
                if self._closing:
                    return
                log.warning("Dask worker %s exited with code %s; starting it again", self.name, code)
                await asyncio.sleep(RESTART_DELAY_S)
                if not self._closing:
                    await self._launch()

        async def start(self) -> None:
            await self._launch()
            self._watcher = asyncio.ensure_future(self._watch())
            await super().start()

        async def close(self) -> None:
            self._closing = True
            if self._watcher is not None:
                self._watcher.cancel()
            proc = self._process
            if proc is not None and proc.returncode is None and self.quick_exit:
                proc.kill()
                await proc.wait()
            elif proc is not None and proc.returncode is None:
                proc.terminate()  # dask spec closes the worker on SIGTERM
                try:
                    await asyncio.wait_for(proc.wait(), CLOSE_GRACE_S)
                except asyncio.TimeoutError:
                    proc.kill()
                    await proc.wait()
            await super().close()

    return SpecWorkerProcess


def start_local_cluster(n_workers: int, *, gpus: int = 0, dashboard: bool = False,
                        environ: dict[str, str] | None = None, timeout_s: float = 120) -> tuple[Any, Any]:
    """Start the embedded cluster (scheduler here, ``n_workers`` worker processes of one thread each)
    and a client connected to it; returns ``(cluster, client)`` once every worker has joined."""
    import psutil
    from distributed import Client, Scheduler
    from distributed.deploy.spec import SpecCluster

    memory = psutil.virtual_memory().total // max(1, n_workers)
    options: dict[str, Any] = {"nthreads": 1, "host": "127.0.0.1", "memory_limit": int(memory)}
    if gpus:
        options["resources"] = {"GPU": 1}
    worker = {"cls": _spec_worker_class(),
              "options": {"worker_options": options, "env": worker_environment(environ or {})}}
    scheduler = {"cls": Scheduler,
                 "options": {"host": "127.0.0.1", "port": 0, "dashboard": dashboard,
                             "dashboard_address": ":0" if dashboard else None}}
    cluster = SpecCluster(workers={f"local-{i}": worker for i in range(n_workers)}, scheduler=scheduler,
                          worker=worker, name="geoloom-local", silence_logs=logging.ERROR)
    client = Client(cluster)
    try:
        client.wait_for_workers(n_workers, timeout=timeout_s)
    except Exception:
        client.close()
        cluster.close()
        from geoloom.platform.errors import RunError

        raise RunError(f"the local Dask workers did not start within {timeout_s:.0f} s; "
                       "see the messages above, or use --runtime in-process") from None
    return cluster, client


def end_quickly(cluster: Any) -> None:
    """Have ``cluster.close()`` kill its worker processes rather than ask them to exit. For workers
    that hold no task: whatever they wrote is on disk already, and an orderly exit (tearing down a
    worker's imports and heap) took 0.5 s and 0.5 CPU-s per worker. The scheduler may still be
    writing to a worker as it goes: Dask notes that, at INFO with a traceback, on the
    ``distributed.batched`` logger (its only other message, a failed write, is an ERROR), so that
    logger is set to WARNING."""
    logging.getLogger("distributed.batched").setLevel(logging.WARNING)
    for worker in getattr(cluster, "workers", {}).values():
        if hasattr(worker, "quick_exit"):
            worker.quick_exit = True
