"""The store on a nearly full disk: the WAL stays small, and the node stores again once space returns.

Found by scripts/chaos: a node whose database sat on a 4 MB disk stayed full for good after space
returned. Its WAL had grown to 3.9 MB (holding 1.8 MB of data) and filled the disk before it
reached SQLite's default checkpoint threshold (1000 pages, ~4 MB), so no checkpoint could ever
run and every write failed.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from node.store.db import Store, StoreFull


def _table(conn) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")


def _add(conn, n: int, size: int) -> None:
    conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(size),) for _ in range(n)])


def _grow_index(conn, n: int) -> None:
    # Rewrites the same pages again and again, as updating records and indexes does: WAL frames pile up.
    for i in range(n):
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"k{i % 50}", os.urandom(200).hex()))


def test_wal_stays_near_its_limit_while_writing_many_megabytes(tmp_path: Path) -> None:
    limit = 2 * 1024 * 1024  # the node's default is larger; the mechanism is the same
    store = Store(tmp_path / "node.db", writer_checkpoint_bytes=limit)
    try:
        store.write_now(_table)
        wal = tmp_path / "node.db-wal"
        largest = 0
        for _ in range(60):  # 60 transactions of ~100 kB: 6 MB in all
            store.write_now(_add, 20, 5000)
            store.write_now(_grow_index, 200)
            largest = max(largest, wal.stat().st_size)
        # The writer's own checkpoint interval (the checkpoint thread may lag behind writes that
        # come back to back) plus the last transaction; SQLite's default would let it reach ~4 MB.
        assert largest < limit + 512 * 1024, largest
    finally:
        store.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 4 MB file system (tmpfs); needs the right to mount, so root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_full_disk_refuses_clearly_and_stores_again_when_space_returns(small_disk: Path) -> None:
    store = Store(small_disk / "node.db")
    ballast = small_disk / "ballast"
    try:
        store.write_now(_table)
        st = os.statvfs(small_disk)
        with open(ballast, "wb") as fh:  # all but 256 kB taken
            os.posix_fallocate(fh.fileno(), 0, st.f_bavail * st.f_frsize - 256 * 1024)
        stored = 0
        with pytest.raises(StoreFull) as full:
            for _ in range(200):
                store.write_now(_add, 5, 4000)
                stored += 5
        assert "the disk under it has no space left" in str(full.value) and "Free disk space" in str(full.value)
        assert str(small_disk / "node.db") in str(full.value)

        ballast.unlink()  # space returns: ~3.7 MB, about twice the data written next
        for _ in range(90):  # 1.8 MB more, with the page rewrites that make WAL frames pile up
            store.write_now(_add, 5, 4000)
            store.write_now(_grow_index, 100)
            stored += 5
        count = store.read_now(lambda c: c.execute("SELECT count(*) FROM blobs").fetchone()[0])
        assert count == stored
        assert store.read_now(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"
    finally:
        store.close()
