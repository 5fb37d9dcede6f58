"""Hand an alerts file to the user's hooks (a shell command, a webhook); a failing hook never raises."""

from __future__ import annotations

import http.client
import logging
import os
import shlex
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Iterable, Literal

log = logging.getLogger(__name__)

HookKind = Literal["command", "webhook"]
#: How much of a command's stderr (characters) an outcome keeps.
TAIL_CHARS = 2000
#: The longest wait (s) a webhook's Retry-After header can ask for between attempts.
MAX_RETRY_AFTER_S = 60.0


@dataclass(frozen=True, slots=True)
class HookOutcome:
    """What happened when one hook got the file: success, attempts, time taken and a one-line detail."""

    kind: HookKind
    target: str  # the command template, or the webhook URL without credentials, query or fragment
    ok: bool
    attempts: int
    seconds: float
    detail: str
    code: int | None = None  # the command's exit status, or the HTTP status of the last attempt
    timed_out: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The outcome as a JSON-friendly dict."""
        return asdict(self)


def _tail(text: str, n: int = TAIL_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= n else "..." + text[-n:]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run_command(template: str, file: str | Path, *, timeout_s: float = 60) -> HookOutcome:
    """Run ``template`` with ``/bin/sh -c``, ``{file}`` replaced by the shell-quoted path (also in
    ``$GEOLOOM_ALERTS_FILE``), in a process group of its own that is killed whole after ``timeout_s``."""
    command = template.replace("{file}", shlex.quote(str(file)))
    env = {**os.environ, "GEOLOOM_ALERTS_FILE": str(file)}
    start = time.monotonic()

    def outcome(ok: bool, detail: str, code: int | None = None, timed_out: bool = False) -> HookOutcome:
        return HookOutcome("command", template, ok, 1, round(time.monotonic() - start, 3), detail, code, timed_out)

    try:
        with tempfile.TemporaryFile() as err:
            # stderr goes to a file, not a pipe: a background child left holding a pipe cannot stall us
            proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=err, env=env, start_new_session=True)
            timed_out = False
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
                _kill_group(proc.pid)
                code = proc.wait()
            err.seek(0)
            stderr = _tail(err.read().decode("utf-8", errors="replace"))
    except Exception as exc:  # noqa: BLE001 - a hook must never break the run that calls it
        return outcome(False, f"could not start the command: {exc}")
    if timed_out:
        return outcome(False, f"timed out after {timeout_s:g} s and was killed" + (f": {stderr}" if stderr else ""),
                       code, True)
    if code != 0:
        return outcome(False, f"exit status {code}" + (f": {stderr}" if stderr else ""), code)
    return outcome(True, "exit status 0", 0)


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment, for logs (they may hold tokens)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    if not parts.scheme or not host:
        return url.split("?", 1)[0].split("#", 1)[0]
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _url_problem(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        return f"invalid URL ({exc}); give an http:// or https:// address"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not an http:// or https:// URL; give the webhook's full address"
    return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as the HTTP error it is: re-posting the body elsewhere is not ours to decide."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        """Follow no redirect."""
        return None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def post_webhook(url: str, file: str | Path, *, timeout_s: float = 10, retries: int = 3,
                 backoff_s: float = 1.0) -> HookOutcome:
    """POST the file as ``application/geo+json``, making at most ``retries`` attempts: connection errors,
    timeouts, 5xx and 429 are retried after ``backoff_s``, doubling each time; other 4xx are not."""
    target = redact_url(url)
    start = time.monotonic()

    def outcome(ok: bool, attempts: int, detail: str, code: int | None = None, timed_out: bool = False) -> HookOutcome:
        return HookOutcome("webhook", target, ok, attempts, round(time.monotonic() - start, 3), detail, code, timed_out)

    problem = _url_problem(url)
    if problem:
        return outcome(False, 0, problem)
    try:
        body = Path(file).read_bytes()
    except OSError as exc:
        return outcome(False, 0, f"cannot read the alerts file: {exc}")
    opener = urllib.request.build_opener(_NoRedirect)
    headers = {"Content-Type": "application/geo+json", "User-Agent": "geoloom-alerts"}
    attempts = max(1, int(retries))
    detail, code, timed_out = "", None, False
    for attempt in range(1, attempts + 1):
        wait = backoff_s * 2 ** (attempt - 1)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with opener.open(request, timeout=timeout_s) as response:
                response.read(65536)
                return outcome(True, attempt, f"HTTP {response.status}", response.status)
        except urllib.error.HTTPError as exc:
            code, timed_out = exc.code, False
            detail = f"HTTP {exc.code} {exc.reason}".strip()
            exc.close()
            if not (exc.code >= 500 or exc.code == 429):
                return outcome(False, attempt, detail, code)
            after = _retry_after(exc.headers)
            if after is not None:
                wait = max(wait, min(after, MAX_RETRY_AFTER_S))
        except TimeoutError:
            code, timed_out, detail = None, True, f"no answer within {timeout_s:g} s"
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            timed_out = isinstance(reason, TimeoutError)
            code, detail = None, f"no answer within {timeout_s:g} s" if timed_out else f"cannot connect: {reason}"
        except Exception as exc:  # noqa: BLE001 - a hook must never break the run that calls it
            return outcome(False, attempt, f"cannot post: {exc}")
        if attempt < attempts:
            time.sleep(wait)
    return outcome(False, attempts, f"{detail} (after {attempts} attempt{'s' if attempts > 1 else ''})", code, timed_out)


def deliver(file: str | Path, *, commands: Iterable[str] = (), webhooks: Iterable[str] = (),
            command_timeout_s: float = 60, webhook_timeout_s: float = 10, retries: int = 3,
            backoff_s: float = 1.0) -> list[HookOutcome]:
    """Give the file to every command, then every webhook, and log each outcome (a warning when it failed)."""
    outcomes = [run_command(c, file, timeout_s=command_timeout_s) for c in commands]
    outcomes += [post_webhook(u, file, timeout_s=webhook_timeout_s, retries=retries, backoff_s=backoff_s)
                 for u in webhooks]
    for o in outcomes:
        if o.ok:
            log.info("alert %s %s: %s (%.1f s)", o.kind, o.target, o.detail, o.seconds)
        else:
            log.warning("alert %s %s failed: %s (%.1f s)", o.kind, o.target, o.detail, o.seconds)
    return outcomes


__all__ = ["HookOutcome", "deliver", "post_webhook", "redact_url", "run_command"]
