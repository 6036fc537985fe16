"""``sarcoscreen send PATHS --to AET@HOST:PORT|NAME``: C-STORE DICOM files or folders to a remote AE (a storage
SCU, `sarcoscreen.node.storage_scu`).

A destination or TLS option that is wrong is a usage error (exit status 2); a destination that cannot be reached
exit status 1, as is any file not sent (each named on stderr).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sarcoscreen.node.ae_title import DEFAULT_AE_TITLE
from sarcoscreen.node.commands.command import SubParsers
from sarcoscreen.node.commands.errors import ExitCode, UserError
from sarcoscreen.node.config import Settings, load_settings

if TYPE_CHECKING:
    from sarcoscreen.node.storage_scu import Destination

__all__ = ["add_parser", "run"]


def add_parser(commands: SubParsers) -> None:
    parser = commands.add_parser("send", help="C-STORE DICOM files or folders to a remote AE (a storage SCU).")
    parser.add_argument("paths", type=Path, nargs="+", help="Files or folders (searched recursively).")
    parser.add_argument("--to", required=True, metavar="AET@HOST:PORT|NAME",
                        help="The destination, e.g. PACS@10.0.0.5:104, or the name of a [[destinations]] entry.")
    parser.add_argument("--calling-ae", default=DEFAULT_AE_TITLE, help=f"Our AE title (default {DEFAULT_AE_TITLE}).")
    parser.add_argument("--timeout", type=float, default=30.0, help="Network timeout in seconds (default 30).")
    parser.add_argument("--tls", action="store_true", help="Use TLS (system CAs unless --tls-ca is given).")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM",
                        help="CA bundle to verify the destination (implies --tls).")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="Client certificate (implies --tls).")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="Private key of the client certificate.")
    parser.add_argument("--tls-no-verify-host", action="store_true",
                        help="Do not check that the certificate names the host (the CA is still checked).")
    # The configuration is read only when --to names a [[destinations]] entry.
    parser.set_defaults(run=run, needs_settings=False)


def _destination(args: argparse.Namespace) -> Destination:
    """The destination of ``--to`` (with the TLS options); `UserError` (usage) when they are wrong."""
    from sarcoscreen.node.storage_scu import DestinationError, parse_destination
    from sarcoscreen.node.tls import TlsConfigError, client_context

    try:
        if "@" in args.to:
            destination = parse_destination(args.to, args.calling_ae)
        else:  # the name of a [[destinations]] entry, with its TLS settings
            from sarcoscreen.node.delivery import destination_of

            configured = {d.name: d for d in load_settings(args.config).destinations}
            if args.to not in configured:
                known = ", ".join(configured) or "none configured"
                raise UserError(f"--to {args.to!r} is neither AET@host:port nor a configured destination ({known})",
                                ExitCode.USAGE)
            destination = destination_of(configured[args.to], args.calling_ae)
        if args.tls or args.tls_ca or args.tls_cert:
            if bool(args.tls_cert) != bool(args.tls_key):
                raise UserError("--tls-cert and --tls-key go together", ExitCode.USAGE)
            context = client_context(args.tls_ca, args.tls_cert, args.tls_key,
                                     check_hostname=not args.tls_no_verify_host)
            destination = dataclasses.replace(destination, tls=context)
    except (DestinationError, TlsConfigError) as exc:
        raise UserError(str(exc), ExitCode.USAGE) from None
    return destination


def run(args: argparse.Namespace, settings: Settings | None) -> int:
    from sarcoscreen.node.storage_scu import DestinationError, send_files

    destination = _destination(args)
    try:
        result = send_files(args.paths, destination, timeout=args.timeout)
    except DestinationError as exc:  # no association (refused, unreachable, no accepted context)
        raise UserError(str(exc), ExitCode.FAILED) from None
    print(f"sent {result.sent} of {len(result.outcomes)} files to {destination}")
    for outcome in result.failed:
        status = outcome.status_text if outcome.status is not None else "not sent"
        print(f"  {outcome.path}: {status} {outcome.error}".rstrip(), file=sys.stderr)
    return ExitCode.OK if not result.failed else ExitCode.FAILED
