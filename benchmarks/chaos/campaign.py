"""All parts of the campaign on each database, each part on its own fresh database and node.

The parts and their sizes are `CampaignOptions`; `run_campaign` runs them for each backend (side by side with
``parallel``: the node processes of SQLite and PostgreSQL then share the machine) and returns the table rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from chaos.concurrency import run_concurrency
from chaos.databases import Backend
from chaos.fuzz import run_fuzz
from chaos.kill_trials import run_first_start_trials, run_kill_trials
from chaos.malformed import ITEMS, run_malformed
from chaos.report import PartSummary, summarize

__all__ = ["PARTS", "CampaignOptions", "run_campaign"]

PARTS = ("kill", "sigterm", "first-start", "fuzz", "malformed", "concurrency")


@dataclass(frozen=True)
class CampaignOptions:
    work: Path
    backends: tuple[Backend, ...]
    parts: tuple[str, ...] = PARTS
    kill_trials: int = 20
    sigterm_trials: int = 4
    first_start_trials: int = 3
    fuzz_cases: int = 300
    malformed_items: int = len(ITEMS)
    associations: int = 20
    seed: int = 1
    parallel: bool = False


def _parts(options: CampaignOptions, backend: Backend, log: Callable[[str], None]) -> list[PartSummary]:
    root = options.work / backend.name
    phantom = options.work / "phantom-abdomen"
    runs: dict[str, Callable[[], object]] = {
        "kill": lambda: run_kill_trials(backend, root / "kill", trials=options.kill_trials, seed=options.seed,
                                        phantom=phantom),
        "sigterm": lambda: run_kill_trials(backend, root / "sigterm", trials=options.sigterm_trials,
                                           seed=options.seed, phantom=phantom, sigterm=True),
        "first-start": lambda: run_first_start_trials(backend, root / "first-start",
                                                      trials=options.first_start_trials, seed=options.seed),
        "fuzz": lambda: run_fuzz(backend, root / "fuzz", cases=options.fuzz_cases, seed=options.seed),
        "malformed": lambda: run_malformed(backend, root / "malformed", items=ITEMS[:options.malformed_items]),
        "concurrency": lambda: run_concurrency(backend, root / "concurrency", associations=options.associations,
                                               racing=max(1, options.associations // 5)),
    }
    rows = []
    for part in options.parts:
        started = time.monotonic()
        log(f"{backend.label}: {part} ...")
        row = summarize(runs[part]())  # type: ignore[arg-type]
        log(f"{backend.label}: {part} done in {time.monotonic() - started:.0f} s: "
            f"{'pass' if row.passed else 'FAIL'}")
        rows.append(row)
    return rows


def run_campaign(options: CampaignOptions, log: Callable[[str], None] = print) -> list[PartSummary]:
    """Every part on every backend; the rows in backend order."""
    if {"kill", "sigterm"} & set(options.parts):  # made once, before parallel runs could race to write it
        from chaos.sources import phantom_datasets

        phantom_datasets(options.work / "phantom-abdomen")
    if options.parallel and len(options.backends) > 1:
        with ThreadPoolExecutor(len(options.backends)) as pool:
            futures = [pool.submit(_parts, options, backend, log) for backend in options.backends]
            return [row for future in futures for row in future.result()]
    return [row for backend in options.backends for row in _parts(options, backend, log)]
