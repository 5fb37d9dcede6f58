"""Search a STAC API (Earth Search, Planetary Computer, your organisation's) with pystac-client.

The search runs where the run is planned (the CLI, the notebook, the UI), pages through the
results and turns every item into a :class:`~geoloom.platform.catalog.Scene`; pixels are read
later, window by window over HTTP, by the tasks (see ``reading``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import warnings
from dataclasses import dataclass
from typing import Any, Iterable

from geoloom.platform.errors import CatalogError

#: At most this many items are taken from one search (most recent first); more is a sign of a too-wide search.
MAX_ITEMS = 2000

#: Items per page asked of the API.
PAGE_SIZE = 100

_OPS = {"<=": "lte", ">=": "gte", "!=": "neq", "<": "lt", ">": "gt", "=": "eq"}
_EXPR = re.compile(r"^\s*([\w:.\-]+)\s*(<=|>=|!=|<|>|=)\s*(.+?)\s*$")


def is_api_url(catalog: str) -> bool:
    """True for an http(s) URL that is not a JSON file (a static catalog's ``catalog.json``)."""
    s = str(catalog).strip().lower()
    return s.startswith(("http://", "https://")) and not s.split("?")[0].endswith(".json")


def parse_query(expressions: Iterable[str] | dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Property filters in the STAC query extension's form.

    ``["s2:mgrs_tile=31NBG", "view:sun_elevation>30"]`` gives
    ``{"s2:mgrs_tile": {"eq": "31NBG"}, "view:sun_elevation": {"gt": 30}}``; a dict in that
    form is returned as it is.
    """
    if not expressions:
        return {}
    if isinstance(expressions, dict):
        return {str(k): dict(v) if isinstance(v, dict) else {"eq": v} for k, v in expressions.items()}
    query: dict[str, dict[str, Any]] = {}
    for expr in expressions:
        m = _EXPR.match(str(expr))
        if not m:
            raise CatalogError(
                f"cannot read the filter {expr!r}; write PROPERTY OP VALUE with OP one of = != < <= > >=, "
                "e.g. s2:mgrs_tile=31NBG or view:sun_elevation>30"
            )
        key, op, raw = m.groups()
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw.strip("'\"")
        query.setdefault(key, {})[_OPS[op]] = value
    return query


def format_query(query: dict[str, dict[str, Any]] | None) -> list[str]:
    """The filters of :func:`parse_query` written back as ``PROPERTY OP VALUE`` expressions."""
    symbols = {name: symbol for symbol, name in _OPS.items()}
    return [f"{key}{symbols[op]}{value if isinstance(value, str) else json.dumps(value)}"
            for key, conditions in (query or {}).items() for op, value in conditions.items() if op in symbols]


def matches_query(properties: dict[str, Any], query: dict[str, dict[str, Any]]) -> bool:
    """True when the properties pass every filter (the same test a STAC API applies)."""
    for key, conditions in query.items():
        value = properties.get(key)
        for op, target in conditions.items():
            if value is None:
                return False
            try:
                ok = {
                    "eq": value == target, "neq": value != target, "lt": value < target,
                    "lte": value <= target, "gt": value > target, "gte": value >= target,
                    "in": value in target if isinstance(target, list) else False,
                }[op]
            except (TypeError, KeyError):
                raise CatalogError(f"cannot compare {key}={value!r} with {op} {target!r}; check the filter") from None
            if not ok:
                return False
    return True


def datetime_range(start: dt.date | None, end: dt.date | None) -> str | None:
    """The STAC ``datetime`` parameter for whole UTC days (open ends as ``..``)."""
    if not start and not end:
        return None
    a = f"{start.isoformat()}T00:00:00Z" if start else ".."
    b = f"{end.isoformat()}T23:59:59.999Z" if end else ".."
    return f"{a}/{b}"


@dataclass(frozen=True, slots=True)
class ApiSearch:
    """What a search found: the items, and how many the API said matched."""

    items: list[Any]
    matched: int | None
    capped: bool


def search_api(
    url: str,
    geometry: dict[str, Any],
    *,
    collection: str | None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    max_cloud: float | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    max_items: int = MAX_ITEMS,
) -> ApiSearch:
    """Items of ``collection`` intersecting ``geometry`` (GeoJSON, EPSG:4326), paging through the results."""
    from pystac_client.exceptions import APIError

    q = dict(query or {})
    if max_cloud is not None:
        q["eo:cloud_cover"] = {**q.get("eo:cloud_cover", {}), "lte": max_cloud}
    client = open_api(url)
    try:
        if not collection:
            names = sorted(c.id for c in client.get_collections())
            shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise CatalogError(f"the STAC API {url} needs --collection NAME; it offers: {shown or 'no collections'}")
        search = client.search(
            collections=[collection], intersects=geometry, datetime=datetime_range(start, end),
            query=q or None, limit=PAGE_SIZE, max_items=max_items + 1,
        )
        items = list(search.items())
        with warnings.catch_warnings():  # APIs without numberMatched (Planetary Computer): counted below
            warnings.simplefilter("ignore")
            matched = search.matched()
    except CatalogError:
        raise
    except APIError as exc:
        raise CatalogError(f"the STAC API {url} answered {_reason(exc)}; check --collection and the filters") from None
    except Exception as exc:  # connection errors, bad JSON
        raise CatalogError(f"cannot search the STAC API {url}: {_reason(exc)}; check the URL and the connection") from None
    capped = len(items) > max_items
    return ApiSearch(items[:max_items], matched, capped)


def _reason(exc: BaseException) -> str:
    """The first line of an error, shortened; connection failures said plainly."""
    text = str(exc).strip()
    if "Failed to establish a new connection" in text or "Connection refused" in text:
        return "no answer (connection refused)"
    if "Max retries exceeded" in text or "timed out" in text.lower():
        return "no answer (the connection failed or timed out)"
    return (text.splitlines()[0][:200] if text else type(exc).__name__)


def open_api(url: str) -> Any:
    """A pystac-client ``Client`` for ``url``; a CatalogError when it cannot be reached or is not STAC."""
    from pystac_client import Client

    try:
        return Client.open(url)
    except Exception as exc:
        raise CatalogError(f"cannot search the STAC API {url}: {_reason(exc)}; check the URL and the connection") from None


def collection_exists(url: str, collection: str) -> bool:
    """Whether the API has ``collection`` (asked only to explain an empty search)."""
    try:
        return open_api(url).get_collection(collection) is not None
    except Exception:
        return False


def list_collections(url: str) -> list[tuple[str, str]]:
    """(id, title) of every collection of a STAC API."""
    client = open_api(url)
    try:
        return sorted((c.id, c.title or "") for c in client.get_collections())
    except Exception as exc:
        raise CatalogError(f"cannot list the collections of {url}: {_reason(exc)}; check the URL") from None
