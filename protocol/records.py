"""Record kinds and their validation (PROTOCOL.md section 3.2).

``validate_record(kind, record, now_ms=...)`` is the one gate every record
passes: at the origin before it is sealed and at each recipient after it is
opened. It is pure (no I/O, no clock: "today" comes from ``now_ms``) and, for
any input whatsoever, either returns the record unchanged or raises
``InvalidRecord(field, why)`` with ``field`` a dotted path such as
``route.departure`` or ``parties[0].name``.

Rules common to every kind:

- ``id``: a UUID in lower-case canonical 8-4-4-4-12 hex form;
  ``version``: an integer from 1 to 2**31 (a boolean is not an integer here).
- Unknown members are refused at every level, and ``null`` is never a stand-in
  for a missing optional member.
- Free text is a ``str`` without control characters other than tab and newline;
  lengths count Python characters (code points).
- Names, titles, subjects, bodies, reasons and descriptions must not be empty;
  ``concealment``, ``narrative`` and ``note`` may be empty strings.

The kinds are as in PROTOCOL.md; where the page leaves a detail open, this
module decides (see each shape below). ``message``, which the page lists but
does not detail, is a free-form note between administrations::

    {"id", "version",
     "subject": text of 1 to 200 characters,
     "body": text of 1 to 10000 characters,
     "tlp": one of TLP_LEVELS,
     "related": optional list of up to 100 distinct record ids}

The personal-data rule (records naming persons or companies never go to the
whole federation nor under TLP CLEAR or GREEN) needs the audience, so it is a
separate call: ``check_personal_data(kind, record, scope)``.
"""

from __future__ import annotations

import datetime
import functools
import re
from typing import Any

from protocol import fields as f
from protocol.errors import InvalidRecord

KINDS: tuple[str, ...] = ("seizure", "alert", "feedback", "message", "retract", "roster")

TLP_LEVELS: tuple[str, ...] = ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
SEIZURE_CATEGORIES: tuple[str, ...] = (
    "ipr",
    "medicines",
    "drugs",
    "tobacco",
    "alcohol",
    "weapons",
    "explosives",
    "environment",
    "cultural-heritage",
    "currency",
    "revenue",
    "other",
)
TRANSPORT_MODES: tuple[str, ...] = (
    "air",
    "sea",
    "road",
    "rail",
    "postal",
    "express",
    "passenger",
    "other",
)
DETECTION_METHODS: tuple[str, ...] = (
    "risk-profiling",
    "intelligence",
    "routine",
    "random",
    "x-ray",
    "dog",
    "other",
)
UNITS: tuple[str, ...] = ("pieces", "kg", "g", "l", "cartons", "packages")
URGENCIES: tuple[str, ...] = ("routine", "priority", "immediate")
REQUESTED_ACTIONS: tuple[str, ...] = ("examine", "hold", "monitor", "inform")
OUTCOMES: tuple[str, ...] = (
    "acknowledged",
    "examined-seized",
    "examined-clear",
    "not-arrived",
    "monitoring",
)
HANDLING_CODES: tuple[str, ...] = ("H0", "H1", "H2", "H3")
PARTY_ROLES: tuple[str, ...] = (
    "consignor",
    "consignee",
    "carrier",
    "passenger",
    "declarant",
    "other",
)

MAX_VERSION = 2**31
MAX_PARTIES = 50
MAX_RELATED = 100
# A roster becomes the recipient list of the group's bundles, and a bundle
# carries at most 512 recipients (PROTOCOL.md 3.1), so a longer roster is useless.
MAX_ROSTER_MEMBERS = 512

# Personal data may travel only under these TLP levels (PROTOCOL.md 3.2).
_TLP_PUBLIC = ("CLEAR", "GREEN")

_NODE_ID = re.compile(r"n[a-z2-7]{24}")
_GROUP = re.compile(r"op:[A-Z0-9][A-Z0-9._-]{0,62}")

_req = f.required
_opt = f.optional

_COMMON: dict[str, f.Field] = {
    "id": _req(f.uuid),
    "version": _req(f.integer(1, MAX_VERSION)),
}

_related = f.list_of(f.uuid, max_len=MAX_RELATED, unique=True)
_narrative = f.text(5000)

_commodity = f.obj(
    {
        "description": _req(f.text(500, min_len=1)),
        "hs_code": _opt(f.hs_code),
        "brand": _opt(f.text(200, min_len=1)),
        "rights_holder": _opt(f.text(200, min_len=1)),
    }
)

# Transport references shared by a seizure's `conveyance` and an alert's `consignment`.
_TRANSPORT_REFS: dict[str, f.Field] = {
    "container": _opt(f.container),
    "awb": _opt(f.awb),
    "bill_of_lading": _opt(f.bill_of_lading),
    "vessel_imo": _opt(f.vessel_imo),
    "flight": _opt(f.flight),
}

_party = f.obj(
    {
        "role": _req(f.enum(PARTY_ROLES)),
        "name": _req(f.text(200, min_len=1)),
        "country": _opt(f.country),
        "identifier": _opt(f.text(100, min_len=1)),
    }
)

_SEIZURE: dict[str, f.Field] = {
    **_COMMON,
    "category": _req(f.enum(SEIZURE_CATEGORIES)),
    # Checked against "today" in the per-day checker; see _seizure_checker.
    "date": _req(f.date),
    "office": _req(f.obj({"name": _req(f.text(200, min_len=1)), "locode": _req(f.locode)})),
    "transport_mode": _req(f.enum(TRANSPORT_MODES)),
    "detection_method": _req(f.enum(DETECTION_METHODS)),
    "concealment": _req(f.text(500)),
    "commodity": _req(_commodity),
    "quantity": _req(
        f.obj({"amount": _req(f.decimal(positive=True)), "unit": _req(f.enum(UNITS))})
    ),
    "value": _opt(f.obj({"amount": _req(f.decimal(positive=False)), "currency": _req(f.currency)})),
    "route": _req(
        f.obj(
            {
                "departure": _req(f.country),
                "destination": _req(f.country),
                # Required even when empty, so "no transit" is stated, not assumed.
                "transit": _req(f.list_of(f.country, max_len=50, unique=True)),
                "origin": _opt(f.country),
            }
        )
    ),
    "conveyance": _opt(f.obj(_TRANSPORT_REFS, non_empty=True)),
    "parties": _opt(f.list_of(_party, max_len=MAX_PARTIES)),
    "narrative": _opt(_narrative),
    "tlp": _req(f.enum(TLP_LEVELS)),
    "handling": _opt(f.enum(HANDLING_CODES)),
}

_ALERT: dict[str, f.Field] = {
    **_COMMON,
    "title": _req(f.text(200, min_len=1)),
    "urgency": _req(f.enum(URGENCIES)),
    "requested_action": _req(f.enum(REQUESTED_ACTIONS)),
    # Any date: an alert read after its deadline is stale, not invalid.
    "respond_by": _req(f.date),
    "consignment": _req(
        f.obj(
            {**_TRANSPORT_REFS, "eta": _opt(f.date), "destination_locode": _opt(f.locode)},
            non_empty=True,
        )
    ),
    "suspected": _req(
        f.obj({"category": _req(f.enum(SEIZURE_CATEGORIES)), "commodity": _req(_commodity)})
    ),
    "tlp": _req(f.enum(TLP_LEVELS)),
    "related": _opt(_related),
    "narrative": _opt(_narrative),
}

_FEEDBACK: dict[str, f.Field] = {
    **_COMMON,
    "ref": _req(f.uuid),
    "outcome": _req(f.enum(OUTCOMES)),
    "seizure": _opt(f.uuid),
    "note": _opt(f.text(2000)),
}

_MESSAGE: dict[str, f.Field] = {
    **_COMMON,
    "subject": _req(f.text(200, min_len=1)),
    "body": _req(f.text(10000, min_len=1)),
    "tlp": _req(f.enum(TLP_LEVELS)),
    "related": _opt(_related),
}

_RETRACT: dict[str, f.Field] = {
    **_COMMON,
    "ref": _req(f.uuid),
    "reason": _req(f.text(500, min_len=1)),
}

_ROSTER: dict[str, f.Field] = {
    **_COMMON,
    "group": _req(
        f.pattern(_GROUP, "a closed group name 'op:NAME' (NAME: A-Z, 0-9, '.', '_', '-')")
    ),
    "members": _req(
        f.list_of(
            f.pattern(_NODE_ID, "a node id ('n' and 24 of a-z, 2-7)"),
            min_len=1,
            max_len=MAX_ROSTER_MEMBERS,
            unique=True,
            ordered=True,
        )
    ),
    "not_after": _req(f.integer(0, f.MAX_SAFE_INT)),
}

_SHAPES: dict[str, dict[str, f.Field]] = {
    "seizure": _SEIZURE,
    "alert": _ALERT,
    "feedback": _FEEDBACK,
    "message": _MESSAGE,
    "retract": _RETRACT,
    "roster": _ROSTER,
}
assert set(_SHAPES) == set(KINDS)
# Built once: a checker prepares its member table when it is made.
_CHECKERS: dict[str, f.Check] = {kind: f.obj(shape) for kind, shape in _SHAPES.items()}


EASTERNMOST_OFFSET_MS = 14 * 3600 * 1000


def today_from_ms(now_ms: int) -> datetime.date:
    """The UTC calendar date of ``now_ms`` (milliseconds since the Unix epoch)."""
    # Integer arithmetic: no float rounding at midnight, and negatives floor correctly.
    return datetime.date(1970, 1, 1) + datetime.timedelta(days=now_ms // 86_400_000)


@functools.lru_cache(maxsize=4)
def _seizure_checker(latest_day_ms: int) -> f.Check:
    # "date" is checked against the caller's today, so the seizure checker is
    # made per day (and kept: rebuilding it per call cost more than the checks);
    # the same key keeps the member's place in the check order.
    return f.obj({**_SEIZURE, "date": _req(_date_checker(latest_day_ms))})


@functools.lru_cache(maxsize=4)
def _date_checker(latest_day_ms: int) -> f.Check:
    return f.date_not_after(today_from_ms(latest_day_ms))


@functools.lru_cache(maxsize=4)
def _latest_date(latest_day_ms: int) -> datetime.date:
    return today_from_ms(latest_day_ms)


def _latest_day_ms(now_ms: int) -> int:
    # Keyed by the day, not the millisecond, so the caches hit all day.
    latest_ms = now_ms + EASTERNMOST_OFFSET_MS
    return latest_ms - latest_ms % 86_400_000


def latest_seizure_date(now_ms: int) -> datetime.date:
    """The latest ``date`` a seizure may carry at ``now_ms`` (as ``validate_record`` decides)."""
    return _latest_date(_latest_day_ms(now_ms))


def validate_record(kind: str, record: object, *, now_ms: int) -> dict[str, Any]:
    """Check one record of ``kind`` against PROTOCOL.md 3.2 and return it unchanged.

    ``now_ms`` is the caller's clock; a seizure dated after the local date of
    the easternmost time zone (UTC+14) is refused, so an office east of
    Greenwich can record today's seizure before UTC midnight. Raises ``InvalidRecord(field, why)`` at the first problem found,
    and never any other exception, whatever ``kind`` and ``record`` hold.
    """
    if not isinstance(kind, str) or kind not in _CHECKERS:
        raise InvalidRecord("kind", f"{f.show(kind)} is not a record kind ({', '.join(KINDS)})")
    check = _seizure_checker(_latest_day_ms(now_ms)) if kind == "seizure" else _CHECKERS[kind]
    return f.check_record(check, record)


def check_personal_data(kind: str, record: dict[str, Any], scope: str) -> None:
    """Enforce the personal-data rule on a record about to be sealed.

    A record with a non-empty ``parties`` list names persons or companies; it
    MUST NOT go to ``scope`` ``federation`` nor carry ``tlp`` ``CLEAR`` or
    ``GREEN``. Only seizures have ``parties`` today, but the rule follows the
    member, not ``kind``, so new kinds with parties are covered too. Expects a
    record that already passed ``validate_record``; raises
    ``InvalidRecord("parties", why)``.
    """
    if not record.get("parties"):
        return
    if scope == "federation":
        raise InvalidRecord(
            "parties",
            f"this {kind} names persons or companies, so it must not be sent to the whole federation",
        )
    tlp = record.get("tlp")
    if tlp in _TLP_PUBLIC:
        raise InvalidRecord(
            "parties",
            f"this {kind} names persons or companies, so it must not be marked TLP {tlp}; "
            "use AMBER, AMBER+STRICT or RED",
        )
