"""The federation simulation (scripts/simulate.py) runs end to end at a tiny size and delivers everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "simulate.py"), "--nationals", "8", "--hubs", "2",
         "--bundles", "20", "--rounds", "6", "--seed", "3", "--settle", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["nodes"] == 10
    assert summary["refused"] == 0, proc.stderr[-3000:]
    assert summary["delivered_ratio"] == 1.0, proc.stdout
    assert summary["out_of_audience"] == 0, proc.stdout
    assert set(summary["scenarios"]) == {"no-faults", "loss-0.2"}
