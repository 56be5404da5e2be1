"""A node killed with SIGKILL leaves no verification workers behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# The child starts the node's real worker pool, prints a worker's pid, and waits to be killed.
CHILD = """
import os, sys, time
from node.verify import Verifier
pool = Verifier(1)._get_pool()
print(pool.submit(os.getpid).result(timeout=60), flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purpose; only init (not us) could reap it.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_workers_leave_when_the_node_is_killed() -> None:
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        worker = int(child.stdout.readline())
        assert worker != child.pid and alive(worker)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker), f"worker {worker} outlived its killed node"
    finally:
        if child.poll() is None:
            child.kill()
