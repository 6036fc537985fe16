"""Option choices that are the values of an enum of the database models, looked up only when argparse needs them.

Importing `sarcoscreen.db.models` (SQLAlchemy, Alembic) costs most of a second, and the parser of every command is
built at each start of the command line; so ``results --status`` and ``jobs --status`` take an `EnumValues`,
which imports the enum when argparse first checks a value or shows the command's help. Give such an option a
``metavar`` (and ``%(choices)s`` in its help): without one, argparse lists the choices while the parser is built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import overload

__all__ = ["EnumValues"]


class EnumValues(Sequence[str]):
    """The values of the enum `load` returns, in definition order (argparse ``choices``)."""

    def __init__(self, load: Callable[[], type[Enum]]) -> None:
        self._load = load

    def _values(self) -> list[str]:
        return [str(member.value) for member in self._load()]

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._values()[index]

    def __len__(self) -> int:
        return len(self._values())

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __contains__(self, value: object) -> bool:
        return value in self._values()
