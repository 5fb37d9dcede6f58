"""The page's tile server: XYZ tiles of run layers, rendered from their COGs at every zoom, over HTTP.

``geoloom ui`` starts one per server process (on the address Streamlit listens on, loopback by
default; ``GEOLOOM_TILE_PORT`` fixes its port, e.g. for a container). The page registers a layer
(its COG and colours) and gets back a URL template for Leaflet; nothing but registered layers is
served, and a tile is rendered once and then kept (a bounded cache).
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoloom.workflows import xyz_tiles

log = logging.getLogger(__name__)

#: Tiles kept in memory (PNG bytes; about 5-40 kB each).
CACHE_TILES = 4096
_PATH = re.compile(r"^/tiles/([0-9a-f]{16})/(\d{1,2})/(\d+)/(\d+)\.png$")
_EMPTY = xyz_tiles.tile_png(np.zeros((1, 1, 4), dtype="uint8"))


@dataclass(frozen=True, slots=True)
class TileSource:
    """A registered layer: its COG and how to colour it."""

    cog: Path
    style: xyz_tiles.LayerStyle


class TileServer:
    """A threaded HTTP server of ``/tiles/<layer>/<z>/<x>/<y>.png`` for registered layers."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sources: dict[str, TileSource] = {}
        self._cache: OrderedDict[tuple[str, int, int, int], bytes] = OrderedDict()
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server._answer(self)

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("tiles: " + fmt, *args)

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.host, self.port = host, int(self.httpd.server_address[1])
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="geoloom-tiles", daemon=True)
        self.thread.start()

    def register(self, cog: str | Path, style: xyz_tiles.LayerStyle) -> str:
        """Serve ``cog`` coloured by ``style``; the layer's id (the same file, state and style give the same id)."""
        cog = Path(cog).resolve()
        stat = cog.stat()
        key = hashlib.sha256(f"{cog}|{stat.st_mtime_ns}|{stat.st_size}|{style.to_dict()}".encode()).hexdigest()[:16]
        with self._lock:
            self.sources[key] = TileSource(cog, style)
        return key

    def url(self, key: str, host: str | None = None) -> str:
        """Leaflet's URL template of a registered layer, as the browser reaches this server."""
        return f"http://{host or self._public_host()}:{self.port}/tiles/{key}/{{z}}/{{x}}/{{y}}.png"

    def _public_host(self) -> str:
        return "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host

    def tile(self, key: str, z: int, x: int, y: int) -> bytes | None:
        """The PNG of a tile (transparent where the layer has nothing); None for an unknown layer."""
        with self._lock:
            source = self.sources.get(key)
            cached = self._cache.get((key, z, x, y))
            if cached is not None:
                self._cache.move_to_end((key, z, x, y))
                return cached
        if source is None:
            return None
        rgba = xyz_tiles.render_tile(source.cog, source.style, z, x, y)
        png = _EMPTY if rgba is None or not rgba[..., 3].any() else xyz_tiles.tile_png(rgba)
        with self._lock:
            self._cache[(key, z, x, y)] = png
            while len(self._cache) > CACHE_TILES:
                self._cache.popitem(last=False)
        return png

    def _answer(self, req: http.server.BaseHTTPRequestHandler) -> None:
        m = _PATH.match(req.path.split("?")[0])
        if m is None:
            req.send_error(404, "not a tile")
            return
        key, z, x, y = m.group(1), *(int(g) for g in m.groups()[1:])
        if z > 24 or x >= 2**z or y >= 2**z:
            req.send_error(404, "no such tile")
            return
        try:
            png = self.tile(key, z, x, y)
        except Exception:  # a damaged or moved file: an empty tile, and a line in the server log
            log.exception("tile %s/%d/%d/%d failed", key, z, x, y)
            png = _EMPTY
        if png is None:
            req.send_error(404, "unknown layer")
            return
        req.send_response(200)
        req.send_header("Content-Type", "image/png")
        req.send_header("Content-Length", str(len(png)))
        req.send_header("Cache-Control", "max-age=3600")
        req.send_header("Access-Control-Allow-Origin", "*")
        req.end_headers()
        req.wfile.write(png)

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()
