"""A STAC API and COG file server on 127.0.0.1 for tests, shaped like the real providers.

``StacApiServer`` serves the scenes of a geoloom sample catalog (``geoloom sample-data``)
the way two public STAC APIs serve Sentinel-2 L2A, so that code written against them can be
tested offline:

* ``flavor="earth-search"``: Element 84 Earth Search v1 (stac-server),
  landing page ``/v1``, collection ``sentinel-2-l2a``, asset keys ``blue``, ``nir08``, ``scl``...
* ``flavor="planetary-computer"``: Microsoft Planetary Computer (stac-fastapi-pgstac),
  landing page ``/api/stac/v1``, collection ``sentinel-2-l2a``, asset keys ``B02``, ``B8A``, ``SCL``...

Asset hrefs point at the server's own file route (``/files/...``), which serves the sample
COGs with HTTP range requests (single ranges and multipart/byteranges), HEAD, an optional
signature check (``require_query_param``) and injected faults (``server.faults``). Every
request is logged (``server.requests()``).

Example::

    with StacApiServer(sample_catalog, flavor="earth-search") as srv:
        client = pystac_client.Client.open(srv.api_url)
        items = list(client.search(collections=["sentinel-2-l2a"], bbox=[...]).items())
        srv.faults.add("/blue.tif", "status", status=503, times=1)
        ...
        assert any(r.status == 206 for r in srv.requests(path_contains="blue.tif"))

Only the standard library, pystac (to read the sample catalog) and shapely are used.
"""

from __future__ import annotations

import base64
import copy
import email.utils
import hashlib
import json
import re
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Literal
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

__all__ = ["StacApiServer", "ItemOverride", "Fault", "FaultSet", "LoggedRequest", "FLAVORS"]

FLAVORS = ("earth-search", "planetary-computer")
Flavor = Literal["earth-search", "planetary-computer"]

COG_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
_FILES = "/files"
_REFLECTANCE_SCALE = 0.0001

# sample/Earth Search key, S2 band id, ES common name, PC common name (None: PC gives none),
# centre wavelength (um), FWHM (um), resolution (m), ES title, PC title (both without the " - 10m")
_BANDS: list[tuple[str, str, str, str | None, float, float, int, str, str]] = [
    ("coastal", "B01", "coastal", "coastal", 0.443, 0.027, 60, "Coastal aerosol (band 1)", "Band 1 - Coastal aerosol"),
    ("blue", "B02", "blue", "blue", 0.49, 0.098, 10, "Blue (band 2)", "Band 2 - Blue"),
    ("green", "B03", "green", "green", 0.56, 0.045, 10, "Green (band 3)", "Band 3 - Green"),
    ("red", "B04", "red", "red", 0.665, 0.038, 10, "Red (band 4)", "Band 4 - Red"),
    ("rededge1", "B05", "rededge", "rededge", 0.704, 0.019, 20, "Red edge 1 (band 5)", "Band 5 - Vegetation red edge 1"),
    ("rededge2", "B06", "rededge", "rededge", 0.74, 0.018, 20, "Red edge 2 (band 6)", "Band 6 - Vegetation red edge 2"),
    ("rededge3", "B07", "rededge", "rededge", 0.783, 0.028, 20, "Red edge 3 (band 7)", "Band 7 - Vegetation red edge 3"),
    ("nir", "B08", "nir", "nir", 0.842, 0.145, 10, "NIR 1 (band 8)", "Band 8 - NIR"),
    ("nir08", "B8A", "nir08", "rededge", 0.865, 0.033, 20, "NIR 2 (band 8A)", "Band 8A - Vegetation red edge 4"),
    ("nir09", "B09", "nir09", None, 0.945, 0.026, 60, "NIR 3 (band 9)", "Band 9 - Water vapor"),
    ("swir16", "B11", "swir16", "swir16", 1.61, 0.143, 20, "SWIR 1 (band 11)", "Band 11 - SWIR (1.6)"),
    ("swir22", "B12", "swir22", "swir22", 2.19, 0.242, 20, "SWIR 2 (band 12)", "Band 12 - SWIR (2.2)"),
]
#: Earth Search asset key -> Planetary Computer asset key (the 12 reflectance bands and SCL).
ES_TO_PC = {b[0]: b[1] for b in _BANDS} | {"scl": "SCL"}
PC_TO_ES = {v: k for k, v in ES_TO_PC.items()}

_STAC = "https://api.stacspec.org/v1.0.0"
_OGC = "http://www.opengis.net/spec"
_CONFORMS = {
    # stac-server (Earth Search v1)
    "earth-search": [
        f"{_STAC}/core", f"{_STAC}/collections", f"{_STAC}/ogcapi-features", f"{_STAC}/item-search",
        f"{_STAC}/ogcapi-features#fields", f"{_STAC}/ogcapi-features#sort", f"{_STAC}/ogcapi-features#query",
        f"{_STAC}/item-search#fields", f"{_STAC}/item-search#sort", f"{_STAC}/item-search#query",
        f"{_STAC}/item-search#filter", "https://api.stacspec.org/v0.3.0/aggregation",
        f"{_OGC}/ogcapi-features-1/1.0/conf/core", f"{_OGC}/ogcapi-features-1/1.0/conf/oas30",
        f"{_OGC}/ogcapi-features-1/1.0/conf/geojson", f"{_OGC}/ogcapi-features-3/1.0/conf/filter",
        f"{_OGC}/ogcapi-features-3/1.0/conf/features-filter", f"{_OGC}/cql2/1.0/conf/basic-cql2",
        f"{_OGC}/cql2/1.0/conf/cql2-json",
    ],
    # stac-fastapi-pgstac (Planetary Computer); it still advertises release-candidate versions
    "planetary-computer": [
        "https://api.stacspec.org/v1.0.0-rc.1/core", "https://api.stacspec.org/v1.0.0-rc.1/collections",
        "https://api.stacspec.org/v1.0.0-rc.2/ogcapi-features", "https://api.stacspec.org/v1.0.0-rc.2/item-search",
        "https://api.stacspec.org/v1.0.0-rc.2/item-search#query", "https://api.stacspec.org/v1.0.0-rc.2/item-search#sort",
        "https://api.stacspec.org/v1.0.0-rc.2/item-search#fields", "https://api.stacspec.org/v1.0.0-rc.2/item-search#filter",
        "https://api.stacspec.org/v1.0.0-rc.2/ogcapi-features#query",
        f"{_OGC}/ogcapi-features-1/1.0/conf/core", f"{_OGC}/ogcapi-features-1/1.0/conf/oas30",
        f"{_OGC}/ogcapi-features-1/1.0/conf/geojson", f"{_OGC}/ogcapi-features-3/1.0/conf/filter",
        f"{_OGC}/ogcapi-features-3/1.0/conf/features-filter", f"{_OGC}/cql2/1.0/conf/cql2-json",
        f"{_OGC}/cql2/1.0/conf/cql2-text", f"{_OGC}/cql2/1.0/conf/basic-cql2",
    ],
}
_API_PREFIX = {"earth-search": "/v1", "planetary-computer": "/api/stac/v1"}
_MAX_LIMIT = {"earth-search": 10000, "planetary-computer": 1000}


# ----------------------------------------------------------------------------------------
# per-item overrides
# ----------------------------------------------------------------------------------------


@dataclass
class ItemOverride:
    """How one served item differs from the sample scene it comes from.

    ``offset_dn``: the DN the caller added to this scene's reflectance files (Sentinel-2
    processing baseline >= 04.00 adds ``BOA_ADD_OFFSET`` = 1000). Earth Search declares it as
    ``raster:bands[0].offset = -offset_dn * 0.0001`` (``-0.1`` for 1000) on the reflectance
    assets and sets ``earthsearch:boa_offset_applied``; Planetary Computer declares nothing but
    the processing baseline, as the real API does.
    ``file_root``: a folder holding this scene's files under the sample's file names
    (``blue.tif``, ``scl.tif``...); the assets then point at those (served under ``/files/~mN/``).
    ``processing_baseline``: ``s2:processing_baseline``; default ``"05.10"`` when ``offset_dn``
    else ``"03.01"`` (a baseline without the offset, which matches the sample data).
    ``boa_offset_applied``: Earth Search's flag; default ``offset_dn != 0`` (Earth Search sets it
    true, together with ``offset: -0.1``, on baseline >= 04.00 items).
    ``properties``: extra or replaced item properties (e.g. ``{"datetime": ...}``, ``{"eo:cloud_cover": 3}``).
    """

    offset_dn: int = 0
    file_root: str | Path | None = None
    processing_baseline: str | None = None
    boa_offset_applied: bool | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def baseline(self) -> str:
        if self.processing_baseline:
            return self.processing_baseline
        return "05.10" if self.offset_dn else "03.01"

    @property
    def offset(self) -> float:
        return round(-self.offset_dn * _REFLECTANCE_SCALE, 6) + 0.0  # + 0.0: no "-0.0"

    @property
    def applied(self) -> bool:
        return bool(self.offset_dn) if self.boa_offset_applied is None else bool(self.boa_offset_applied)


# ----------------------------------------------------------------------------------------
# request log and faults
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoggedRequest:
    """One request as the server saw and answered it.

    ``path``: the URL path, percent-decoded, without the query. ``query``: ``parse_qs`` of the
    query string. ``range``: the ``Range`` header or None. ``status``: the status sent (for a
    ``cut``/``reset`` fault the status of the headers that went out, 0 when none did).
    ``fault``: the kind of the fault applied, or None. ``body``: the JSON body of an API POST.
    ``done``: False while the request is still being answered (it is logged on arrival, with
    status 0, and replaced by its final entry when answered).
    """

    method: str
    path: str
    query: dict[str, list[str]]
    range: str | None
    status: int
    fault: str | None = None
    bytes_sent: int = 0
    time: float = 0.0
    body: Any = None
    done: bool = True

    @property
    def route(self) -> str:
        return "files" if self.path.startswith(_FILES + "/") else "api"


FaultKind = Literal["status", "404", "cut", "reset", "slow"]
_KINDS = ("status", "404", "cut", "reset", "slow")


@dataclass
class Fault:
    """A fault that applies to requests whose path contains ``match``.

    ``kind``: ``"status"`` (answer ``status``, e.g. 503 or 429, with a short body),
    ``"404"`` (answer 404), ``"cut"`` (send the headers with the full Content-Length, then only
    ``keep`` of the body (a fraction < 1, or a byte count >= 1), then close the connection),
    ``"reset"`` (close the connection with a TCP RST before answering), ``"slow"`` (sleep
    ``delay`` seconds, then answer normally or apply the next matching fault).
    ``times``: how many matching requests it applies to (None: all); ``hits``: how many it has.
    ``scope``: ``"files"`` (the file route), ``"api"`` (the STAC API) or ``"any"``.
    ``methods``: only these HTTP methods (e.g. ``{"GET"}`` to spare HEAD); None: all.
    ``ranged``: True only requests with a Range header, False only requests without; None: both.
    ``when``: an extra predicate on the :class:`LoggedRequest` being answered (status 0).
    ``headers``: extra response headers for ``status`` (e.g. ``{"Retry-After": "1"}``).
    """

    match: str
    kind: str
    times: int | None = 1
    status: int = 503
    delay: float = 0.0
    keep: float = 0.5
    scope: str = "files"
    methods: frozenset[str] | None = None
    ranged: bool | None = None
    when: Callable[[LoggedRequest], bool] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def _matches(self, req: LoggedRequest) -> bool:
        if self.exhausted or self.match not in req.path:
            return False
        if self.scope != "any" and self.scope != req.route:
            return False
        if self.methods is not None and req.method not in self.methods:
            return False
        if self.kind == "cut" and req.method == "HEAD":  # nothing to cut
            return False
        if self.ranged is not None and (req.range is not None) != self.ranged:
            return False
        return self.when is None or bool(self.when(req))


_UNSET: Any = object()


class FaultSet:
    """The server's faults: ``add`` them, then they apply in the order added (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, match: str, kind: FaultKind, *, times: int | None = _UNSET, status: int = 503,
            delay: float = 0.0, keep: float = 0.5, scope: Literal["files", "api", "any"] = "files",
            methods: Iterable[str] | None = None, ranged: bool | None = None,
            when: Callable[[LoggedRequest], bool] | None = None, headers: dict[str, str] | None = None) -> Fault:
        """Add a fault (see :class:`Fault`); ``times`` defaults to 1, and to None (always) for ``404``."""
        if kind not in _KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {_KINDS}")
        if scope not in ("files", "api", "any"):
            raise ValueError(f"unknown fault scope {scope!r}")
        if times is _UNSET:
            times = None if kind == "404" else 1
        f = Fault(match, kind, times, status if kind != "404" else 404, delay, keep, scope,
                  frozenset(m.upper() for m in methods) if methods else None, ranged, when, dict(headers or {}))
        with self._lock:
            self._faults.append(f)
        return f

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f is not fault]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def __iter__(self):  # noqa: ANN204
        with self._lock:
            return iter(list(self._faults))

    def __len__(self) -> int:
        with self._lock:
            return len(self._faults)

    def _take(self, req: LoggedRequest) -> tuple[float, Fault | None]:
        """The total delay of matching ``slow`` faults and the first other matching fault (both counted)."""
        delay, hit = 0.0, None
        with self._lock:
            for f in self._faults:
                if not f._matches(req):
                    continue
                if f.kind == "slow":
                    f.hits += 1
                    delay += f.delay
                elif hit is None:
                    f.hits += 1
                    hit = f
        return delay, hit


# ----------------------------------------------------------------------------------------
# search helpers
# ----------------------------------------------------------------------------------------


class _BadRequest(Exception):
    pass


class _NotFound(Exception):
    pass


def _parse_dt(s: str, *, end: bool = False) -> datetime:
    s = s.strip()
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):  # a date: its whole day
        d = datetime.fromisoformat(s).replace(tzinfo=timezone.utc)
        return d + timedelta(days=1) - timedelta(microseconds=1) if end else d
    try:
        d = datetime.fromisoformat(s.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _BadRequest(f"datetime value is invalid, does not match RFC3339 format: {s!r}") from None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def _parse_interval(value: str) -> tuple[datetime | None, datetime | None]:
    parts = value.split("/")
    if len(parts) == 1:
        if parts[0] in ("", ".."):
            raise _BadRequest("datetime value is invalid")
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", parts[0].strip()):
            return _parse_dt(parts[0]), _parse_dt(parts[0], end=True)
        d = _parse_dt(parts[0])
        return d, d
    if len(parts) != 2:
        raise _BadRequest("datetime value is invalid, too many forward slashes for an interval")
    a, b = (p.strip() for p in parts)
    if a in ("", "..") and b in ("", ".."):
        raise _BadRequest("datetime value is invalid, at least one end of the interval must be closed")
    start = None if a in ("", "..") else _parse_dt(a)
    stop = None if b in ("", "..") else _parse_dt(b, end=True)
    if start and stop and stop < start:
        raise _BadRequest("datetime value is invalid, start datetime must be before end datetime with interval")
    return start, stop


def _as_list(v: Any) -> list[str] | None:
    if v is None or v == "" or v == []:
        return None
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                return [str(x) for x in json.loads(s)]
            except ValueError:
                pass
        return [x for x in s.split(",") if x]
    return [str(x) for x in v]


def _as_json(v: Any, what: str) -> Any:
    if v is None or v == "":
        return None
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            raise _BadRequest(f"Invalid {what}: not JSON") from None
    return v


_QUERY_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "neq": lambda a, b: a != b,
    "lt": lambda a, b: a is not None and a < b,
    "lte": lambda a, b: a is not None and a <= b,
    "gt": lambda a, b: a is not None and a > b,
    "gte": lambda a, b: a is not None and a >= b,
    "in": lambda a, b: a in b,
    "startsWith": lambda a, b: isinstance(a, str) and a.startswith(b),
    "endsWith": lambda a, b: isinstance(a, str) and a.endswith(b),
    "contains": lambda a, b: isinstance(a, str) and b in a,
}


def _epoch_ms(d: datetime) -> int:
    return int(round(d.timestamp() * 1000))


def _b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj, separators=(",", ":")).encode()).decode().rstrip("=")


def _unb64(s: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4)))


@dataclass
class _Entry:
    """One served item: its source scene and what the server makes of it."""

    item_id: str
    source: dict[str, Any]  # the sample item, asset hrefs made absolute paths
    item_dir: Path
    override: ItemOverride

    @property
    def datetime(self) -> datetime:
        return _parse_dt(str(self.override.properties.get("datetime") or self.source["properties"]["datetime"]))

    @property
    def sort_key(self) -> tuple[int, str]:
        return _epoch_ms(self.datetime), self.item_id


# ----------------------------------------------------------------------------------------
# the server
# ----------------------------------------------------------------------------------------


_PORTS_USED: set[int] = set()
_PORTS_LOCK = threading.Lock()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type, owner: StacApiServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request, client_address):  # noqa: ANN001, ANN201
        with self.conn_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):  # noqa: ANN001, ANN201
        with self.conn_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request, client_address):  # noqa: ANN001, ANN201
        pass  # clients hanging up (and injected cuts) are expected here


class StacApiServer:
    """A loopback STAC API (Earth Search v1 or Planetary Computer shaped) and COG file server.

    ``catalog_path``: the sample ``catalog.json``; its items become the collection
    ``collection_id`` (default ``"sentinel-2-l2a"``) and its folder the root of ``/files/``.
    ``flavor``: ``"earth-search"`` or ``"planetary-computer"``.
    ``overrides``: ``{item_id: ItemOverride | dict}`` (see :class:`ItemOverride`).
    ``require_query_param``: e.g. ``{"sig": "s3cret"}``: file requests without these query
    parameters get 403 (the hrefs in the items do not carry them: a signing hook must add them).
    ``default_limit``: page size when the request gives none (10 on both real APIs).
    ``port``: 0 picks a free port. The server listens once constructed; ``start()`` (or ``with``)
    serves, ``stop()`` shuts down and closes open connections.
    """

    def __init__(self, catalog_path: str | Path, flavor: Flavor = "earth-search", *,
                 overrides: dict[str, ItemOverride | dict[str, Any]] | None = None,
                 require_query_param: dict[str, str] | None = None, collection_id: str = "sentinel-2-l2a",
                 default_limit: int = 10, host: str = "127.0.0.1", port: int = 0) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; one of {FLAVORS}")
        self.flavor: Flavor = flavor
        self.catalog_path = Path(catalog_path).resolve()
        self.root = self.catalog_path.parent
        self.collection_id = collection_id
        self.default_limit = int(default_limit)
        self.require_query_param = dict(require_query_param or {})
        self.faults = FaultSet()
        self._lock = threading.RLock()
        self._log: list[LoggedRequest] = []
        self._mounts: dict[str, Path] = {}
        self._entries: dict[str, _Entry] = {}
        self._load_catalog()
        for item_id, ov in (overrides or {}).items():
            self.set_override(item_id, ov)
        self._httpd = self._bind(host, port)
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def _bind(self, host: str, port: int) -> _HTTPServer:
        # GDAL caches what it read per URL for the life of the process: never hand out a port
        # (hence URLs) that an earlier server of this process had, unless asked for explicitly
        for _ in range(50):
            httpd = _HTTPServer((host, port), _Handler, self)
            got = httpd.server_address[1]
            with _PORTS_LOCK:
                if port or got not in _PORTS_USED:
                    _PORTS_USED.add(got)
                    return httpd
            httpd.server_close()
        raise OSError("no fresh port found")

    def start(self) -> StacApiServer:
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name=f"stac-server-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close every open connection and the listening socket (idempotent)."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        with self._httpd.conn_lock:
            conns = list(self._httpd.connections)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._httpd.server_close()

    def __enter__(self) -> StacApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ URLs

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """The landing page: ``.../v1`` (Earth Search) or ``.../api/stac/v1`` (Planetary Computer)."""
        return self.base_url + _API_PREFIX[self.flavor]

    @property
    def search_url(self) -> str:
        return self.api_url + "/search"

    def url_for(self, path: str | Path, **query: str) -> str:
        """The URL of a file: a path relative to the catalog folder, or an absolute path under it or
        under a mounted folder (``file_root`` of an override, or :meth:`mount`)."""
        p = Path(path)
        if not p.is_absolute():
            rel = p.as_posix()
        else:
            rel = self._rel_url_path(p.resolve())
        url = f"{self.base_url}{_FILES}/{quote(rel)}"
        return url + ("?" + urlencode(query) if query else "")

    def mount(self, directory: str | Path) -> str:
        """Serve another folder too; returns its URL prefix (``http://.../files/~m1/``)."""
        d = Path(directory).resolve()
        with self._lock:
            for name, m in self._mounts.items():
                if m == d:
                    return f"{self.base_url}{_FILES}/{name}/"
            name = f"~m{len(self._mounts) + 1}"
            self._mounts[name] = d
        return f"{self.base_url}{_FILES}/{name}/"

    def _rel_url_path(self, p: Path) -> str:
        with self._lock:
            mounts = list(self._mounts.items())
        for name, m in mounts:  # mounts first: a mount may lie inside the root
            if p.is_relative_to(m):
                return f"{name}/{p.relative_to(m).as_posix()}"
        if p.is_relative_to(self.root):
            return p.relative_to(self.root).as_posix()
        self.mount(p.parent)
        return self._rel_url_path(p)

    def _file_for(self, url_path: str) -> Path | None:
        """The local file of a ``/files/...`` path, or None (outside the served folders or missing)."""
        rel = url_path[len(_FILES) + 1:]
        base = self.root
        if rel.startswith("~"):
            name, _, rel = rel.partition("/")
            with self._lock:
                base = self._mounts.get(name)  # type: ignore[assignment]
            if base is None:
                return None
        p = (base / rel).resolve()
        if not p.is_relative_to(base) or not p.is_file():
            return None
        return p

    # ------------------------------------------------------------------ items

    def _load_catalog(self) -> None:
        import pystac

        cat = pystac.Catalog.from_file(str(self.catalog_path))
        for item in cat.get_items(recursive=True):
            d = item.to_dict(include_self_link=False, transform_hrefs=False)
            for key, asset in item.assets.items():
                d["assets"][key]["href"] = str(Path(asset.get_absolute_href()).resolve())
            item_dir = Path(item.get_self_href()).resolve().parent
            self._entries[item.id] = _Entry(item.id, d, item_dir, ItemOverride())

    @property
    def item_ids(self) -> list[str]:
        """The served item ids, in the API's order (datetime descending, then id descending)."""
        with self._lock:
            return [e.item_id for e in sorted(self._entries.values(), key=lambda e: e.sort_key, reverse=True)]

    def item(self, item_id: str) -> dict[str, Any]:
        """The item as the API serves it."""
        with self._lock:
            entry = self._entries.get(item_id)
        if entry is None:
            raise KeyError(item_id)
        return self._render(entry)

    def items(self) -> list[dict[str, Any]]:
        return [self.item(i) for i in self.item_ids]

    def source_item(self, item_id: str) -> dict[str, Any]:
        """The sample item behind ``item_id`` (asset hrefs are absolute local paths)."""
        with self._lock:
            return copy.deepcopy(self._entries[item_id].source)

    def set_override(self, item_id: str, override: ItemOverride | dict[str, Any] | None = None,
                     **fields: Any) -> ItemOverride:
        """Set how ``item_id`` is served (an :class:`ItemOverride`, or its fields as a dict or keywords)."""
        if override is None:
            override = ItemOverride(**fields)
        elif isinstance(override, dict):
            override = ItemOverride(**{**override, **fields})
        elif fields:
            override = replace(override, **fields)
        if override.file_root is not None:
            root = Path(override.file_root).resolve()
            if not root.is_dir():
                raise FileNotFoundError(f"file_root {root} is not a folder")
            override = replace(override, file_root=root)
            self.mount(root)
        with self._lock:
            if item_id not in self._entries:
                raise KeyError(f"no item {item_id!r}; items: {sorted(self._entries)}")
            self._entries[item_id].override = override
        return override

    def add_copy(self, source_id: str, new_id: str, override: ItemOverride | dict[str, Any] | None = None,
                 **fields: Any) -> dict[str, Any]:
        """Serve one more item: a copy of ``source_id`` under ``new_id``, with an override
        (typically ``file_root=`` a folder of shifted files, ``offset_dn=1000``, and maybe
        ``properties={"datetime": ...}``). Returns the item as served."""
        with self._lock:
            if new_id in self._entries:
                raise ValueError(f"item {new_id!r} exists")
            src = self._entries[source_id]
            self._entries[new_id] = _Entry(new_id, copy.deepcopy(src.source), src.item_dir, ItemOverride())
        try:
            self.set_override(new_id, override, **fields)
        except Exception:
            with self._lock:
                del self._entries[new_id]
            raise
        return self.item(new_id)

    def remove_item(self, item_id: str) -> None:
        with self._lock:
            del self._entries[item_id]

    # ------------------------------------------------------------------ rendering

    def _asset_path(self, entry: _Entry, sample_key: str, filename: str | None = None) -> Path:
        ov = entry.override
        src = entry.source["assets"].get(sample_key)
        name = filename or (Path(src["href"]).name if src else f"{sample_key}.tif")
        if ov.file_root is not None:
            return Path(ov.file_root) / name
        if src and not filename:
            return Path(src["href"])
        return entry.item_dir / name

    def _href(self, entry: _Entry, sample_key: str, filename: str | None = None) -> str:
        return self.url_for(self._asset_path(entry, sample_key, filename))

    def _render(self, entry: _Entry) -> dict[str, Any]:
        return self._render_es(entry) if self.flavor == "earth-search" else self._render_pc(entry)

    def _common(self, entry: _Entry) -> dict[str, Any]:
        src = entry.source
        props = src["properties"]
        epsg = int(props.get("proj:epsg") or str(props.get("proj:code", "EPSG:0")).split(":")[-1])
        mgrs = props.get("mgrs:tile")
        if not mgrs and "mgrs:utm_zone" in props:
            mgrs = f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}"
        if not mgrs:
            m = re.search(r"(\d{2}[C-X][A-Z]{2})", entry.item_id)
            mgrs = m.group(1) if m else "31NBG"
        dt = entry.datetime.astimezone(timezone.utc)
        platform = str(props.get("platform", "sentinel-2a")).lower()
        sat = platform[-2:].upper() if platform.startswith("sentinel-2") else "2A"  # "2A"
        ov = entry.override
        base = ov.baseline
        stamp = dt.strftime("%Y%m%dT%H%M%S")
        gen = (dt + timedelta(hours=2, minutes=13, seconds=7)).strftime("%Y%m%dT%H%M%S")
        product_uri = f"S{sat}_MSIL2A_{stamp}_N{base.replace('.', '')}_R065_T{mgrs}_{gen}.SAFE"
        return {"epsg": epsg, "mgrs": mgrs, "dt": dt, "platform": platform, "sat": sat, "baseline": base,
                "product_uri": product_uri, "gen": dt + timedelta(hours=2, minutes=13, seconds=7),
                "cloud": props.get("eo:cloud_cover")}

    def _asset_grid(self, entry: _Entry, sample_key: str) -> dict[str, Any]:
        src = entry.source["assets"].get(sample_key) or {}
        out = {k: src[k] for k in ("proj:shape", "proj:transform") if k in src}
        return out

    @staticmethod
    def _dtstr(d: datetime) -> str:
        return d.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def _render_es(self, entry: _Entry) -> dict[str, Any]:
        c = self._common(entry)
        ov = entry.override
        api, cid, iid = self.api_url, self.collection_id, entry.item_id
        zone, band, square = c["mgrs"][:2], c["mgrs"][2], c["mgrs"][3:]
        d = c["dt"]
        jp2_dir = (f"{self.base_url}{_FILES}/_jp2/tiles/{int(zone)}/{band}/{square}/{d.year}/{d.month}/{d.day}/0")
        props: dict[str, Any] = {
            "created": self._dtstr(c["gen"] + timedelta(hours=1)),
            "platform": c["platform"],
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": c["cloud"],
            "proj:code": f"EPSG:{c['epsg']}",
            "mgrs:utm_zone": int(zone),
            "mgrs:latitude_band": band,
            "mgrs:grid_square": square,
            "grid:code": f"MGRS-{c['mgrs']}",
            "view:sun_azimuth": entry.source["properties"].get("view:sun_azimuth"),
            "view:sun_elevation": entry.source["properties"].get("view:sun_elevation"),
            "s2:product_type": "S2MSI2A",
            "s2:processing_baseline": c["baseline"],
            "s2:product_uri": c["product_uri"],
            "s2:generation_time": self._dtstr(c["gen"]),
            "s2:datatake_type": "INS-NOBS",
            "s2:reflectance_conversion_factor": 1.0310,
            "datetime": self._dtstr(d),
            "s2:sequence": "0",
            "earthsearch:s3_path": f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{int(zone)}/{band}/{square}/"
                                   f"{d.year}/{d.month}/{iid}",
            "earthsearch:payload_id": f"roda-sentinel2/workflow-sentinel2-to-stac/{hashlib.md5(iid.encode()).hexdigest()}",
            "earthsearch:boa_offset_applied": ov.applied,
            "processing:software": {"sentinel2-to-stac": "0.1.1"},
            "updated": self._dtstr(c["gen"] + timedelta(hours=1)),
        }
        props.update(ov.properties)
        if "datetime" in ov.properties:
            props["datetime"] = self._dtstr(_parse_dt(str(ov.properties["datetime"])))
        assets: dict[str, Any] = {}
        for key, bid, common, _pc, wl, fwhm, res, title, _pt in _BANDS:
            assets[key] = {
                "href": self._href(entry, key),
                "type": COG_TYPE,
                "title": f"{title} - {res}m",
                "eo:bands": [{"name": key, "common_name": common, "description": title.split(" (")[0]
                              + f" (band {bid[1:].lstrip('0')})", "center_wavelength": wl, "full_width_half_max": fwhm}],
                "gsd": res,
                **self._asset_grid(entry, key),
                "raster:bands": [{"nodata": 0, "data_type": "uint16", "bits_per_sample": 15,
                                  "spatial_resolution": res, "scale": _REFLECTANCE_SCALE, "offset": ov.offset}],
                "roles": ["data", "reflectance"],
            }
        assets["scl"] = {
            "href": self._href(entry, "scl"), "type": COG_TYPE, "title": "Scene classification map (SCL)",
            **self._asset_grid(entry, "scl"),
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}],
            "roles": ["data"],
        }
        assets["thumbnail"] = {"href": self._href(entry, "thumbnail", "thumbnail.jpg"), "type": "image/jpeg",
                               "title": "Thumbnail image", "roles": ["thumbnail"]}
        assets["tileinfo_metadata"] = {"href": self._href(entry, "tileinfo", "tileinfo_metadata.json"),
                                       "type": "application/json", "roles": ["metadata"]}
        assets["granule_metadata"] = {"href": self._href(entry, "granule", "granule_metadata.xml"),
                                      "type": "application/xml", "roles": ["metadata"]}
        assets["visual"] = {
            "href": self._href(entry, "visual", "TCI.tif"), "type": COG_TYPE, "title": "True color image",
            "eo:bands": [{"name": k, "common_name": k, "description": t.split(" (")[0], "center_wavelength": w,
                          "full_width_half_max": f} for k, _b, _c, _p, w, f, _r, t, _q in _BANDS[1:4]][::-1],
            **self._asset_grid(entry, "red"),
            "roles": ["visual"],
        }
        for key, bid, _c, _p, _w, _f, res, _t, _q in _BANDS:
            a = copy.deepcopy(assets[key])
            a.update(href=f"{jp2_dir}/R{res}m/{bid}.jp2", type="image/jp2")
            a["raster:bands"][0]["bits_per_sample"] = 15
            assets[f"{key}-jp2"] = a
        scl_jp2 = copy.deepcopy(assets["scl"])
        scl_jp2.update(href=f"{jp2_dir}/R20m/SCL.jp2", type="image/jp2")
        assets["scl-jp2"] = scl_jp2
        visual_jp2 = copy.deepcopy(assets["visual"])
        visual_jp2.update(href=f"{jp2_dir}/R10m/TCI.jp2", type="image/jp2")
        assets["visual-jp2"] = visual_jp2
        src = entry.source
        return {
            "type": "Feature",
            "stac_version": "1.0.0",
            "id": iid,
            "properties": props,
            "geometry": copy.deepcopy(src["geometry"]),
            "links": [
                {"rel": "self", "type": "application/geo+json", "href": f"{api}/collections/{cid}/items/{iid}"},
                {"rel": "canonical", "href": f"s3://sentinel-cogs/sentinel-s2-l2a-cogs/{iid}/{iid}.json",
                 "type": "application/json"},
                {"rel": "license", "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"},
                {"rel": "derived_from", "href": f"{api}/collections/sentinel-2-l1c/items/{iid.replace('L2A', 'L1C')}",
                 "type": "application/geo+json"},
                {"rel": "parent", "type": "application/json", "href": f"{api}/collections/{cid}"},
                {"rel": "collection", "type": "application/json", "href": f"{api}/collections/{cid}"},
                {"rel": "root", "type": "application/json", "href": api},
                {"rel": "thumbnail", "href": f"{api}/collections/{cid}/items/{iid}/thumbnail"},
            ],
            "assets": assets,
            "bbox": list(src["bbox"]),
            "stac_extensions": [
                "https://stac-extensions.github.io/processing/v1.1.0/schema.json",
                "https://stac-extensions.github.io/mgrs/v1.0.0/schema.json",
                "https://stac-extensions.github.io/grid/v1.0.0/schema.json",
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
                "https://stac-extensions.github.io/view/v1.0.0/schema.json",
                "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            ],
            "collection": cid,
        }

    def _render_pc(self, entry: _Entry) -> dict[str, Any]:
        c = self._common(entry)
        ov = entry.override
        api, cid, iid = self.api_url, self.collection_id, entry.item_id
        d = c["dt"]
        props: dict[str, Any] = {
            "datetime": self._dtstr(d),
            "platform": f"Sentinel-{c['sat']}",
            "proj:epsg": c["epsg"],
            "instruments": ["msi"],
            "s2:mgrs_tile": c["mgrs"],
            "constellation": "Sentinel 2",
            "s2:granule_id": f"S{c['sat']}_OPER_MSI_L2A_TL_ESRI_{c['gen']:%Y%m%dT%H%M%S}_A044000_T{c['mgrs']}"
                             f"_N{c['baseline']}",
            "eo:cloud_cover": c["cloud"],
            "s2:datatake_id": f"GS{c['sat']}_{d:%Y%m%dT%H%M%S}_044000_N{c['baseline']}",
            "s2:product_uri": c["product_uri"],
            "s2:datastrip_id": f"S{c['sat']}_OPER_MSI_L2A_DS_ESRI_{c['gen']:%Y%m%dT%H%M%S}_S{d:%Y%m%dT%H%M%S}"
                               f"_N{c['baseline']}",
            "s2:product_type": "S2MSI2A",
            "sat:orbit_state": "descending",
            "s2:datatake_type": "INS-NOBS",
            "s2:generation_time": self._dtstr(c["gen"]),
            "sat:relative_orbit": 65,
            "s2:processing_baseline": c["baseline"],
            "s2:mean_solar_zenith": round(90.0 - float(entry.source["properties"].get("view:sun_elevation") or 45.0), 3),
            "s2:mean_solar_azimuth": entry.source["properties"].get("view:sun_azimuth"),
        }
        props.update(ov.properties)
        if "datetime" in ov.properties:
            props["datetime"] = self._dtstr(_parse_dt(str(ov.properties["datetime"])))
        assets: dict[str, Any] = {}

        def grid(sample_key: str) -> dict[str, Any]:
            g = self._asset_grid(entry, sample_key)
            if "proj:shape" in g and "proj:transform" in g:
                (h, w), t = g["proj:shape"], g["proj:transform"]
                g = {"proj:bbox": [t[2], t[5] + t[4] * h, t[2] + t[0] * w, t[5]], **g}
            return g

        for key, bid, _ec, common, wl, fwhm, res, _et, title in _BANDS:
            band = {"name": bid, "common_name": common, "description": title, "center_wavelength": wl,
                    "full_width_half_max": fwhm}
            if common is None:
                del band["common_name"]
            assets[bid] = {"href": self._href(entry, key), "type": COG_TYPE, "title": f"{title} - {res}m",
                           "roles": ["data"], "gsd": float(res), "eo:bands": [band], **grid(key)}
        assets["SCL"] = {"href": self._href(entry, "scl"), "type": COG_TYPE,
                         "title": "Scene classfication map (SCL)",  # (sic) as the real items
                         "roles": ["data"], "gsd": 20.0, **grid("scl")}
        assets["visual"] = {"href": self._href(entry, "visual", "TCI_10m.tif"), "type": COG_TYPE,
                            "title": "True color image", "roles": ["data"], "gsd": 10.0,
                            "eo:bands": [{"name": b, "common_name": n, "description": t, "center_wavelength": w,
                                          "full_width_half_max": f}
                                         for _k, b, _c, n, w, f, _r, _e, t in _BANDS[1:4]][::-1],
                            **grid("red")}
        q = urlencode({"collection": cid, "item": iid})
        assets["preview"] = {"href": f"{self.base_url}/api/data/v1/item/preview.png?{q}", "type": "image/png",
                             "title": "Rendered preview", "rel": "preview", "roles": ["thumbnail"]}
        assets["safe-manifest"] = {"href": self._href(entry, "manifest", "manifest.safe"), "type": "application/xml",
                                   "title": "SAFE manifest", "roles": ["metadata"]}
        assets["granule-metadata"] = {"href": self._href(entry, "granule", "MTD_TL.xml"),
                                      "type": "application/xml", "title": "Granule metadata", "roles": ["metadata"]}
        assets["product-metadata"] = {"href": self._href(entry, "product", "MTD_MSIL2A.xml"),
                                      "type": "application/xml", "title": "Product metadata", "roles": ["metadata"]}
        assets["tilejson"] = {"href": f"{self.base_url}/api/data/v1/item/tilejson.json?{q}&assets=visual",
                              "type": "application/json", "title": "TileJSON with default rendering",
                              "roles": ["tiles"]}
        assets["rendered_preview"] = {"href": f"{self.base_url}/api/data/v1/item/preview.png?{q}&assets=visual",
                                      "type": "image/png", "title": "Rendered preview", "rel": "preview",
                                      "roles": ["overview"]}
        src = entry.source
        return {
            "id": iid,
            "bbox": list(src["bbox"]),
            "type": "Feature",
            "links": [
                {"rel": "collection", "type": "application/json", "href": f"{api}/collections/{cid}"},
                {"rel": "parent", "type": "application/json", "href": f"{api}/collections/{cid}"},
                {"rel": "root", "type": "application/json", "href": f"{api}/"},
                {"rel": "self", "type": "application/geo+json", "href": f"{api}/collections/{cid}/items/{iid}"},
                {"rel": "license", "href": "https://scihub.copernicus.eu/twiki/pub/SciHubWebPortal/TermsConditions/"
                                           "Sentinel_Data_Terms_and_Conditions.pdf"},
                {"rel": "preview", "href": f"{self.base_url}/api/data/v1/item/map?{q}", "title": "Map of item",
                 "type": "text/html"},
            ],
            "assets": assets,
            "geometry": copy.deepcopy(src["geometry"]),
            "collection": cid,
            "properties": props,
            "stac_version": "1.0.0",
            "stac_extensions": [
                "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
                "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
                "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
            ],
        }

    # ------------------------------------------------------------------ API documents

    def landing(self) -> dict[str, Any]:
        api = self.api_url
        if self.flavor == "earth-search":
            links = [
                {"rel": "self", "type": "application/json", "href": api, "title": "Root Catalog"},
                {"rel": "root", "type": "application/json", "href": api, "title": "Root Catalog"},
                {"rel": "conformance", "type": "application/json", "href": f"{api}/conformance",
                 "title": "STAC/OGC conformance classes"},
                {"rel": "data", "type": "application/json", "href": f"{api}/collections", "title": "Collections"},
                {"rel": "search", "type": "application/geo+json", "href": f"{api}/search", "method": "GET",
                 "title": "STAC search [GET]"},
                {"rel": "search", "type": "application/geo+json", "href": f"{api}/search", "method": "POST",
                 "title": "STAC search [POST]"},
                {"rel": "aggregate", "type": "application/json", "href": f"{api}/aggregate", "method": "GET",
                 "title": "STAC aggregate [GET]"},
                {"rel": "service-desc", "type": "application/vnd.oai.openapi", "href": f"{api}/api",
                 "title": "OpenAPI service description"},
                {"rel": "service-doc", "type": "text/html", "href": f"{api}/api.html",
                 "title": "OpenAPI service documentation"},
                {"rel": "child", "type": "application/json", "href": f"{api}/collections/{self.collection_id}"},
            ]
            return {"stac_version": "1.0.0", "type": "Catalog", "id": "earth-search-aws",
                    "title": "Earth Search by Element 84",
                    "description": "A STAC API of public datasets on AWS (test double)",
                    "conformsTo": list(_CONFORMS["earth-search"]), "links": links}
        links = [
            {"rel": "self", "type": "application/json", "href": api},
            {"rel": "root", "type": "application/json", "href": f"{api}/"},
            {"rel": "data", "type": "application/json", "href": f"{api}/collections"},
            {"rel": "conformance", "type": "application/json", "title": "STAC/WFS3 conformance classes implemented by this server",
             "href": f"{api}/conformance"},
            {"rel": "search", "type": "application/geo+json", "title": "STAC search", "href": f"{api}/search",
             "method": "GET"},
            {"rel": "search", "type": "application/geo+json", "title": "STAC search", "href": f"{api}/search",
             "method": "POST"},
            {"rel": "child", "type": "application/json", "title": "Sentinel-2 Level-2A",
             "href": f"{api}/collections/{self.collection_id}"},
            {"rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0", "title": "OpenAPI service description",
             "href": f"{api}/openapi.json"},
            {"rel": "service-doc", "type": "text/html", "title": "OpenAPI service documentation", "href": f"{api}/docs"},
        ]
        return {"type": "Catalog", "id": "microsoft-pc", "title": "Microsoft Planetary Computer STAC API",
                "description": "Searchable spatiotemporal metadata describing Earth science datasets hosted by the "
                               "Microsoft Planetary Computer (test double)",
                "stac_version": "1.0.0", "conformsTo": list(_CONFORMS["planetary-computer"]), "links": links}

    def collection(self) -> dict[str, Any]:
        api, cid = self.api_url, self.collection_id
        with self._lock:
            entries = list(self._entries.values())
        if entries:
            bb = [e.source["bbox"] for e in entries]
            spatial = [[min(b[0] for b in bb), min(b[1] for b in bb), max(b[2] for b in bb), max(b[3] for b in bb)]]
            dts = sorted(e.datetime for e in entries)
            temporal = [[self._dtstr(dts[0]), self._dtstr(dts[-1])]]
        else:
            spatial, temporal = [[-180.0, -90.0, 180.0, 90.0]], [[None, None]]
        links = [
            {"rel": "self", "type": "application/json", "href": f"{api}/collections/{cid}"},
            {"rel": "parent", "type": "application/json", "href": f"{api}/"},
            {"rel": "root", "type": "application/json", "href": f"{api}/"},
            {"rel": "items", "type": "application/geo+json", "href": f"{api}/collections/{cid}/items"},
            {"rel": "license", "href": "https://sentinel.esa.int/documents/247904/690755/Sentinel_Data_Legal_Notice"},
        ]
        if self.flavor == "earth-search":
            summaries = {"platform": ["sentinel-2a", "sentinel-2b"], "constellation": ["sentinel-2"],
                         "instruments": ["msi"], "gsd": [10, 20, 60]}
            title, desc = "Sentinel-2 Level-2A", "Global Sentinel-2 data from the Multispectral Instrument (MSI) onboard Sentinel-2"
            ext = ["https://stac-extensions.github.io/item-assets/v1.0.0/schema.json"]
        else:
            summaries = {"platform": ["Sentinel-2A", "Sentinel-2B"], "constellation": ["Sentinel 2"],
                         "instruments": ["msi"], "gsd": [10, 20, 60]}
            title, desc = "Sentinel-2 Level-2A", "The Sentinel-2 program provides global imagery in thirteen spectral bands"
            ext = ["https://stac-extensions.github.io/item-assets/v1.0.0/schema.json",
                   "https://stac-extensions.github.io/eo/v1.0.0/schema.json"]
        return {"type": "Collection", "id": cid, "stac_version": "1.0.0", "stac_extensions": ext, "title": title,
                "description": desc + " (test double serving generated geoloom sample scenes).",
                "keywords": ["sentinel", "earth observation", "esa"], "license": "proprietary",
                "providers": [{"name": "ESA", "roles": ["producer"], "url": "https://earth.esa.int/web/guest/home"}],
                "extent": {"spatial": {"bbox": spatial}, "temporal": {"interval": temporal}},
                "summaries": summaries, "links": links}

    # ------------------------------------------------------------------ search

    def search(self, params: dict[str, Any], *, method: str, endpoint: str,
               collection: str | None = None) -> dict[str, Any]:
        """The ItemCollection for search parameters (as parsed from a GET query or a POST body)."""
        p = {k: v for k, v in params.items() if v is not None and v != ""}
        if p.get("bbox") is not None and p.get("intersects") is not None:
            raise _BadRequest("Expected bbox OR intersects, not both")
        limit_raw = p.get("limit", self.default_limit)
        try:
            limit = int(limit_raw)
        except (TypeError, ValueError):
            raise _BadRequest("Invalid limit value") from None
        if limit <= 0:
            raise _BadRequest("Invalid limit value, must be a number between 1 and 10000 inclusive")
        if limit > _MAX_LIMIT[self.flavor]:
            if self.flavor == "earth-search":
                raise _BadRequest("Invalid limit value, must be a number between 1 and 10000 inclusive")
            limit = _MAX_LIMIT[self.flavor]
        geom = None
        if p.get("bbox") is not None:
            bbox = p["bbox"]
            if isinstance(bbox, str):
                bbox = json.loads(bbox) if bbox.strip().startswith("[") else [float(x) for x in bbox.split(",")]
            bbox = [float(x) for x in bbox]
            if len(bbox) == 6:
                bbox = [bbox[0], bbox[1], bbox[3], bbox[4]]
            if len(bbox) != 4:
                raise _BadRequest("Invalid bbox, must have 4 or 6 points")
            if bbox[1] > bbox[3]:
                raise _BadRequest("Invalid bbox, SW latitude must be less than NE latitude")
            from shapely.geometry import box

            geom = box(*bbox)
        elif p.get("intersects") is not None:
            from shapely.geometry import shape

            gj = _as_json(p["intersects"], "intersects")
            if not isinstance(gj, dict) or gj.get("type") in ("Feature", "FeatureCollection", None):
                raise _BadRequest("Expected GeoJSON geometry, not Feature or FeatureCollection")
            try:
                geom = shape(gj)
            except Exception as e:  # noqa: BLE001
                raise _BadRequest(f"Invalid GeoJSON geometry: {e}") from None
        interval = _parse_interval(str(p["datetime"])) if p.get("datetime") else None
        collections = _as_list(p.get("collections"))
        if collection is not None:
            collections = [collection]
        ids = _as_list(p.get("ids"))
        query = _as_json(p.get("query"), "query") or {}
        if not isinstance(query, dict):
            raise _BadRequest("Invalid query: not an object")
        for prop, ops in query.items():
            if not isinstance(ops, dict):
                raise _BadRequest(f"Invalid query for {prop!r}: not an object of operators")
            for op in ops:
                if op not in _QUERY_OPS:
                    raise _BadRequest(f"Invalid query operator {op!r} for {prop!r}")

        with self._lock:
            entries = list(self._entries.values())
        rendered: list[tuple[tuple[int, str], dict[str, Any]]] = []
        for e in entries:
            if collections is not None and self.collection_id not in collections:
                continue
            if ids is not None and e.item_id not in ids:
                continue
            if interval is not None:
                t, (a, b) = e.datetime, interval
                if (a is not None and t < a) or (b is not None and t > b):
                    continue
            if geom is not None:
                from shapely.geometry import shape

                if not shape(e.source["geometry"]).intersects(geom):
                    continue
            item = self._render(e)
            if query and not all(self._query_ok(item["properties"].get(prop), ops) for prop, ops in query.items()):
                continue
            rendered.append(((_epoch_ms(_parse_dt(item["properties"]["datetime"])), e.item_id), item))
        rendered.sort(key=lambda kv: kv[0], reverse=True)
        matched = len(rendered)

        # paging: Earth Search's `next` (sort values of the last item), PC's `token` ("next:<id>" / "prev:<id>")
        start = 0
        token = p.get("token") or p.get("next")
        if token:
            start = self._resolve_token(str(token), rendered, limit)
        page = rendered[start:start + limit]
        items = [it for _k, it in page]
        links: list[dict[str, Any]] = []
        more = start + limit < matched
        has_prev = start > 0
        base_params = {k: v for k, v in params.items() if k not in ("token", "next") and v is not None and v != ""}
        if self.flavor == "earth-search":
            # stac-server gives a next link for every non-empty page (so the last page is followed by an empty one)
            if items:
                last = page[-1][0]
                nxt = _b64([last[0], last[1], self.collection_id])  # OpenSearch sort values: epoch ms, id, collection
                links.append(self._es_next_link(method, endpoint, base_params, limit, nxt))
            links.append({"rel": "root", "type": "application/json", "href": self.api_url})
            if collection is not None:
                links.append({"rel": "self", "type": "application/geo+json", "href": endpoint})
                links.append({"rel": "collection", "type": "application/json",
                              "href": f"{self.api_url}/collections/{collection}"})
            return {"type": "FeatureCollection", "numberMatched": matched, "numberReturned": len(items),
                    "features": items, "links": links,
                    "context": {"matched": matched, "returned": len(items), "limit": limit}}
        # Planetary Computer (pgstac): next only when there are more, prev after the first page, no count
        if more and items:
            links.append(self._pc_page_link("next", method, endpoint, params, f"next:{page[-1][0][1]}"))
        if has_prev and items:
            links.append(self._pc_page_link("previous", method, endpoint, params, f"prev:{page[0][0][1]}"))
        links.append({"rel": "root", "type": "application/json", "href": f"{self.api_url}/"})
        links.append({"rel": "self", "type": "application/geo+json", "href": endpoint})
        if collection is not None:
            links.append({"rel": "collection", "type": "application/json",
                          "href": f"{self.api_url}/collections/{collection}"})
            links.append({"rel": "parent", "type": "application/json",
                          "href": f"{self.api_url}/collections/{collection}"})
        return {"type": "FeatureCollection", "context": {"limit": limit, "returned": len(items)},
                "features": items, "links": links}

    @staticmethod
    def _query_ok(value: Any, ops: dict[str, Any]) -> bool:
        def coerce(arg: Any) -> Any:
            # pystac-client sends "eo:cloud_cover<10" as {"lt": "10"}; a numeric index compares it as a number
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if isinstance(arg, str):
                    try:
                        return float(arg)
                    except ValueError:
                        return arg
                if isinstance(arg, list):
                    return [coerce(a) for a in arg]
            return arg

        try:
            return all(_QUERY_OPS[op](value, coerce(arg)) for op, arg in ops.items())
        except TypeError:
            return False

    def _resolve_token(self, token: str, rendered: list[tuple[tuple[int, str], dict[str, Any]]],
                       limit: int) -> int:
        keys = [k for k, _ in rendered]
        if token.startswith(("next:", "prev:")):
            kind, _, iid = token.partition(":")
            pos = next((i for i, k in enumerate(keys) if k[1] == iid), None)
            if pos is None:
                raise _BadRequest(f"invalid token {token!r}")
            return pos + 1 if kind == "next" else max(0, pos - limit)
        # Earth Search: sort values of the last item returned (base64url JSON, or the legacy comma form)
        try:
            vals = _unb64(token)
        except Exception:  # noqa: BLE001
            vals = token.split(",")
        if not isinstance(vals, list) or len(vals) < 2:
            raise _BadRequest(f"invalid next token {token!r}")
        t = vals[0]
        t_ms = int(t) if isinstance(t, (int, float)) or str(t).isdigit() else _epoch_ms(_parse_dt(str(t)))
        after = (t_ms, str(vals[1]))
        return next((i for i, k in enumerate(keys) if k < after), len(keys))

    def _es_next_link(self, method: str, endpoint: str, params: dict[str, Any], limit: int, nxt: str) -> dict[str, Any]:
        link: dict[str, Any] = {"rel": "next", "title": "Next page of Items", "method": method,
                                "type": "application/geo+json"}
        body = {**params, "limit": limit, "next": nxt}
        if method == "GET":
            def enc(v: Any) -> str:
                if isinstance(v, (dict, list)):
                    return json.dumps(v, separators=(",", ":"))
                return str(v)

            link["href"] = f"{endpoint}?{urlencode({k: enc(v) for k, v in body.items()})}"
        else:
            link["href"] = endpoint
            link["merge"] = False
            link["body"] = body
        return link

    def _pc_page_link(self, rel: str, method: str, endpoint: str, params: dict[str, Any], token: str) -> dict[str, Any]:
        link: dict[str, Any] = {"rel": rel, "type": "application/geo+json", "method": method}
        if method == "GET":
            q = {k: v for k, v in params.items() if k != "token"}
            q["token"] = token
            link["href"] = f"{endpoint}?{urlencode(q)}"
        else:
            link["href"] = endpoint
            link["body"] = {**{k: v for k, v in params.items() if k != "token"}, "token": token}
        return link

    # ------------------------------------------------------------------ log

    def _record_start(self, entry: LoggedRequest) -> int:
        with self._lock:
            self._log.append(entry)
            return len(self._log) - 1

    def _record_end(self, index: int, entry: LoggedRequest) -> None:
        with self._lock:
            if index < len(self._log) and self._log[index].time == entry.time and self._log[index].path == entry.path:
                self._log[index] = entry
            else:  # the log was cleared meanwhile
                self._log.append(entry)

    def requests(self, *, path_contains: str | None = None, method: str | None = None,
                 status: int | None = None, route: Literal["files", "api"] | None = None) -> list[LoggedRequest]:
        """The logged requests (oldest first), optionally filtered."""
        with self._lock:
            log = list(self._log)
        return [r for r in log
                if (path_contains is None or path_contains in r.path)
                and (method is None or r.method == method.upper())
                and (status is None or r.status == status)
                and (route is None or r.route == route)]

    @property
    def log(self) -> list[LoggedRequest]:
        return self.requests()

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every logged request has been answered (e.g. after a ``slow`` fault whose
        client gave up); True when idle."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                busy = any(not r.done for r in self._log)
            if not busy:
                return True
            time.sleep(0.01)
        return False


# ----------------------------------------------------------------------------------------
# the request handler
# ----------------------------------------------------------------------------------------


def _parse_ranges(header: str, size: int) -> list[tuple[int, int]] | None:
    """Byte ranges (inclusive) of a Range header; [] when none is satisfiable; None when it is
    not a bytes range (then the header is ignored, as RFC 9110 allows)."""
    m = re.fullmatch(r"\s*bytes\s*=\s*(.+)", header)
    if not m:
        return None
    out = []
    for part in m.group(1).split(","):
        part = part.strip()
        mm = re.fullmatch(r"(\d*)\s*-\s*(\d*)", part)
        if not mm or (mm.group(1) == "" and mm.group(2) == ""):
            return None
        a, b = mm.group(1), mm.group(2)
        if a == "":  # suffix: the last b bytes
            n = int(b)
            if n == 0:
                continue
            out.append((max(0, size - n), size - 1))
            continue
        start = int(a)
        end = size - 1 if b == "" else min(int(b), size - 1)
        if b != "" and int(b) < start:
            return None
        if start >= size:
            continue
        out.append((start, end))
    return out


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "geoloom-test-stac/1.0"
    timeout = 60  # idle keep-alive connections close after this

    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    # --------------------------------------------------------------- dispatch

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_OPTIONS(self) -> None:  # noqa: N802
        self._dispatch("OPTIONS")

    def _dispatch(self, method: str) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        body: Any = None
        if method == "POST":
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n) if n else b""
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = _InvalidJSON(raw)
        req = LoggedRequest(method, path, query, self.headers.get("Range"), 0, time=time.time(),
                            body=None if isinstance(body, _InvalidJSON) else body, done=False)
        index = owner._record_start(req)
        self._cut_keep: float | None = None
        self._status = 0
        self._sent = 0
        self._fault: str | None = None
        try:
            delay, fault = owner.faults._take(req)
            if delay:
                self._fault = "slow"
                time.sleep(delay)
            if fault is not None and self._apply_fault(fault, req):
                return
            if path.startswith(_FILES + "/"):
                self._serve_file(method, path, query)
            else:
                self._serve_api(method, path, query, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            owner._record_end(index, replace(req, status=self._status, fault=self._fault, bytes_sent=self._sent,
                                             done=True))

    # --------------------------------------------------------------- responses

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None,
              *, head: bool = False) -> None:
        self._send_payload(status, body, content_type, {"Access-Control-Allow-Origin": "*", **(headers or {})}, head)

    def _json(self, status: int, obj: Any, content_type: str = "application/json", *, head: bool = False) -> None:
        self._send(status, json.dumps(obj).encode(), content_type, head=head)

    def _error(self, status: int, description: str, *, head: bool = False) -> None:
        owner = self.server.owner
        if owner.flavor == "earth-search":
            code = {400: "BadRequest", 404: "NotFound", 405: "MethodNotAllowed"}.get(status, "Error")
        else:
            code = {400: "RequestValidationError", 404: "NotFoundError"}.get(status, "Error")
        self._json(status, {"code": code, "description": description}, head=head)

    def _apply_fault(self, fault: Fault, req: LoggedRequest) -> bool:
        self._fault = fault.kind
        head = req.method == "HEAD"
        if fault.kind in ("status", "404"):
            status = fault.status
            if req.route == "files":
                reason = {403: "AuthenticationFailed", 404: "BlobNotFound", 429: "SlowDown", 500: "InternalError",
                          503: "ServiceUnavailable"}.get(status, "Error")
                body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{reason}</Code>'
                        f"<Message>injected fault</Message></Error>").encode()
                self._send(status, body, "application/xml", fault.headers, head=head)
            else:
                self._send(status, json.dumps({"code": "Error", "description": "injected fault"}).encode(),
                           "application/json", fault.headers, head=head)
            return True
        if fault.kind == "reset":
            self._reset()
            return True
        if fault.kind == "cut":
            # answer normally into a buffer, then send the head and only part of the body
            self._cut_keep = fault.keep
            return False
        return False

    def _reset(self) -> None:
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _cut_body(self, body_len: int) -> int:
        keep = self._cut_keep
        if keep is None:
            return body_len
        n = int(keep) if keep >= 1 else int(body_len * keep)
        return max(0, min(body_len - 1, n)) if body_len else 0

    def _finish_cut(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # --------------------------------------------------------------- files

    def _serve_file(self, method: str, path: str, query: dict[str, list[str]]) -> None:
        owner = self.server.owner
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            self._send(405, b"", "text/plain", {"Allow": "GET, HEAD"}, head=True)
            return
        for k, v in owner.require_query_param.items():
            if v not in query.get(k, []):
                body = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code>'
                        b"<Message>Server failed to authenticate the request. Make sure the value of "
                        b"Authorization header is formed correctly including the signature.</Message></Error>")
                self._send(403, body, "application/xml", head=head)
                return
        f = owner._file_for(path)
        if f is None:
            body = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>'
                    b"<Message>The specified key does not exist.</Message></Error>")
            self._send(404, body, "application/xml", head=head)
            return
        st = f.stat()
        size = st.st_size
        ctype = "image/tiff" if f.suffix.lower() in (".tif", ".tiff") else (
            "application/json" if f.suffix == ".json" else "application/octet-stream")
        common = {
            "Accept-Ranges": "bytes",
            "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
            "ETag": '"%s"' % hashlib.md5(f"{f}:{size}:{st.st_mtime_ns}".encode()).hexdigest(),
        }
        rng = self.headers.get("Range")
        ranges = _parse_ranges(rng, size) if rng else None
        if ranges is not None and not ranges:
            self._send(416, b"", "text/plain", {**common, "Content-Range": f"bytes */{size}"}, head=True)
            return
        if ranges is None:  # the whole file
            self._stream(f, 200, [(0, size - 1)] if size else [], ctype, common, head, size)
            return
        if len(ranges) == 1:
            a, b = ranges[0]
            self._stream(f, 206, [(a, b)], ctype, {**common, "Content-Range": f"bytes {a}-{b}/{size}"}, head, size)
            return
        # several ranges: multipart/byteranges
        boundary = uuid.uuid4().hex
        parts: list[bytes] = []
        with open(f, "rb") as fh:
            for a, b in ranges:
                fh.seek(a)
                chunk = fh.read(b - a + 1)
                parts.append(f"--{boundary}\r\nContent-Type: {ctype}\r\nContent-Range: bytes {a}-{b}/{size}\r\n\r\n"
                             .encode() + chunk + b"\r\n")
        payload = b"".join(parts) + f"--{boundary}--\r\n".encode()
        self._send_payload(206, payload, f"multipart/byteranges; boundary={boundary}", common, head)

    def _send_payload(self, status: int, payload: bytes, ctype: str, headers: dict[str, str], head: bool) -> None:
        n = self._cut_body(len(payload))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self._status = status
        if not head and payload:
            self.wfile.write(payload[:n])
            self._sent += n
            if n < len(payload):
                self._finish_cut()

    def _stream(self, f: Path, status: int, ranges: list[tuple[int, int]], ctype: str, headers: dict[str, str],
                head: bool, size: int) -> None:
        length = sum(b - a + 1 for a, b in ranges)
        n = self._cut_body(length)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self._status = status
        if head or not ranges:
            return
        a, _b = ranges[0]
        left = n
        with open(f, "rb") as fh:
            fh.seek(a)
            while left > 0:
                chunk = fh.read(min(left, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                self._sent += len(chunk)
                left -= len(chunk)
        if n < length:
            self._finish_cut()

    # --------------------------------------------------------------- API

    def _serve_api(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> None:
        owner = self.server.owner
        head = method == "HEAD"
        prefix = _API_PREFIX[owner.flavor]
        if method == "OPTIONS":
            self._send(204, b"", "text/plain", {"Allow": "GET, POST, HEAD, OPTIONS",
                                                "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
                                                "Access-Control-Allow-Headers": "*"})
            return
        if not (path == prefix or path.startswith(prefix + "/")):
            self._error(404, f"Not Found: {path}", head=head)
            return
        sub = path[len(prefix):].rstrip("/")
        segs = [s for s in sub.split("/") if s]
        api = owner.api_url
        flat = {k: (v[-1] if v else "") for k, v in query.items()}
        if "collections[]" in query and "collections" not in flat:  # older stac-server GET links
            flat["collections"] = ",".join(query["collections[]"])
        try:
            if method == "POST":
                if segs != ["search"]:
                    self._error(405, "Method Not Allowed")
                    return
                if isinstance(body, _InvalidJSON) or not isinstance(body, dict):
                    raise _BadRequest("Invalid JSON body")
                self._json(200, owner.search(body, method="POST", endpoint=f"{api}/search"),
                           "application/geo+json")
                return
            if method not in ("GET", "HEAD"):
                self._error(405, "Method Not Allowed")
                return
            if not segs:
                self._json(200, owner.landing(), head=head)
            elif segs == ["conformance"]:
                self._json(200, {"conformsTo": list(_CONFORMS[owner.flavor])}, head=head)
            elif segs == ["search"]:
                self._json(200, owner.search(flat, method="GET", endpoint=f"{api}/search"), "application/geo+json",
                           head=head)
            elif segs == ["collections"]:
                col = owner.collection()
                self._json(200, {"collections": [col], "links": [
                    {"rel": "root", "type": "application/json", "href": api},
                    {"rel": "parent", "type": "application/json", "href": api},
                    {"rel": "self", "type": "application/json", "href": f"{api}/collections"}]}, head=head)
            elif len(segs) >= 2 and segs[0] == "collections":
                cid = segs[1]
                if cid != owner.collection_id:
                    raise _NotFound(f"Collection {cid} does not exist.")
                if len(segs) == 2:
                    self._json(200, owner.collection(), head=head)
                elif len(segs) == 3 and segs[2] == "items":
                    allowed = {k: flat[k] for k in ("bbox", "datetime", "limit", "token", "next", "query", "ids",
                                                    "intersects") if k in flat}
                    self._json(200, owner.search(allowed, method="GET", endpoint=f"{api}/collections/{cid}/items",
                                                 collection=cid), "application/geo+json", head=head)
                elif len(segs) == 4 and segs[2] == "items":
                    try:
                        self._json(200, owner.item(segs[3]), "application/geo+json", head=head)
                    except KeyError:
                        raise _NotFound(f"Item {segs[3]} in Collection {cid} does not exist.") from None
                else:
                    raise _NotFound(f"Not Found: {path}")
            else:
                raise _NotFound(f"Not Found: {path}")
        except _BadRequest as e:
            self._error(400, str(e), head=head)
        except _NotFound as e:
            self._error(404, str(e), head=head)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception as e:  # noqa: BLE001
            self._error(500, f"{type(e).__name__}: {e}", head=head)


class _InvalidJSON:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
