"""The federation simulation (scripts/simulate.py) runs every scenario on a small federation and
meets the targets there: everything delivered, nothing outside its audience, routine bundles
within 3 intervals at p95, urgent alerts within 2 s, within 10 intervals with 20% loss and a hub
down, under 5% duplicate bodies, an empty store caught up, idle traffic growing with peers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_smoke(tmp_path) -> None:
    png = tmp_path / "delivery.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "simulate.py"), "--nationals", "9", "--hubs", "3",
         "--bundles", "30", "--rounds", "5", "--seed", "3", "--hub-down-s", "300", "--partition-intervals", "6",
         "--idle", "6", "--plot", str(png)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["nodes"] == 12
    assert summary["refused"] == 0, proc.stderr[-3000:]
    assert set(summary["scenarios"]) == {"no-faults", "latency", "loss-0.2", "partition", "hub-down+loss-0.2", "restarts"}
    assert summary["targets"] == {
        "all_delivered": True, "none_out_of_audience": True, "routine_p95_within_3_intervals": True,
        "urgent_p95_within_2_s": True, "faulty_p95_within_10_intervals": True, "duplicate_bodies_under_5_percent": True,
    }, proc.stdout
    assert summary["delivered_ratio"] == 1.0 and summary["out_of_audience"] == 0
    # The replaced store caught up with everything addressed to it.
    assert summary["scenarios"]["restarts"]["catchup_intervals"] is not None, proc.stdout
    # Idle: a hub with many peers polls more than a national with two; a national's idle bytes do
    # not follow the size of its store.
    idle = summary["idle"]["bytes_per_hour_by_peers"]
    hub = max(v for k, v in idle.items() if k.startswith("hub"))
    national = idle["national 2 peers"]
    assert hub > 2 * national, idle
    sizes = summary["idle"]["store_size_compare"]
    assert sizes["large_bytes_per_hour"] < 1.5 * sizes["small_bytes_per_hour"], sizes
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"plot: {png}" in proc.stdout
