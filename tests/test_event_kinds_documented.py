"""Every kind of event the node records (`db.events.record_event`) is listed in docs/node.md, "What is recorded",
so that QA staff reading the events table can look each one up. Found by reading the source: every call of
``record_event`` must name its kind as a literal."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("node", "db", "inference", "reports")


def _recorded_kinds() -> dict[str, list[str]]:
    kinds: dict[str, list[str]] = {}
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
                assert isinstance(call.args[1], ast.Constant), f"{where}: record_event's kind is not a literal"
                kinds.setdefault(call.args[1].value, []).append(where)
    return kinds


def test_every_recorded_event_kind_is_documented() -> None:
    kinds = _recorded_kinds()
    assert "job.done" in kinds  # the scan finds the node's calls
    assert "series.stable" in kinds
    recorded = (ROOT / "docs" / "node.md").read_text(encoding="utf-8").split("## What is recorded", 1)[1]
    recorded = recorded.split("\n## ", 1)[0]
    missing = {kind: places for kind, places in kinds.items() if f"`{kind}`" not in recorded}
    assert not missing, f"event kinds not listed in docs/node.md, What is recorded: {missing}"
