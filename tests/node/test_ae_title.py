"""The one AE title check (node/ae_title.py; PS3.5 Table 6.2-1, the AE value representation)."""

from __future__ import annotations

import pytest

from sarcoscreen.node.ae_title import InvalidAETitleError, check_ae_title


@pytest.mark.parametrize(
    ("value", "title"),
    [
        ("SARCOSCREEN", "SARCOSCREEN"),
        ("ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"),  # 16 characters, the most
        ("  PACS  ", "PACS"),  # leading and trailing spaces are not significant
        ("  ABCDEFGHIJKLMNOP  ", "ABCDEFGHIJKLMNOP"),
        ("MY PACS", "MY PACS"),  # spaces inside are part of the title
        ("A", "A"),
        ("orthanc-1_@~!", "orthanc-1_@~!"),  # any printable ASCII but the backslash
    ],
)
def test_valid_titles_are_returned_without_padding(value: str, title: str) -> None:
    assert check_ae_title(value) == title


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ABCDEFGHIJKLMNOPQ", "has 17 characters, more than 16"),
        ("", "is empty or spaces only"),
        ("                ", "is empty or spaces only"),
        ("SARCO\\SCREEN", "contains a backslash"),
        ("SARCO\tSCREEN", "contains a control character"),
        ("PACS\n", "contains a control character"),
        ("PACS\x7f", "contains a control character"),
        ("PACSÉ", "outside ASCII"),
    ],
)
def test_invalid_titles_are_refused_with_the_reason(value: str, reason: str) -> None:
    with pytest.raises(InvalidAETitleError, match=reason) as error:
        check_ae_title(value)
    assert isinstance(error.value, ValueError)
