"""The hardening campaign as a repeatable suite: the node attacked as a hostile site would, on loopback.

Run it with ``.venv/bin/python benchmarks/chaos.py`` (see that file and ``docs/reliability.md``); the CI-sized
smoke test ``tests/e2e/test_chaos_smoke.py`` runs a few cases of each part through the same code.

Modules, by concern:

* `databases` - a fresh SQLite file or PostgreSQL schema per part;
* `node_control` - ``sarcoscreen run`` as a real subprocess: start, kill -9 (the process or its whole group),
  restart, stop, and what counts as a crash;
* `dicom_io` - the SCU side (datasets or raw file bytes over a real association, with each response) and a
  recording destination (a pynetdicom Storage SCP that notes every object the node delivers);
* `phi` - recognisable fake patient values (well-formed and malformed) and the scan of logs, database text
  and command output for them;
* `ledger` - waiting until the node is idle, and counting acknowledged vs indexed vs delivered;
* `settle` - the frame every part shares: the node closed with its crashes noted, then let finish its work,
  stopped, its instances counted and what it wrote scanned for patient values (`NodeRunRecord` holds those notes);
* `kill_trials`, `fuzz_corpus` + `fuzz`, `malformed`, `concurrency` - the parts of the campaign;
* `report` - the table; `campaign` - all parts on each database; `cli` - the command line.

The package imports the test helpers of ``tests/`` (node configuration, crafted CT series, PostgreSQL schemas):
the caller puts ``tests/`` on ``sys.path`` (``benchmarks/chaos.py`` and the smoke test do).
"""
