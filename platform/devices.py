"""Which accelerators this machine has, asked without importing torch where it is not loaded yet
(a client that only plans and schedules, and a CPU worker on ONNX Runtime, stay ~180 MB lighter)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["local_gpus"]


def local_gpus() -> int:
    """CUDA GPUs on this machine: torch's count where torch is loaded, else the NVIDIA driver's list,
    limited by CUDA_VISIBLE_DEVICES."""
    if "torch" in sys.modules:
        try:
            torch = sys.modules["torch"]
            return torch.cuda.device_count() if torch.cuda.is_available() else 0
        except Exception:
            return 0
    gpus = Path("/proc/driver/nvidia/gpus")
    n = len(list(gpus.iterdir())) if gpus.is_dir() else len(list(Path("/dev").glob("nvidia[0-9]*")))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        ids = ids[: next((i for i, v in enumerate(ids) if v.startswith("-")), len(ids))]  # CUDA stops at -1
        n = min(n, len(ids))
    return n
