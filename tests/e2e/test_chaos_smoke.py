"""The hardening campaign (``benchmarks/chaos.py``) in small: a few cases of each part through the same code.

The full campaign - at least 20 kill trials and 300 fuzz cases per database - is a benchmark (``docs/reliability.md``);
this test keeps its code working and its claims true on every run. The parts run side by side, each with its own
``sarcoscreen run`` on a fresh database, split over SQLite and PostgreSQL (PostgreSQL when the run has a server;
SQLite for every part otherwise):

* SIGTERM while a series arrives, then kill -9 of the node while it delivers (the destination holds the response:
  it has the object, the node has no answer yet); then every instance indexed, every output delivered, none twice;
* kill -9 during the first start on an empty database;
* fuzzed instances in a decoded compressed syntax, an uncompressed one and a stored-only one;
* malformed series (a gap, a sequence nested beyond a parser's recursion, over-long patient values);
* simultaneous associations, two of them sending the same series.

Every part must end with nothing lost, nothing duplicated, no crash, no patient value in logs, database text or
command output, and the node idle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))

from chaos.concurrency import run_concurrency  # noqa: E402
from chaos.databases import Backend  # noqa: E402
from chaos.fuzz import run_fuzz  # noqa: E402
from chaos.fuzz_corpus import SYNTAXES  # noqa: E402
from chaos.kill_trials import FirstStartResult, KillTrialsResult, run_first_start_trials, run_kill_trials  # noqa: E402
from chaos.malformed import ITEMS, run_malformed  # noqa: E402
from chaos.report import PartSummary, format_table, summarize  # noqa: E402
from chaos.sources import phantom_datasets  # noqa: E402

pytestmark = pytest.mark.slow  # about 40 s: six nodes side by side

SMOKE_SYNTAXES = ("1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.4.110")
SMOKE_ITEMS = ("a gap (slice missing in the middle)", "a sequence nested 600 items deep", "over-long patient values")


def test_the_campaign_in_small(tmp_path: Path) -> None:
    server = os.environ.get("SARCOSCREEN_TEST_POSTGRES_URL")
    postgres = Backend("postgresql", server) if server else Backend("sqlite")
    sqlite = Backend("sqlite")
    phantom = tmp_path / "phantom"
    phantom_datasets(phantom)
    syntaxes = tuple(s for s in SYNTAXES if s.uid in SMOKE_SYNTAXES)
    items = tuple(i for i in ITEMS if i.name in SMOKE_ITEMS)
    assert len(syntaxes) == len(SMOKE_SYNTAXES)
    assert len(items) == len(SMOKE_ITEMS)
    parts: dict[str, Callable[[], object]] = {
        "kill": lambda: run_kill_trials(postgres, tmp_path / "kill", trials=2, seed=3, phantom=phantom,
                                        plan=[("ingest", "term"), ("delivery", "kill")], delivery_timeout_s=1.0,
                                        settle_s=120.0),
        "first-start": lambda: run_first_start_trials(sqlite, tmp_path / "first-start", trials=1, seed=5),
        "fuzz": lambda: run_fuzz(sqlite, tmp_path / "fuzz", cases=2 * len(syntaxes), seed=6, syntaxes=syntaxes),
        "malformed": lambda: run_malformed(postgres, tmp_path / "malformed", items=items),
        "concurrency": lambda: run_concurrency(postgres, tmp_path / "concurrency", associations=6, racing=2,
                                               slices=4),
    }
    with ThreadPoolExecutor(len(parts)) as pool:
        futures = {name: pool.submit(run) for name, run in parts.items()}
        results = {name: future.result() for name, future in futures.items()}
    rows: list[PartSummary] = [summarize(result) for result in results.values()]  # type: ignore[arg-type]
    table = format_table(rows)
    for row in rows:
        assert row.passed, table
    kill = results["kill"]
    assert isinstance(kill, KillTrialsResult)
    assert kill.stopped == 1
    assert kill.in_flight["ingest"] >= 1, table  # SIGTERM while a series arrived
    assert kill.in_flight["delivery"] >= 1, table  # kill -9 while the node was delivering
    assert kill.deliveries is not None
    assert kill.deliveries.processed == 3, table  # every series analysed ...
    assert kill.deliveries.delivered == kill.deliveries.outputs == 9, table  # ... every output at the destination
    assert kill.instances is not None
    assert kill.instances.acknowledged == kill.instances.indexed == 3 * len(phantom_datasets(phantom))
    first_start = results["first-start"]
    assert isinstance(first_start, FirstStartResult)
    assert first_start.trials == 1
    assert not first_start.failures
