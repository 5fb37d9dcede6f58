"""The user's copy of the marine-debris model: installing trained weights, and the card data that scores go to."""

from __future__ import annotations

import json
from pathlib import Path

from geoloom.platform.models.debris_onnx import export_onnx, onnx_file

__all__ = ["install_marine_debris"]


def install_marine_debris(folder: str | Path) -> Path:
    """Make the model trained into ``folder`` the user's ``marine-debris``: its weights and card data
    go to the per-user models folder (the shipped ones stay as they are). Held-out scores belong to
    the old weights and are dropped (run ``heldout_report``); the measured throughput belongs to the
    architecture and is kept."""
    from geoloom.platform.models import registry
    from geoloom.platform.models.marine_debris_card import CARD_FILE, WEIGHTS_FILE, active_files, installed_dir

    folder = Path(folder)
    data = json.loads((folder / "marine-debris.json").read_text())
    source = folder / data["weights"]
    target = installed_dir()
    target.mkdir(parents=True, exist_ok=True)
    old = json.loads(active_files()[1].read_text()) if active_files()[1].exists() else {}
    if "mpx_per_s" in old:
        data["mpx_per_s"] = old["mpx_per_s"]
    data["weights"] = WEIGHTS_FILE.name
    _write_atomically(target / WEIGHTS_FILE.name, source.read_bytes())
    export_onnx(target / WEIGHTS_FILE.name)  # the CPU path (ONNX Runtime) for the new weights
    _write_atomically(target / CARD_FILE.name, (json.dumps(data, indent=2) + "\n").encode())
    registry.refresh()
    return target / WEIGHTS_FILE.name


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` beside ``path`` and move it into place."""
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(path)


def _user_card_file() -> Path:
    """The card data of the user's installed marine-debris; the shipped model is copied there first,
    so that scores are written beside the weights they belong to and never into the package."""
    from geoloom.platform.models.marine_debris_card import CARD_FILE, WEIGHTS_FILE, active_files, installed_dir

    weights, card = active_files()
    if weights == WEIGHTS_FILE:
        target = installed_dir()
        target.mkdir(parents=True, exist_ok=True)
        _write_atomically(target / WEIGHTS_FILE.name, WEIGHTS_FILE.read_bytes())
        if onnx_file(WEIGHTS_FILE).is_file():
            _write_atomically(onnx_file(target / WEIGHTS_FILE.name), onnx_file(WEIGHTS_FILE).read_bytes())
        _write_atomically(target / CARD_FILE.name, CARD_FILE.read_bytes())
        card = target / CARD_FILE.name
    return card
