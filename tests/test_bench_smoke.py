"""The bench harness (`make bench`, bench/run.py) at tiny sizes, so it does not rot: its own
dev server, the floor, Whistle through the HTTP API with the real worker and API processes,
the DBOS peer, the bulk audit and the open-case phase, a few cases each. The figures mean
nothing at this size; the test checks that every phase ran, every case went through, and
that no process it started is left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(150)
def test_bench_harness_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke",
                          "--out", str(out), "--work-dir", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=140)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["phases_done"] == ["lifecycle", "audit", "open"]
    kinds = {(r["kind"], r["clients"]) for r in res["lifecycle"]}
    assert kinds == {(k, c) for k in ("floor", "whistle", "peer") for c in (10, 50)}
    for r in res["lifecycle"]:
        assert not r["errors"], r
        assert r["cases_per_s"] > 0 and r["sign_off_ms"]["n"] > 0
        assert set(r["cpu_ms_per_case"]) and all(v > 0 for v in r["peak_rss_mb"].values())
    assert any(r.get("read_model_lag_ms", {}).get("n") for r in res["lifecycle"])
    assert res["audit"]["one_process"]["ok"] and res["audit"]["one_process"]["histories"] > 0
    oc = res["open_cases"]
    assert not oc["start"]["errors"] and not oc["sign_off_all"]["errors"]
    assert oc["clocks"]["fired"] == oc["clocks"]["expected"] > 0
    assert "ratios" in res and res["targets"]
    # every process the bench started was stopped by it
    left = {p.pid for p in psutil.Process().children(recursive=True)} - before
    assert not left, left
    assert not list(tmp_path.glob("whistle-bench-*")), "work directory left behind"
