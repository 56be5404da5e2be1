"""The load test (scripts/load.py) at a tiny size: a real `cenmesh run` node, a few syncing peers and
officers, then a flood of bad requests from another process. No errors, and memory stays bounded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY_MB = 8  # server.max_body_bytes, default
# The node holds at most four large bodies at once (node/server.py BUDGET_BODIES); reading one takes
# up to three times its size (aiohttp's growing buffer, then a copy): 96 MB. The rest is the
# allocator's slack. Measured: 92-100 MB with this mix; with no budget and parsing every body,
# eleven bodies of tiny JSON values alone made the node grow by 260 MB.
FLOOD_GROWTH_BOUND_MB = 160


@pytest.mark.timeout(150)
def test_load_smoke() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "load.py"), "--peers", "4", "--officers", "3", "--bundles", "200",
         "--duration", "5", "--flood-duration", "6", "--flood-requests", "150", "--flood-concurrency", "12",
         "--interval", "1", "--push-every", "2", "--think", "0.3", "--seed", "5"],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )
    out = proc.stdout.strip().splitlines()
    assert out, proc.stderr[-3000:]
    summary = json.loads(out[-1])
    assert proc.returncode == 0, "\n".join(out[-40:]) + proc.stderr[-3000:]
    assert summary["errors"] == 0 and summary["flood_unexpected"] == 0 and summary["node_alive"]
    assert summary["sync_requests"] > 20 and summary["officer_requests"] > 10
    assert summary["fetched"] >= 1 and summary["pushed"] >= 4  # fresh peers caught up; pushes went through
    answers = summary["flood_answers"]
    assert summary["flood_requests"] >= 100, answers
    assert {"413", "401", "400"} <= {status for kind in answers.values() for status in kind}, answers
    assert summary["flood_main_rss_growth_mb"] < FLOOD_GROWTH_BOUND_MB, "\n".join(out[-40:])
