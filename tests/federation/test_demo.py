"""The README's main command works: scripts/demo.py builds six real node processes and passes its checks."""

from __future__ import annotations

import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port_range(n: int = 6) -> int:
    """The first of ``n`` consecutive loopback ports that are free now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, 32000 - n)  # below the range outgoing connections take ports from
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free range of loopback ports")


@pytest.mark.timeout(240)
def test_demo_passes_its_checks(tmp_path):
    base = free_port_range()
    demo = subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--exit-after-checks",
         "--dir", str(tmp_path / "demo-run"), "--base-port", str(base)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        out, _ = demo.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        demo.terminate()  # SIGTERM: the demo stops its six nodes before it exits
        try:
            out, _ = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, _ = demo.communicate()
        pytest.fail(f"the demo did not finish in 180 s:\n{out}")
    assert demo.returncode == 0, f"demo exited {demo.returncode}\n{out}"
    assert "checks passed" in out and "✗" not in out
