"""Errors a user can cause: one root, each subclass also a builtin, each message says what to do."""

from __future__ import annotations


class GeoloomError(Exception):
    """Root of every error a user can cause; its message is one line that says what to do."""

    exit_code: int = 2


class RegionError(GeoloomError, ValueError):
    """The region is missing, malformed, empty, too large or unknown."""


class DateError(GeoloomError, ValueError):
    """The date range cannot be parsed or is empty."""


class CatalogError(GeoloomError, OSError):
    """The STAC catalog cannot be opened or has no usable items."""


class NoImageryError(GeoloomError, LookupError):
    """No scene matches the region, dates and cloud limit."""


class BandError(GeoloomError, KeyError):
    """A band is unknown, or the imagery lacks a band the model needs."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it one plain line
        return str(self.args[0]) if self.args else ""


class ModelError(GeoloomError, ValueError):
    """The model is unknown, its card is invalid, or its weights do not match."""


class PlanError(GeoloomError, ValueError):
    """Grid or tiling options are invalid (resolution, CRS, tile size)."""


class ImageryReadError(GeoloomError, OSError):
    """A raster file could not be read (missing, truncated, unreadable)."""

    def __init__(self, message: str, *, href: str | None = None) -> None:
        super().__init__(message)
        self.href = href


class OutputError(GeoloomError, OSError):
    """The output folder cannot be used (another run there, read-only, ...)."""


class RunError(GeoloomError, RuntimeError):
    """A run could not complete, or some of its tiles failed."""


class ProductError(CatalogError):
    """A satellite product (a Sentinel-2 SAFE folder or zip) is incomplete or its metadata cannot be read."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path
