"""Records written on this node: kept local until shared, then sealed, stored and pushed.

Also the later life of a shared record, all at its origin: a new version
(``edit``) and a retraction (``retract``) go to the audience the record was
shared with; an operation group's roster (``issue_roster``) goes to the
group's members. Imported batches are kept (and shared) all at once
(``keep_batch``, ``share_batch``).
"""

from __future__ import annotations

import asyncio
import datetime
import os
import sqlite3
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from crypto.envelope import seal_bundle
from node.context import Node
from node.ingest import ingest
from node.store import records as record_store
from protocol.audience import AudienceUnresolvable, Roster, resolve_recipients
from protocol.bundle import Audience, Bundle
from protocol.errors import InvalidMessage, InvalidRecord, LocalProtocolError, RecordRefused
from protocol.records import check_personal_data, validate_record

DAY_MS = 24 * 3600 * 1000
EDITABLE = ("seizure", "alert", "message", "feedback")


class ShareRefused(LocalProtocolError):
    """Sharing cannot go ahead (unknown record, unresolvable audience, ...); the message says why."""


class UnknownRecord(ShareRefused):
    """No record with this id is held here."""


class NotOrigin(ShareRefused):
    """The record belongs to another node: only its origin may change or retract it."""


# One record change at a time per node: two edits of one record must not both become version N+1.
_locks: weakref.WeakKeyDictionary[Node, asyncio.Lock] = weakref.WeakKeyDictionary()


def _lock(node: Node) -> asyncio.Lock:
    lock = _locks.get(node)
    if lock is None:
        lock = _locks[node] = asyncio.Lock()
    return lock


def explain_unresolvable(audience: Audience, rosters: dict[str, Roster], now_ms: int,
                         exc: AudienceUnresolvable) -> str:
    """AudienceUnresolvable in the officer's words, naming the audience."""
    if audience.scope == "group" and audience.group.startswith("op:"):
        roster = rosters.get(audience.group)
        if roster is None:
            return (f"audience: no roster for {audience.group} has reached this node, so it is not a member; "
                    "the group's owner must add this node (its roster then arrives by sync)")
        if roster.not_after <= now_ms:
            ended = datetime.datetime.fromtimestamp(roster.not_after / 1000, datetime.UTC)
            return (f"audience: {audience.group} ended on {ended:%Y-%m-%d %H:%M} UTC (the end date of its roster); "
                    "nothing new can be shared to it. Ask its owner to extend it")
    return f"audience {audience.describe()}: {exc}"


def complete(record: dict[str, Any]) -> dict[str, Any]:
    """Give a new record its id and first version when the officer left them out."""
    out = dict(record)
    out.setdefault("id", str(uuid.uuid4()))
    out.setdefault("version", 1)
    return out


def check_local(kind: str, record: Any, now_ms: int) -> dict[str, Any]:
    """Validate a record typed on this node; RecordRefused names the field."""
    if not isinstance(record, dict):
        raise RecordRefused("record", "must be an object")
    try:
        return validate_record(kind, complete(record), now_ms=now_ms)
    except InvalidRecord as exc:
        raise RecordRefused(exc.field, exc.why) from None


async def create_local(node: Node, kind: str, record: Any) -> dict[str, Any]:
    """Validate and keep a record on this node only."""
    now = node.now_ms()
    checked = check_local(kind, record, now)
    await node.store.write(record_store.save_draft, checked["id"], kind, checked, now)
    return checked


def recipients(node: Node, audience: Audience, now_ms: int) -> dict[str, bytes]:
    """The recipients' keys for ``audience`` now; AudienceUnresolvable says in words why not.

    An operation group is sealed to only by its members (its roster lists this node).
    """
    roster = node.rosters.get(audience.group) if audience.scope == "group" else None
    if roster is not None and node.node_id not in roster.members:
        raise AudienceUnresolvable(f"audience: this node is not a member of {audience.group} "
                                   f"(owner {roster.owner}); only its members share to it")
    try:
        return resolve_recipients(audience, node.node_id, node.directory, node.rosters, now_ms=now_ms)
    except AudienceUnresolvable as exc:
        raise AudienceUnresolvable(explain_unresolvable(audience, node.rosters, now_ms, exc)) from None


# Written in the same transaction as the bundle that a share, edit, retraction or feedback
# stores (node.ingest's ``also``), given the bundle and the record it carries: an officer's
# audit entry, say, so that the two are stored together or not at all.
AlsoWith = Callable[[sqlite3.Connection, Bundle, dict[str, Any]], None]


async def seal_and_store(node: Node, kind: str, record: dict[str, Any], audience: Audience, *, urgent: bool,
                         also: AlsoWith | None = None) -> Bundle:
    """Seal ``record`` to ``audience`` and store it as our own bundle (we are always a recipient);
    ``also(conn, bundle, record)`` is written in the same transaction."""
    now = node.now_ms()
    try:
        check_personal_data(kind, record, audience.scope)
    except InvalidRecord as exc:
        raise RecordRefused(exc.field, exc.why) from None
    keys = recipients(node, audience, now)
    lifetime = node.settings.protocol.bundle_lifetime_days * DAY_MS
    bundle = seal_bundle(identity=node.identity, kind=kind, record=record, audience=audience, recipient_keys=keys,
                         created=now, expires=now + lifetime, urgent=urgent, rng=os.urandom)
    with_bundle = None if also is None else (lambda conn: also(conn, bundle, record))
    result = await ingest(node, [bundle.raw], via=None, also=with_bundle)
    if result.rejected:
        raise ShareRefused(f"our own bundle was refused: {result.rejected[0][1]}")
    return bundle


async def share(node: Node, rid: str, audience: Audience, *, urgent: bool, also: AlsoWith | None = None) -> Bundle:
    """Share a local record, or send the next version of one of our shared records.

    The bundle, the draft marked as shared and ``also`` (the officer's audit
    entry) are stored in one transaction: a store that fills up refuses all
    three, and the officer's retry shares the draft once.
    """
    draft = await node.store.read(record_store.get_draft, rid)
    held = await node.store.read(record_store.get_record, rid)
    if held is not None and held["origin"] == node.node_id:
        # Shared before (and maybe edited since): the latest version, never the first draft.
        if held["retracted"]:
            raise ShareRefused(f"record {rid} was retracted; it cannot be shared again")
        kind, record = held["kind"], held["record"]
    elif draft is not None:
        kind, record = draft["kind"], draft["record"]
    else:
        raise ShareRefused(f"no local record {rid} on this node")
    def mark(conn: sqlite3.Connection, bundle: Bundle, record: dict[str, Any]) -> None:
        if draft is not None:
            record_store.mark_shared(conn, rid, bundle.id)
        if also is not None:
            also(conn, bundle, record)

    return await seal_and_store(node, kind, record, audience, urgent=urgent, also=mark)


async def send_feedback(node: Node, alert_id: str, answer: dict[str, Any],
                        also: AlsoWith | None = None) -> tuple[dict[str, Any], Bundle]:
    """Answer an alert; the feedback goes to the alert's origin, urgently if the alert was immediate."""
    alert = await node.store.read(record_store.get_record, alert_id)
    if alert is None or alert["kind"] != "alert":
        raise ShareRefused(f"no alert {alert_id} readable on this node")
    record = check_local("feedback", {**answer, "ref": alert_id}, node.now_ms())
    urgent = alert["record"].get("urgency") == "immediate"
    audience = Audience("nodes", tuple(sorted({alert["origin"]})))
    bundle = await seal_and_store(node, "feedback", record, audience, urgent=urgent, also=also)
    return record, bundle


async def _own_shared(node: Node, rid: str, doing: str) -> dict[str, Any]:
    """Our own shared, unretracted record ``rid``; raises UnknownRecord, NotOrigin or ShareRefused."""
    held = await node.store.read(record_store.get_record, rid)
    if held is None:
        if await node.store.read(record_store.get_draft, rid) is not None:
            raise ShareRefused(f"record {rid} was never shared (it is only on this node); "
                               f"{'change it and share it' if doing == 'edit' else 'there is nothing to retract'}")
        raise UnknownRecord(f"no record {rid} on this node")
    if held["origin"] != node.node_id:
        raise NotOrigin(f"record {rid} belongs to {held['origin']}; only its origin may {doing} it")
    if held["retracted"]:
        raise ShareRefused(f"record {rid} was retracted; it cannot be {doing}ed any more")
    return held


def _audience_of(held: dict[str, Any]) -> Audience:
    try:
        return Audience.parse_spec(held["audience"])
    except InvalidMessage as exc:  # stored by our own ingest, so this means a damaged database
        raise ShareRefused(f"record {held['id']}: its stored audience {held['audience']!r} is unreadable: {exc}") from None


async def edit(node: Node, rid: str, new: Any, *, urgent: bool | None = None,
               also: AlsoWith | None = None) -> tuple[dict[str, Any], Bundle, Audience]:
    """Send the next version of our shared record ``rid`` to the audience it was shared with.

    ``new`` is the whole new record; its ``id`` may be left out, and its
    ``version`` left out or given as the version it was edited from (or the
    next one). ``urgent`` defaults to how the previous version was sent.
    """
    if not isinstance(new, dict):
        raise RecordRefused("record", "must be an object: the whole new record")
    async with _lock(node):
        held = await _own_shared(node, rid, "edit")
        kind = held["kind"]
        if kind not in EDITABLE:
            raise ShareRefused(f"record {rid} is a {kind}; only a {', '.join(EDITABLE)} can be edited")
        if new.get("id", rid) != rid:
            raise RecordRefused("id", f"{new.get('id')!r} is not the id of the record being edited ({rid})")
        current = held["version"]
        given = new.get("version", current)
        if isinstance(given, bool) or given not in (current, current + 1):
            raise RecordRefused("version", f"the record is at version {current}; the edit was made to version "
                                           f"{given!r}. Reload it and edit the latest version")
        record = check_local(kind, {**new, "id": rid, "version": current + 1}, node.now_ms())
        if record == {**held["record"], "version": current + 1}:
            raise RecordRefused("record", f"nothing changed from version {current}")
        audience = _audience_of(held)
        if urgent is None:
            urgent = await node.store.read(record_store.bundle_urgent, held["bundle_id"])
        bundle = await seal_and_store(node, kind, record, audience, urgent=urgent, also=also)
        return record, bundle, audience


async def retract(node: Node, rid: str, reason: Any,
                  also: AlsoWith | None = None) -> tuple[dict[str, Any], Bundle, Audience]:
    """Withdraw our shared record ``rid``: a ``retract`` record to the audience it was shared with."""
    async with _lock(node):
        held = await _own_shared(node, rid, "retract")
        if held["kind"] in ("retract", "roster"):
            raise ShareRefused(f"record {rid} is a {held['kind']}; it cannot be retracted")
        record = check_local("retract", {"ref": rid, "reason": reason}, node.now_ms())
        audience = _audience_of(held)
        urgent = await node.store.read(record_store.bundle_urgent, held["bundle_id"])
        bundle = await seal_and_store(node, "retract", record, audience, urgent=urgent, also=also)
        return record, bundle, audience


def end_of_day_ms(day: str) -> int:
    """The last millisecond of ``day`` (YYYY-MM-DD) in UTC."""
    d = datetime.date.fromisoformat(day)
    return (d - datetime.date(1970, 1, 1)).days * DAY_MS + DAY_MS - 1


async def issue_roster(node: Node, group: Any, members: Any, until: Any) -> tuple[dict[str, Any], Bundle]:
    """Create (or, as its owner, change) the operation group ``group``; the roster goes to its members."""
    if not isinstance(group, str) or not group.startswith("op:"):
        raise RecordRefused("name", f"{group!r} is not a closed group name 'op:NAME' (NAME: A-Z, 0-9, '.', '_', '-')")
    if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
        raise RecordRefused("members", "must be a list of node ids")
    if not isinstance(until, str):
        raise RecordRefused("not_after", "must be a date YYYY-MM-DD (the group's last day, UTC)")
    try:
        not_after = end_of_day_ms(until)
    except ValueError:
        raise RecordRefused("not_after", f"{until!r} is not a date YYYY-MM-DD") from None
    now = node.now_ms()
    if not_after <= now:
        raise RecordRefused("not_after", f"{until} is in the past; a group must end today or later")
    unknown = [m for m in members if m not in node.directory or node.directory[m].revoked]
    if unknown:
        raise RecordRefused("members", f"not accepted by this node (or revoked): {', '.join(unknown)}")
    wanted = sorted(set(members) | {node.node_id})
    if len(wanted) < 2:
        raise RecordRefused("members", "name at least one node besides this one")
    async with _lock(node):
        known = node.rosters.get(group)
        if known is not None and known.owner != node.node_id:
            raise NotOrigin(f"{group} is owned by {known.owner}; only its owner may change its members")
        mine = await node.store.read(record_store.own_roster, group, node.node_id)
        rid, version = (mine[0], mine[1] + 1) if mine else (str(uuid.uuid4()), 1)
        try:
            record = validate_record("roster", {"id": rid, "version": version, "group": group, "members": wanted,
                                                "not_after": not_after}, now_ms=now)
        except InvalidRecord as exc:
            raise RecordRefused({"group": "name"}.get(exc.field.split("[")[0], exc.field), exc.why) from None
        # A changed roster also reaches the members it drops, so they know they are out.
        dropped = set(known.members) - set(wanted) if known is not None else set()
        told = sorted(set(wanted) | {m for m in dropped if m in node.directory and not node.directory[m].revoked})
        audience = Audience("nodes", tuple(told))
        bundle = await seal_and_store(node, "roster", record, audience, urgent=False)
        return record, bundle


async def keep_batch(node: Node, kind: str, records: Sequence[dict[str, Any]]) -> None:
    """Keep already validated local records, all in one transaction (all or none)."""
    now = node.now_ms()
    await node.store.write(record_store.save_drafts, [(r["id"], kind, r) for r in records], now)


def check_batch(node: Node, kind: str, records: Sequence[dict[str, Any]], audience: Audience) -> None:
    """Raise now (RecordRefused, AudienceUnresolvable) if ``records`` cannot all be sealed to ``audience``."""
    for r in records:
        try:
            check_personal_data(kind, r, audience.scope)
        except InvalidRecord as exc:
            raise RecordRefused(exc.field, f"record {r['id']}: {exc.why}") from None
    recipients(node, audience, node.now_ms())


async def share_batch(node: Node, kind: str, records: Sequence[dict[str, Any]], audience: Audience,
                      also: Callable[[sqlite3.Connection, list[Bundle]], None] | None = None) -> list[Bundle]:
    """Seal each record to ``audience`` and store all the bundles, the drafts marked as shared and
    ``also(conn, bundles)`` in one ingest (one transaction)."""
    check_batch(node, kind, records, audience)
    now = node.now_ms()
    keys = recipients(node, audience, now)
    lifetime = node.settings.protocol.bundle_lifetime_days * DAY_MS

    def seal_all() -> list[Bundle]:
        return [seal_bundle(identity=node.identity, kind=kind, record=r, audience=audience, recipient_keys=keys,
                            created=now, expires=now + lifetime, urgent=False, rng=os.urandom) for r in records]

    bundles = await asyncio.to_thread(seal_all)
    def mark(conn: sqlite3.Connection) -> None:
        record_store.mark_shared_many(conn, [(r["id"], b.id) for r, b in zip(records, bundles, strict=True)])
        if also is not None:
            also(conn, bundles)

    result = await ingest(node, [b.raw for b in bundles], via=None, also=mark)
    if result.rejected:
        raise ShareRefused(f"our own bundle was refused: {result.rejected[0][1]}")
    return bundles


