"""The fuzz run: the corpus of `chaos.fuzz_corpus` sent to a running node over real associations.

Cases go out in batches: each batch is a fresh template series of four slices in one transfer syntax (the
syntaxes taken in turn, the ones the node decodes twice as often), whose first and last slice are mutated (one
case each) and the middle ones sent intact. When the node refuses a mutated slice the rest is still a regular
series: it reaches the routing rules and a worker decodes whatever got through. The node runs ``sarcoscreen run``
with one worker and one attempt per job (a fuzzed series fails the same way every time).

Checked: the node answers every case (no crash, C-ECHO at the end, no worker process dying); every acknowledged
instance is indexed with its spool file; every refused one (0xA9xx, 0xCxxx) is in the quarantine; the intact
instances of each syntax are acknowledged; the node goes idle within the deadline (no job hangs); no patient value
reaches a log, the database's text or the command output.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from node_support import NodeConfig
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from chaos.databases import Backend, fresh_database
from chaos.dicom_io import store
from chaos.fuzz_corpus import SYNTAXES, FuzzCase, Syntax, mutate, write_template
from chaos.kill_trials import node_sections
from chaos.node_control import NodeUnderTest
from chaos.phi import PATIENTS
from chaos.settle import NodeRunRecord, node_session, quarantine_folder, scan_everything, settled_database
from sarcoscreen.db.models import Series

__all__ = ["FuzzResult", "fuzz_sections", "refused", "run_fuzz", "series_states"]



def refused(status: int | None) -> bool:
    """A refusal the node must quarantine: 0xA9xx (data set does not match the SOP class) or 0xCxxx (cannot
    understand, a SOP Instance UID conflict...); not 0xA700 (out of resources: nothing is kept, the sender
    retries)."""
    return status is not None and (status >> 8 == 0xA9 or status >> 12 == 0xC)


def fuzz_sections() -> dict[str, dict[str, object]]:
    """Node settings for the fuzz and malformed runs: series of a few slices are analysed, one attempt per job."""
    sections = node_sections(stable_age_s=1.0)
    sections["queue"]["max_attempts"] = 1
    sections["routing"] = {"min_slices": 3}
    return sections


@dataclass
class FuzzResult(NodeRunRecord):
    backend: str
    cases: int
    statuses: Counter[str] = field(default_factory=Counter)
    """C-STORE outcome of the mutated instances: ``0x0000``, ``0xA900``, ``0xC000``, ``none``..."""
    by_syntax: dict[str, Counter[str]] = field(default_factory=dict)
    intact_refused: list[str] = field(default_factory=list)
    """Unmutated template instances the node did not acknowledge (syntax: status)."""
    unquarantined: int = 0
    """Refused cases without a quarantine entry."""
    series_states: Counter[str] = field(default_factory=Counter)


def _status_name(status: int | None) -> str:
    return "none" if status is None else f"0x{status:04X}"


def _quarantined_uids(folder: Path) -> Counter[str]:
    found: Counter[str] = Counter()
    for note in folder.rglob("*.json"):
        try:
            found[str(json.loads(note.read_text(encoding="utf-8")).get("sop_instance_uid", ""))] += 1
        except (OSError, ValueError):
            found["<unreadable note>"] += 1
    return found


def run_fuzz(backend: Backend, work: Path, *, cases: int, seed: int, syntaxes: tuple[Syntax, ...] = SYNTAXES,
             intact_per_batch: int = 2, settle_s: float = 240.0) -> FuzzResult:
    """`cases` mutated instances (see the module) in `syntaxes` against one node on a fresh database."""
    started = time.monotonic()
    rng = random.Random(seed)
    result = FuzzResult(backend.label, cases)
    corpus = work / "corpus"
    with fresh_database(backend, work) as url:
        config = NodeConfig(work / "node", url, sections=fuzz_sections())
        node = NodeUnderTest(config)
        acknowledged: set[str] = set()
        refusals: list[str] = []
        case_number = 0
        batch = 0
        with node_session(node, result):
            node.start()
            schedule = [s for s in syntaxes for _ in range(2 if s.decodable else 1)]
            while case_number < cases:
                syntax = schedule[batch % len(schedule)]
                count = min(2, cases - case_number)
                folder = corpus / f"batch-{batch:04d}"
                templates = write_template(folder, syntax, 2 + intact_per_batch, PATIENTS[batch % len(PATIENTS)],
                                           seed * 100_003 + batch)
                # The mutated instances are the first and the last slice: when the node refuses one, the rest is
                # still a regular series, and the worker decodes the others.
                ends = [templates[0], templates[-1]][:count]
                fuzzed: list[FuzzCase] = [
                    mutate(template, folder / f"case-{case_number + k:05d}.dcm", syntax, case_number + k, seed)
                    for k, template in enumerate(ends)]
                intact = [t for t in templates if t not in ends]
                items = [*(c.path for c in fuzzed), *intact]
                rng.shuffle(items)
                sent = store(config.port, items, timeout=20.0)
                if not sent.connected:
                    result.unfinished.append(f"batch {batch} ({syntax.name}): no association")
                counts = result.by_syntax.setdefault(syntax.name, Counter())
                for case in fuzzed:
                    status = sent.statuses.get(case.sop_instance_uid)
                    result.statuses[_status_name(status)] += 1
                    counts[_status_name(status)] += 1
                    if status == 0x0000:
                        acknowledged.add(case.sop_instance_uid)
                    elif refused(status):
                        refusals.append(case.sop_instance_uid)
                fuzzed_uids = {c.sop_instance_uid for c in fuzzed}
                for uid, status in sent.statuses.items():
                    if status == 0x0000:
                        acknowledged.add(uid)
                    elif uid not in fuzzed_uids:
                        result.intact_refused.append(f"{syntax.name}: {_status_name(status)}")
                if not node.alive():
                    result.crashes.append(f"the node ended during batch {batch} ({syntax.name})")
                    node.start()
                case_number += count
                batch += 1
            with settled_database(node, config, result, settle_s=settle_s, after="the fuzz cases",
                                  acknowledged=acknowledged) as engine:
                result.series_states = series_states(engine)
            quarantined = _quarantined_uids(quarantine_folder(config))
            result.unquarantined = sum(1 for uid in refusals if not quarantined.get(uid))
            result.phi = scan_everything(node, config, url, quarantine=True)
    result.seconds = time.monotonic() - started
    return result


def series_states(engine: Engine) -> Counter[str]:
    """How many series ended in each state."""
    with Session(engine) as session:
        return Counter(str(state) for state in session.execute(select(Series.state)).scalars())
