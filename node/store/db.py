"""Opening the database, and the one-writer discipline (after datasette's write thread).

All writes go through one thread with one connection, so SQLite never sees
two writers and batches commit as single transactions. Reads use a small
pool of threads, each with its own connection (WAL lets them read while the
writer writes). Storage functions elsewhere in this package are plain
functions of a ``sqlite3.Connection``; this module only dispatches them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from sqlite_utils import Database

from node.store.schema import migrate

log = logging.getLogger("cenmesh.store")

T = TypeVar("T")


class StoreFull(Exception):
    """The database (or the disk under it) is full; the write was rolled back.

    The message names the file, the cause and what frees space, because it reaches the
    officer (503 store-full) and the log as it is.
    """


def full_message(path: Path, max_size_mb: int | None, exc: BaseException) -> str:
    if max_size_mb is not None:
        return (f"database {path} is full: it reached store.max_size_mb = {max_size_mb} MB ({exc}); "
                "nothing of this write was stored. Raise store.max_size_mb in node.toml (or remove it) "
                "and restart the node")
    return (f"database {path} is full: the disk under it has no space left ({exc}); nothing of this write "
            "was stored. Free disk space; the node stores again as soon as there is room")


# The WAL keeps every version of every page written since the last checkpoint, so it can take
# twice the room of the data it holds. SQLite's default (checkpoint at 1000 pages, ~4 MB, and
# the file never shrinks) wedged a node on a nearly full disk for good: scripts/chaos found 1.8 MB
# of data in a 3.9 MB WAL that filled the disk before reaching the threshold, so no checkpoint
# could ever run. Checkpointing every 1 MB, and cutting the file back to 1 MB when the WAL
# restarts, keeps that overhead small.
WAL_CHECKPOINT_PAGES = 256
WAL_KEEP_BYTES = 1024 * 1024
# The store's writer leaves checkpoints to the store's checkpoint thread (below), which runs
# one after every write that commits, on its own connection: a checkpoint copies pages and
# syncs the file, about a third of what committing a batch of bundles cost the single writer,
# and SQLite lets it run beside the next write. Writes that come back to back can outrun it, so
# once the WAL file passes this size the writer waits for the thread and checkpoints itself.
# One commit of a sync batch writes a few MB of WAL: at 2 MB the writer checkpointed after
# nearly every batch and spent a quarter of its time there (scripts/bench sync, py-spy).
# On a disk short of room the limit falls to a quarter of the free space (not below
# WAL_KEEP_BYTES): a WAL that fills the disk can never be checkpointed.
WRITER_CHECKPOINT_BYTES = 16 * 1024 * 1024
# The writer's page cache. At SQLite's default (2 MB) a batch of bundles spills dirty pages to
# the WAL before it commits and writes many of them again: measured 42 kB of WAL per 2 kB
# bundle in batches of 125, against 17 kB with this cache (and 8 kB in batches of 1,000).
WRITER_CACHE_KIB = 64 * 1024


def connect(path: Path | str, *, max_size_mb: int | None = None,
            checkpoint_pages: int = WAL_CHECKPOINT_PAGES) -> sqlite3.Connection:
    """A connection with the node's pragmas; migrations applied."""
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
    conn.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
    if max_size_mb is not None:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={max(16, max_size_mb * 1024 * 1024 // page_size)}")
    return conn


def init_store(path: Path | str) -> None:
    """Create or upgrade the database file, with a fresh epoch when new."""
    conn = connect(path)
    try:
        migrate(Database(conn))
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('epoch', ?)", (os.urandom(12).hex(),))
    finally:
        conn.close()
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)


class Transaction:
    """``with Transaction(conn):`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except sqlite3.Error:
                self._rollback()
                raise
        self._rollback()

    def _rollback(self) -> None:
        # SQLite already rolls back by itself on some errors (SQLITE_FULL among them).
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def is_full(exc: BaseException) -> bool:
    """True for SQLITE_FULL (disk or max_page_count reached)."""
    return isinstance(exc, sqlite3.OperationalError) and "full" in str(exc).lower()


class Store:
    """The async face of the database: ``await store.write(fn, ...)``, ``await store.read(fn, ...)``."""

    def __init__(self, path: Path | str, *, max_size_mb: int | None = None, readers: int = 2,
                 writer_checkpoint_bytes: int = WRITER_CHECKPOINT_BYTES) -> None:
        self.path = Path(path)
        self.writer_checkpoint_bytes = writer_checkpoint_bytes
        self.max_size_mb = max_size_mb
        init_store(self.path)
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cenmesh-writer")
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="cenmesh-reader")
        self._write_conn = connect(self.path, max_size_mb=max_size_mb, checkpoint_pages=0)  # see _after_commit
        self._write_conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._wal = Path(f"{self.path}-wal")
        self._checkpoint_lock = threading.Lock()
        self._checkpoint_due = threading.Event()
        self._closing = False
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="cenmesh-checkpoint", daemon=True)
        self._checkpointer.start()
        self._local = threading.local()
        self._all_readers: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.epoch: str = self._write_conn.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0]
        # The last full-store refusal (unix ms, message) since the node started: the status shows
        # it, so an operator learns of a full store without reading the log. It is not cleared by
        # a later write, which may only have been small enough to fit.
        self.last_full: tuple[int, str] | None = None

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path)
            self._local.conn = conn
            with self._lock:
                self._all_readers.append(conn)
        return conn

    def _checkpoint_loop(self) -> None:
        """Checkpoint (PASSIVE: never waits for a reader or the writer) whenever a write committed."""
        conn = connect(self.path)
        try:
            while True:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                if self._closing:
                    return
                try:
                    with self._checkpoint_lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:  # a full disk, say: the writer's own path reclaims and reports
                    log.debug("checkpoint failed: %s", exc)
        finally:
            conn.close()

    def _after_commit(self) -> None:
        """Hand the checkpoint to the thread, or do it now (after the thread's) if the WAL grew too big."""
        try:
            wal_bytes = self._wal.stat().st_size
        except OSError:
            wal_bytes = 0
        if wal_bytes <= self._writer_limit(wal_bytes):
            self._checkpoint_due.set()
            return
        with self._checkpoint_lock, contextlib.suppress(sqlite3.Error):  # as the thread: a failure changes nothing
            self._write_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _writer_limit(self, wal_bytes: int) -> int:
        """The WAL size past which the writer checkpoints itself (see WRITER_CHECKPOINT_BYTES)."""
        limit = self.writer_checkpoint_bytes
        if wal_bytes > WAL_KEEP_BYTES:  # the disk is asked only when it could matter
            free = self._disk_free()
            if free is not None:
                limit = min(limit, max(WAL_KEEP_BYTES, free // 4))
        return limit

    def _run_write(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        try:
            with Transaction(self._write_conn) as conn:
                result = fn(conn, *args, **kwargs)
            self._after_commit()
            return result
        except sqlite3.OperationalError as exc:
            if is_full(exc):
                self._reclaim_wal()
                message = full_message(self.path, self.max_size_mb if self._at_cap() else None, exc)
                self.last_full = (int(time.time() * 1000), message)
                raise StoreFull(message) from exc
            raise

    def usage(self, conn: sqlite3.Connection) -> dict[str, Any]:
        """Database size, its cap and the disk's free space, in MB, with the last full-store refusal
        (run it through ``read``)."""
        pages, page_size = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size"))
        free = self._disk_free()
        return {"size_mb": round(pages * page_size / 1e6, 2), "max_size_mb": self.max_size_mb,
                "disk_free_mb": None if free is None else round(free / 1e6, 1),
                "last_full_at": self.last_full[0] if self.last_full else None,
                "last_full_message": self.last_full[1] if self.last_full else None}

    def _at_cap(self) -> bool:
        """Whether store.max_size_mb refused the write, rather than the disk itself: SQLite says
        SQLITE_FULL for both, so ask the file system whether it still has room."""
        if self.max_size_mb is None:
            return False
        free = self._disk_free()
        return free is None or free >= WAL_KEEP_BYTES

    def _disk_free(self) -> int | None:
        """Bytes free to us on the database's file system (None if it cannot be asked)."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return None
        return st.f_bavail * st.f_frsize

    def _reclaim_wal(self) -> None:
        """After a full-disk error, move what the WAL holds into the database where it fits, so the
        WAL's room is reused by the next write instead of waiting for a threshold it cannot reach.
        PASSIVE never waits for readers; failing (no room for that either) changes nothing."""
        with contextlib.suppress(sqlite3.Error):
            self._write_conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    async def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` in one transaction on the writer thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._writer, self._run_write, fn, args, kwargs)

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(conn, *args, **kwargs)`` on a reader connection."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: fn(self._reader(), *args, **kwargs))

    def write_now(self, fn: Callable[..., T], *args: Any) -> T:
        """Synchronous write, for start-up and command-line tools (no event loop)."""
        return self._writer.submit(self._run_write, fn, args, {}).result()

    def read_now(self, fn: Callable[..., T], *args: Any) -> T:
        """Synchronous read through the writer's connection (start-up only)."""
        return self._writer.submit(lambda: fn(self._write_conn, *args)).result()

    def close(self) -> None:
        """Let queued writes finish, then close every connection."""
        self._writer.shutdown(wait=True)
        self._readers.shutdown(wait=True)
        self._closing = True
        self._checkpoint_due.set()
        self._checkpointer.join()
        self._write_conn.close()
        with self._lock:
            for conn in self._all_readers:
                conn.close()
