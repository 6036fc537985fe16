"""The command line of ``benchmarks/chaos.py`` (its docstring is the help)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

from chaos.campaign import PARTS, CampaignOptions, run_campaign
from chaos.databases import Backend
from chaos.report import format_table

__all__ = ["main"]

DEFAULT_POSTGRES = os.environ.get("SARCOSCREEN_TEST_POSTGRES_URL")


def parse(argv: list[str] | None, description: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="Folder for everything the run writes (default: a new temporary "
                        "folder, removed only by the system).")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, metavar="URL",
                        help="PostgreSQL server for the PostgreSQL runs, a fresh schema per part (default: "
                        "$SARCOSCREEN_TEST_POSTGRES_URL; without it SQLite only).")
    parser.add_argument("--no-sqlite", action="store_true", help="PostgreSQL only.")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--kill-trials", type=int, default=20)
    parser.add_argument("--sigterm-trials", type=int, default=4)
    parser.add_argument("--first-start-trials", type=int, default=3)
    parser.add_argument("--fuzz-cases", type=int, default=300)
    parser.add_argument("--associations", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parallel", action="store_true", help="Run SQLite and PostgreSQL side by side.")
    parser.add_argument("--json", type=Path, help="Also write the rows, notes and findings as JSON.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, description: str = "") -> int:
    args = parse(argv, description)
    # The corpus holds invalid values on purpose; pydicom's warnings about them are noise here (the node's own
    # output is what the campaign scans).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.")
    backends = ([] if args.no_sqlite else [Backend("sqlite")]) + (
        [Backend("postgresql", args.postgres)] if args.postgres else [])
    if not backends:
        sys.exit("no database: give --postgres URL or leave out --no-sqlite")
    work = args.work or Path(tempfile.mkdtemp(prefix="sarcoscreen-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    options = CampaignOptions(work=work, backends=tuple(backends), parts=tuple(args.parts),
                              kill_trials=args.kill_trials, sigterm_trials=args.sigterm_trials,
                              first_start_trials=args.first_start_trials,
                              fuzz_cases=args.fuzz_cases, associations=args.associations, seed=args.seed,
                              parallel=args.parallel)
    started = time.monotonic()
    print(f"work folder {work}; databases: {', '.join(b.label for b in backends)}; seed {args.seed}", flush=True)
    rows = run_campaign(options, log=lambda text: print(text, flush=True))
    print()
    print(format_table(rows))
    print(f"\n{time.monotonic() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps([asdict(row) | {"passed": row.passed} for row in rows], indent=2) + "\n",
                             encoding="utf-8")
    return 0 if all(row.passed for row in rows) else 1
