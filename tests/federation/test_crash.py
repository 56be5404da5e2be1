"""SIGKILL in the middle of ingesting a large pushed batch loses nothing and stores nothing twice.

The receiving node is a real `cenmesh run` process; the test process seals the bundles and pushes them
with signed requests, kills the node at a random moment while batches are being ingested, restarts it
on the same folder, pushes everything again, and checks the database.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from crypto.envelope import seal_bundle
from node.outbox import complete
from node.runtime import open_node
from protocol.audience import resolve_recipients
from protocol.bundle import Audience
from tests.federation.harness import api, identity_of, make_seizure, push_as

REPO = Path(__file__).resolve().parents[2]
TOTAL = 2000
BATCH = 500
DAY_MS = 24 * 3600 * 1000


def seal_all(origin, recipient, n: int) -> list:
    """``n`` bundles from ``origin`` to ``recipient``, keys resolved from the origin's own directory."""
    node = open_node(origin.home)
    try:
        audience = Audience("nodes", (recipient.node_id,))
        now = node.now_ms()
        keys = resolve_recipients(audience, node.node_id, node.directory, node.rosters, now_ms=now)
    finally:
        node.store.close()
    identity = identity_of(origin)
    return [
        seal_bundle(identity=identity, kind="seizure", record=complete(make_seizure(i)), audience=audience,
                    recipient_keys=keys, created=now, expires=now + 30 * DAY_MS, urgent=False, rng=os.urandom)
        for i in range(n)
    ]


def start(member, log: Path) -> subprocess.Popen:
    out = open(log, "ab")  # noqa: SIM115 - closed by the caller through proc.stdout
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "node.cli", "run", "--home", str(member.home), "--log-level", "WARNING"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={k: v for k, v in os.environ.items() if not k.startswith("CENMESH_")},
        )
    finally:
        out.close()


async def wait_ready(session, member, proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"node exited with {proc.returncode}"
        try:
            async with session.get(member.url + "/federation/v1/descriptor",
                                   timeout=aiohttp.ClientTimeout(total=2)) as resp:
                if resp.status == 200 and (await resp.json())["node"] == member.node_id:
                    return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)  # waiting for a process to listen; no sync is driven by time
    raise TimeoutError(f"{member.name} did not answer within {timeout}s")


def log_tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:] if log.exists() else ""


def kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def query(db: Path, sql: str):
    # A read-write connection: after SIGKILL the first opener must be able to recover the WAL.
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("seed", [7])
async def test_sigkill_during_ingest_loses_nothing(fed, seed):
    rng = random.Random(seed)
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    ng = fed.add("Nigeria", "NG", "national", ["WCA"])
    gh = fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    db = gh.home / "node.db"
    epoch = query(db, "SELECT value FROM meta WHERE key='epoch'")
    bundles = seal_all(ng, gh, TOTAL)
    assert len({b.id for b in bundles}) == TOTAL
    batches = [bundles[i:i + BATCH] for i in range(0, TOTAL, BATCH)]
    log = fed.root / "ghana.log"
    proc = None
    try:
        async with aiohttp.ClientSession() as s:
            proc = start(gh, log)
            await wait_ready(s, gh, proc)

            answered: list[dict] = []
            first_answer = asyncio.Event()
            took: list[float] = []

            async def push_all() -> None:
                for batch in batches:
                    t0 = time.monotonic()
                    status, answer = await push_as(s, ng, gh, batch)
                    took.append(time.monotonic() - t0)
                    assert status == 200, answer
                    answered.append(answer)
                    first_answer.set()

            pusher = asyncio.create_task(push_all())
            try:
                # Kill while a later batch is being verified or written: shortly after the first answer.
                waiter = asyncio.ensure_future(first_answer.wait())
                await asyncio.wait([waiter, pusher], timeout=30, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                assert first_answer.is_set(), (pusher.done() and pusher.exception(), log_tail(log))
                # Within the next batch's time (measured on the first), so never after the last answer.
                await asyncio.sleep(rng.uniform(0.05, 0.95) * took[0])
                kill(proc)
            finally:
                pusher.cancel()
                await asyncio.gather(pusher, return_exceptions=True)
            assert 1 <= len(answered) < len(batches), "the kill came too late to interrupt an ingest"
            for answer in answered:
                assert len(answer["accepted"]) == BATCH and not answer["rejected"]

            # A batch is one transaction: the killed node holds whole batches only.
            held = query(db, "SELECT count(*) FROM bundles")[0][0]
            print(f"killed after {len(answered)} answered batches ({took[0]:.2f}s each); {held} bundles held")
            assert held % BATCH == 0 and held >= BATCH * len(answered), held
            assert query(db, "PRAGMA integrity_check") == [("ok",)]

            proc = start(gh, log)
            await wait_ready(s, gh, proc)  # restarts on the same folder and port after the kill
            accepted = duplicate = 0
            for batch in batches:
                status, answer = await asyncio.wait_for(push_as(s, ng, gh, batch), 30)
                assert status == 200, answer
                assert not answer["rejected"], answer["rejected"][:3]
                assert len(answer["accepted"]) + len(answer["duplicate"]) == BATCH
                accepted += len(answer["accepted"])
                duplicate += len(answer["duplicate"])
            assert accepted == TOTAL - held and duplicate == held

            status, st = await api(gh, s, "GET", "/api/v1/status")
            assert status == 200 and st["bundles"] == {"readable": TOTAL}, st["bundles"]
            assert st["epoch"] == epoch[0][0]  # the same store, reopened, not a new one
            kill(proc)
            proc = None
    finally:
        kill(proc)

    assert query(db, "SELECT count(*), count(DISTINCT id) FROM bundles") == [(TOTAL, TOTAL)]
    assert {r[0] for r in query(db, "SELECT id FROM bundles")} == {b.id for b in bundles}
    assert query(db, "SELECT count(*) FROM bundles WHERE state = 'readable'") == [(TOTAL,)]
    assert query(db, "SELECT count(*), count(DISTINCT id) FROM records") == [(TOTAL, TOTAL)]
    assert query(db, "SELECT count(*) FROM record_versions") == [(0,)]  # each at its first version: no history
    assert query(db, "SELECT count(*) FROM records r LEFT JOIN bundles b ON b.id = r.bundle_id"
                     " WHERE b.id IS NULL") == [(0,)]
    assert query(db, "PRAGMA integrity_check") == [("ok",)]
    assert query(db, "PRAGMA foreign_key_check") == []
    assert query(db, "SELECT count(*) FROM bundle_recipients r LEFT JOIN bundles b ON b.seq = r.seq"
                     " WHERE b.seq IS NULL") == [(0,)]
    assert query(db, "SELECT count(*) FROM bundle_recipients") == [(2 * TOTAL,)]
    assert query(db, "SELECT count(*) FROM bundles b WHERE (SELECT count(*) FROM bundle_recipients r"
                     " WHERE r.seq = b.seq) != 2") == [(0,)]
