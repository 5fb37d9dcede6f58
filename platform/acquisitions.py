"""Acquisition dates: the scenes of a search grouped by the UTC day they were taken."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Iterable

from geoloom.platform.catalog import Scene

__all__ = ["acquisition_date", "by_date", "date_folder_name"]


def acquisition_date(scene: Scene) -> str:
    """The scene's acquisition day, ``YYYY-MM-DD`` in UTC (the granules of one pass share it)."""
    return scene.time.astimezone(dt.timezone.utc).date().isoformat()


def by_date(scenes: Iterable[Scene]) -> dict[str, list[Scene]]:
    """The scenes grouped by acquisition day, oldest day first (each day keeps the scenes' order)."""
    groups: dict[str, list[Scene]] = defaultdict(list)
    for scene in scenes:
        groups[acquisition_date(scene)].append(scene)
    return {day: groups[day] for day in sorted(groups)}


def date_folder_name(day: str) -> str:
    """The sub-folder of a per-date run that holds one day's result (``dates/2024-01-09``)."""
    dt.date.fromisoformat(day)  # refuses anything that is not a day
    return f"dates/{day}"
