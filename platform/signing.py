"""URL signing for providers that hand out short-lived asset URLs (Planetary Computer).

A signer turns an asset href into a URL that can be read now. geoloom keeps the plain href
everywhere (plan, ledger, manifest, errors) and signs only at read time, inside the task
that opens the file, so tokens never reach a file and an expired token is simply renewed
on the next read. Credentials come from the environment only (for Planetary Computer the
package reads ``PC_SDK_SUBSCRIPTION_KEY``).

Signers are named: ``planetary-computer``, one registered with :func:`register_signer`,
an installed package's entry point in the group ``geoloom.signers``, or an importable
``module:function``.
"""

from __future__ import annotations

import functools
import importlib
import re
from importlib.metadata import entry_points
from typing import Callable

from geoloom.platform.errors import CatalogError

Signer = Callable[[str], str]

_REGISTERED: dict[str, Signer] = {}


def register_signer(name: str, signer: Signer) -> None:
    """Make ``signer`` (href -> readable URL) available as ``sign=name`` in this process.

    Tasks sign in the process that reads, so on a cluster use a name every worker can
    resolve: ``module:function`` or a ``geoloom.signers`` entry point.
    """
    _REGISTERED[name] = signer
    get_signer.cache_clear()


def _planetary_computer() -> Signer:
    try:
        import planetary_computer
    except ImportError:
        raise CatalogError(
            "signing for Planetary Computer needs the planetary-computer package; "
            "pip install 'geoloom[planetary-computer]' (a subscription key, if any, goes in PC_SDK_SUBSCRIPTION_KEY)"
        ) from None
    return planetary_computer.sign  # str -> signed str (token cached and renewed by the package)


_BUILTIN: dict[str, Callable[[], Signer]] = {"planetary-computer": _planetary_computer}


@functools.lru_cache(maxsize=16)
def get_signer(name: str) -> Signer:
    """The signer called ``name``; a clear CatalogError when there is none."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name in _BUILTIN:
        return _BUILTIN[name]()
    for ep in entry_points(group="geoloom.signers"):
        if ep.name == name:
            return ep.load()
    if re.fullmatch(r"[\w.]+:\w+", name):
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise CatalogError(f"cannot load the signer {name}: {exc}; check the module:function path") from None
    known = sorted(set(_BUILTIN) | set(_REGISTERED) | {ep.name for ep in entry_points(group="geoloom.signers")})
    raise CatalogError(f"unknown signer {name!r}; use one of {', '.join(known)} or module:function")


def sign_href(href: str, signer: str | None) -> str:
    """``href`` made readable by ``signer`` (unchanged without one)."""
    return get_signer(signer)(href) if signer else href


def redact(text: str, signed: str, plain: str) -> str:
    """``text`` with the signed URL (and any URL query string, where tokens live) replaced by the plain href."""
    if signed != plain:
        text = text.replace(signed, plain)
    return re.sub(r"(https?://[^\s?'\"]+)\?[^\s'\"]*", r"\1", text)
