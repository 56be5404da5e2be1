"""Tests for protocol.records: record kinds of PROTOCOL.md 3.2."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import InvalidRecord
from protocol.records import (
    KINDS,
    OUTCOMES,
    REQUESTED_ACTIONS,
    SEIZURE_CATEGORIES,
    TLP_LEVELS,
    UNITS,
    URGENCIES,
    check_personal_data,
    today_from_ms,
    validate_record,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "bundles.json"

NOW = 1_700_000_100_000  # 2023-11-14T22:15:00Z
NODE_A = "n" + "a" * 24
NODE_B = "nb2" + "c" * 22
NODE_C = "nz7" + "q" * 22

SEIZURE: dict[str, Any] = {
    "id": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11",
    "version": 2,
    "category": "ipr",
    "date": "2023-11-14",
    "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"},
    "transport_mode": "sea",
    "detection_method": "x-ray",
    "concealment": "behind a false wall\nin the container",
    "commodity": {
        "description": "counterfeit sports shoes",
        "hs_code": "6404110000",
        "brand": "Acme",
        "rights_holder": "Acme Corp.",
    },
    "quantity": {"amount": "1250.5", "unit": "pieces"},
    "value": {"amount": "0", "currency": "EUR"},
    "route": {"departure": "CN", "destination": "NG", "transit": ["TG", "XK"], "origin": "VN"},
    "conveyance": {
        "container": "CSQU3054383",
        "awb": "02012345675",
        "bill_of_lading": "MAEU123456789",
        "vessel_imo": "IMO9074729",
        "flight": "LH400",
    },
    "parties": [
        {"role": "consignee", "name": "Example Trading Ltd", "country": "NG", "identifier": "RC-1"},
        {"role": "carrier", "name": "Ocean Lines"},
    ],
    "narrative": "Profile hit on shipper.\tSecond line.",
    "tlp": "AMBER+STRICT",
    "handling": "H2",
}

ALERT: dict[str, Any] = {
    "id": "5e1c4a7d-2b8f-4e3a-9c6d-1f0e2d3c4b5a",
    "version": 1,
    "title": "Suspect container of counterfeit medicines",
    "urgency": "immediate",
    "requested_action": "hold",
    "respond_by": "2031-01-01",  # alerts may look ahead
    "consignment": {
        "container": "CSQU3054383",
        "eta": "2031-01-02",
        "destination_locode": "BEANR",
    },
    "suspected": {
        "category": "medicines",
        "commodity": {"description": "tablets", "hs_code": "300490"},
    },
    "tlp": "RED",
    "related": ["0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11"],
    "narrative": "",
}

FEEDBACK: dict[str, Any] = {
    "id": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
    "version": 1,
    "ref": "5e1c4a7d-2b8f-4e3a-9c6d-1f0e2d3c4b5a",
    "outcome": "examined-seized",
    "seizure": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11",
    "note": "12 cartons held",
}

MESSAGE: dict[str, Any] = {
    "id": "11111111-2222-4333-8444-555555555555",
    "version": 1,
    "subject": "Contact point change",
    "body": "From 1 December, please write to the new desk.",
    "tlp": "GREEN",
    "related": [],
}

RETRACT: dict[str, Any] = {
    "id": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11",
    "version": 3,
    "ref": "0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11",
    "reason": "entered twice by mistake",
}

ROSTER: dict[str, Any] = {
    "id": "99999999-8888-4777-a666-555555555555",
    "version": 1,
    "group": "op:PANGEA-XVII",
    "members": sorted([NODE_A, NODE_B, NODE_C]),
    "not_after": 1_731_536_000_000,
}

VALID: dict[str, dict[str, Any]] = {
    "seizure": SEIZURE,
    "alert": ALERT,
    "feedback": FEEDBACK,
    "message": MESSAGE,
    "retract": RETRACT,
    "roster": ROSTER,
}

DROP = object()


def mutated(record: dict[str, Any], path: tuple[str | int, ...], value: object) -> dict[str, Any]:
    """A deep copy of ``record`` with the member at ``path`` set to ``value`` (or removed: DROP)."""
    out = copy.deepcopy(record)
    parent: Any = out
    for step in path[:-1]:
        parent = parent[step]
    if value is DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def assert_invalid(kind: str, record: object, field: str, fragment: str) -> None:
    with pytest.raises(InvalidRecord) as info:
        validate_record(kind, record, now_ms=NOW)
    assert info.value.field == field, str(info.value)
    assert fragment in info.value.why, str(info.value)


# --- Valid records ------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_valid_example_of_every_kind(kind: str) -> None:
    record = VALID[kind]
    before = copy.deepcopy(record)
    assert validate_record(kind, record, now_ms=NOW) is record
    assert record == before


def test_vector_seizure_validates() -> None:
    payload = json.loads(VECTORS.read_text(encoding="utf-8"))["valid"]["payload"]
    assert payload["kind"] == "seizure"
    validate_record("seizure", payload["record"], now_ms=NOW)


def test_minimal_seizure_validates() -> None:
    minimal = {
        k: v
        for k, v in SEIZURE.items()
        if k not in {"value", "conveyance", "parties", "narrative", "handling"}
    }
    minimal["route"] = {"departure": "CN", "destination": "CN", "transit": []}
    minimal["commodity"] = {"description": "cigarettes"}
    minimal["concealment"] = ""
    validate_record("seizure", minimal, now_ms=NOW)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("date",), "2023-11-14"),  # today, by the UTC clock
        (("date",), "2020-02-29"),
        (("conveyance",), {"vessel_imo": "9074729"}),
        (("conveyance",), {"flight": "U21234A"}),
        (("quantity", "amount"), "0.0001"),
        (("quantity", "amount"), "999999999999999.9999"),
        (("value", "amount"), "0.00"),
        (("value", "currency"), "XOF"),
        (("parties",), []),
        (("version",), 2**31),
        (("narrative",), "x" * 5000),
        (("concealment",), "é" * 500),
    ],
)
def test_seizure_edge_values_pass(path: tuple[str, ...], value: object) -> None:
    validate_record("seizure", mutated(SEIZURE, path, value), now_ms=NOW)


def test_today_from_ms_is_utc() -> None:
    assert today_from_ms(NOW).isoformat() == "2023-11-14"
    assert today_from_ms(1_700_006_399_999).isoformat() == "2023-11-14"
    assert today_from_ms(1_700_006_400_000).isoformat() == "2023-11-15"
    assert today_from_ms(-1).isoformat() == "1969-12-31"


def test_enumerations_match_protocol() -> None:
    assert TLP_LEVELS == ("CLEAR", "GREEN", "AMBER", "AMBER+STRICT", "RED")
    assert "cultural-heritage" in SEIZURE_CATEGORIES and len(SEIZURE_CATEGORIES) == 12
    assert UNITS == ("pieces", "kg", "g", "l", "cartons", "packages")
    assert URGENCIES == ("routine", "priority", "immediate")
    assert REQUESTED_ACTIONS == ("examine", "hold", "monitor", "inform")
    assert "not-arrived" in OUTCOMES and len(OUTCOMES) == 5


# --- Invalid records ------------------------------------------------------------

SEIZURE_BAD: list[tuple[tuple[str | int, ...], object, str, str]] = [
    # (path, new value, expected field, fragment of why)
    (("route", "departure"), "XX", "route.departure", "not an ISO 3166 country code"),
    (("route", "departure"), "cn", "route.departure", "not an ISO 3166 country code"),
    (("route", "destination"), "NGA", "route.destination", "not an ISO 3166"),
    (("route", "origin"), "EU", "route.origin", "not an ISO 3166"),
    (("route", "transit", 1), "ZZ", "route.transit[1]", "not an ISO 3166"),
    (("route", "transit"), ["TG", "BJ", "TG"], "route.transit[2]", "listed twice"),
    (("route", "transit"), DROP, "route.transit", "is required"),
    (("route", "transit"), "TG", "route.transit", "must be a list"),
    (("route",), [], "route", "must be an object"),
    (("value", "currency"), "EURO", "value.currency", "not an ISO 4217 currency code"),
    (("value", "currency"), "XYZ", "value.currency", "not an ISO 4217"),
    (("value", "currency"), "eur", "value.currency", "not an ISO 4217"),
    (("value", "amount"), "-1", "value.amount", "not a decimal string"),
    (("value", "amount"), "1e5", "value.amount", "not a decimal string"),
    (("value", "amount"), "1,5", "value.amount", "not a decimal string"),
    (("value", "amount"), "01", "value.amount", "not a decimal string"),
    (("value", "amount"), "1.", "value.amount", "not a decimal string"),
    (("value", "amount"), "1.23456", "value.amount", "not a decimal string"),
    (("value", "amount"), "1\n", "value.amount", "not a decimal string"),
    (("value", "amount"), "١٢", "value.amount", "not a decimal string"),
    (("value", "amount"), "1" * 16, "value.amount", "not a decimal string"),
    (("value", "amount"), 100, "value.amount", "must be a string, not integer"),
    (("value", "currency"), DROP, "value.currency", "is required"),
    (("quantity", "amount"), "0", "quantity.amount", "greater than zero"),
    (("quantity", "amount"), "0.0000", "quantity.amount", "greater than zero"),
    (("quantity", "amount"), 5, "quantity.amount", "must be a string"),
    (("quantity", "unit"), "tonnes", "quantity.unit", "is not one of"),
    (("office", "locode"), "XXAPP", "office.locode", "country code"),
    (("office", "locode"), "NGAP", "office.locode", "not a UN/LOCODE"),
    (("office", "locode"), "NGAP1", "office.locode", "not a UN/LOCODE"),
    (("office", "locode"), "ngapp", "office.locode", "not a UN/LOCODE"),
    (("office", "locode"), "NG APP", "office.locode", "not a UN/LOCODE"),
    (("office", "name"), "", "office.name", "must not be empty"),
    (("office", "name"), "x" * 201, "office.name", "longer than 200"),
    (("office", "name"), DROP, "office.name", "is required"),
    (("office",), None, "office", "must be an object, not null"),
    (("commodity", "hs_code"), "63079", "commodity.hs_code", "not an HS code"),
    (("commodity", "hs_code"), "63.07.90", "commodity.hs_code", "not an HS code"),
    (("commodity", "hs_code"), "12345678901", "commodity.hs_code", "not an HS code"),
    (("commodity", "hs_code"), 630790, "commodity.hs_code", "must be a string"),
    (("commodity", "description"), DROP, "commodity.description", "is required"),
    (("commodity", "description"), "x" * 501, "commodity.description", "longer than 500"),
    (("commodity", "brand"), "", "commodity.brand", "must not be empty"),
    (("conveyance", "container"), "CSQU3054384", "conveyance.container", "check digit"),
    (("conveyance", "container"), "CSQX3054383", "conveyance.container", "not an ISO 6346"),
    (("conveyance", "container"), "csqu3054383", "conveyance.container", "not an ISO 6346"),
    (("conveyance", "container"), "CSQU 305438 3", "conveyance.container", "not an ISO 6346"),
    (("conveyance", "awb"), "02012345676", "conveyance.awb", "check digit"),
    (("conveyance", "awb"), "020-12345675", "conveyance.awb", "not an air waybill"),
    (("conveyance", "awb"), "2012345675", "conveyance.awb", "not an air waybill"),
    (("conveyance", "vessel_imo"), "IMO9074728", "conveyance.vessel_imo", "check digit"),
    (("conveyance", "vessel_imo"), "9074728", "conveyance.vessel_imo", "check digit"),
    (("conveyance", "vessel_imo"), "IMO 9074729", "conveyance.vessel_imo", "not an IMO"),
    (("conveyance", "vessel_imo"), 9074729, "conveyance.vessel_imo", "must be a string"),
    (("conveyance", "bill_of_lading"), "maeu123", "conveyance.bill_of_lading", "bill of lading"),
    (("conveyance", "bill_of_lading"), "", "conveyance.bill_of_lading", "bill of lading"),
    (("conveyance", "bill_of_lading"), "A" * 36, "conveyance.bill_of_lading", "bill of lading"),
    (("conveyance", "flight"), "LH 400", "conveyance.flight", "IATA flight"),
    (("conveyance", "flight"), "LH12345", "conveyance.flight", "IATA flight"),
    (("conveyance", "flight"), "lh400", "conveyance.flight", "IATA flight"),
    (("conveyance", "truck"), "AB-123", "conveyance.truck", "unknown field 'truck'"),
    (("conveyance",), {}, "conveyance", "at least one"),
    (("date",), "2023-11-16", "date", "in the future"),
    (("date",), "2999-01-01", "date", "in the future"),
    (("date",), "2023-02-29", "date", "not a real calendar date"),
    (("date",), "2023-13-01", "date", "not a real calendar date"),
    (("date",), "0000-01-01", "date", "not a real calendar date"),
    (("date",), "2023-2-1", "date", "not an ISO date"),
    (("date",), "20231101", "date", "not an ISO date"),
    (("date",), "2023-11-01T00:00:00Z", "date", "not an ISO date"),
    (("date",), 1_700_000_000_000, "date", "must be a string"),
    (("concealment",), "x" * 501, "concealment", "longer than 500"),
    (("concealment",), DROP, "concealment", "is required"),
    (("narrative",), "x" * 5001, "narrative", "longer than 5000"),
    (("narrative",), "a\x00b", "narrative", "control character U+0000"),
    (("narrative",), "a\r\nb", "narrative", "control character U+000D"),
    (("narrative",), "a\x85b", "narrative", "control character U+0085"),
    (("narrative",), "a\ud800b", "narrative", "U+D800"),
    (("narrative",), None, "narrative", "must be a string, not null"),
    (("parties", 0, "name"), DROP, "parties[0].name", "is required"),
    (("parties", 1, "name"), "", "parties[1].name", "must not be empty"),
    (("parties", 0, "role"), "boss", "parties[0].role", "is not one of"),
    (("parties", 0, "country"), "XX", "parties[0].country", "not an ISO 3166"),
    (("parties", 0, "identifier"), "x" * 101, "parties[0].identifier", "longer than 100"),
    (("parties", 0, "dob"), "1970-01-01", "parties[0].dob", "unknown field 'dob'"),
    (("parties", 1), "Ocean Lines", "parties[1]", "must be an object, not string"),
    (("parties",), [{"role": "other", "name": "x"}] * 51, "parties", "more than 50"),
    (("foo",), 1, "foo", "unknown field 'foo'"),
    (("route", "via"), [], "route.via", "unknown field 'via'"),
    (("tlp",), DROP, "tlp", "is required"),
    (("tlp",), "amber", "tlp", "is not one of"),
    (("tlp",), "WHITE", "tlp", "is not one of"),
    (("handling",), "H4", "handling", "is not one of"),
    (("category",), "IPR", "category", "is not one of"),
    (("category",), ["ipr"], "category", "must be a string, not list"),
    (("transport_mode",), "ship", "transport_mode", "is not one of"),
    (("detection_method",), "canine", "detection_method", "is not one of"),
    (("version",), True, "version", "must be an integer, not boolean"),
    (("version",), False, "version", "must be an integer, not boolean"),
    (("version",), 0, "version", "outside"),
    (("version",), 2**31 + 1, "version", "outside"),
    (("version",), 10**5000, "version", "huge integer"),
    (("version",), "1", "version", "must be an integer, not string"),
    (("version",), 1.0, "version", "must be an integer, not number"),
    (("version",), DROP, "version", "is required"),
    (("id",), DROP, "id", "is required"),
    (("id",), "0B9F6F2E-4C1A-4F7E-9D35-2A0C7F1E9B11", "id", "not a UUID"),
    (("id",), "0b9f6f2e4c1a4f7e9d352a0c7f1e9b11", "id", "not a UUID"),
    (("id",), "{0b9f6f2e-4c1a-4f7e-9d35-2a0c7f1e9b11}", "id", "not a UUID"),
    (("id",), 12345, "id", "must be a string"),
]


def _case_ids(cases: list[Any], field_at: int) -> list[str]:
    # Explicit ids: pytest's own would str() a 5000-digit integer and fail.
    return [f"{case[field_at]}-{i}" for i, case in enumerate(cases)]


@pytest.mark.parametrize(
    ("path", "value", "field", "fragment"), SEIZURE_BAD, ids=_case_ids(SEIZURE_BAD, 2)
)
def test_bad_seizure(path: tuple[str | int, ...], value: object, field: str, fragment: str) -> None:
    assert_invalid("seizure", mutated(SEIZURE, path, value), field, fragment)


OTHER_BAD: list[tuple[str, tuple[str | int, ...], object, str, str]] = [
    # (kind, path, new value, expected field, fragment of why)
    ("alert", ("title",), "", "title", "must not be empty"),
    ("alert", ("title",), "x" * 201, "title", "longer than 200"),
    ("alert", ("urgency",), "urgent", "urgency", "is not one of"),
    ("alert", ("requested_action",), "seize", "requested_action", "is not one of"),
    ("alert", ("respond_by",), "2031-02-30", "respond_by", "not a real calendar date"),
    ("alert", ("consignment",), {}, "consignment", "at least one"),
    ("alert", ("consignment", "eta"), "soon", "consignment.eta", "not an ISO date"),
    (
        "alert",
        ("consignment", "destination_locode"),
        "ZZANR",
        "consignment.destination_locode",
        "country code",
    ),
    ("alert", ("consignment", "container"), "CSQU3054384", "consignment.container", "check digit"),
    ("alert", ("consignment", "awb"), "02012345676", "consignment.awb", "check digit"),
    ("alert", ("consignment", "origin"), "CN", "consignment.origin", "unknown field 'origin'"),
    ("alert", ("suspected", "category"), "fakes", "suspected.category", "is not one of"),
    (
        "alert",
        ("suspected", "commodity", "hs_code"),
        "3004",
        "suspected.commodity.hs_code",
        "not an HS code",
    ),
    ("alert", ("suspected", "commodity"), DROP, "suspected.commodity", "is required"),
    ("alert", ("related",), [ALERT["related"][0]] * 2, "related[1]", "listed twice"),
    ("alert", ("related",), ["x"], "related[0]", "not a UUID"),
    (
        "alert",
        ("related",),
        [SEIZURE["id"][:-1] + str(i % 10) for i in range(101)],
        "related",
        "more than 100",
    ),
    ("alert", ("handling",), "H1", "handling", "unknown field 'handling'"),
    ("alert", ("narrative",), "x" * 5001, "narrative", "longer than 5000"),
    ("feedback", ("ref",), "not-a-uuid", "ref", "not a UUID"),
    ("feedback", ("ref",), DROP, "ref", "is required"),
    ("feedback", ("outcome",), "seized", "outcome", "is not one of"),
    ("feedback", ("seizure",), None, "seizure", "must be a string, not null"),
    ("feedback", ("note",), "x" * 2001, "note", "longer than 2000"),
    ("message", ("subject",), "", "subject", "must not be empty"),
    ("message", ("body",), "x" * 10001, "body", "longer than 10000"),
    ("message", ("body",), "bell\x07", "body", "control character U+0007"),
    ("message", ("related",), "x", "related", "must be a list"),
    ("message", ("tlp",), DROP, "tlp", "is required"),
    ("retract", ("reason",), "", "reason", "must not be empty"),
    ("retract", ("reason",), "x" * 501, "reason", "longer than 500"),
    ("retract", ("ref",), 7, "ref", "must be a string"),
    ("roster", ("group",), "PANGEA", "group", "closed group name"),
    ("roster", ("group",), "op:pangea", "group", "closed group name"),
    ("roster", ("group",), "region:WCA", "group", "closed group name"),
    ("roster", ("group",), "op:" + "A" * 64, "group", "closed group name"),
    ("roster", ("members",), [], "members", "must not be empty"),
    ("roster", ("members",), [NODE_B, NODE_A], "members[1]", "out of order"),
    ("roster", ("members",), [NODE_A, NODE_A], "members[1]", "listed twice"),
    ("roster", ("members",), [NODE_A + "a"], "members[0]", "not a node id"),
    ("roster", ("members",), ["n" + "A" * 24], "members[0]", "not a node id"),
    ("roster", ("members",), ["n" + "1" * 24], "members[0]", "not a node id"),
    ("roster", ("members",), [NODE_A, 5], "members[1]", "must be a string"),
    ("roster", ("not_after",), -1, "not_after", "outside"),
    ("roster", ("not_after",), 2**53, "not_after", "outside"),
    ("roster", ("not_after",), True, "not_after", "not boolean"),
    ("roster", ("not_after",), "1731536000000", "not_after", "must be an integer"),
]


@pytest.mark.parametrize(
    ("kind", "path", "value", "field", "fragment"), OTHER_BAD, ids=_case_ids(OTHER_BAD, 3)
)
def test_bad_other_kinds(
    kind: str, path: tuple[str | int, ...], value: object, field: str, fragment: str
) -> None:
    assert_invalid(kind, mutated(VALID[kind], path, value), field, fragment)


@pytest.mark.parametrize("kind", ["indicator", "Seizure", "", None, 1, ["seizure"]])
def test_unknown_kind(kind: Any) -> None:
    assert_invalid(kind, SEIZURE, "kind", "is not a record kind")


NON_STRING_KEY: dict[object, Any] = {1: "x"}
NON_STRING_KEY.update(SEIZURE)


@pytest.mark.parametrize(
    ("record", "fragment"),
    [
        (None, "must be an object, not null"),
        ([], "must be an object, not list"),
        ("{}", "must be an object, not string"),
        (NON_STRING_KEY, "member name 1 that is not a string"),
    ],
)
def test_record_not_an_object(record: object, fragment: str) -> None:
    assert_invalid("seizure", record, "record", fragment)


def test_kind_fields_do_not_mix() -> None:
    # A seizure's members are unknown to an alert, and the reverse.
    assert_invalid("alert", SEIZURE, "category", "unknown field 'category'")
    assert_invalid("feedback", RETRACT, "reason", "unknown field 'reason'")


def test_deeply_nested_value_is_refused_without_recursion() -> None:
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert_invalid("seizure", mutated(SEIZURE, ("route",), deep), "route", "must be an object")
    assert_invalid("seizure", mutated(SEIZURE, ("date",), deep), "date", "must be a string")


def test_huge_string_message_stays_short() -> None:
    with pytest.raises(InvalidRecord) as info:
        validate_record("seizure", mutated(SEIZURE, ("category",), "x" * 1_000_000), now_ms=NOW)
    assert len(str(info.value)) < 300


# --- Personal-data rule -------------------------------------------------------------

NO_PARTIES = {k: v for k, v in SEIZURE.items() if k != "parties"}


@pytest.mark.parametrize(
    ("tlp", "scope", "fragment"),
    [
        ("AMBER", "federation", "whole federation"),
        ("RED", "federation", "whole federation"),
        ("GREEN", "nodes", "TLP GREEN"),
        ("CLEAR", "group", "TLP CLEAR"),
    ],
)
def test_personal_data_refused(tlp: str, scope: str, fragment: str) -> None:
    record = mutated(SEIZURE, ("tlp",), tlp)
    validate_record("seizure", record, now_ms=NOW)  # the record itself is well formed
    with pytest.raises(InvalidRecord) as info:
        check_personal_data("seizure", record, scope)
    assert info.value.field == "parties"
    assert fragment in info.value.why


@pytest.mark.parametrize(
    ("record", "scope"),
    [
        (mutated(SEIZURE, ("tlp",), "AMBER"), "nodes"),
        (mutated(SEIZURE, ("tlp",), "AMBER+STRICT"), "group"),
        (mutated(SEIZURE, ("tlp",), "RED"), "nodes"),
        ({**NO_PARTIES, "tlp": "CLEAR"}, "federation"),
        ({**SEIZURE, "parties": [], "tlp": "GREEN"}, "federation"),
        (ALERT, "federation"),
        (ROSTER, "federation"),
    ],
)
def test_personal_data_allowed(record: dict[str, Any], scope: str) -> None:
    check_personal_data("seizure", record, scope)


# --- Properties: only InvalidRecord, whatever the input --------------------------------


def _field_names() -> list[str]:
    names: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, dict):
            names.update(value)
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(list(VALID.values()))
    return sorted(names)


_KEYS = st.sampled_from(_field_names()) | st.text(max_size=8)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**5000), max_value=10**5000)
    | st.floats()
    | st.text()
    | st.sampled_from(["CN", "EUR", "NGAPP", "2023-11-14", "CSQU3054383", "1.5", "AMBER", NODE_A])
)
JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=20,
)


def _only_invalid_record(kind: object, record: object) -> None:
    try:
        result = validate_record(kind, record, now_ms=NOW)  # type: ignore[arg-type]
    except InvalidRecord as exc:
        assert isinstance(exc.field, str) and exc.field
        assert isinstance(exc.why, str) and exc.why
    else:
        assert result is record


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS) | JSON, record=JSON)
def test_random_json_raises_only_invalid_record(kind: object, record: object) -> None:
    _only_invalid_record(kind, record)


def _paths(value: object, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    out: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, object]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, item in items:
        out.append((*prefix, key))
        out.extend(_paths(item, (*prefix, key)))
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_records_raise_only_invalid_record(data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(KINDS))
    record = copy.deepcopy(VALID[kind])
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(record)
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent: Any = record
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON)
    _only_invalid_record(kind, record)


@pytest.mark.parametrize(
    ("path", "key", "field"),
    [
        ((), "", "record"),
        ((), "a.b", "record"),
        ((), "x" * 10_000, "record"),
        (("route",), "", "route"),
        (("route",), "via", "route.via"),
    ],
)
def test_odd_unknown_member_names(path: tuple[str, ...], key: str, field: str) -> None:
    assert_invalid("seizure", mutated(SEIZURE, (*path, key), 1), field, "unknown field")


def test_seizure_dated_today_east_of_greenwich_is_accepted():
    """At 22:15 UTC it is already the next day in UTC+2 and beyond; that date is not 'the future'."""
    record = json.loads(json.dumps(SEIZURE))
    record["date"] = "2023-11-15"
    assert validate_record("seizure", record, now_ms=NOW) is record
