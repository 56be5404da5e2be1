"""The officers' search index: ``record_facets`` and ``records_fts``, kept in step with ``records`` in batches.

One index row per searchable record (the latest version of each seizure,
alert and message this node can read). Feedback and retractions are not
indexed themselves: they set ``has_feedback`` / ``retracted`` on the record
they refer to. Ingest calls ``index_payloads`` once per batch, inside the
batch's transaction, so the index never disagrees with ``records`` after a
commit; each table gets one ``executemany`` per kind of change (DESIGN.md
principle 9: explicit batches, no per-row triggers).

Rowids: ``created << 20 | counter << 6 | lag class << 4 | category code``.
Rowid order is therefore ``created`` order, so "newest first" is a
backwards walk of the table, of any equality index and of the full-text
doclists (which FTS5 keeps in rowid order), and a search can stop as soon as
it has its page. The low four bits name the category (``CATEGORY_CODES``),
so counting matches by category needs nothing but rowids. The two bits
above them bound how many days the record's ``date`` lies before the day it
was created (``LAG_DAYS``), so a date range can accept or refuse most
records by rowid alone (node/search.py). A new version (new ``created``), a
changed category or lag class moves the record to a new rowid; its old rows
go.

``records_fts`` has two columns: ``text`` (the words officers search for)
and ``tags``, one token per facet (``tags_of``): kind, category, origin,
departure, destination, transit, TLP, transport mode, HS code prefixes,
the date as day, month and year, and ``fb1`` / ``rt1`` when the record has
feedback / was retracted. A search with words and filters is then a single
FTS5 expression, intersected inside the full-text index.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from node.store.chunked import CHUNK, select_in
from protocol.bundle import Payload

INDEXED_KINDS: tuple[str, ...] = ("seizure", "alert", "message")
# Fixed for good: codes 1 to 12 are stored in rowids. 0: no category; 15: one not listed here.
CATEGORY_CODES: tuple[str, ...] = (
    "ipr", "medicines", "drugs", "tobacco", "alcohol", "weapons", "explosives", "environment",
    "cultural-heritage", "currency", "revenue", "other",
)
UNLISTED_CATEGORY = 15
_CODE = {c: i + 1 for i, c in enumerate(CATEGORY_CODES)}
# Lag classes 1, 2, 3: the date is 0 to 1, 7 or 31 days before the (UTC) day of ``created``.
# Class 0: any other record (every alert: its date is when it is due).
LAG_DAYS: tuple[int, ...] = (-1, 1, 7, 31)
SLOT_BITS = 20  # per millisecond: 2**14 records x 4 lag classes x 16 category codes
SLOT = 1 << SLOT_BITS
TAIL_BITS = 6
DAY_MS = 86_400_000
_EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
MAX_CREATED = (2**63 - 1) // SLOT - 1

_TRANSPORT_REFS = ("container", "awb", "bill_of_lading", "vessel_imo", "flight")
_NOT_ALNUM = re.compile(r"[^0-9a-z]")

# has_feedback and retracted, worked out from the records themselves: a feedback or a
# retraction may arrive before the record it refers to.
_FLAGS_SQL = (
    "(r.retracted OR EXISTS (SELECT 1 FROM records x WHERE x.ref = r.id AND x.kind = 'retract'"
    " AND x.origin = r.origin)) AS retracted,"
    " EXISTS (SELECT 1 FROM records x WHERE x.ref = r.id AND x.kind = 'feedback') AS has_feedback"
)

_INSERT_FACETS = (
    "INSERT OR REPLACE INTO record_facets (rowid, id, kind, origin, category, hs_code, departure, destination,"
    " transit, date, tlp, transport_mode, has_feedback, retracted, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


# What ``prepare`` works out of one record: its facets row, rowid tail, text and tags (flags left out).
Prepared = tuple[tuple[str | None, ...], int, str, str]


@dataclass(frozen=True)
class IndexEntry:
    """What the index needs of one record: the ``records`` row's columns and its flags.

    ``prepared``: ``prepare``'s answer for this record, worked out before
    (by ingest's workers, off the writer thread), or None to work it out here.
    """

    id: str
    kind: str
    origin: str
    created: int
    record: dict[str, Any]
    retracted: bool = False
    has_feedback: bool = False
    prepared: Prepared | None = None


def category_code(category: str | None) -> int:
    """The four low bits of a record's rowid."""
    if not category:
        return 0
    return _CODE.get(category, UNLISTED_CATEGORY)


def category_of(rowid: int) -> str | None:
    """The category a rowid carries (None: none; "unlisted" for one not in CATEGORY_CODES)."""
    code = rowid & 15
    if code == 0:
        return None
    return CATEGORY_CODES[code - 1] if code <= len(CATEGORY_CODES) else "unlisted"


def lag_class(kind: str, day: str | None, created: int) -> int:
    """The lag class (``LAG_DAYS``) of a record dated ``day`` and created at ``created``."""
    if kind == "alert" or not day:
        return 0
    try:
        lag = max(created, 0) // DAY_MS - datetime.date.fromisoformat(day).toordinal() + _EPOCH_ORDINAL
    except ValueError:
        return 0
    for cls in (1, 2, 3):
        if 0 <= lag <= LAG_DAYS[cls]:
            return cls
    return 0


def rowid_base(created: int) -> int:
    """The first rowid of the slot of records created in millisecond ``created``."""
    return min(max(created, 0), MAX_CREATED) << SLOT_BITS


def tag(prefix: str, value: str) -> str:
    """One facet token: a prefix and the value's letters and digits (``dep`` + ``CN`` -> ``depcn``)."""
    return prefix + _NOT_ALNUM.sub("", value.lower())


def date_tags(day: str) -> list[str]:
    """A date's tokens at each level: ``d20200324``, ``m202003``, ``y2020``."""
    digits = day.replace("-", "")
    return [f"d{digits}", f"m{digits[:6]}", f"y{digits[:4]}"]


def hs_tags(hs: str) -> list[str]:
    """An HS code's prefixes of 2, 4, 6, 8 and 10 digits, and the code itself."""
    return [f"hs{hs[:n]}" for n in sorted({2, 4, 6, 8, 10, len(hs)}) if n <= len(hs)]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def facets(kind: str, record: dict[str, Any], created: int) -> tuple[str | None, ...]:
    """(category, hs_code, departure, destination, transit, date, tlp, transport_mode) of a record.

    ``date`` is a seizure's date of detection, an alert's ``respond_by``, and
    for a message the day it was created (UTC), so date filters keep them.
    An alert's destination is the country of its ``destination_locode``.
    """
    get = record.get
    if kind == "seizure":
        route = get("route") or {}
        transit = route.get("transit") or []
        return (_str(get("category")), _str((get("commodity") or {}).get("hs_code")),
                _str(route.get("departure")), _str(route.get("destination")),
                "," + ",".join(transit) + "," if transit else None,
                _str(get("date")), _str(get("tlp")), _str(get("transport_mode")))
    if kind == "alert":
        suspected = get("suspected") or {}
        locode = _str((get("consignment") or {}).get("destination_locode"))
        return (_str(suspected.get("category")), _str((suspected.get("commodity") or {}).get("hs_code")),
                None, locode[:2] if locode else None, None,
                _str(get("respond_by")), _str(get("tlp")), None)
    day = datetime.datetime.fromtimestamp(max(created, 0) / 1000, tz=datetime.UTC).date().isoformat()
    return (None, None, None, None, None, day, _str(get("tlp")), None)


def tags_of(kind: str, origin: str, row: tuple[str | None, ...], retracted: bool, has_feedback: bool) -> str:
    """The ``tags`` column: one token per facet value (``row`` as ``facets`` returns it)."""
    category, hs, departure, destination, transit, day, tlp, mode = row
    out = [tag("kind", kind), tag("org", origin)]
    for prefix, value in (("cat", category), ("dep", departure), ("dst", destination), ("tlp", tlp),
                          ("mode", mode)):
        if value:
            out.append(tag(prefix, value))
    if transit:
        out += [tag("via", c) for c in transit.split(",") if c]
    if hs:
        out += hs_tags(hs)
    if day:
        out += date_tags(day)
    if has_feedback:
        out.append("fb1")
    if retracted:
        out.append("rt1")
    return " ".join(out)


def prepare(kind: str, origin: str, record: dict[str, Any], created: int) -> Prepared | None:
    """Everything of a record's index rows that does not depend on the store (None for kinds not indexed).

    A pure function of the record, so ingest works it out in its worker
    processes, beside the signature checks, and the single writer only writes.
    """
    if kind not in INDEXED_KINDS:
        return None
    row = facets(kind, record, created)
    tail = lag_class(kind, row[5], created) << 4 | category_code(row[0])
    return row, tail, search_text(kind, record), tags_of(kind, origin, row, False, False)


def _flagged(tags: str, retracted: bool, has_feedback: bool) -> str:
    """``tags`` without flags (``prepare``'s) with the flags added, as ``tags_of`` puts them."""
    return tags + (" fb1" if has_feedback else "") + (" rt1" if retracted else "")


def search_text(kind: str, record: dict[str, Any]) -> str:
    """The words a record is found by: goods, brands, concealment, narrative, titles, places, transport refs.

    Parties (personal data) are left out on purpose.
    """
    get = record.get
    parts: list[Any] = []
    if kind == "seizure":
        commodity = get("commodity") or {}
        office = get("office") or {}
        parts = [commodity.get("description"), commodity.get("brand"), commodity.get("rights_holder"),
                 get("concealment"), get("narrative"), office.get("name"), office.get("locode")]
        parts += [(get("conveyance") or {}).get(k) for k in _TRANSPORT_REFS]
    elif kind == "alert":
        commodity = (get("suspected") or {}).get("commodity") or {}
        consignment = get("consignment") or {}
        parts = [get("title"), commodity.get("description"), commodity.get("brand"), commodity.get("rights_holder"),
                 get("narrative"), consignment.get("destination_locode")]
        parts += [consignment.get(k) for k in _TRANSPORT_REFS]
    elif kind == "message":
        parts = [get("subject"), get("body")]
    return "\n".join(p for p in parts if isinstance(p, str) and p)


def write_entries(conn: sqlite3.Connection, entries: Sequence[IndexEntry]) -> int:
    """Write (or rewrite) the index rows of ``entries``; returns how many were written.

    A record keeps its rowid while its ``created`` and category are unchanged
    and moves to a fresh one in its millisecond's slot otherwise. One
    executemany per statement for the whole batch.
    """
    entries = [e for e in entries if e.kind in INDEXED_KINDS]
    if not entries:
        return 0
    held: dict[str, int] = dict(select_in(conn, "SELECT id, rowid FROM record_facets WHERE id IN ({marks})",
                                          [e.id for e in entries]))
    todo: list[tuple[IndexEntry, Prepared, int | None]] = []
    seen: set[str] = set()
    for e in reversed(entries):  # the last entry for an id wins
        if e.id in seen:
            continue
        seen.add(e.id)
        prepared = e.prepared or prepare(e.kind, e.origin, e.record, e.created)
        assert prepared is not None  # only indexed kinds are left
        tail = prepared[1]
        old = held.get(e.id)
        keep = old is not None and old >> SLOT_BITS == rowid_base(e.created) >> SLOT_BITS and old & 63 == tail
        todo.append((e, prepared, old if keep else None))
    next_free = _slot_tops(conn, {rowid_base(e.created) for e, _, kept in todo if kept is None})
    facet_rows: list[tuple[Any, ...]] = []
    fts_rows: list[tuple[int, str, str]] = []
    stale: list[tuple[int]] = []
    for e, (row, tail, text, tags), kept in todo:
        rowid = kept if kept is not None else _allocate(conn, e.created, tail, next_free)
        old = held.get(e.id)
        if old is not None:
            stale.append((old,))
        facet_rows.append((rowid, e.id, e.kind, e.origin, *row, int(e.has_feedback), int(e.retracted), e.created))
        fts_rows.append((rowid, text, _flagged(tags, e.retracted, e.has_feedback)))
    if stale:
        conn.executemany("DELETE FROM records_fts WHERE rowid = ?", stale)
    conn.executemany(_INSERT_FACETS, facet_rows)
    conn.executemany("INSERT INTO records_fts (rowid, text, tags) VALUES (?, ?, ?)", fts_rows)
    return len(facet_rows)


def _slot_tops(conn: sqlite3.Connection, bases: set[int]) -> dict[int, int]:
    """For each slot (by its first rowid), the counter the next record in it gets; one query per 400 slots."""
    out: dict[int, int] = {}
    ordered = sorted(bases)
    for i in range(0, len(ordered), 400):
        part = ordered[i:i + 400]
        values = ",".join(["(?)"] * len(part))
        rows = conn.execute(
            f"WITH s(base) AS (VALUES {values}) SELECT base, (SELECT max(rowid) FROM record_facets"  # noqa: S608
            f" WHERE rowid >= base AND rowid < base + {SLOT}) FROM s", part)
        out.update((base, 0 if top is None else ((top - base) >> TAIL_BITS) + 1) for base, top in rows)
    return out


def _allocate(conn: sqlite3.Connection, created: int, tail: int, next_free: dict[int, int]) -> int:
    """A free rowid ending in ``tail`` in ``created``'s slot (or, should 16,384 records share it, a later one)."""
    while True:
        base = rowid_base(created)
        if base not in next_free:
            next_free.update(_slot_tops(conn, {base}))
        n = next_free[base]
        if n < SLOT >> TAIL_BITS:
            next_free[base] = n + 1
            return base | n << TAIL_BITS | tail
        created += 1
        tail &= 15  # no longer in its own millisecond: lag class 0, so dates are always looked up


def _entries(rows: Iterable[sqlite3.Row | tuple[Any, ...]],
             known: Mapping[str, dict[str, Any]] | None = None,
             prepared: Mapping[str, Prepared | None] | None = None) -> list[IndexEntry]:
    """Index entries from ``records`` rows (id, kind, origin, created, bundle id, body, retracted, has_feedback).

    ``known`` holds the records of bundles in hand, by bundle id: a row that
    came from one of them is not parsed again; ``prepared`` their index rows
    as ``prepare`` worked them out, by bundle id.
    """
    out = []
    for rid, kind, origin, created, bundle_id, body, retracted, feedback in rows:
        record = (known or {}).get(bundle_id) or json.loads(body)
        out.append(IndexEntry(rid, kind, origin, created, record, bool(retracted), bool(feedback),
                              (prepared or {}).get(bundle_id)))
    return out


def index_records(conn: sqlite3.Connection, ids: Iterable[str],
                  known: Mapping[str, dict[str, Any]] | None = None,
                  prepared: Mapping[str, Prepared | None] | None = None) -> int:
    """Rewrite the index rows of these record ids from ``records`` (ids of other kinds are skipped)."""
    ids = list(dict.fromkeys(ids))
    written = 0
    for i in range(0, len(ids), CHUNK):  # a chunk at a time: its rows are written before the next is read
        part = ids[i:i + CHUNK]
        marks = ",".join("?" * len(part))
        rows = conn.execute(
            f"SELECT r.id, r.kind, r.origin, r.created, r.bundle_id, r.body, {_FLAGS_SQL} FROM records r"  # noqa: S608
            # "+r.kind": find the ids (primary key), not every record of these kinds (records_kind_created).
            f" WHERE r.id IN ({marks}) AND +r.kind IN ('seizure', 'alert', 'message')", part).fetchall()
        written += write_entries(conn, _entries(rows, known, prepared))
    return written


def index_payloads(conn: sqlite3.Connection, payloads: Mapping[str, Payload],
                   prepared: Mapping[str, Prepared | None] | None = None) -> None:
    """Bring the index up to date after ``records`` took these payloads, by bundle id (ingest's hook, same transaction).

    A searchable record is rewritten from ``records`` (the payload may have
    been an older version, or refused), and so is the record a feedback or
    a retraction refers to (its ``fb1`` / ``rt1`` tags change). ``prepared``:
    ``prepare``'s answers for the payloads' records, by bundle id, if known.
    """
    ids: list[str] = []
    known: dict[str, dict[str, Any]] = {}
    for bundle_id, p in payloads.items():
        if p.kind in INDEXED_KINDS:
            ids.append(p.record["id"])
            known[bundle_id] = p.record
        elif p.kind in ("feedback", "retract") and isinstance(p.record.get("ref"), str):
            ids.append(p.record["ref"])
    if ids:
        index_records(conn, ids, known, prepared)


def reindex_all(conn: sqlite3.Connection, *, batch: int = 5000) -> int:
    """Rebuild the whole index from ``records`` (in the caller's transaction); returns the rows written."""
    conn.execute("DELETE FROM record_facets")
    conn.execute("DELETE FROM records_fts")
    written, after = 0, -1
    while True:
        rows = conn.execute(
            f"SELECT r.rowid, r.id, r.kind, r.origin, r.created, r.bundle_id, r.body, {_FLAGS_SQL} FROM records r"  # noqa: S608
            " WHERE r.rowid > ? AND r.kind IN ('seizure', 'alert', 'message') ORDER BY r.rowid LIMIT ?",
            (after, batch)).fetchall()
        if not rows:
            return written
        after = rows[-1][0]
        written += write_entries(conn, _entries(tuple(r)[1:] for r in rows))
