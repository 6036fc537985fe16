"""Cross-site request forgery protection: one random token per session, checked on every POST.

Every form carries the token as the hidden field ``csrf_token`` (the templates' ``csrf_field()``); a POST whose
token is missing or differs from the session's is refused with 403 before anything is done. The token lives in the
signed session cookie, so another site can neither read it nor make a browser send it.
"""

from __future__ import annotations

import secrets

from starlette.datastructures import FormData
from starlette.requests import Request

__all__ = ["FIELD", "CsrfError", "check_csrf", "csrf_token", "renew_csrf_token"]

FIELD = "csrf_token"
"""The form field (and the session key) of the token."""


class CsrfError(Exception):
    """A POST without the session's CSRF token."""


def csrf_token(request: Request) -> str:
    """The session's token, made when the session has none."""
    token = request.session.get(FIELD)
    if not isinstance(token, str) or not token:
        token = renew_csrf_token(request)
    return token


def renew_csrf_token(request: Request) -> str:
    """A new token for the session (at sign-in and sign-out)."""
    token = secrets.token_urlsafe(32)
    request.session[FIELD] = token
    return token


def check_csrf(request: Request, form: FormData) -> None:
    """`CsrfError` unless the form's token is the session's."""
    expected = request.session.get(FIELD)
    given = form.get(FIELD)
    if not isinstance(expected, str) or not expected or not isinstance(given, str) \
            or not secrets.compare_digest(given.encode(), expected.encode()):
        raise CsrfError("the form's CSRF token is missing or out of date: reload the page and try again")
