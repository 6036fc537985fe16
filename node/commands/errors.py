"""How a command ends: the exit codes of every ``sarcoscreen`` command and the error a user can fix.

A command returns an `ExitCode` or raises `UserError`; `sarcoscreen.node.cli.main` prints the error once, to
stderr, as ``sarcoscreen: <message>``, and exits with the error's code.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode", "UserError"]


class ExitCode(IntEnum):
    """The exit status of every command."""

    OK = 0
    FAILED = 1
    """The input or the processing failed (an unreadable series, a database that cannot be reached, a file that
    cannot be written, a destination that refused)."""
    USAGE = 2
    """The command line or the configuration is wrong (also argparse's own status for a bad option)."""
    INTERRUPTED = 130
    """Stopped with Ctrl-C (128 + SIGINT, as shells report it)."""


class UserError(Exception):
    """A problem the user can fix, told in words; ends the command with `exit_code` (default `ExitCode.FAILED`).

    The message is printed as it is: no patient data, no traceback.
    """

    def __init__(self, message: str, exit_code: ExitCode = ExitCode.FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code
