"""The one request value of a run: what to run where, on which imagery, on which grid, and how.

Every front door builds it once (``geoloom run`` options, ``detect``/``map_tiles`` keywords, the
UI's form) with :func:`build_request` and hands the whole value down; a run folder keeps it in
``request.json`` and reads it back with :meth:`RunRequest.from_dict` (``--resume``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from geoloom.platform.alerts import AlertRules
from geoloom.platform.errors import OutputError
from geoloom.platform.region import DEFAULT_MAX_AREA_KM2, Region, as_region
from geoloom.platform.stac_api import format_query, parse_query
from geoloom.runtime.model_cache import ModelSpec

__all__ = ["DEFAULT_MODEL", "Execution", "Grid", "Imagery", "Monitoring", "RunRequest", "build_request",
           "default_catalog", "request_from_folder"]

DEFAULT_MODEL = "marine-debris"
RUNTIMES = ("dask", "in-process", "ray")


def default_catalog() -> Path:
    """The sample catalog (``geoloom sample-data`` writes it)."""
    from geoloom.platform.sampledata import default_sample_dir

    return default_sample_dir() / "catalog.json"


def _fields(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(frozen=True, slots=True)
class Imagery:
    """Which scenes: the catalog (static catalog path/URL or STAC API), collection, dates, clouds,
    property filters and the URL signer."""

    catalog: str
    collection: str | None = None
    start: str | None = None
    end: str | None = None
    max_cloud: float | None = None
    query: dict[str, Any] | None = None
    sign: str | None = None
    exclude: tuple[str, ...] = ()  # scene ids left out by the analyst

    def to_dict(self) -> dict[str, Any]:
        """The imagery as a plain dict (for request.json)."""
        d = dataclasses.asdict(self)
        d["exclude"] = list(self.exclude)
        return d

    def query_expressions(self) -> list[str]:
        """The property filters as ``PROP OP VALUE`` text, as the CLI and the UI take them."""
        return format_query(self.query)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Imagery:
        """Imagery from a dict written by ``to_dict``; unknown keys are ignored."""
        values = _fields(cls, data)
        values["exclude"] = tuple(values.get("exclude") or ())
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Grid:
    """The output grid: resolution (m), CRS and tile size (px); None takes the model's or the region's."""

    resolution: float | None = None
    crs: str | None = None
    tile_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The grid as a plain dict (for request.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Grid:
        """A grid from a dict written by ``to_dict``; unknown keys are ignored."""
        return cls(**_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Execution:
    """Where and how tiles run: runtime, an existing cluster's address, local workers, retries."""

    runtime: str = "dask"
    cluster: str | None = None
    workers: int | None = None
    retries: int = 2

    def to_dict(self) -> dict[str, Any]:
        """The execution settings as a plain dict (for request.json)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Execution:
        """Execution settings from a dict written by ``to_dict``; unknown keys are ignored."""
        return cls(**_fields(cls, data))


@dataclass(frozen=True, slots=True)
class Monitoring:
    """Time: one result per acquisition date (None: the model's card decides), alert rules and the
    hooks that receive alerts (commands with ``{file}``, webhook URLs)."""

    per_date: bool | None = None
    alerts: AlertRules = field(default_factory=AlertRules)
    on_alert: tuple[str, ...] = ()
    webhooks: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The monitoring settings as a plain dict (for request.json)."""
        return {"per_date": self.per_date, "alerts": self.alerts.to_dict(), "on_alert": list(self.on_alert),
                "webhooks": list(self.webhooks)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Monitoring:
        """Monitoring settings from a dict written by ``to_dict``; unknown keys are ignored."""
        return cls(per_date=data.get("per_date"), alerts=AlertRules.from_dict(data.get("alerts")),
                   on_alert=tuple(data.get("on_alert") or ()), webhooks=tuple(data.get("webhooks") or ()))


@dataclass(frozen=True, slots=True)
class RunRequest:
    """Everything a run depends on, in the vocabulary shared by the CLI, the API and the UI."""

    region: Region
    model: ModelSpec
    out: str
    imagery: Imagery
    grid: Grid = field(default_factory=Grid)
    execution: Execution = field(default_factory=Execution)
    monitoring: Monitoring = field(default_factory=Monitoring)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data; :meth:`from_dict` reads it back to an equal request (a model given as a
        Python object, as ``map_tiles`` does, is kept by name only)."""
        return {
            "region": self.region.to_dict(),
            "model": {"name": self.model.name, "params": dict(self.model.params)},
            "out": self.out,
            "imagery": self.imagery.to_dict(),
            "grid": self.grid.to_dict(),
            "execution": self.execution.to_dict(),
            "monitoring": self.monitoring.to_dict(),
        }

    def to_folder_dict(self) -> dict[str, Any]:
        """What a run folder keeps in ``request.json``: everything that defines the result, not the
        folder itself nor where it ran (so a run folder can move, and a resume may run elsewhere)."""
        d = self.to_dict()
        del d["out"], d["execution"]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, out: str | Path | None = None) -> RunRequest:
        """The request :meth:`to_dict` (or :meth:`to_folder_dict`, with ``out``) wrote."""
        model = data["model"]
        return cls(
            region=Region.from_dict(data["region"]),
            model=ModelSpec(model["name"], dict(model.get("params") or {})),
            out=str(out if out is not None else data["out"]),
            imagery=Imagery.from_dict(data["imagery"]),
            grid=Grid.from_dict(data.get("grid") or {}),
            execution=Execution.from_dict(data.get("execution") or {}),
            monitoring=Monitoring.from_dict(data.get("monitoring") or {}),
        )

    def parameters(self) -> dict[str, Any]:
        """What the manifest records as the run's parameters (everything but the region and folder)."""
        d = self.to_dict()
        m = self.monitoring
        return {"model": d["model"]["name"], "model_params": d["model"]["params"], **d["imagery"], **d["grid"],
                "retries": self.execution.retries} | ({"per_date": m.per_date} if m.per_date is not None else {}) | (
                    {"alerts": m.alerts.to_dict()} if m.alerts.active else {})

    def replace(self, **changes: Any) -> RunRequest:
        """A copy with some fields changed (``imagery=``, ``grid=``, ``execution=``, ``out=`` ...)."""
        return dataclasses.replace(self, **changes)


def build_request(
    region: Any,
    *,
    model: str | ModelSpec = DEFAULT_MODEL,
    out: str | Path | None,
    threshold: float | None = None,
    catalog: str | Path | None = None,
    collection: str | None = None,
    start: Any = None,
    end: Any = None,
    max_cloud: float | None = None,
    query: Any = None,
    sign: str | None = None,
    exclude: Sequence[str] = (),
    resolution: float | None = None,
    crs: str | None = None,
    tile_size: int | None = None,
    runtime: str = "dask",
    cluster: str | None = None,
    workers: int | None = None,
    retries: int = 2,
    max_area_km2: float | None = DEFAULT_MAX_AREA_KM2,
    per_date: bool | None = None,
    alert_density: float | None = None,
    alert_object_m2: float | None = None,
    on_alert: Sequence[str] | str = (),
    webhooks: Sequence[str] | str = (),
) -> RunRequest:
    """The request from the loose values a user gives (any region form; ``max_area_km2=None``: no limit).

    ``per_date``: one result per acquisition date (None: the model's card decides); ``alert_density``:
    alert when detected pixels per km² of clear water exceed it on a date; ``alert_object_m2``: alert
    for every new object larger than this; ``on_alert``: commands (``{file}`` is the alerts GeoJSON);
    ``webhooks``: URLs that receive the alerts GeoJSON by POST."""
    if out is None:
        raise OutputError("give out= (a folder for the run's files)")
    if runtime not in RUNTIMES and runtime not in ("local", "inprocess"):
        from geoloom.platform.errors import RunError

        raise RunError(f"unknown runtime {runtime!r}; use dask, ray or in-process")
    if isinstance(model, ModelSpec):
        spec = model if threshold is None else dataclasses.replace(model, params={**model.params, "threshold": threshold})
    else:
        spec = ModelSpec(str(model), {"threshold": threshold} if threshold is not None else {})
    return RunRequest(
        region=as_region(region, max_area_km2=max_area_km2),
        model=spec,
        out=str(out),
        imagery=Imagery(catalog=str(catalog or default_catalog()), collection=collection,
                        start=str(start) if start else None, end=str(end) if end else None, max_cloud=max_cloud,
                        query=parse_query(query) or None, sign=sign, exclude=tuple(exclude)),
        grid=Grid(resolution=resolution, crs=crs, tile_size=tile_size),
        execution=Execution(runtime=runtime, cluster=cluster, workers=workers, retries=retries),
        monitoring=Monitoring(per_date=per_date,
                              alerts=AlertRules(density_per_km2=alert_density, object_m2=alert_object_m2),
                              on_alert=_strings(on_alert), webhooks=_strings(webhooks)),
    )


def _strings(value: Sequence[str] | str | None) -> tuple[str, ...]:
    """One string or several as a tuple (empty strings dropped)."""
    if not value:
        return ()
    return tuple(v for v in ([value] if isinstance(value, str) else value) if v)


def request_from_folder(folder: str | Path) -> RunRequest:
    """The request of the run in ``folder``, as it was started (its ``out`` is the folder itself)."""
    f = Path(folder).expanduser() / "request.json"
    if not f.exists():
        raise OutputError(f"{folder} holds no run to resume (no request.json); start a run there without --resume")
    data = json.loads(f.read_text())
    if "request" not in data:
        raise OutputError(f"{folder} was written by an older geoloom; start the run again there with --overwrite")
    return RunRequest.from_dict(data["request"], out=Path(folder).expanduser())
