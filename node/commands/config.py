"""``sarcoscreen config show`` (the effective configuration, secrets masked) and ``config example`` (a commented
example file, generated from the settings model; needs no configuration)."""

from __future__ import annotations

import argparse

from sarcoscreen.node.commands.command import SubParsers, loaded
from sarcoscreen.node.commands.errors import ExitCode
from sarcoscreen.node.config import Settings

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("config", help="Show the effective configuration or an example file.")
    actions = parser.add_subparsers(dest="config_action", required=True, metavar="ACTION")
    actions.add_parser("show", help="The effective configuration as TOML (secrets masked).").set_defaults(
        run=run, needs_settings=True)
    actions.add_parser("example", help="A commented example configuration file.").set_defaults(
        run=run, needs_settings=False)


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.config_text import effective_toml, example_toml

    if args.config_action == "example":
        print(example_toml(), end="")
    else:
        print(effective_toml(loaded(settings)), end="")
    return ExitCode.OK
