"""``sarcoscreen web``: the QA web console (`sarcoscreen.node.web`), and its users.

* ``sarcoscreen web [--host H] [--port P]``: serve the console (default ``web.host``:``web.port``) until SIGTERM or
  Ctrl-C. It reads the node's database; it does not receive or process anything (``serve``/``run`` with
  ``web.enabled_in_serve`` serve it beside the node instead).
* ``sarcoscreen web user add NAME``, ``sarcoscreen web user passwd NAME``: add a user, or change a user's
  password. The password is asked for twice on the terminal (not echoed), or read from the first line of standard
  input with ``--password-stdin``; it is never printed or logged.
* ``sarcoscreen web user list``: the users, with when each was added and last signed in.
"""

from __future__ import annotations

import argparse
import getpass
import signal
import sys
import threading
from types import FrameType
from typing import TYPE_CHECKING

from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.database import with_database
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["add_parser", "read_password", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("web", help="The QA web console (results, queue) and its users.")
    parser.add_argument("--host", help="Listen on this address (default web.host).")
    parser.add_argument("--port", type=int, help="Listen on this port (default web.port; 0: a free port).")
    parser.set_defaults(run=run, needs_settings=True)
    actions = parser.add_subparsers(dest="web_action", required=False, metavar="user")
    user = actions.add_parser("user", help="Add a console user, change a password, list the users.")
    user_actions = user.add_subparsers(dest="user_action", required=True, metavar="add|passwd|list")
    for name, text in (("add", "Add a user (asks for the password)."),
                       ("passwd", "Change a user's password (asks for the new one).")):
        action = user_actions.add_parser(name, help=text)
        action.add_argument("name", metavar="NAME")
        action.add_argument("--password-stdin", action="store_true",
                            help="Read the password from the first line of standard input (for scripts).")
        action.set_defaults(run=run, needs_settings=True)
    user_list = user_actions.add_parser("list", help="The users.")
    user_list.set_defaults(run=run, needs_settings=True)


def read_password(from_stdin: bool) -> str:
    """The password from stdin's first line (`from_stdin`), or asked for twice on the terminal."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UserError("--password-stdin: standard input held no password", ExitCode.USAGE)
        return password
    if not sys.stdin.isatty():
        raise UserError("no terminal to ask for the password on: use --password-stdin", ExitCode.USAGE)
    password = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != password:
        raise UserError("the passwords differ", ExitCode.USAGE)
    return password


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    if getattr(args, "web_action", None) == "user" and args.user_action != "list":
        from sarcoscreen.db.web_users import InvalidUserNameError, check_name

        try:
            check_name(args.name)  # told before the password is asked for
        except InvalidUserNameError as exc:
            raise UserError(str(exc), ExitCode.USAGE) from None
        args.password = read_password(args.password_stdin)
    return _run(args, settings)


@with_database
def _run(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
    if getattr(args, "web_action", None) == "user":
        return _user(args, db)
    return _serve(args, settings, db)


def _user(args: argparse.Namespace, db: Engine) -> int:
    from sarcoscreen.db.session import session_scope
    from sarcoscreen.db.web_users import (
        InvalidPasswordError,
        UnknownWebUserError,
        WebUserExistsError,
        add_user,
        list_users,
        set_password,
    )

    if args.user_action == "list":
        with session_scope(db) as session:
            users = list_users(session)
        for user in users:
            last = f"{user.last_sign_in_at:%Y-%m-%d %H:%M:%S}" if user.last_sign_in_at else "never"
            print(f"{user.name}  added {user.created_at:%Y-%m-%d %H:%M:%S}  last signed in {last}")
        if not users:
            print("no web users (add one with `sarcoscreen web user add NAME`)")
        return ExitCode.OK
    try:
        with session_scope(db) as session:
            if args.user_action == "add":
                add_user(session, args.name, args.password)
            else:
                set_password(session, args.name, args.password)
    except InvalidPasswordError as exc:
        raise UserError(str(exc), ExitCode.USAGE) from None
    except (WebUserExistsError, UnknownWebUserError) as exc:
        raise UserError(str(exc), ExitCode.FAILED) from None
    print(f"web user {args.name}: {'added' if args.user_action == 'add' else 'password changed'}")
    return ExitCode.OK


def _serve(args: argparse.Namespace, settings: Settings, db: Engine) -> int:
    from sarcoscreen.node.web import create_app
    from sarcoscreen.node.web.secret import SecretFileError
    from sarcoscreen.node.web.server import ConsoleServer, ConsoleServerError

    try:
        app = create_app(settings, db)
        server = ConsoleServer(app, args.host or settings.web.host, settings.web.port if args.port is None
                               else args.port)
        server.start()
    except (SecretFileError, ConsoleServerError) as exc:
        raise UserError(str(exc), ExitCode.FAILED) from None
    stop = threading.Event()

    def handler(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    print(f"web console: {server.url}", flush=True)
    try:
        while not stop.wait(1.0):
            pass
    finally:
        server.stop()
    return ExitCode.OK
