"""Seizures from a spreadsheet: the CSV template of docs/csv-import.md, read and checked row by row.

``parse_csv(data, now_ms=...)`` turns the file's bytes into seizure records
and a list of ``RowError`` (line, column, why), one for every row that is
wrong, so an officer can fix the whole file in one go. The file is used
whole or not at all: the caller keeps the records only when there is no
error. Each record passes the same ``validate_record`` as one typed in by
hand; its field path (``route.departure``) is mapped back to the column
(``route_departure``).

Reading rules: UTF-8 (a byte-order mark is skipped), commas between cells,
CRLF or LF line ends, the first line names the columns (any order, any
case); cells are trimmed; an empty cell is a member left out; entirely blank
lines are skipped. Codes (countries, UN/LOCODE, currency, container, flight,
TLP) are read in upper case and the enumerations (category, transport mode,
detection method, unit) in lower case. ``route_transit`` lists countries
separated by ``;``. Personal data (``parties``) is not taken from CSV.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from typing import Any

from node.outbox import complete
from protocol.errors import InvalidRecord
from protocol.records import validate_record

MAX_ROWS = 10_000
MAX_ERRORS = 1_000

# column -> where it goes in the record; in the template's order.
COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",),
    "category": ("category",),
    "date": ("date",),
    "office_name": ("office", "name"),
    "office_locode": ("office", "locode"),
    "transport_mode": ("transport_mode",),
    "detection_method": ("detection_method",),
    "concealment": ("concealment",),
    "commodity_description": ("commodity", "description"),
    "commodity_hs_code": ("commodity", "hs_code"),
    "commodity_brand": ("commodity", "brand"),
    "commodity_rights_holder": ("commodity", "rights_holder"),
    "quantity_amount": ("quantity", "amount"),
    "quantity_unit": ("quantity", "unit"),
    "value_amount": ("value", "amount"),
    "value_currency": ("value", "currency"),
    "route_departure": ("route", "departure"),
    "route_destination": ("route", "destination"),
    "route_transit": ("route", "transit"),
    "route_origin": ("route", "origin"),
    "conveyance_container": ("conveyance", "container"),
    "conveyance_awb": ("conveyance", "awb"),
    "conveyance_bill_of_lading": ("conveyance", "bill_of_lading"),
    "conveyance_vessel_imo": ("conveyance", "vessel_imo"),
    "conveyance_flight": ("conveyance", "flight"),
    "narrative": ("narrative",),
    "tlp": ("tlp",),
    "handling": ("handling",),
}
REQUIRED = ("category", "date", "office_name", "office_locode", "transport_mode", "detection_method",
            "commodity_description", "quantity_amount", "quantity_unit", "route_departure", "route_destination",
            "tlp")
UPPER = frozenset({"office_locode", "value_currency", "route_departure", "route_destination", "route_transit",
                   "route_origin", "conveyance_container", "conveyance_bill_of_lading", "conveyance_vessel_imo",
                   "conveyance_flight", "tlp", "handling"})
LOWER = frozenset({"category", "transport_mode", "detection_method", "quantity_unit"})
_INDEX = re.compile(r"\[([0-9]+)\]")


@dataclass(frozen=True)
class RowError:
    """One problem: the file's line (1 is the header), the column when one is to blame, and why."""

    line: int
    column: str | None
    why: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.why}" if self.column else f"line {self.line}: {self.why}"

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "error": self.why, "message": str(self)}


@dataclass
class ParsedCsv:
    """The outcome: records (with their line) when ``errors`` is empty."""

    rows: int = 0
    records: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)


def decode(data: bytes) -> str | RowError:
    """The file as text, or the error naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return RowError(line, None, f"byte 0x{data[exc.start]:02X} is not UTF-8; save the file as "
                                    "'CSV UTF-8 (comma delimited)'")


def _column_of(path: str) -> tuple[str | None, str]:
    """The CSV column for a record field path, and a prefix for list items ("entry 2: ")."""
    item = _INDEX.search(path)
    flat = _INDEX.sub("", path).replace(".", "_")
    prefix = f"entry {int(item.group(1)) + 1}: " if item else ""
    return (flat if flat in COLUMNS else None), prefix


def _header(names: list[str], errors: list[RowError]) -> list[str] | None:
    columns = [n.strip().lower() for n in names]
    if len(columns) == 1 and ";" in columns[0]:
        errors.append(RowError(1, None, "the columns are separated by ';'; save the file with commas "
                                        "('CSV UTF-8 (comma delimited)')"))
        return None
    seen: set[str] = set()
    for i, name in enumerate(columns):
        if name == "":
            errors.append(RowError(1, None, f"column {i + 1} has no name"))
        elif name not in COLUMNS:
            errors.append(RowError(1, name, "unknown column; the columns are listed in docs/csv-import.md"))
        elif name in seen:
            errors.append(RowError(1, name, "appears twice in the header"))
        seen.add(name)
    for name in REQUIRED:
        if name not in seen:
            errors.append(RowError(1, name, "required column is missing from the header"))
    return None if errors else columns


def row_to_record(columns: list[str], cells: list[str]) -> dict[str, Any]:
    """The seizure a row describes (not yet validated): empty cells are left out."""
    # The required objects are always there, so a missing member is reported by its own column.
    record: dict[str, Any] = {"office": {}, "commodity": {}, "quantity": {}, "route": {"transit": []},
                              "concealment": ""}
    for name, raw in zip(columns, cells, strict=True):
        value: Any = raw.strip()
        if value == "":
            continue
        if name in UPPER:
            value = value.upper()
        elif name in LOWER:
            value = value.lower()
        if name == "route_transit":
            value = [c.strip() for c in value.split(";") if c.strip()]
        path = COLUMNS[name]
        if len(path) == 1:
            record[path[0]] = value
        else:
            record.setdefault(path[0], {})[path[1]] = value
    return record


def parse_csv(data: bytes, *, now_ms: int) -> ParsedCsv:
    """Read and check every row of a seizures CSV file; see the module docstring for the rules."""
    out = ParsedCsv()
    text = decode(data)
    if isinstance(text, RowError):
        out.errors.append(text)
        return out
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        names = next(reader, None)
        if not names:
            out.errors.append(RowError(1, None, "the file is empty; the first line must name the columns "
                                                "(see docs/seizures-template.csv)"))
            return out
        columns = _header(names, out.errors)
        if columns is None:
            return out
        first_line: dict[str, int] = {}
        while True:
            line = reader.line_num + 1
            cells = next(reader, None)
            if cells is None:
                break
            if not any(c.strip() for c in cells):
                continue
            out.rows += 1
            if out.rows > MAX_ROWS:
                out.errors.append(RowError(line, None, f"the file has more than {MAX_ROWS} rows; split it"))
                break
            if len(cells) != len(columns):
                out.errors.append(RowError(line, None, f"has {len(cells)} cells but the header has {len(columns)} "
                                                       "columns (a missing or extra comma, or an unquoted comma "
                                                       "in a text?)"))
                continue
            _check_row(out, line, columns, cells, now_ms, first_line)
            if len(out.errors) >= MAX_ERRORS:
                out.errors.append(RowError(line, None, f"stopped after {MAX_ERRORS} problems"))
                break
    except csv.Error as exc:
        out.errors.append(RowError(reader.line_num, None, f"cannot be read as CSV: {exc}"))
    if not out.errors and not out.records:
        out.errors.append(RowError(2, None, "the file has no rows below the header; nothing to import"))
    return out


def _check_row(out: ParsedCsv, line: int, columns: list[str], cells: list[str], now_ms: int,
               first_line: dict[str, int]) -> None:
    record = row_to_record(columns, cells)
    try:
        checked = validate_record("seizure", complete(record), now_ms=now_ms)
    except InvalidRecord as exc:
        column, prefix = _column_of(exc.field)
        why = exc.why
        if why == "is required":
            why = "is required (the cell is empty)" if column in columns else "is required, but the file has no such column"
        out.errors.append(RowError(line, column, prefix + why if column else f"{exc.field}: {why}"))
        return
    rid = checked["id"]
    if rid in first_line:
        out.errors.append(RowError(line, "id", f"{rid!r} is used again (first on line {first_line[rid]})"))
        return
    first_line[rid] = line
    out.records.append((line, checked))
