"""What every page of the web console shares: the settings, the database, the templates and the per-process
stores, as one `Console` value kept on the application (``app.state.console``; no module-level state).

`Console.render` renders a template with what the base layout needs: the signed-in user, the CSRF token, the
navigation and a one-time message (`flash`) left by the action before a redirect.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jinja2
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from sarcoscreen.node.config import Settings
from sarcoscreen.node.web.csrf import FIELD, csrf_token
from sarcoscreen.node.web.patient_filter import PatientFilterStore
from sarcoscreen.node.web.sign_in_throttle import SignInThrottle

__all__ = ["NAVIGATION", "Console", "NavItem", "console_of", "flash", "make_templates"]

TEMPLATES = Path(__file__).resolve().parent / "templates"
_FLASH = "flash"


@dataclass(frozen=True)
class NavItem:
    """An entry of the navigation bar."""

    title: str
    path: str


NAVIGATION: tuple[NavItem, ...] = (
    NavItem("Results", "/results"), NavItem("Queue", "/queue"), NavItem("Cohort", "/cohort"),
    NavItem("Health", "/health"),
)
"""The navigation of every page (Cohort and Health are other modules' pages)."""


def _when(value: datetime | date | None) -> str:
    """A time as the pages show it (UTC, to the second), a date as ISO; ``-`` for none."""
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return value.isoformat()


def make_templates() -> Jinja2Templates:
    """The console's templates (``node/web/templates``), autoescaped, undefined names an error; the filter
    ``when`` formats times (`_when`)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    return Jinja2Templates(env=env)


@dataclass
class Console:
    """The web console's shared parts (one per application)."""

    settings: Settings
    db: Engine
    templates: Jinja2Templates = field(default_factory=make_templates)
    patient_filters: PatientFilterStore = field(default_factory=PatientFilterStore)
    throttle: SignInThrottle = field(default_factory=SignInThrottle)

    def render(self, request: Request, template: str, context: dict[str, Any] | None = None, *,
               status_code: int = 200) -> Response:
        """`template` with the base layout's values and `context`."""
        user = getattr(request.state, "user", None)
        values: dict[str, Any] = {
            "user": user, "navigation": NAVIGATION, "active": request.url.path, "csrf_name": FIELD,
            "csrf_token": csrf_token(request), "flash": request.session.pop(_FLASH, None),
            "title": "", "error": None,
        }
        values.update(context or {})
        return self.templates.TemplateResponse(request, template, values, status_code=status_code)


def console_of(request: Request) -> Console:
    """The `Console` of the application serving `request`."""
    return request.app.state.console  # type: ignore[no-any-return]


def flash(request: Request, text: str, *, ok: bool = True) -> None:
    """A message for the next page rendered in this session (an action's outcome; never patient data)."""
    request.session[_FLASH] = {"text": text, "ok": ok}
