"""The marine-debris card, without torch: what a client needs to plan a run (workers load the network).

The card's measured numbers (threshold, training details, scores, throughput) live in
``cards/marine-debris.json``, written by the training, evaluation and benchmark scripts. The
shipped weights and card data are read-only; ``geoloom models train --install`` puts a retrained
model into ``marine-debris/`` of the per-user models folder, which is then used instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from geoloom.platform.bands import REFLECTANCE_BANDS
from geoloom.platform.errors import ModelError
from geoloom.platform.models.card import ModelCard, OutputSpec, check_weights

NAME = "marine-debris"
MODELS_DIR = Path(__file__).resolve().parent
#: The shipped weights and card data (package data, never written by geoloom).
WEIGHTS_FILE = MODELS_DIR / "weights" / "marine-debris.pt"
#: The same network exported for ONNX Runtime (the CPU path), beside the weights it was exported from.
ONNX_SUFFIX = ".onnx"
CARD_FILE = MODELS_DIR / "cards" / "marine-debris.json"


def installed_dir() -> Path:
    """Where a user's retrained marine-debris lives (``marine-debris.pt`` and ``marine-debris.json``)."""
    from geoloom.platform.userdata import models_dir

    return models_dir() / NAME


def active_files() -> tuple[Path, Path]:
    """``(weights, card data)`` of the model in use: the user's installed copy, else the shipped one."""
    folder = installed_dir()
    weights, card_data = folder / WEIGHTS_FILE.name, folder / CARD_FILE.name
    if weights.is_file() and card_data.is_file():
        return weights, card_data
    return WEIGHTS_FILE, CARD_FILE

#: Feature channels of the network at full, 1/2 and 1/4 resolution.
CHANNELS: tuple[int, int, int] = (16, 32, 48)
#: Two 2x poolings: inputs are padded to a multiple of 4 and the halo is one too, so every
#: tile's pooling grid lines up with the output grid and tiles join without seams.
DOWNSAMPLE = 4
#: Receptive-field radius of :class:`DebrisNet` (``receptive_field_radius()`` measures 19 px) plus the
#: 2 px over which the small-object rule looks (``small_objects.CONTEXT_PX``), rounded up to a multiple
#: of DOWNSAMPLE. The tests check these facts.
HALO = 24


def read_card_data(path: Path | None = None) -> dict[str, Any]:
    """What the training, evaluation and benchmark scripts wrote about the model ({} before training)."""
    path = path or active_files()[1]
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the card data {path}: {exc}; reinstall geoloom or retrain the model") from None


def build_card(data: dict[str, Any], weights: Path | None = None) -> ModelCard:
    """The marine-debris card: fixed facts here, measured numbers from the card data."""
    weights = weights or active_files()[0]
    return ModelCard(
        name=NAME,
        title="Floating marine debris (learned)",
        description=(
            "Finds floating litter at sea - lines and patches of plastic, wood and other debris that "
            "currents gather into windrows - and gives each 10 m pixel a probability. It is a small neural "
            "network that looks at all twelve colour bands and at the shape of what surrounds each pixel, "
            "so it learned to tell debris from sea foam, ship wakes, ships, Sargassum seaweed and muddy "
            "river plumes, which fool the simple Floating Debris Index. Clouds, cloud shadows and land "
            "(from the scene classification, or classified from the bands where the imagery has none) are "
            "masked first. A pixel counts as debris only where both near-infrared bands see it, so a speck in "
            "one band alone (noise, a moving boat, an artefact) is left out, and so is an object of one or two "
            "pixels (a whitecap, a glint, a fleck of haze): the probability layer still shows those. It takes "
            "surface reflectance (Level-2A) and top-of-atmosphere imagery (Level-1C, brought near surface reflectance by a dark-spectrum correction). It was trained on generated "
            "scenes, so treat its detections on real imagery as leads to check, not proof."
        ),
        bands=REFLECTANCE_BANDS + ("scl",),
        resolution=10.0,
        halo=HALO,
        tile_size=512,
        outputs=(
            OutputSpec("probability", "probability", "float32", None,
                       "Debris probability 0..1 (NaN: no data, cloud or cloud shadow)"),
            OutputSpec("debris", "mask", "uint8", 255, "1 where the probability reaches the threshold and both "
                       "near-infrared bands (B08 and B8A) see the object, in objects of 3 pixels or more",
                       {0: "no debris", 1: "debris"}),
        ),
        primary="probability",
        detection="debris",
        score="probability",
        threshold=float(data.get("threshold", 0.5)),
        gpu="prefers",
        weights=str(weights.relative_to(MODELS_DIR)) if weights.is_relative_to(MODELS_DIR) else str(weights),
        sha256=data.get("sha256"),
        version=str(data.get("version", "1")),
        mpx_per_s=data.get("mpx_per_s"),
        imagery="Sentinel-2 L2A or L1C (12 reflectance bands; SCL, or classes from the bands where there is none)",
        levels=("L1C", "L2A"),
        l1c="dark-spectrum",
        ephemeral=True,  # windrows form after rain and drift away within days: one result per date
        training=dict(data.get("training", {})),
        metrics=dict(data.get("metrics", {})),
    )


def card(threshold: float | None = None, *, device: str | None = None, weights: str | Path | None = None,
         card_file: str | Path | None = None, backend: str | None = None) -> ModelCard:
    """The card that ``MarineDebrisModel(**params)`` would carry, checked as it checks it (weights hash,
    threshold), without importing torch."""
    if threshold is not None:
        try:
            float(threshold)
        except (TypeError, ValueError):
            raise ModelError(f"threshold {threshold!r} must be a number between 0 and 1") from None
    from geoloom.platform.models.marine_debris import check_backend

    check_backend(backend, device)
    default_weights, default_card = active_files()
    weights_path = Path(weights) if weights else default_weights
    result = build_card(read_card_data(Path(card_file) if card_file else default_card), weights_path)
    check_weights(result, weights_path)
    return result
