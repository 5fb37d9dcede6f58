"""Alert rules of a monitoring run: which new dates and detections fire, written as GeoJSON and a history."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from datetime import date as _date
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import geopandas as gpd
import numpy as np
import pandas as pd

from geoloom.platform.errors import GeoloomError

#: The rule names, in the order their features and fired dates are listed.
RULES = ("density", "object")
#: The columns an alert feature has before the detection's own columns.
ALERT_COLUMNS = ["date", "rule", "value", "threshold"]
_FIELDS = {"density_per_km2": "density", "object_m2": "object"}


class AlertError(GeoloomError, ValueError):
    """The alert rules are invalid, or the statistics lack what a rule needs."""


def _threshold(name: str, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise AlertError(f"alert rule {name} must be a number, not {value!r}; give a non-negative number or leave it out")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise AlertError(f"alert rule {name} must be a finite number >= 0, not {value}; give a non-negative number or leave it out")
    return value


@dataclass(frozen=True, slots=True)
class AlertRules:
    """Thresholds that make a date or a detection an alert; a rule left as None is off."""

    density_per_km2: float | None = None  # fires for a date whose debris pixels per km2 of clear water exceed it
    object_m2: float | None = None  # fires for each detection whose area (m2) exceeds it

    def __post_init__(self) -> None:
        for name in _FIELDS:
            object.__setattr__(self, name, _threshold(name, getattr(self, name)))

    @property
    def active(self) -> bool:
        """Whether any rule is on."""
        return self.density_per_km2 is not None or self.object_m2 is not None

    def to_dict(self) -> dict[str, float]:
        """The rules as a JSON-friendly dict; rules that are off are left out."""
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AlertRules:
        """Rules from :meth:`to_dict` output (None or {} gives no rules); unknown keys are an error."""
        d = dict(d or {})
        unknown = sorted(set(d) - set(_FIELDS))
        if unknown:
            raise AlertError(f"unknown alert rule(s) {', '.join(unknown)}; use {' and '.join(_FIELDS)}")
        return cls(**d)


@dataclass(frozen=True, slots=True)
class Alerts:
    """What fired: one feature per (detection, rule) in EPSG:4326, and one summary per fired (date, rule).

    A detection that meets both rules is listed twice, once per rule, so each feature has one
    ``rule``, ``value`` and ``threshold``. ``dates`` holds dicts with ``date``, ``rule``, ``value``
    (the date's density, or its largest object's area), ``threshold`` and ``detections`` (how many
    features the date has for that rule; a density alert may have none when the polygons were
    filtered out)."""

    features: gpd.GeoDataFrame
    dates: list[dict[str, Any]] = field(default_factory=list)
    rules: AlertRules = AlertRules()

    @property
    def fired(self) -> bool:
        """Whether any rule fired on any date."""
        return bool(self.dates)

    def messages(self) -> list[str]:
        """One line per fired (date, rule), e.g. ``density 5.2 > 3 on 2024-01-19 (4 detections)``."""
        unit = {"density": " px/km2", "object": " m2"}
        return [f"{d['rule']} {d['value']:.4g}{unit.get(d['rule'], '')} > {d['threshold']:.4g} on {d['date']} "
                f"({d.get('detections', 0)} detection{'' if d.get('detections', 0) == 1 else 's'})" for d in self.dates]


def day_of(value: Any) -> str:
    """The ISO day (YYYY-MM-DD) of an ISO string, a Timestamp, a datetime or a date."""
    if isinstance(value, datetime | pd.Timestamp):
        return value.date().isoformat()
    if isinstance(value, _date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return _date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        raise AlertError(f"{value!r} is not a date; give dates as YYYY-MM-DD") from None


def _day_or_none(value: Any) -> str | None:
    try:
        return day_of(value)
    except AlertError:
        return None  # a detection without a known date belongs to no date


def _in_4326(detections: gpd.GeoDataFrame | None) -> gpd.GeoDataFrame:
    if detections is None:
        return gpd.GeoDataFrame({"date": pd.Series(dtype="str")}, geometry=[], crs="EPSG:4326")
    if detections.crs is None:
        return detections.set_crs("EPSG:4326")
    return detections.to_crs("EPSG:4326")


def _areas_m2(detections: gpd.GeoDataFrame) -> pd.Series:
    if "area_m2" in detections.columns:
        return pd.to_numeric(detections["area_m2"], errors="coerce")
    if not len(detections):
        return pd.Series(dtype="float64", index=detections.index)
    return detections.to_crs(detections.estimate_utm_crs()).area


def _densities(stats: pd.DataFrame) -> pd.Series:
    if "debris_px_per_km2" in stats.columns:
        return pd.to_numeric(stats["debris_px_per_km2"], errors="coerce")
    if {"debris_pixels", "clear_water_km2"} <= set(stats.columns):
        water = pd.to_numeric(stats["clear_water_km2"], errors="coerce")
        return pd.to_numeric(stats["debris_pixels"], errors="coerce") / water.where(water > 0)
    raise AlertError("the date statistics have no debris_px_per_km2 column; give it (or debris_pixels and clear_water_km2)")


def _tagged(rows: gpd.GeoDataFrame, day: str, rule: str, value: Any, threshold: float) -> gpd.GeoDataFrame:
    own = [c for c in rows.columns if c not in ALERT_COLUMNS and c != rows.geometry.name]
    tags = pd.DataFrame({"date": day, "rule": rule, "value": value, "threshold": threshold}, index=rows.index)
    tags["value"] = tags["value"].astype("float64")
    return gpd.GeoDataFrame(pd.concat([tags, rows[own]], axis=1), geometry=rows.geometry, crs=rows.crs)


def evaluate(rules: AlertRules, stats: pd.DataFrame | Iterable[Mapping[str, Any]],
             detections: gpd.GeoDataFrame | None) -> Alerts:
    """The alerts of the dates in ``stats`` (detections of other dates are ignored).

    A date's density fires when its ``debris_px_per_km2`` exceeds the rule (a date without a finite
    density never fires); each detection of that date becomes a feature. A detection fires the
    object rule when its ``area_m2`` exceeds it. Detections need a ``date`` (else their
    ``datetime`` gives it)."""
    stats = stats if isinstance(stats, pd.DataFrame) else pd.DataFrame(list(stats))
    det = _in_4326(detections).reset_index(drop=True)
    if len(stats) and "date" not in stats.columns:
        raise AlertError("the date statistics have no date column; give each row its date as YYYY-MM-DD")
    days = [day_of(d) for d in stats["date"]] if len(stats) else []
    source = "date" if "date" in det.columns else "datetime" if "datetime" in det.columns else None
    if source is None and len(det):
        raise AlertError("the detections have no date or datetime column; add each detection's date as YYYY-MM-DD")
    det_days = pd.Series([_day_or_none(v) for v in det[source]] if len(det) else [], index=det.index,
                         dtype="object")
    parts: list[gpd.GeoDataFrame] = []
    fired: list[dict[str, Any]] = []
    if rules.density_per_km2 is not None and days:
        t = rules.density_per_km2
        for day, value in sorted(zip(days, _densities(stats).tolist(), strict=True)):
            if value is None or not math.isfinite(value) or value <= t:
                continue
            rows = det[det_days == day]
            parts.append(_tagged(rows, day, "density", float(value), t))
            fired.append({"date": day, "rule": "density", "value": float(value), "threshold": t, "detections": len(rows)})
    if rules.object_m2 is not None and len(det):
        t = rules.object_m2
        areas = _areas_m2(det)
        big = det[(areas > t) & det_days.isin(set(days))]
        for day in sorted(set(det_days[big.index])):
            rows = big[det_days[big.index] == day]
            parts.append(_tagged(rows, day, "object", areas[rows.index].to_numpy(dtype="float64"), t))
            fired.append({"date": day, "rule": "object", "value": float(areas[rows.index].max()), "threshold": t,
                          "detections": len(rows)})
    features = pd.concat(parts, ignore_index=True) if parts else _tagged(det.iloc[0:0], "", "", [], 0.0)
    features = gpd.GeoDataFrame(features, geometry=det.geometry.name, crs="EPSG:4326")
    if len(features):
        order = features["rule"].map({r: i for i, r in enumerate(RULES)})
        features = features.assign(_o=order).sort_values(["date", "_o"], kind="stable").drop(columns="_o")
        features = features.reset_index(drop=True)
    fired.sort(key=lambda d: (d["date"], RULES.index(d["rule"])))
    return Alerts(features=features, dates=fired, rules=rules)


def _json_default(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | datetime | _date):
        return value.isoformat()
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def alerts_geojson(alerts: Alerts) -> dict[str, Any]:
    """The alerts as a GeoJSON FeatureCollection with the fired dates and the rules as foreign members."""
    features = alerts.features
    fc = features.to_geo_dict(drop_id=True) if len(features) else {"type": "FeatureCollection", "features": []}
    fc["alerts"] = [dict(d) for d in alerts.dates]
    fc["rules"] = alerts.rules.to_dict()
    return fc


def write_alerts(alerts: Alerts, path: str | Path) -> Path:
    """Write the alerts as GeoJSON atomically (a partial file, then a rename)."""
    path = Path(path)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(alerts_geojson(alerts), default=_json_default), encoding="utf-8")
    os.replace(part, path)
    return path


def read_alerts(path: str | Path) -> Alerts:
    """Alerts from a file :func:`write_alerts` wrote."""
    try:
        fc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise AlertError(f"cannot read the alerts file {path} ({exc}); run the monitoring again to rewrite it") from None
    features = gpd.GeoDataFrame.from_features(fc.get("features") or [], crs="EPSG:4326")
    if not len(features):
        features = gpd.GeoDataFrame({c: pd.Series(dtype="float64" if c in ("value", "threshold") else "str")
                                     for c in ALERT_COLUMNS}, geometry=[], crs="EPSG:4326")
    else:
        own = [c for c in features.columns if c not in ALERT_COLUMNS and c != "geometry"]
        features = features[[*ALERT_COLUMNS, *own, "geometry"]]
    return Alerts(features=features, dates=list(fc.get("alerts") or []), rules=AlertRules.from_dict(fc.get("rules")))


def append_history(path: str | Path, alerts: Alerts, when: datetime | str | None = None) -> int:
    """Append one JSON line per fired (date, rule) with the time of the check; returns the lines written."""
    when = when or datetime.now(timezone.utc)
    stamp = when.isoformat() if isinstance(when, datetime) else str(when)
    lines = [json.dumps({"when": stamp, **d}, sort_keys=True, default=_json_default) for d in alerts.dates]
    if not lines:
        return 0
    path = Path(path)
    torn = False
    if path.exists() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            torn = f.read(1) != b"\n"
    with open(path, "a", encoding="utf-8") as f:
        # a crash may have left a torn last line: start on a line of our own
        f.write(("\n" if torn else "") + "\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return len(lines)


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The alert history, oldest first; a missing file is an empty history and unreadable lines are skipped."""
    path = Path(path)
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
    return out


__all__ = ["ALERT_COLUMNS", "RULES", "AlertError", "AlertRules", "Alerts", "alerts_geojson", "append_history",
           "day_of", "evaluate", "read_alerts", "read_history", "write_alerts"]
