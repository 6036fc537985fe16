"""The event kinds (`db.events.EventKind`) and docs/node.md, "What is recorded", hold the same list, so that QA
staff reading the events table can look each kind up; and every ``record_event`` call in the source names its kind
as an `EventKind` member (found by reading the source), so no kind escapes the list."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from sarcoscreen.db.events import EventKind

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("node", "db", "inference", "reports")


def _recorded_members() -> dict[str, list[str]]:
    """`EventKind` member name -> where ``record_event`` is called with it."""
    members: dict[str, list[str]] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for call in ast.walk(tree):
                if not isinstance(call, ast.Call):
                    continue
                name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", None)
                if name != "record_event":
                    continue
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                assert len(call.args) >= 2, f"{where}: record_event without a kind"
                kind = call.args[1]
                named = isinstance(kind, ast.Attribute) and isinstance(kind.value, ast.Name)
                assert named, f"{where}: record_event's kind is not an EventKind member"
                assert kind.value.id == "EventKind", f"{where}: record_event's kind is not an EventKind member"
                members.setdefault(kind.attr, []).append(where)
    return members


def _documented_kinds() -> set[str]:
    text = (ROOT / "docs" / "node.md").read_text(encoding="utf-8").split("## What is recorded", 1)[1]
    section = text.split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", section, flags=re.MULTILINE))


def test_every_record_event_call_names_an_existing_event_kind() -> None:
    members = _recorded_members()
    assert "JOB_DONE" in members  # the scan finds the node's calls
    unknown = {name: places for name, places in members.items() if name not in EventKind.__members__}
    assert not unknown, f"record_event with a kind EventKind does not have: {unknown}"
    unused = set(EventKind.__members__) - set(members)
    assert not unused, f"EventKind members never recorded: {unused}"


def test_the_event_kinds_and_the_documented_list_are_the_same() -> None:
    documented = _documented_kinds()
    kinds = {kind.value for kind in EventKind}
    assert kinds - documented == set(), "event kinds not listed in docs/node.md, What is recorded"
    assert documented - kinds == set(), "docs/node.md, What is recorded, lists kinds the node never records"
