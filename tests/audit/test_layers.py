"""The audit package stands beside the API, below the entry points: the API and the CLI
import it, it imports neither (nor the activities it checks the work of)."""

from __future__ import annotations

from tests.test_layers import ROOT, imports

FORBIDDEN = {"api", "activities", "worker", "whistlectl", "tests", "bench"}


def test_audit_imports_no_entry_point_nor_the_code_it_audits_the_work_of():
    for path in (ROOT / "audit").glob("*.py"):
        for name in imports(path):
            assert name.split(".")[0] not in FORBIDDEN, f"{path.name} imports {name}"


def test_nothing_below_imports_the_audit():
    for layer in ("whistle", "workflows", "activities"):
        for path in (ROOT / layer).rglob("*.py"):
            assert not any(n.split(".")[0] == "audit" for n in imports(path)), path
