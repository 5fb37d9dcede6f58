"""Preloaded into the embedded cluster's worker processes: a worker ends with the process that started it,
and imports the tile code as it starts.

A SIGKILLed ``geoloom run`` cannot close its cluster; without this its workers would go on with the
tiles they hold, writing into a folder that ``--resume`` may already be mending.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent goes (Linux), and exit now if it is gone."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    expected = os.environ.get("GEOLOOM_PARENT_PID")
    if expected and expected.isdigit() and os.getppid() != int(expected):
        os._exit(1)


def import_tile_code() -> None:
    """Import what every tile task runs (the tile job, its readers and writers, the model registry)."""
    import geoloom.runtime.tasks  # noqa: F401


def dask_setup(worker: object) -> None:  # noqa: ARG001 - Dask's preload hook
    """Dask calls this when the worker starts; the tile code imports on a thread meanwhile (a second
    of a cold run), while the worker joins the scheduler and the client plans."""
    die_with_parent()
    threading.Thread(target=import_tile_code, name="geoloom-imports", daemon=True).start()


die_with_parent()
