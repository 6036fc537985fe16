"""Error texts that may be logged or stored: the one scrubbing helper for every place that records an error.

Exception texts of pydicom, highdicom, numpy, Python and SQLAlchemy quote the value they failed on - ``Unable to
convert '1901-02-03' to 'DA' object``, ``'DOE^JOHN'``, ``[parameters: ('DOE^JOHN',)]`` - and a DICOM value can
be patient data. Whatever records a text for people to read (log lines, ``jobs.error``, ``events.message``,
``deliveries.last_error``, quarantine notes) passes it through here:

* `error_text` turns an exception into text: a foreign exception as ``TypeName: reason``, the project's own
  (defined in a ``sarcoscreen`` module; their messages are composed of reasons, counts, attribute names, UIDs and
  file names) as their message; both scrubbed. With ``location=True`` the innermost place it was raised follows.
* `scrub_text` replaces with `REDACTED` what can carry a value: quoted text (``'...'``, ``"..."``, ```...```,
  ``b'...'``; an unterminated quote to the end of the line) except a quoted VR name (``'DA'``, which says what
  failed), SQLAlchemy's ``[SQL: ...]`` and ``[parameters: ...]`` blocks, words holding a person-name delimiter
  ``^`` (PS3.5 6.2, PN) and dates (``19010203``, ``1901-02-03``, ``1901.02.03``) that are not part of a UID. The
  rest stays: reasons in words, numbers, UIDs, attribute names and tags. Scrubbing twice changes nothing.

The module lives in `sarcoscreen.inference` because every other package (db, reports, node) imports that one and
it imports none of them.
"""

from __future__ import annotations

import re
import traceback
from pathlib import Path

__all__ = ["REDACTED", "error_text", "scrub_text"]

REDACTED = "<value>"

_VRS = frozenset({
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW", "PN",
    "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV",
})
_SQL_BLOCK = re.compile(r"\[(?:SQL|parameters):.*?\](?=\s*(?:\[|\(Background|$))", re.DOTALL)
_QUOTED = re.compile(
    r"""(?<![\w\\])[bBrRuUfF]{0,2}(?P<q>['"`])(?P<body>[^\n]*?)(?:(?P=q)(?!\w)|$)""", re.MULTILINE
)
_PERSON_NAME = re.compile(r"[^\s,;:()\[\]{}]*\^[^\s,;:()\[\]{}]*")
_DATE = re.compile(r"(?<![\w.])(?:1[89]|2[01])\d\d([-./]?)(?:0[1-9]|1[0-2])\1(?:0[1-9]|[12]\d|3[01])(?![\w.])")


def _quoted(match: re.Match[str]) -> str:
    body = match.group("body")
    if body in _VRS and match.group(0).endswith(match.group("q")):
        return match.group(0)
    return REDACTED


def scrub_text(text: str) -> str:
    """`text` with what can carry a DICOM value replaced by `REDACTED` (see the module docstring)."""
    text = _SQL_BLOCK.sub(REDACTED, text)
    text = _QUOTED.sub(_quoted, text)
    text = _PERSON_NAME.sub(REDACTED, text)
    return _DATE.sub(REDACTED, text)


def _is_own(exc: BaseException) -> bool:
    return type(exc).__module__.startswith("sarcoscreen.")


def error_text(exc: BaseException, *, location: bool = False) -> str:
    """`exc` as a text that may be logged or stored: ``TypeName: reason`` for a foreign exception, the message for
    the project's own, scrubbed; with `location`, `` (at file.py:123 in function)`` of the innermost frame."""
    message = scrub_text(str(exc).strip())
    if not _is_own(exc):
        message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    if location:
        frames = traceback.extract_tb(exc.__traceback__)
        if frames:
            frame = frames[-1]
            message += f" (at {Path(frame.filename).name}:{frame.lineno} in {frame.name})"
    return message
