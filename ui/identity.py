"""Who is at the page: the name jobs are recorded under, and the optional login.

In order: the account of Streamlit's OIDC login (``st.login``, when ``[auth]`` is configured in
``.streamlit/secrets.toml``; ``GEOLOOM_LOGIN=required`` makes the page ask for it first), the user a
reverse proxy passes on (``X-Forwarded-User``, ``X-Remote-User`` or ``X-Forwarded-Email``; set
``GEOLOOM_USER_HEADER`` for another header), else the name the analyst types once (kept in the
page's address, ``?user=``, so a bookmark or a reload keeps it).
"""

from __future__ import annotations

import os
import re

import streamlit as st

from geoloom.ui.resources import ss

#: Headers a reverse proxy passes the signed-in user in, tried in order.
PROXY_HEADERS = ("X-Forwarded-User", "X-Remote-User", "X-Forwarded-Email", "Remote-User")
_NAME = re.compile(r"^[\w .@+-]{1,64}$")


def login_configured() -> bool:
    """True when Streamlit's OIDC login has its ``[auth]`` settings."""
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def _logged_in_name() -> str | None:
    try:
        if login_configured() and st.user.is_logged_in:
            return str(st.user.get("email") or st.user.get("name") or "") or None
    except Exception:
        return None
    return None


def _proxy_name() -> str | None:
    names = [os.environ.get("GEOLOOM_USER_HEADER", "")] + list(PROXY_HEADERS)
    try:
        headers = st.context.headers
    except Exception:
        return None
    for header in filter(None, names):
        value = (headers.get(header) or "").strip()
        if value:
            return value[:64]
    return None


def current_user() -> str | None:
    """The page's user: the login's account, the proxy's user, or the typed name; None if unknown."""
    typed = ss.get("user_name") if "user_name" in ss else st.query_params.get("user", "")
    return _logged_in_name() or _proxy_name() or (str(typed).strip() or None)


def gate() -> bool:
    """With ``GEOLOOM_LOGIN=required`` and a login configured: ask to log in; False while no one is."""
    if os.environ.get("GEOLOOM_LOGIN", "").strip().lower() != "required" or not login_configured():
        return True
    if _logged_in_name():
        return True
    st.title("geoloom")
    st.info("Log in to use this geoloom.")
    st.button("Log in", on_click=st.login, type="primary")
    return False


def user_panel() -> None:
    """The sidebar's line about who runs jobs: the account (with log out), the proxy's user, or a name field."""
    if _logged_in_name():
        st.caption(f"Signed in as **{_logged_in_name()}**")
        st.button("Log out", on_click=st.logout, key="logout")
        return
    if _proxy_name():
        st.caption(f"Runs are recorded for **{_proxy_name()}**")
        return
    if "user_name" not in ss:
        ss.user_name = str(st.query_params.get("user", ""))
    st.text_input("Your name", key="user_name", max_chars=64, placeholder="recorded with your runs",
                  on_change=_keep_name, help="Runs are recorded under this name; the history can show only yours.")
    if ss.get("user_error"):
        st.error(f"Give {ss.user_error}.")
    if login_configured():
        st.button("Log in", on_click=st.login, key="login")


def _keep_name() -> None:
    """Check the typed name and keep it in the page's address."""
    name = str(ss.get("user_name") or "").strip()
    if name and not _NAME.match(name):
        ss.user_error = "a name of up to 64 letters, digits, spaces and . @ + - _"
        ss.user_name = ""
        return
    ss.user_error = None
    ss.user_name = name
    if name:
        st.query_params["user"] = name
    else:
        st.query_params.pop("user", None)
