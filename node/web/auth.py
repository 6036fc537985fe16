"""Who is signed in, the sign-in and sign-out pages, and the guards every other page and action goes through.

Two ways to be signed in:

* **a password** (``sarcoscreen web user add``): ``POST /signin`` checks it (`sarcoscreen.db.web_users`) and puts
  the user's name and the time into the signed session cookie; a sign-in lasts ``web.session_max_age_s`` from that
  time, whatever the activity. ``POST /signout`` clears the session.
* **a reverse proxy** (``web.trusted_user_header``, e.g. ``X-Remote-User``): the proxy's authenticated user name in
  that header signs each request in; the sign-in page is not used.

The guards (`page`, `export`, `action`) make the routes of every signed-in module: a request without a user is sent
to ``/signin`` (303) when it asks for a page, and refused with 401 when it asks for an export or an action; an
action (POST) is also refused with 403 without the session's CSRF token (`sarcoscreen.node.web.csrf`). A guarded
endpoint is a plain function run in the thread pool (database work does not block the event loop); an action finds
its form in ``request.state.form``. `create_app` refuses a signed-in module's route that is not guarded.

A refused sign-in is logged with the name as it was typed (at most 64 characters, unusual characters as ``?``) and
the client address, never the password; after repeated failures for a name or from an address, sign-ins are
refused for a while (`SignInThrottle`).
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from sarcoscreen.node.web.console import console_of
from sarcoscreen.node.web.csrf import CsrfError, check_csrf, renew_csrf_token

__all__ = ["Guard", "SignedInUser", "action", "current_user", "export", "guard_of", "page", "routes"]

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Response]
"""A guarded endpoint: a plain function of the request (run in the thread pool)."""

_USER = "user"
_SINCE = "signed_in_at"


class Guard(StrEnum):
    """What a signed-in route is, which decides how a request without a user is answered."""

    PAGE = "page"
    """A page (GET): redirected to /signin."""
    EXPORT = "export"
    """A download (GET): 401."""
    ACTION = "action"
    """A change (POST, with the CSRF token): 401, or 403 without the token."""


@dataclass(frozen=True)
class SignedInUser:
    """The user of a request."""

    name: str
    via: str
    """``password`` or ``proxy`` (the trusted header)."""


def current_user(request: Request) -> SignedInUser | None:
    """The request's user: from the trusted header when one is configured, else from the session (while the
    sign-in is younger than ``web.session_max_age_s``)."""
    web = console_of(request).settings.web
    if web.trusted_user_header:
        name = request.headers.get(web.trusted_user_header, "").strip()
        return SignedInUser(name[:64], "proxy") if name else None
    name, since = request.session.get(_USER), request.session.get(_SINCE)
    if not isinstance(name, str) or not isinstance(since, int | float):
        return None
    if time.time() - since > web.session_max_age_s:
        request.session.clear()
        return None
    return SignedInUser(name, "password")


def _unauthenticated(request: Request, guard: Guard) -> Response:
    if guard is Guard.PAGE and not console_of(request).settings.web.trusted_user_header:
        return RedirectResponse("/signin", status_code=303)
    return PlainTextResponse("sign in first", status_code=401)


def _guarded(guard: Guard, endpoint: Endpoint) -> Callable[[Request], object]:
    @functools.wraps(endpoint)
    async def guarded(request: Request) -> Response:
        user = current_user(request)
        if user is None:
            return _unauthenticated(request, guard)
        request.state.user = user
        if guard is Guard.ACTION:
            form = await request.form()
            try:
                check_csrf(request, form)
            except CsrfError as exc:
                return PlainTextResponse(str(exc), status_code=403)
            request.state.form = form
        return await run_in_threadpool(endpoint, request)

    guarded.sarcoscreen_guard = guard  # type: ignore[attr-defined]
    return guarded


def guard_of(route: BaseRoute) -> Guard | None:
    """The guard of a route made by `page`, `export` or `action`; ``None`` for any other route."""
    return getattr(getattr(route, "endpoint", None), "sarcoscreen_guard", None)


def page(path: str, endpoint: Endpoint) -> Route:
    """A page for signed-in users (GET)."""
    return Route(path, _guarded(Guard.PAGE, endpoint), methods=["GET"])


def export(path: str, endpoint: Endpoint) -> Route:
    """A download for signed-in users (GET): 401 without a user."""
    return Route(path, _guarded(Guard.EXPORT, endpoint), methods=["GET"])


def action(path: str, endpoint: Endpoint) -> Route:
    """A change for signed-in users (POST with the CSRF token)."""
    return Route(path, _guarded(Guard.ACTION, endpoint), methods=["POST"])


# --- sign-in and sign-out ------------------------------------------------------------------------------------


async def _signin_page(request: Request) -> Response:
    console = console_of(request)
    if console.settings.web.trusted_user_header:
        if current_user(request) is not None:
            return RedirectResponse("/results", status_code=303)
        return PlainTextResponse(f"sign in at the reverse proxy (it sends {console.settings.web.trusted_user_header})",
                                 status_code=401)
    if current_user(request) is not None:
        return RedirectResponse("/results", status_code=303)
    return console.render(request, "signin.html", {"title": "Sign in", "name": ""})


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _as_typed(name: str) -> str:
    """A user name as typed, for a log line: at most 64 characters, each outside letters, digits and ``_.@-``
    shown as ``?`` (no quotes, control characters or line breaks reach the log)."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "?", name[:64]) or "(empty)"


def _check_password(request: Request, name: str, password: str) -> bool:
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.db.web_users import verify_sign_in

    with session_scope(console_of(request).db) as session:
        return verify_sign_in(session, name, password)


async def _signin(request: Request) -> Response:
    console = console_of(request)
    if console.settings.web.trusted_user_header:
        return PlainTextResponse("sign in at the reverse proxy", status_code=401)
    form = await request.form()
    try:
        check_csrf(request, form)
    except CsrfError as exc:
        return PlainTextResponse(str(exc), status_code=403)
    name, password = str(form.get("name", "")).strip(), str(form.get("password", ""))
    keys = (f"name:{name.lower()}", f"client:{_client(request)}")
    if console.throttle.blocked(*keys):
        logger.warning("web sign-in refused for user %s from %s: too many failed attempts", _as_typed(name),
                       _client(request))
        return console.render(request, "signin.html", {
            "title": "Sign in", "name": name, "error": "Too many failed sign-ins: wait a few minutes."},
            status_code=429)
    if not name or not password or not await run_in_threadpool(_check_password, request, name, password):
        console.throttle.failed(*keys)
        logger.warning("web sign-in failed for user %s from %s", _as_typed(name), _client(request))
        return console.render(request, "signin.html", {
            "title": "Sign in", "name": name, "error": "Wrong user name or password."}, status_code=401)
    console.throttle.succeeded(*keys)
    console.patient_filters.set(request, None)
    request.session.clear()
    request.session[_USER] = name
    request.session[_SINCE] = int(time.time())
    renew_csrf_token(request)
    logger.info("web sign-in: user %s from %s", _as_typed(name), _client(request))
    return RedirectResponse("/results", status_code=303)


def _signout(request: Request) -> Response:
    console_of(request).patient_filters.set(request, None)
    request.session.clear()
    renew_csrf_token(request)
    return RedirectResponse("/signin", status_code=303)


def routes() -> list[BaseRoute]:
    """The public sign-in page and form, and the signed-in sign-out action."""
    return [
        Route("/signin", _signin_page, methods=["GET"]),
        Route("/signin", _signin, methods=["POST"]),
        action("/signout", _signout),
    ]
