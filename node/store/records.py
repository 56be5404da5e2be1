"""Readable records: newest version wins, only the origin may version or retract, feedback links up."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from node.store.chunked import select_in
from protocol.bundle import Payload
from protocol.canonical import encode_sorted


def body_of(record: dict[str, Any]) -> str:
    """A record as ``records.body`` (and ``record_versions.body``) keep it: compact JSON, keys sorted.

    msgspec writes it in a tenth of the time of ``json.dumps`` (16 us a seizure, once per
    record taken in). Bodies are only ever read back as JSON, so rows written by
    ``json.dumps`` (with spaces) before this read the same.
    """
    return encode_sorted(record).decode("utf-8")


# Kinds whose new record ids need nothing but their ``records`` row (no ownership, retraction or roster rules).
_PLAIN_KINDS = frozenset({"seizure", "alert", "message", "feedback"})
# ``record_versions`` is the history: every version held but the current one, which is the
# ``records`` row. Keeping the current version there too cost ingest a second copy of every
# body and a second insert at a random place in a primary key (9% of the writer's time, measured).
_INSERT_VERSION = "INSERT OR IGNORE INTO record_versions (id, version, bundle_id, created, body) VALUES (?,?,?,?,?)"
_TO_HISTORY = ("INSERT OR IGNORE INTO record_versions (id, version, bundle_id, created, body)"
               " SELECT id, version, bundle_id, created, body FROM records WHERE id = ?")
_UPSERT_RECORD = (
    "INSERT INTO records (id, origin, kind, version, bundle_id, audience, created, ref, body)"
    " VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET version=excluded.version,"
    " bundle_id=excluded.bundle_id, audience=excluded.audience, created=excluded.created,"
    " ref=excluded.ref, body=excluded.body"
)


def apply_payloads(conn: sqlite3.Connection, items: list[tuple[str, int, Payload, str | None]]) -> dict[str, str]:
    """``apply_payload`` for (bundle id, created, payload, body or None) in order; the reasons by bundle id.

    The common case, a record id not held yet of a kind with no rules of its
    own, is written with one ``executemany`` for the whole run of
    such payloads; every other payload goes through ``apply_payload`` after
    the run before it is written, so the order of effects is the batch's.
    """
    problems: dict[str, str] = {}
    rids = [p.record["id"] for _, _, p, _ in items]
    held = {r[0] for r in select_in(conn, "SELECT id FROM records WHERE id IN ({marks})", rids)}
    run: list[tuple[str, int, Payload, str]] = []
    for bundle_id, created, payload, body in items:
        rid = payload.record["id"]
        if payload.kind in _PLAIN_KINDS and rid not in held:
            held.add(rid)
            run.append((bundle_id, created, payload, body or body_of(payload.record)))
            continue
        _insert_new(conn, run)
        run = []
        held.add(rid)
        problem = apply_payload(conn, bundle_id, created, payload, body)
        if problem:
            problems[bundle_id] = problem
    _insert_new(conn, run)
    return problems


def _insert_new(conn: sqlite3.Connection, run: list[tuple[str, int, Payload, str]]) -> None:
    """Write records whose ids are not held (what ``apply_payload`` does for them, in one statement)."""
    if not run:
        return
    conn.executemany(_UPSERT_RECORD, [
        (p.record["id"], p.origin, p.kind, p.record["version"], bid, p.audience.describe(), created,
         p.record.get("ref"), body) for bid, created, p, body in run])
    # A retraction may have come first (sync order is not creation order): such records arrive retracted.
    pairs = [(p.record["id"], p.origin) for _, _, p, _ in run]
    # "+kind": look the refs up (records_ref), not every retraction ever held (records_kind_created).
    hits = {(r[0], r[1]) for r in select_in(
        conn, "SELECT ref, origin FROM records WHERE +kind = 'retract' AND ref IN ({marks})", [rid for rid, _ in pairs])}
    retracted = [(rid,) for rid, origin in pairs if (rid, origin) in hits]
    if retracted:
        conn.executemany("UPDATE records SET retracted = 1 WHERE id = ?", retracted)


def apply_payload(conn: sqlite3.Connection, bundle_id: str, created: int, payload: Payload,
                  body: str | None = None) -> str | None:
    """Store the record a bundle carried; returns a reason when it must not be shown.

    A record id is owned by the origin that first used it: a version or a
    retraction from anyone else is refused. A lower version than the one held
    goes to history only. ``body``: the record as ``body_of`` gives it, if
    already worked out.
    """
    record = payload.record
    rid, version = record["id"], record["version"]
    row = conn.execute("SELECT origin, version FROM records WHERE id = ?", (rid,)).fetchone()
    if row is not None and row["origin"] != payload.origin:
        return f"record {rid} belongs to {row['origin']}, not {payload.origin}"
    if payload.kind == "retract":
        target = conn.execute("SELECT origin FROM records WHERE id = ?", (record["ref"],)).fetchone()
        if target is not None and target["origin"] != payload.origin:
            return f"retraction of {record['ref']} by someone other than its origin"
    if payload.kind == "roster":
        owner = conn.execute("SELECT owner FROM rosters WHERE grp = ?", (record["group"],)).fetchone()
        if owner is not None and owner["owner"] != payload.origin:
            return f"roster for {record['group']} from {payload.origin}, owned by {owner['owner']}"
    body = body or body_of(record)
    if row is not None and version < row["version"]:
        conn.execute(_INSERT_VERSION, (rid, version, bundle_id, created, body))
    elif row is None or version > row["version"]:
        if row is not None:  # the version it replaces becomes history
            conn.execute(_TO_HISTORY, (rid,))
        conn.execute(_UPSERT_RECORD, (rid, payload.origin, payload.kind, version, bundle_id, payload.audience.describe(),
                                      created, record.get("ref"), body))
    if payload.kind == "retract":
        conn.execute("UPDATE records SET retracted = 1 WHERE id = ? AND origin = ?", (record["ref"], payload.origin))
    elif row is None and conn.execute(
        "SELECT 1 FROM records WHERE kind = 'retract' AND ref = ? AND origin = ?", (rid, payload.origin)
    ).fetchone():
        # The retraction came first (sync order is not creation order): the record arrives retracted.
        conn.execute("UPDATE records SET retracted = 1 WHERE id = ?", (rid,))
    if payload.kind == "roster" and (row is None or version >= row["version"]):
        conn.execute(
            "INSERT INTO rosters (grp, owner, members, not_after, version) VALUES (?,?,?,?,?)"
            " ON CONFLICT(grp) DO UPDATE SET members=excluded.members, not_after=excluded.not_after,"
            " version=excluded.version WHERE excluded.version >= rosters.version",
            (record["group"], payload.origin, json.dumps(record["members"]), record["not_after"], version),
        )
    return None


def _row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["record"] = json.loads(out.pop("body"))
    out["retracted"] = bool(out["retracted"])
    return out


def list_records(conn: sqlite3.Connection, *, kind: str | None = None, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """Readable records, newest first."""
    if kind:
        rows = conn.execute("SELECT * FROM records WHERE kind = ? ORDER BY created DESC, id LIMIT ? OFFSET ?", (kind, limit, offset))
    else:
        rows = conn.execute("SELECT * FROM records ORDER BY created DESC, id LIMIT ? OFFSET ?", (limit, offset))
    return [_row(r) for r in rows]


def get_record(conn: sqlite3.Connection, rid: str) -> dict[str, Any] | None:
    """One record with its version history and the feedback that answers it."""
    row = conn.execute("SELECT * FROM records WHERE id = ?", (rid,)).fetchone()
    if row is None:
        return None
    out = _row(row)
    out["versions"] = [
        {"version": v["version"], "bundle_id": v["bundle_id"], "created": v["created"]}
        for v in conn.execute("SELECT version, bundle_id, created FROM record_versions WHERE id = ?"
                              " UNION ALL SELECT version, bundle_id, created FROM records WHERE id = ? ORDER BY version",
                              (rid, rid))
    ]
    out["feedback"] = [_row(r) for r in conn.execute(
        "SELECT * FROM records WHERE kind = 'feedback' AND ref = ? ORDER BY created", (rid,))]
    out["retraction"] = None
    if out["retracted"]:
        r = conn.execute("SELECT id, created, body FROM records WHERE kind = 'retract' AND ref = ? AND origin = ?"
                         " ORDER BY created DESC LIMIT 1", (rid, out["origin"])).fetchone()
        if r is not None:
            out["retraction"] = {"id": r["id"], "created": r["created"], "reason": json.loads(r["body"])["reason"]}
    return out


def version_body(conn: sqlite3.Connection, rid: str, version: int) -> dict[str, Any] | None:
    """One earlier (or the current) version of a record, as it was sent."""
    row = conn.execute("SELECT body FROM records WHERE id = ? AND version = ? UNION ALL"
                       " SELECT body FROM record_versions WHERE id = ? AND version = ?", (rid, version, rid, version)).fetchone()
    return None if row is None else dict(json.loads(row["body"]))


def bundle_urgent(conn: sqlite3.Connection, bundle_id: str) -> bool:
    """Whether the bundle that carried a record was sent urgently."""
    row = conn.execute("SELECT urgent FROM bundles WHERE id = ?", (bundle_id,)).fetchone()
    return bool(row and row["urgent"])


def inbox(conn: sqlite3.Connection, me: str, today: str) -> list[dict[str, Any]]:
    """Open alerts from others that this node can read (not retracted), newest first.

    Each says whether this node has answered it (``acknowledged``: any
    feedback from us, its outcomes in ``our_outcomes``) and whether it is
    ``overdue``: unanswered and its ``respond_by`` date is before ``today``.
    """
    rows = conn.execute(
        "SELECT r.*, (SELECT json_group_array(json_extract(f.body, '$.outcome')) FROM records f"
        "  WHERE f.kind = 'feedback' AND f.ref = r.id AND f.origin = ?) AS ours,"
        " (SELECT count(*) FROM records f WHERE f.kind = 'feedback' AND f.ref = r.id) AS feedback_count"
        " FROM records r WHERE r.kind = 'alert' AND r.origin != ? AND r.retracted = 0 ORDER BY r.created DESC",
        (me, me),
    )
    out = []
    for r in rows:
        item = _row(r)
        item["our_outcomes"] = json.loads(item.pop("ours"))
        item["acknowledged"] = item["answered"] = bool(item["our_outcomes"])
        item["overdue"] = not item["acknowledged"] and item["record"].get("respond_by", "9999-12-31") < today
        out.append(item)
    return out


def groups(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every operation group we hold a roster for, by name."""
    return [
        {"group": r["grp"], "owner": r["owner"], "members": json.loads(r["members"]), "not_after": r["not_after"],
         "version": r["version"]}
        for r in conn.execute("SELECT * FROM rosters ORDER BY grp")
    ]


def own_roster(conn: sqlite3.Connection, group: str, me: str) -> tuple[str, int] | None:
    """(record id, version) of the roster we issued for ``group``, if any."""
    row = conn.execute(
        "SELECT id, version FROM records WHERE kind = 'roster' AND origin = ? AND json_extract(body, '$.group') = ?"
        " ORDER BY version DESC LIMIT 1", (me, group)).fetchone()
    return None if row is None else (row["id"], row["version"])


def save_draft(conn: sqlite3.Connection, rid: str, kind: str, record: dict[str, Any], now_ms: int) -> None:
    """Keep a local record; it is never shared until an officer shares it."""
    conn.execute(
        "INSERT INTO drafts (id, kind, body, created) VALUES (?,?,?,?)"
        " ON CONFLICT(id) DO UPDATE SET body=excluded.body, kind=excluded.kind",
        (rid, kind, json.dumps(record, ensure_ascii=False, sort_keys=True), now_ms),
    )


def save_drafts(conn: sqlite3.Connection, items: list[tuple[str, str, dict[str, Any]]], now_ms: int) -> None:
    """Keep many local records at once (one transaction: all of them or none)."""
    for rid, kind, record in items:
        save_draft(conn, rid, kind, record, now_ms)


def mark_shared_many(conn: sqlite3.Connection, pairs: list[tuple[str, str]]) -> None:
    """``mark_shared`` for many (record id, bundle id) pairs at once."""
    conn.executemany("UPDATE drafts SET shared_bundle = ? WHERE id = ?", [(b, r) for r, b in pairs])


def existing_ids(conn: sqlite3.Connection, ids: list[str]) -> dict[str, str]:
    """Which of ``ids`` are taken here: id -> 'draft' (local, not shared) or 'record' (readable)."""
    out = {r[0]: "draft" for r in select_in(conn, "SELECT id FROM drafts WHERE id IN ({marks}) AND shared_bundle IS NULL",
                                            ids)}
    out.update((r[0], "record") for r in select_in(conn, "SELECT id FROM records WHERE id IN ({marks})", ids))
    return out


def get_draft(conn: sqlite3.Connection, rid: str) -> dict[str, Any] | None:
    """A local record by id."""
    row = conn.execute("SELECT * FROM drafts WHERE id = ?", (rid,)).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["record"] = json.loads(out.pop("body"))
    return out


def list_drafts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Local records, newest first."""
    out = []
    for row in conn.execute("SELECT * FROM drafts ORDER BY created DESC"):
        item = dict(row)
        item["record"] = json.loads(item.pop("body"))
        out.append(item)
    return out


def mark_shared(conn: sqlite3.Connection, rid: str, bundle_id: str) -> None:
    """Remember which bundle carried a local record out."""
    conn.execute("UPDATE drafts SET shared_bundle = ? WHERE id = ?", (bundle_id, rid))
