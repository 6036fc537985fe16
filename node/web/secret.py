"""The key that signs the web console's session cookies: read from ``web.secret_file``, made when missing.

The file (default ``<storage.data_dir>/web-secret``) holds one random URL-safe key of 64 characters and is created
with ``storage.file_mode`` (0600 by default) and its folder with ``storage.dir_mode``, atomically, so two
processes starting at once never read half a key. Whoever can read it can forge a sign-in: keep it private.
Deleting it signs every user out at the next start.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from sarcoscreen.inference.file_modes import FileModes

__all__ = ["SecretFileError", "load_or_create_secret"]

logger = logging.getLogger(__name__)

_MIN_LENGTH = 32
"""Fewest characters a key read from the file may have (a shorter one is refused, not padded)."""


class SecretFileError(Exception):
    """The secret file cannot be read, written, or holds no usable key; the message names the file."""


def load_or_create_secret(path: Path, modes: FileModes) -> str:
    """The key in `path`; a new random key written there first when the file is missing. A file readable by
    others than its owner is used but logged with the fix."""
    if not path.exists():
        try:
            modes.make_dirs(path.parent)
            with modes.atomic(path, "text", durable=True) as handle:
                handle.write(secrets.token_urlsafe(48) + "\n")
        except OSError as exc:
            raise SecretFileError(f"web secret file {path} cannot be written: {exc.strerror or exc}") from None
        logger.info("web console: new session key written to %s", path)
    try:
        key = path.read_text(encoding="utf-8").strip()
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except (OSError, UnicodeDecodeError) as exc:
        raise SecretFileError(f"web secret file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
                              ) from None
    if len(key) < _MIN_LENGTH:
        raise SecretFileError(f"web secret file {path} holds a key of {len(key)} characters, fewer than "
                              f"{_MIN_LENGTH}: delete it to have a new one made")
    if mode & 0o077 & ~modes.file:
        logger.warning("web secret file %s has mode %04o, wider than storage.file_mode %04o: chmod %04o %s", path,
                       mode, modes.file, modes.file, path)
    return key
