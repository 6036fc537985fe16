"""The hardening campaign: the node attacked as a hostile site would, on loopback, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/chaos.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--parallel] [--kill-trials 20] [--sigterm-trials 4] [--first-start-trials 3] [--fuzz-cases 300]
        [--associations 20] [--parts kill sigterm first-start fuzz malformed concurrency] [--seed 1]
        [--work DIR] [--json FILE]

Parts (``benchmarks/chaos/``, one module each), every one on a fresh database and a real ``sarcoscreen run``:

* kill -9 of the node at random points while phantom series arrive, are analysed and delivered to a recording
  destination (the main process or its whole process group; restarted at once), then the count of acknowledged
  vs indexed vs delivered instances; the same with SIGTERM (a clean stop, an association cut); and kill -9 during
  the first start on an empty database;
* the fuzz corpus: seeded byte mutations of valid CT instances in every transfer syntax the node accepts, sent
  over real associations and analysed by the worker;
* the malformed-series set (geometry, pixel attributes, UIDs, patient values, nesting, reused SOP Instance UIDs);
* simultaneous associations (``network.max_associations``), some racing with the same series.

Every case carries recognisable fake patient values; the node's logs, the database's text and the output of
``sarcoscreen jobs``/``results`` are scanned for them. The table gives per part and database: trials, lost,
duplicated, crashed, PHI and unfinished, which must all be 0 (exit code 1 otherwise). ``docs/reliability.md``
records the figures. Loopback only; every wait is bounded. ``tests/e2e/test_chaos_smoke.py`` runs a few cases of each
part through the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
# The campaign reuses the tests' helpers (node configuration, crafted series, PostgreSQL schemas).
sys.path[:0] = [str(_HERE), str(_HERE.parent / "tests")]

from chaos.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(description=__doc__ or ""))
