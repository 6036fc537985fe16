"""What every command module provides, and the types `sarcoscreen.node.cli` composes them with.

Each module under ``node/commands/`` is named after its command and exposes

* ``add_parser(commands: SubParsers) -> None``: registers its sub-parser, with its options and help, and
  ``set_defaults(run=run, needs_settings=...)`` (``needs_settings=False`` for commands that must work without a
  valid configuration, such as ``config example`` or ``phantom``);
* ``run(args: argparse.Namespace, settings: Settings | None) -> int``: does the work and returns an `ExitCode`,
  or raises `UserError`. ``settings`` is the loaded configuration when the parser set ``needs_settings`` (the
  default), else ``None``.

Heavy imports (numpy, pydicom, SQLAlchemy, torch) belong inside ``run``: the parser of every command is built at
each start of the command line.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeAlias

from sarcoscreen.node.config import Settings

__all__ = ["Run", "SettingsNotLoadedError", "SubParsers", "loaded"]

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""The ``commands`` a command module's ``add_parser`` adds its sub-parser to."""

Run = Callable[[argparse.Namespace, Settings | None], int]
"""A command's ``run``."""


class SettingsNotLoadedError(RuntimeError):
    """A command that needs the settings was registered with ``needs_settings=False`` (a programming error)."""


def loaded(settings: Settings | None) -> Settings:
    """`settings` of a command registered with ``needs_settings`` (the default), which the command line loads."""
    if settings is None:
        raise SettingsNotLoadedError("this command needs the settings: register it with needs_settings=True")
    return settings
