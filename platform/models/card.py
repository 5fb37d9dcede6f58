"""Model cards: what a model finds, on which bands, at what resolution, and how well."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from geoloom.platform.bands import band_info, canonical_band
from geoloom.platform.errors import ModelError

OutputKind = Literal["probability", "index", "class", "mask"]
GpuUse = Literal["none", "prefers", "requires"]


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """One output layer of a model."""

    name: str
    kind: OutputKind
    dtype: str = "float32"
    nodata: float | int | None = None
    description: str = ""
    classes: dict[int, str] | None = None

    @property
    def fill_value(self) -> float | int:
        """What fills pixels with no data: ``nodata`` if set, else NaN for floats and 0 otherwise."""
        if self.nodata is not None:
            return self.nodata
        return float("nan") if self.dtype.startswith("float") else 0


@dataclass(frozen=True, slots=True)
class ModelCard:
    """Everything a user and the planner need to know about a model (DESIGN.md, Models)."""

    name: str
    title: str
    description: str
    bands: tuple[str, ...]
    resolution: float
    halo: int
    outputs: tuple[OutputSpec, ...]
    primary: str
    tile_size: int = 512
    detection: str | None = None
    score: str | None = None
    threshold: float | None = None
    gpu: GpuUse = "none"
    weights: str | None = None
    sha256: str | None = None
    version: str = "1"
    mpx_per_s: float | None = None
    imagery: str = "Sentinel-2 L2A"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Processing levels the model takes ("L1C", "L2A"); empty: any.
    levels: tuple[str, ...] = ()
    #: How Level-1C (top-of-atmosphere) imagery is brought to the model: None (as it is) or "dark-spectrum".
    l1c: str | None = None
    #: What the model finds lasts days, not seasons (floating debris): runs give one result per
    #: acquisition date by default instead of a composite of the date range.
    ephemeral: bool = False

    def output(self, name: str) -> OutputSpec:
        """The output layer called ``name``; ModelError lists the card's outputs if there is none."""
        for o in self.outputs:
            if o.name == name:
                return o
        raise ModelError(f"model {self.name} has no output {name!r}; it has {', '.join(o.name for o in self.outputs)}")

    def to_dict(self) -> dict[str, Any]:
        """The card as plain lists and dicts, ready for JSON or YAML."""
        d = asdict(self)
        d["bands"] = list(self.bands)
        d["levels"] = list(self.levels)
        d["outputs"] = [asdict(o) for o in self.outputs]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, where: str = "model card") -> ModelCard:
        """A card from a plain dict (YAML/JSON), validated."""
        if not isinstance(data, dict):
            raise ModelError(f"{where} must be a mapping of fields (name, bands, resolution, ...)")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(f"{where} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        missing = [k for k in ("name", "bands", "resolution", "halo", "outputs", "primary") if k not in data]
        if missing:
            raise ModelError(f"{where} lacks the field(s) {', '.join(missing)}; add them to the card")
        try:
            outputs = tuple(OutputSpec(**o) for o in data["outputs"])
        except TypeError as exc:
            raise ModelError(f"{where} has a malformed output: {exc}; each output needs name and kind") from None
        values = dict(data)
        values.update(
            outputs=outputs,
            bands=tuple(data["bands"]),
            levels=tuple(data.get("levels") or ()),
            title=data.get("title", data["name"]),
            description=data.get("description", ""),
            resolution=float(data["resolution"]),
            halo=int(data["halo"]),
        )
        card = cls(**values)
        validate_card(card, where=where)
        return card


def validate_card(card: ModelCard, *, where: str | None = None) -> None:
    """Raise ModelError when a card cannot work: unknown bands, halo too large, bad outputs."""
    where = where or f"model {card.name}"
    if not card.bands:
        raise ModelError(f"{where} declares no input bands; list the bands it reads (e.g. red, nir)")
    unknown = [b for b in card.bands if band_info(b) is None]
    if unknown:
        raise ModelError(
            f"{where} names unknown band(s) {', '.join(unknown)}; use Sentinel-2 names such as blue, nir, swir16 or B02"
        )
    if card.halo < 0 or card.halo >= card.tile_size // 2:
        raise ModelError(
            f"{where} has a receptive field (halo {card.halo} px) too large for its tile size {card.tile_size}; "
            "the halo must be under half the tile size"
        )
    names = [o.name for o in card.outputs]
    if card.primary not in names:
        raise ModelError(f"{where}: primary output {card.primary!r} is not among its outputs {names}")
    for ref in (card.detection, card.score):
        if ref is not None and ref not in names:
            raise ModelError(f"{where}: output {ref!r} named for detections is not among its outputs {names}")
    if card.resolution <= 0:
        raise ModelError(f"{where}: resolution must be positive metres")
    odd = [lv for lv in card.levels if lv not in ("L1C", "L2A")]
    if odd:
        raise ModelError(f"{where} names unknown processing level(s) {', '.join(odd)}; use L1C and/or L2A")
    if card.l1c not in (None, "dark-spectrum"):
        raise ModelError(f"{where}: l1c {card.l1c!r} is not a known correction; use dark-spectrum or leave it out")


def normalised_bands(card: ModelCard) -> tuple[str, ...]:
    """The card's bands under their canonical names."""
    return tuple(canonical_band(b) for b in card.bands)


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_weights(card: ModelCard, path: str | Path) -> None:
    """Raise ModelError if the weights file is missing or its sha256 differs from the card's."""
    p = Path(path)
    if not p.exists():
        raise ModelError(f"weights file {p} of model {card.name} is missing; reinstall the model")
    if card.sha256:
        got = file_sha256(p)
        if got != card.sha256:
            raise ModelError(
                f"weights of model {card.name} do not match its card (sha256 {got[:12]}... != {card.sha256[:12]}...); "
                "the file is corrupt or from another version: reinstall it"
            )
