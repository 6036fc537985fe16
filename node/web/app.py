"""The web console's application: `create_app(settings, db)` assembles it from its route modules (no global app).

Routes come from modules, each with ``routes() -> list[BaseRoute]``:

* `SIGNED_IN_MODULES`: the pages, exports and actions for signed-in users. Every route they return must be made
  with the guards of `sarcoscreen.node.web.auth` (`page`, `export`, `action`); `create_app` refuses any other, so no
  page can be published without a sign-in by mistake.
* `PUBLIC_MODULES`: what needs no sign-in: the sign-in page, and the probes and metrics (``/healthz``,
  ``/readyz``, ``/metrics``: `sarcoscreen.node.web.probes`), which must never show patient data.
* ``/static``: the style sheet, from the package folder ``node/web/static``.

Middleware, outermost first: the security headers (`SecurityHeaders`), then Starlette's signed session cookie
(key from ``web.secret_file``, `sarcoscreen.node.web.secret`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from sarcoscreen.node.config import Settings
from sarcoscreen.node.web import auth, cohort_page, health_page, probes, queue_page, results_page, series_page
from sarcoscreen.node.web.console import Console
from sarcoscreen.node.web.headers import SecurityHeaders
from sarcoscreen.node.web.patient_filter import PatientFilterStore
from sarcoscreen.node.web.secret import load_or_create_secret

__all__ = ["PUBLIC_MODULES", "SESSION_COOKIE", "SIGNED_IN_MODULES", "UnguardedRouteError", "create_app"]

STATIC = Path(__file__).resolve().parent / "static"
SESSION_COOKIE = "sarcoscreen_session"

SIGNED_IN_MODULES: tuple[ModuleType, ...] = (results_page, queue_page, series_page, cohort_page, health_page)
"""Modules of pages, exports and actions for signed-in users (every route guarded)."""

PUBLIC_MODULES: tuple[ModuleType, ...] = (auth, probes)
"""Modules of routes without a sign-in: sign-in (and sign-out, itself guarded), the probes and the metrics."""


class UnguardedRouteError(RuntimeError):
    """A signed-in module returned a route not made with `auth.page`, `auth.export` or `auth.action`."""


def _signed_in_routes(modules: Sequence[ModuleType]) -> list[BaseRoute]:
    routes: list[BaseRoute] = []
    for module in modules:
        for route in module.routes():
            if auth.guard_of(route) is None:
                raise UnguardedRouteError(f"{module.__name__}: route {getattr(route, 'path', route)!r} has no "
                                          "sign-in guard (make it with auth.page, auth.export or auth.action)")
            routes.append(route)
    return routes


async def _home(_request: object) -> Response:
    return RedirectResponse("/results", status_code=303)


def create_app(settings: Settings, db: Engine, *, extra_routes: Sequence[BaseRoute] = ()) -> Starlette:
    """The console for `settings` on the database `db` (migrated; the caller disposes of it).

    `extra_routes` are public routes added after the modules' (probes, metrics). `SecretFileError` when the
    session key cannot be read or made.
    """
    secret = load_or_create_secret(settings.web_secret_file, settings.storage.modes)
    console = Console(settings, db,
                      patient_filters=PatientFilterStore(max_age_s=float(settings.web.session_max_age_s)))
    routes: list[BaseRoute] = [Route("/", _home, methods=["GET"]),
                               Mount("/static", app=StaticFiles(directory=STATIC), name="static")]
    for module in PUBLIC_MODULES:
        routes += module.routes()
    routes += extra_routes
    routes += _signed_in_routes(SIGNED_IN_MODULES)
    app = Starlette(routes=routes, middleware=[
        Middleware(SecurityHeaders),
        Middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE,
                   max_age=settings.web.session_max_age_s, same_site="lax"),
    ])
    app.state.console = console
    return app
