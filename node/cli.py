"""The ``sarcoscreen`` command line: composition of the commands in `sarcoscreen.node.commands`.

Builds the top-level parser (``--version``, ``--config``, ``--log-level``), lets every command module register its
sub-parser, loads the settings for the commands that need them, configures logging and runs the command. How a
command ends is one set of exit codes (`ExitCode`): a problem the user can fix (`UserError`, a bad configuration)
is printed once, to stderr, as ``sarcoscreen: <message>``, never as a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sarcoscreen.inference.version import software_version
from sarcoscreen.node.commands import COMMANDS
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import ConfigError, Settings, load_settings
from sarcoscreen.node.logging_setup import configure_logging

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line, with every command of `COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="sarcoscreen",
        description="Screen hip and abdominal CT for sarcopenia: a DICOM node, its worker and its tools.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {software_version()}")
    parser.add_argument("--config", type=Path, help="TOML configuration file (default: $SARCOSCREEN_CONFIG or "
                        "./sarcoscreen.toml when present).")
    parser.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="Override logging.level.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def _settings(args: argparse.Namespace) -> Settings | None:
    """The settings when the command needs them (with ``--log-level``), logging configured either way."""
    if not getattr(args, "needs_settings", True):
        configure_logging(args.log_level or "INFO")
        return None
    overrides = {"logging": {"level": args.log_level}} if args.log_level else None
    settings = load_settings(args.config, overrides=overrides)
    configure_logging(settings.logging.level, settings.logging.file, modes=settings.storage.modes)
    return settings


def _fail(message: str, code: ExitCode) -> int:
    print(f"sarcoscreen: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of `argv` (default: the process's arguments) and return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args, _settings(args)))
    except ConfigError as exc:
        return _fail(str(exc), ExitCode.USAGE)
    except UserError as exc:
        return _fail(str(exc), exc.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", ExitCode.INTERRUPTED)


if __name__ == "__main__":
    sys.exit(main())
