"""Application Entity titles: the one check of an AE title the node is configured with or given.

An AE title has the AE value representation (PS3.5 6.2, Table 6.2-1): at most 16 characters of the Default
Character Repertoire (PS3.5 6.1.2.1: the printable ASCII characters, 0x20-0x7E) except the backslash (0x5C),
and no control characters; leading and trailing spaces are not significant, and a value of spaces only shall not
be used. PS3.8 9.3.2 and 9.3.3 carry the Called and Calling AE Titles of an association in this form.

Used for the node's own title (``[network] ae_title``), the allowed callers (``allowed_calling``), every
``[[destinations]]`` entry, and the destinations of ``sarcoscreen send`` (`sarcoscreen.node.storage_scu`).
"""

from __future__ import annotations

__all__ = ["AE_TITLE_MAX_LENGTH", "DEFAULT_AE_TITLE", "InvalidAETitleError", "check_ae_title"]

DEFAULT_AE_TITLE = "SARCOSCREEN"
"""The node's AE title when none is configured, and the calling AE title of `sarcoscreen send` by default."""

AE_TITLE_MAX_LENGTH = 16
"""Characters of an AE value, leading and trailing spaces not counted (PS3.5 Table 6.2-1)."""

_FIRST_PRINTABLE, _LAST_PRINTABLE = " ", "~"


class InvalidAETitleError(ValueError):
    """A text that is not a valid AE title; the message says why (the title is not quoted in it)."""


def check_ae_title(value: str) -> str:
    """`value` without its leading and trailing spaces when it is a valid AE title (module docstring);
    `InvalidAETitleError` saying what is wrong otherwise."""
    title = value.strip(" ")
    if not title:
        raise InvalidAETitleError("is empty or spaces only")
    if len(title) > AE_TITLE_MAX_LENGTH:
        raise InvalidAETitleError(f"has {len(title)} characters, more than {AE_TITLE_MAX_LENGTH}")
    if "\\" in title:
        raise InvalidAETitleError("contains a backslash")
    if any(not _FIRST_PRINTABLE <= character <= _LAST_PRINTABLE for character in title):
        raise InvalidAETitleError("contains a control character or a character outside ASCII (the DICOM "
                                  "Default Character Repertoire)")
    return title
