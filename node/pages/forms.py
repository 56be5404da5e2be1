"""The seizure and alert forms: their inputs, reading a submitted form into a record, every error at once.

An input's ``name`` is the dotted path of its record field (``office.locode``,
``parties[0].name``), the same path ``InvalidRecord`` names, so a message from
protocol/records.py lands beside the input it is about. The validator stops
at the first problem; ``validate_all`` puts a known-good stand-in where each
problem was and asks again, so the officer sees every wrong field in one go.
Nothing is kept or shared unless the record and its audience (node/pages/audience.py) both pass.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from node import outbox
from node.pages import labels
from protocol.errors import RecordRefused
from protocol.records import (
    DETECTION_METHODS,
    HANDLING_CODES,
    PARTY_ROLES,
    REQUESTED_ACTIONS,
    SEIZURE_CATEGORIES,
    TLP_LEVELS,
    TRANSPORT_MODES,
    UNITS,
    URGENCIES,
)

PARTY_ROWS = 2


@dataclass(frozen=True)
class Input:
    """One form input for the record field at ``path``."""

    path: str
    label: str
    kind: str = "text"  # text, textarea, select, date, country, list
    choices: tuple[tuple[str, str], ...] = ()
    hint: str = ""
    required: bool = False
    upper: bool = False
    placeholder: Any = "x"  # a valid stand-in, used by validate_all only

    @property
    def id(self) -> str:
        return "f-" + re.sub(r"[^a-z0-9]+", "-", self.path.lower()).strip("-")


@dataclass(frozen=True)
class Fieldset:
    key: str
    legend: str
    inputs: tuple[Input, ...]
    note: str = ""


def _opts(values: tuple[str, ...], words: dict[str, str] | None = None) -> tuple[tuple[str, str], ...]:
    return tuple((v, (words or {}).get(v, v)) for v in values)


_TLP_CHOICES = tuple((t, f"{t}: {labels.TLP[t][0]}") for t in TLP_LEVELS)
_HANDLING_CHOICES = (("", "none"), *((h, f"{h}: {labels.HANDLING[h][0]}") for h in HANDLING_CODES))
_CATEGORY_CHOICES = _opts(SEIZURE_CATEGORIES, labels.CATEGORIES)


def _refs(prefix: str) -> tuple[Input, ...]:
    return (
        Input(f"{prefix}.container", "Container number", hint="ISO 6346, e.g. CSQU3054383", upper=True,
              placeholder="CSQU3054383"),
        Input(f"{prefix}.awb", "Air waybill", hint="11 digits", placeholder="02012345675"),
        Input(f"{prefix}.bill_of_lading", "Bill of lading", placeholder="X"),
        Input(f"{prefix}.vessel_imo", "Vessel IMO number", hint="7 digits", upper=True, placeholder="9074729"),
        Input(f"{prefix}.flight", "Flight", hint="e.g. KQ1540", upper=True, placeholder="LH400"),
    )


def _party(i: int) -> tuple[Input, ...]:
    p = f"parties[{i}]"
    return (
        Input(f"{p}.role", f"Person {i + 1}: role", "select", (("", "—"), *_opts(PARTY_ROLES)), placeholder="other"),
        Input(f"{p}.name", f"Person {i + 1}: name"),
        Input(f"{p}.country", f"Person {i + 1}: country", "country", upper=True, placeholder="NG"),
        Input(f"{p}.identifier", f"Person {i + 1}: identifier", hint="passport, company or trader number"),
    )


SEIZURE: tuple[Fieldset, ...] = (
    Fieldset("goods", "What was found", (
        Input("category", "Category", "select", _CATEGORY_CHOICES, required=True, placeholder="other"),
        Input("commodity.description", "Goods", hint="what the goods are, in a few words", required=True),
        Input("commodity.hs_code", "HS code", hint="6 to 10 digits", placeholder="630790"),
        Input("commodity.brand", "Brand"),
        Input("commodity.rights_holder", "Rights holder", hint="for IPR cases"),
        Input("quantity.amount", "Quantity", hint="a number, e.g. 1200 or 35.5", required=True, placeholder="1"),
        Input("quantity.unit", "Unit", "select", _opts(UNITS), required=True, placeholder="pieces"),
        Input("value.amount", "Estimated value", hint="a number", placeholder="1"),
        Input("value.currency", "Currency", hint="ISO 4217, e.g. USD", upper=True, placeholder="USD"),
    )),
    Fieldset("where", "Where and how", (
        Input("date", "Date of detection", "date", required=True, placeholder="2000-01-01"),
        Input("office.name", "Customs office", required=True),
        Input("office.locode", "Office UN/LOCODE", hint="5 characters, e.g. NGAPP", required=True, upper=True,
              placeholder="NGAPP"),
        Input("transport_mode", "Transport mode", "select", _opts(TRANSPORT_MODES), required=True, placeholder="other"),
        Input("detection_method", "Detected by", "select", _opts(DETECTION_METHODS), required=True,
              placeholder="other"),
        Input("concealment", "Concealment", "textarea", hint="how the goods were hidden (may be empty)",
              placeholder=""),
    )),
    Fieldset("route", "Route", (
        Input("route.departure", "Departure country", "country", required=True, upper=True, placeholder="NG"),
        Input("route.destination", "Destination country", "country", required=True, upper=True, placeholder="NG"),
        Input("route.transit", "Transit countries", "list", hint="country codes separated by commas, e.g. TG, BJ",
              upper=True, placeholder=[]),
        Input("route.origin", "Country of origin of the goods", "country", upper=True, placeholder="NG"),
    )),
    Fieldset("conveyance", "Conveyance (optional)", _refs("conveyance")),
    Fieldset("parties", "Persons and companies (optional, personal data)",
             tuple(i for n in range(PARTY_ROWS) for i in _party(n)),
             note="A record naming persons or companies cannot be marked CLEAR or GREEN nor be shared with "
                  "the whole federation."),
    Fieldset("handling", "Narrative and handling", (
        Input("narrative", "Narrative", "textarea", placeholder=""),
        Input("tlp", "TLP (who may see it)", "select", _TLP_CHOICES, required=True, placeholder="AMBER"),
        Input("handling", "Handling code", "select", _HANDLING_CHOICES, placeholder="H0"),
    )),
)

ALERT: tuple[Fieldset, ...] = (
    Fieldset("alert", "Alert", (
        Input("title", "Title", required=True),
        Input("urgency", "Urgency", "select", _opts(URGENCIES), required=True, placeholder="routine"),
        Input("requested_action", "Requested action", "select", _opts(REQUESTED_ACTIONS), required=True,
              placeholder="inform"),
        Input("respond_by", "Respond by", "date", required=True, placeholder="2000-01-01"),
    )),
    Fieldset("consignment", "Consignment (at least one reference)", (
        *_refs("consignment"),
        Input("consignment.eta", "Expected arrival", "date", placeholder="2000-01-01"),
        Input("consignment.destination_locode", "Destination UN/LOCODE", hint="e.g. GHTEM", upper=True,
              placeholder="NGAPP"),
    )),
    Fieldset("suspected", "Suspected goods", (
        Input("suspected.category", "Category", "select", _CATEGORY_CHOICES, required=True, placeholder="other"),
        Input("suspected.commodity.description", "Goods", required=True),
        Input("suspected.commodity.hs_code", "HS code", hint="6 to 10 digits", placeholder="630790"),
        Input("suspected.commodity.brand", "Brand"),
    )),
    Fieldset("handling", "Narrative and handling", (
        Input("narrative", "Narrative", "textarea", placeholder=""),
        Input("related", "Related record ids", "list", hint="record ids separated by commas", placeholder=[]),
        Input("tlp", "TLP (who may see it)", "select", _TLP_CHOICES, required=True, placeholder="AMBER"),
    )),
)

FORMS: dict[str, tuple[Fieldset, ...]] = {"seizure": SEIZURE, "alert": ALERT}
# Objects a record must have: always sent, even empty, so a missing member is named.
_ALWAYS = {"seizure": ("office", "commodity", "quantity", "route"),
           "alert": ("consignment", "suspected", "suspected.commodity")}
_EMPTY_OK = {"concealment"}
_INDEX = re.compile(r"\[(\d+)\]")


def inputs(kind: str) -> dict[str, Input]:
    return {i.path: i for fs in FORMS[kind] for i in fs.inputs}


def path_steps(path: str) -> list[str | int]:
    out: list[str | int] = []
    for part in path.split("."):
        name, *idx = _INDEX.split(part)
        if name:
            out.append(name)
        out += [int(i) for i in idx if i]
    return out


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    """``record[a][b][0][c] = value`` for ``a.b[0].c``, making objects and list items on the way."""
    steps = path_steps(path)
    here: Any = record
    for step, nxt in itertools.pairwise(steps):
        blank: Any = [] if isinstance(nxt, int) else {}
        if isinstance(step, int):
            while len(here) <= step:
                here.append(copy.copy(blank))
            here = here[step]
        else:
            here = here.setdefault(step, blank)
    last = steps[-1]
    if isinstance(last, int):
        while len(here) <= last:
            here.append(None)
    here[last] = value


def _convert(inp: Input, raw: str) -> Any:
    if inp.kind == "list":
        items = [p.strip() for p in raw.replace(";", ",").split(",") if p.strip()]
        return [p.upper() for p in items] if inp.upper else items
    if not raw:
        return "" if inp.path in _EMPTY_OK else None
    if inp.path.endswith("hs_code"):
        return raw.replace(".", "").replace(" ", "")
    if inp.path.endswith(".awb"):
        return raw.replace("-", "").replace(" ", "")
    return raw.upper() if inp.upper else raw


def read_form(kind: str, form: MultiMapping[Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The record a submitted form describes, and the values as typed (to show the form again)."""
    typed: dict[str, str] = {}
    record: dict[str, Any] = {}
    for path in _ALWAYS[kind]:
        set_path(record, path, {})
    parties: dict[int, dict[str, Any]] = {}
    for inp in inputs(kind).values():
        raw = str(form.get(inp.path, "")).strip().replace("\r\n", "\n")
        typed[inp.path] = raw
        value = _convert(inp, raw)
        if value is None or (value == [] and inp.path == "related"):
            continue
        if inp.path.startswith("parties["):
            n, member = int(inp.path[8:inp.path.index("]")]), inp.path.split(".", 1)[1]
            parties.setdefault(n, {})[member] = value
        else:
            set_path(record, inp.path, value)
    rows = [parties[n] for n in sorted(parties)]
    if rows:
        record["parties"] = rows
    return record, typed


def error_key(kind: str, path: str) -> str:
    """The input (or fieldset) a dotted error path belongs to; '' for the form as a whole."""
    known = inputs(kind)
    sets = {fs.key for fs in FORMS[kind]}
    candidate = path
    while candidate:
        if candidate in known or candidate in sets:
            return candidate
        stripped = re.sub(r"\[\d+\]$", "", candidate)
        if stripped != candidate:
            candidate = stripped
            continue
        candidate = candidate.rpartition(".")[0]
    return ""


def _stand_in(kind: str, path: str) -> tuple[str, Any] | None:
    """Where to put a valid stand-in for the error at ``path``, and which."""
    known = inputs(kind)
    generic = re.sub(r"parties\[\d+\]", "parties[0]", path)
    if generic in known:
        return path, known[generic].placeholder
    list_path = re.sub(r"\[\d+\]$", "", path)
    if list_path in known and known[list_path].kind == "list":
        return list_path, []
    if path in ("consignment", "conveyance"):
        return f"{path}.container", "CSQU3054383"
    return None


def _words(kind: str, key: str, path: str, why: str) -> str:
    """The validator's message as shown beside the input ``key``."""
    inp = inputs(kind).get(key)
    if why == "is required" and inp is not None:
        return "Choose one; this is required." if inp.kind == "select" else "Fill this in; it is required."
    if key == path or (inp is not None and inp.kind == "list"):
        return why[:1].upper() + why[1:]
    return f"{path}: {why}"


def validate_all(kind: str, record: dict[str, Any], now_ms: int) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """(the checked record, {}) or (None, every error by input path)."""
    errors: dict[str, str] = {}
    trial = copy.deepcopy(record)
    for _ in range(80):
        try:
            checked = outbox.check_local(kind, trial, now_ms)
        except RecordRefused as exc:
            key = error_key(kind, exc.field)
            if key in errors:
                break
            errors[key] = _words(kind, key, exc.field, exc.why)
            fix = _stand_in(kind, exc.field)
            if fix is None:
                break
            set_path(trial, *fix)
            continue
        return (None, errors) if errors else (checked, {})
    return None, errors
