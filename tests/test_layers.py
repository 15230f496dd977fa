"""Layers point one way, and workflow code stays deterministic (no I/O imports)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# workflows.* are workflow code too: this test reads each of them.
WORKFLOW_ALLOWED = {"temporalio", "whistle.domain", "whistle.search_attributes", "workflows"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_workflows_import_only_temporalio_stdlib_and_the_domain():
    for path in (ROOT / "workflows").glob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            ok = (top in sys.stdlib_module_names or top == "__future__"
                  or any(name == a or name.startswith(a + ".") for a in WORKFLOW_ALLOWED))
            assert ok, f"{path.name} imports {name}: workflow code must stay deterministic"


def test_shared_kernel_imports_no_upper_layer():
    for path in (ROOT / "whistle").rglob("*.py"):
        for name in imports(path):
            assert name.split(".")[0] not in {"workflows", "activities", "api", "worker",
                                              "whistlectl"}, f"{path} imports {name}"


def test_activities_never_import_the_api():
    for path in (ROOT / "activities").rglob("*.py"):
        assert not any(n.split(".")[0] == "api" for n in imports(path)), path


def test_workflow_modules_hold_no_client_code():
    """Starting workflows and making schedules is the worker's (worker.py): a workflow
    module that imported the client would drag it into the sandbox and invite I/O."""
    for path in (ROOT / "workflows").glob("*.py"):
        assert not any(n.startswith("temporalio.client") for n in imports(path)), path.name
