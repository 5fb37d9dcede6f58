"""Preloaded into the embedded cluster's worker processes: a worker ends with the process that started it.

A SIGKILLed ``geoloom run`` cannot close its cluster; without this its workers would go on with the
tiles they hold, writing into a folder that ``--resume`` may already be mending.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

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


def dask_setup(worker: object) -> None:  # noqa: ARG001 - Dask's preload hook
    """Dask calls this when the worker starts."""
    die_with_parent()


die_with_parent()
