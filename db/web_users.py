"""The web console's users: add, change a password, check a sign-in, list (table ``web_users``).

Passwords are hashed with Argon2id (argon2-cffi's `PasswordHasher` at its default parameters); only the encoded
hash is stored. A hash made with older parameters is re-hashed at the next successful sign-in. Checking a name that
does not exist still costs one hash verification, so the time of a refusal does not tell whether the name exists.

Neither passwords nor hashes are logged; the caller logs refused sign-ins (with the name as given).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sarcoscreen.db.models import WebUser
from sarcoscreen.db.session import db_now

__all__ = [
    "MIN_PASSWORD_LENGTH",
    "InvalidPasswordError",
    "InvalidUserNameError",
    "UnknownWebUserError",
    "WebUserExistsError",
    "WebUserInfo",
    "add_user",
    "check_name",
    "list_users",
    "set_password",
    "verify_sign_in",
]

MIN_PASSWORD_LENGTH = 10
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


class InvalidUserNameError(ValueError):
    """A user name that is not 1-64 letters, digits, '_', '.', '@' or '-' (starting with a letter or digit)."""


class InvalidPasswordError(ValueError):
    """A password refused before it is hashed (too short)."""


class WebUserExistsError(Exception):
    """`add_user` of a name that is taken."""


class UnknownWebUserError(Exception):
    """`set_password` of a name that does not exist."""


@dataclass(frozen=True)
class WebUserInfo:
    """A user as ``sarcoscreen web user list`` shows it (never the hash)."""

    name: str
    created_at: datetime
    last_sign_in_at: datetime | None


@cache
def _hasher() -> PasswordHasher:
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash to verify against when the name is unknown (same cost as a real check)."""
    return _hasher().hash("sarcoscreen: no such user")


def check_name(name: str) -> str:
    """`name` when it is a valid user name; `InvalidUserNameError` otherwise."""
    if not _NAME.fullmatch(name):
        raise InvalidUserNameError("a user name is 1-64 letters, digits, '_', '.', '@' or '-', starting with a "
                                   "letter or digit")
    return name


def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidPasswordError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher().hash(password)


def add_user(session: Session, name: str, password: str) -> WebUserInfo:
    """Add a user (in the caller's transaction); `WebUserExistsError` when the name is taken."""
    check_name(name)
    if session.execute(select(WebUser.id).where(WebUser.name == name)).first() is not None:
        raise WebUserExistsError(f"there is a web user {name!r} already: change the password with "
                                 "`sarcoscreen web user passwd`")
    user = WebUser(name=name, password_hash=_hash(password), created_at=db_now(session))
    session.add(user)
    try:
        session.flush()
    except IntegrityError:  # added by someone else in between
        raise WebUserExistsError(f"there is a web user {name!r} already") from None
    return WebUserInfo(user.name, user.created_at, None)


def set_password(session: Session, name: str, password: str) -> None:
    """Replace a user's password; `UnknownWebUserError` when there is no such user."""
    user = session.execute(select(WebUser).where(WebUser.name == name)).scalar_one_or_none()
    if user is None:
        raise UnknownWebUserError(f"there is no web user {name!r} (add one with `sarcoscreen web user add`)")
    user.password_hash = _hash(password)


def verify_sign_in(session: Session, name: str, password: str) -> bool:
    """Whether `password` is the password of user `name`; on success the sign-in time is recorded (and an
    outdated hash replaced), in the caller's transaction."""
    user = session.execute(select(WebUser).where(WebUser.name == name)).scalar_one_or_none()
    hasher = _hasher()
    try:
        hasher.verify(user.password_hash if user is not None else _dummy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if user is None:  # the dummy hash matched: still no such user
        return False
    if hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    user.last_sign_in_at = db_now(session)
    return True


def list_users(session: Session) -> list[WebUserInfo]:
    """Every user, by name."""
    return [WebUserInfo(u.name, u.created_at, u.last_sign_in_at)
            for u in session.execute(select(WebUser).order_by(WebUser.name)).scalars()]
