"""What the benchmarks of a running node (`node_ingest.py`, `node_latency.py`) share.

* `hip_ct_files` - the 600-slice, 512 x 512 phantom hip CT (``sarcoscreen phantom --slice-mm 1.5 --matrix 512``,
  uncompressed, ~513 KiB per instance), made once and cached under the work folder;
* `storescu_send` - dcmtk ``storescu`` sending files to a port, over one or more associations at once;
* `bench_database` - the URL of an empty database for one run: a SQLite file, or a new PostgreSQL schema on a
  server (dropped afterwards);
* `write_node_config` and `sarcoscreen_command` - the node's ``node.toml`` on loopback and the command that runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench_support import ensure_made, write_phantom

__all__ = ["bench_database", "hip_ct_files", "sarcoscreen_command", "storescu_send", "write_node_config"]

_TESTS = Path(__file__).resolve().parent.parent / "tests"


def hip_ct_files(work: Path) -> list[Path]:
    """The files of the cached 600-slice phantom hip CT, sorted."""
    folder = work / "sarcoscreen-node-benchmark-600"
    ensure_made(folder, "ok", lambda: write_phantom(folder, "--fov", "hip", "--slice-mm", "1.5", "--matrix", "512",
                                                    "--seed", "3"))
    return sorted((folder / "dicom").glob("*.dcm"))


def storescu_send(port: int, files: list[Path], parallel: int) -> float:
    """Seconds for `parallel` storescu processes to send `files` (split evenly) to the SCP ``SARCO`` on `port`;
    checks every response. ``TCP_NODELAY=1``: without it dcmtk's Nagle algorithm waits for the SCP's delayed ACK."""
    groups = [files[i::parallel] for i in range(parallel)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    start = time.perf_counter()
    processes = [subprocess.Popen(["storescu", "-aet", "SCANNER", "-aec", "SARCO", "127.0.0.1", str(port),
                                   *map(str, group)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for group in groups]
    outputs = [p.communicate()[0] for p in processes]
    seconds = time.perf_counter() - start
    for process, output in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(f"storescu failed: {output.decode(errors='replace')[-500:]}")
    return seconds


@contextmanager
def bench_database(server_url: str | None, sqlite_file: Path) -> Iterator[str]:
    """The URL of an empty database: `sqlite_file`, or with `server_url` (PostgreSQL) a new schema
    ``bench_<random>`` that the URL's connections use, dropped on exit (the tests' `db_support.postgres_schema_url`;
    ``tests/`` joins ``sys.path`` for it)."""
    if not server_url:
        yield f"sqlite:///{sqlite_file}"
        return
    if str(_TESTS) not in sys.path:
        sys.path.append(str(_TESTS))
    from db_support import postgres_schema_url

    with postgres_schema_url(server_url, prefix="bench_") as url:
        yield url


def write_node_config(folder: Path, *, port: int, database_url: str, stable_age_s: float, log_level: str,
                      more: str = "") -> Path:
    """``folder/node.toml``: the SCP ``SARCO`` on loopback `port`, the data under ``folder/data`` (no free-space
    floor), then `more` (further TOML tables)."""
    config = folder / "node.toml"
    config.write_text(f'[network]\nae_title = "SARCO"\nhost = "127.0.0.1"\nport = {port}\n'
                      f'stable_age_s = {stable_age_s}\n[database]\nurl = "{database_url}"\n'
                      f'[storage]\ndata_dir = "{folder / "data"}"\nmin_free_mb = 0\n[logging]\nlevel = "{log_level}"\n'
                      f'{more}', encoding="utf-8")
    return config


def sarcoscreen_command(config: Path, command: str) -> list[str]:
    """``sarcoscreen --config CONFIG COMMAND`` with this interpreter."""
    return [sys.executable, "-m", "sarcoscreen.node.cli", "--config", str(config), command]
