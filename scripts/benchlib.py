"""Small pieces the benchmark scripts share."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name, for the machine line of a benchmark report."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the scripts' and tests' nodes listen nowhere else).

    Not one the kernel picks for ``bind(0)``: those come from the range it
    also gives outgoing connections their local ports from, and a node's port
    is chosen when its folder is made, before its server binds it. In that
    gap a client connection took one once (EADDRINUSE in a federation test).
    Below that range, only a listener can take a port, and the ports handed
    out here are not handed out again in this process.
    """
    low = _ephemeral_low()
    for _ in range(1000):
        port = _PORT_RNG.randrange(10_000, low)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free loopback port between 10000 and {low}")


_PORT_RNG = random.Random()
_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux's default if unknown)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return max(low, 11_000)  # a range that starts very low still leaves room below it


def _stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (ppid first), or None if it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _cpu_of(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc; 0 if unavailable."""
    fields = _stat(pid)
    try:
        return _cpu_of(fields) if fields else 0.0
    except (ValueError, IndexError):
        return 0.0


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU time of the live child processes of ``pid`` (a node's verifier workers).

    A child's time reaches its parent's own counters only once it has exited and been
    reaped, so ``cpu_seconds`` alone leaves the workers out.
    """
    children = (f for entry in Path("/proc").iterdir() if entry.name.isdigit() and (f := _stat(entry.name)))
    return sum(_cpu_of(f) for f in children if f[1] == str(pid))


class NodeProcess:
    """``python -m node.cli run --home DIR`` as a child process of a script, stopped with SIGTERM.

    ``env`` defaults to this process's environment without its ``CENMESH_`` settings, so the
    node runs with its own ``node.toml`` whatever the shell sets.
    """

    def __init__(self, name: str, home: Path, url: str, log: Path, *, env: dict[str, str] | None = None,
                 log_level: str = "WARNING") -> None:
        self.name, self.home, self.url, self.log, self.log_level = name, home, url, log, log_level
        self.env = env if env is not None else {k: v for k, v in os.environ.items() if not k.startswith("CENMESH_")}
        self.proc: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None  # kept after stop, for the report

    @property
    def pid(self) -> int:
        assert self._pid is not None, "not started"
        return self._pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def start(self, session: aiohttp.ClientSession, timeout_s: float = 60) -> None:
        """Start the node and wait until it answers ``GET /federation/v1/descriptor``."""
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "run", "--home", str(self.home), "--log-level", self.log_level],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self._pid = self.proc.pid
        deadline = time.monotonic() + timeout_s
        url = self.url + "/federation/v1/descriptor"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited ({self.proc.returncode}); log: {self.tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    if resp.status == 200:
                        await resp.read()
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"node {self.name} did not answer within {timeout_s:.0f} s; log: {self.tail()}")
            await asyncio.sleep(0.05)  # waiting for a process to listen

    async def stop(self, timeout_s: float = 20) -> None:
        """SIGTERM, then SIGKILL if it has not stopped within ``timeout_s``."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 10)

    def kill_now(self) -> None:
        """Last-resort clean-up (no event loop needed)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)

    def tail(self, n: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return "(no log)"
