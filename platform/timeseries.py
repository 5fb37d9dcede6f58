"""A per-date run's time series: one row per acquisition date, written as Parquet, CSV and a chart."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import geopandas as gpd
import numpy as np
import pandas as pd

from geoloom.platform.ledger import TileRecord

__all__ = ["COLUMNS", "date_row", "timeseries_frame", "write_timeseries"]

#: The columns of ``timeseries.parquet`` / ``.csv``, in order.
COLUMNS = ("date", "scenes", "observed_km2", "cloud_pct", "clear_water_km2", "debris_pixels", "debris_px_per_km2",
           "objects", "largest_object_m2", "tiles_done", "tiles_failed")


def date_row(day: str, records: Iterable[TileRecord], detections: gpd.GeoDataFrame, *, pixel_area_m2: float,
             scenes: Sequence[str]) -> dict[str, Any]:
    """One date's statistics from its tiles' pixel counts and its detections.

    ``cloud_pct``: cloud and shadow over the observed pixels (NaN where the model reads no SCL, so
    clouds are not known); ``debris_px_per_km2``: detected pixels per km² of clear water (NaN where no
    clear water was seen)."""
    totals: dict[str, int] = {}
    done = failed = 0
    for r in records:
        if r.state == "done":
            done += 1
            for k, v in r.counts.items():
                totals[k] = totals.get(k, 0) + int(v)
        elif r.state == "failed":
            failed += 1
    km2 = pixel_area_m2 / 1e6
    observed, water = totals.get("observed", 0), totals.get("clear_water", 0)
    debris = totals.get("detected", 0)
    areas = detections["area_m2"].astype(float) if len(detections) and "area_m2" in detections else pd.Series(dtype=float)
    return {
        "date": day,
        "scenes": len(scenes),
        "observed_km2": round(observed * km2, 4),
        "cloud_pct": round(100.0 * totals["cloud"] / observed, 2) if observed and "cloud" in totals else float("nan"),
        "clear_water_km2": round(water * km2, 4),
        "debris_pixels": debris,
        "debris_px_per_km2": round(debris / (water * km2), 4) if water else float("nan"),
        "objects": int(len(detections)),
        "largest_object_m2": float(areas.max()) if len(areas) else 0.0,
        "tiles_done": done,
        "tiles_failed": failed,
    }


def timeseries_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame in date order (``date`` as a UTC-naive day timestamp)."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    df["date"] = pd.to_datetime(df["date"])
    return df.sort_values("date").reset_index(drop=True)


def _replace(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    return path


def write_timeseries(frame: pd.DataFrame, folder: str | Path, *, title: str = "") -> list[Path]:
    """Write ``timeseries.parquet``, ``timeseries.csv`` and ``timeseries.png`` into ``folder``; the paths."""
    folder = Path(folder)
    written = []
    tmp = folder / "timeseries.parquet.part"
    frame.to_parquet(tmp, index=False)
    written.append(_replace(tmp, folder / "timeseries.parquet"))
    tmp = folder / "timeseries.csv.part"
    frame.assign(date=frame["date"].dt.strftime("%Y-%m-%d")).to_csv(tmp, index=False)
    written.append(_replace(tmp, folder / "timeseries.csv"))
    tmp = folder / "timeseries.png.part"
    chart(frame, tmp, title=title)
    written.append(_replace(tmp, folder / "timeseries.png"))
    return written


def chart(frame: pd.DataFrame, path: str | Path, *, title: str = "") -> None:
    """A PNG: debris pixels per km² of clear water per date (bars), and clear water and cloud (lines)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    days = frame["date"]
    width = np.timedelta64(1, "D") if len(days) < 2 else max(np.diff(days.values).min() * 0.6, np.timedelta64(12, "h"))
    density = frame["debris_px_per_km2"].fillna(0.0)
    top.bar(days, density, width=width, color="#d62728")
    top.set_ylabel("debris px / km²\nclear water")
    top.set_title(title or "Detections per acquisition date", loc="left", fontsize=11)
    bottom.plot(days, frame["clear_water_km2"], marker="o", color="#1f77b4", label="clear water km²")
    bottom.set_ylabel("clear water km²")
    cloud = bottom.twinx()
    cloud.plot(days, frame["cloud_pct"], marker=".", linestyle="--", color="#7f7f7f", label="cloud %")
    cloud.set_ylabel("cloud %")
    cloud.set_ylim(0, 100)
    fig.autofmt_xdate()
    with open(path, "wb") as f:
        fig.savefig(f, format="png")
