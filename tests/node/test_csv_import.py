"""CSV import: every bad row named by line and column, all rows or none, through the API and the CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from node import cli
from node.csv_import import COLUMNS, REQUIRED, parse_csv
from tests.federation.harness import Federation

DOCS = Path(__file__).resolve().parents[2] / "docs"
NOW = int(time.time() * 1000)

GOOD = {
    "category": "medicines", "date": "2024-05-02", "office_name": "Lagos Apapa Port", "office_locode": "NGAPP",
    "transport_mode": "sea", "detection_method": "intelligence", "concealment": "inside diaper cartons",
    "commodity_description": "falsified antimalarial tablets", "commodity_hs_code": "300460",
    "quantity_amount": "3200", "quantity_unit": "packages", "route_departure": "IN", "route_destination": "NG",
    "route_transit": "AE", "conveyance_container": "CSQU3054383", "tlp": "AMBER",
}


def make_csv(rows: list[dict[str, str]], columns: list[str] | None = None, *, newline: str = "\r\n",
             bom: bool = False) -> bytes:
    cols = columns or list(GOOD)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator=newline, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return (("\ufeff" if bom else "") + buf.getvalue()).encode()


def messages(data: bytes) -> list[str]:
    return [str(e) for e in parse_csv(data, now_ms=NOW).errors]


# --- the file format (pure) ---------------------------------------------------------------------

def test_shipped_template_and_example():
    template = (DOCS / "seizures-template.csv").read_text(encoding="utf-8-sig").splitlines()
    assert template == [",".join(COLUMNS)]
    parsed = parse_csv((DOCS / "seizures-example.csv").read_bytes(), now_ms=NOW)
    assert parsed.errors == [] and parsed.rows == len(parsed.records) == 10
    records = [r for _, r in parsed.records]
    assert {r["category"] for r in records} >= {"ipr", "medicines", "tobacco", "drugs"}
    assert len({r["id"] for r in records}) == 10
    tema = next(r for r in records if r["office"]["locode"] == "GHTEM")
    assert tema["route"]["transit"] == ["TG", "BJ"]
    assert tema["value"] == {"amount": "147000.00", "currency": "USD"}
    assert "conveyance" not in next(r for r in records if r["office"]["locode"] == "AUSYD")
    doc = (DOCS / "csv-import.md").read_text()
    for column in COLUMNS:  # every column is documented
        assert f"| `{column}` |" in doc, column


def test_a_good_row_becomes_the_record_typed_by_hand():
    parsed = parse_csv(make_csv([GOOD]), now_ms=NOW)
    assert parsed.errors == []
    [(line, record)] = parsed.records
    assert line == 2
    del record["id"]
    assert record == {
        "version": 1, "category": "medicines", "date": "2024-05-02",
        "office": {"name": "Lagos Apapa Port", "locode": "NGAPP"}, "transport_mode": "sea",
        "detection_method": "intelligence", "concealment": "inside diaper cartons",
        "commodity": {"description": "falsified antimalarial tablets", "hs_code": "300460"},
        "quantity": {"amount": "3200", "unit": "packages"},
        "route": {"departure": "IN", "destination": "NG", "transit": ["AE"]},
        "conveyance": {"container": "CSQU3054383"}, "tlp": "AMBER",
    }


def test_bom_crlf_lf_case_spaces_and_empty_optional_cells():
    row = {**GOOD, "route_transit": "", "conveyance_container": "", "commodity_hs_code": " ",
           "route_departure": " in ", "tlp": "amber", "category": "Medicines"}
    mixed_case = make_csv([row]).replace(b"category,date,office_name", b"Category,DATE, Office_Name ", 1)
    for data in (make_csv([row], bom=True), make_csv([row], newline="\n"), mixed_case):
        parsed = parse_csv(data, now_ms=NOW)
        assert parsed.errors == [], [str(e) for e in parsed.errors]
        record = parsed.records[0][1]
        assert record["route"] == {"departure": "IN", "destination": "NG", "transit": []}
        assert "conveyance" not in record and "hs_code" not in record["commodity"]
        assert record["tlp"] == "AMBER" and record["category"] == "medicines"
    # Optional columns may be left out; blank lines are skipped; concealment defaults to "".
    cols = [c for c in GOOD if c in REQUIRED]
    data = make_csv([GOOD, GOOD], columns=cols).replace(b"\r\n", b"\r\n\r\n", 2)
    parsed = parse_csv(data, now_ms=NOW)
    assert parsed.errors == [] and [line for line, _ in parsed.records] == [3, 5]
    assert parsed.records[0][1]["concealment"] == ""


def test_every_bad_row_is_reported_with_line_and_column():
    rows = [
        GOOD,
        {**GOOD, "route_departure": "XX"},                              # line 3
        GOOD,
        {**GOOD, "office_name": ""},                                     # line 5
        {**GOOD, "conveyance_container": "CSQU3054384"},                 # line 6
        {**GOOD, "route_transit": "TG;ZZ"},                              # line 7
        {**GOOD, "date": "2999-01-01"},                                  # line 8
        {**GOOD, "quantity_amount": "1,200"},                            # line 9
        {**GOOD, "tlp": "PURPLE"},                                       # line 10
    ]
    cols = [*GOOD, "value_amount", "value_currency"]
    rows.append({**GOOD, "value_amount": "100"})                         # line 11
    assert messages(make_csv(rows, columns=cols)) == [
        "line 3, column route_departure: 'XX' is not an ISO 3166 country code",
        "line 5, column office_name: is required (the cell is empty)",
        "line 6, column conveyance_container: 'CSQU3054384' has a wrong check digit (expected 3)",
        "line 7, column route_transit: entry 2: 'ZZ' is not an ISO 3166 country code",
        f"line 8, column date: '2999-01-01' is in the future (today is {time.strftime('%Y-%m-%d', time.gmtime(NOW / 1000 + 14 * 3600))})",
        "line 9, column quantity_amount: '1,200' is not a decimal string such as '1250.50'",
        "line 10, column tlp: 'PURPLE' is not one of CLEAR, GREEN, AMBER, AMBER+STRICT, RED",
        "line 11, column value_currency: is required (the cell is empty)",
    ]


def test_header_problems():
    cols = [*GOOD, "weight", "tlp"]
    data = make_csv([GOOD], columns=[c for c in cols if c != "office_locode"])
    assert messages(data) == [
        "line 1, column weight: unknown column; the columns are listed in docs/csv-import.md",
        "line 1, column tlp: appears twice in the header",
        "line 1, column office_locode: required column is missing from the header",
    ]
    assert messages(make_csv([GOOD]).replace(b",", b";")) == [
        "line 1: the columns are separated by ';'; save the file with commas ('CSV UTF-8 (comma delimited)')"]
    assert messages(b"") == ["line 1: the file is empty; the first line must name the columns "
                             "(see docs/seizures-template.csv)"]
    assert messages(make_csv([])) == ["line 2: the file has no rows below the header; nothing to import"]


def test_cell_counts_quotes_encoding_ids():
    good = make_csv([GOOD]).decode()
    header, row = good.splitlines()[:2]
    data = "\r\n".join([header, row + ",extra", row[: row.rindex(",")], row]).encode()
    assert messages(data) == [
        f"line 2: has {len(GOOD) + 1} cells but the header has {len(GOOD)} columns (a missing or extra comma, "
        "or an unquoted comma in a text?)",
        f"line 3: has {len(GOOD) - 1} cells but the header has {len(GOOD)} columns (a missing or extra comma, "
        "or an unquoted comma in a text?)",
    ]
    # A quoted narrative spanning lines: the next row's line number is still the file's line.
    cols = [*GOOD, "narrative"]
    data = make_csv([{**GOOD, "narrative": "first line\nsecond, with a comma"}, {**GOOD, "route_destination": "QQ"}],
                    columns=cols)
    assert messages(data) == ["line 4, column route_destination: 'QQ' is not an ISO 3166 country code"]
    # Not UTF-8 (a Latin-1 export): the line of the first bad byte.
    latin = make_csv([GOOD, {**GOOD, "office_name": "Cotonou Port Autonome"}]).replace(b"Autonome", b"Aut\xe9nome")
    assert messages(latin) == ["line 3: byte 0xE9 is not UTF-8; save the file as 'CSV UTF-8 (comma delimited)'"]
    # Ids: must be UUIDs, and not twice in one file.
    rid = "3f0c9a52-6d1e-4b8a-9c61-0f7f4b2d8e11"
    data = make_csv([{**GOOD, "id": rid}, {**GOOD, "id": "42"}, {**GOOD, "id": rid}], columns=["id", *GOOD])
    assert messages(data) == [
        "line 3, column id: '42' is not a UUID in lower-case 8-4-4-4-12 hex form",
        f"line 4, column id: '{rid}' is used again (first on line 2)",
    ]


# --- through the node: the API and `cenmesh import` ---------------------------------------------

@pytest.fixture
async def ng(tmp_path):
    fed = Federation(tmp_path)
    member = fed.add("Nigeria", "NG", "national", ["WCA"])
    await fed.start()
    yield member
    await fed.stop()


def count(member, sql: str) -> int:
    conn = sqlite3.connect(member.home / "node.db")
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


async def post_csv(session, member, data: bytes, query: str = "", token: str | None = None,
                   content_type: str = "text/csv"):
    async with session.post(member.url + "/api/v1/import" + query, data=data,
                            headers={"Authorization": f"Bearer {token or member.token}",
                                     "Content-Type": content_type}) as resp:
        return resp.status, await resp.json()


async def test_import_is_all_or_nothing(ng):
    bad = make_csv([GOOD] * 5 + [{**GOOD, "route_departure": "XX"}] + [GOOD] * 3 + [{**GOOD, "date": "24/03/2020"}])
    async with aiohttp.ClientSession() as s:
        status, body = await post_csv(s, ng, bad)
        assert status == 400 and body["error"] == "invalid-csv", body
        assert body["rows"] == 10
        assert [(e["line"], e["column"]) for e in body["errors"]] == [(7, "route_departure"), (11, "date")]
        assert body["errors"][0]["message"] == "line 7, column route_departure: 'XX' is not an ISO 3166 country code"
        assert "2 lines of the file are wrong; nothing was imported" in body["detail"]
        assert count(ng, "SELECT count(*) FROM drafts") == 0

        status, body = await post_csv(s, ng, make_csv([GOOD]), content_type="application/json")
        assert status == 415 and "text/csv" in body["detail"]

        example = (DOCS / "seizures-example.csv").read_bytes()
        status, body = await post_csv(s, ng, example)
        assert status == 201, body
        assert body["rows"] == body["imported"] == len(body["ids"]) == 10 and body["shared"] is None
        assert count(ng, "SELECT count(*) FROM drafts WHERE shared_bundle IS NULL") == 10
        assert count(ng, "SELECT count(*) FROM bundles") == 0  # kept locally, not shared
        async with s.get(ng.url + "/api/v1/records?local=1", headers={"Authorization": f"Bearer {ng.token}"}) as resp:
            listed = await resp.json()
        assert {d["id"] for d in listed["drafts"]} == set(body["ids"])

        # Share on import: the audience is checked first, then every row is sealed to it.
        status, refused = await post_csv(s, ng, make_csv([GOOD]), "?share=op:NOPE")
        assert status == 409 and "no roster for op:NOPE" in refused["detail"], refused
        assert count(ng, "SELECT count(*) FROM drafts") == 10  # nothing more kept
        status, shared = await post_csv(s, ng, make_csv([GOOD, GOOD]), "?share=region:WCA")
        assert status == 201, shared
        assert shared["shared"]["audience"] == "region:WCA" and len(shared["shared"]["bundles"]) == 2
        assert count(ng, "SELECT count(*) FROM records") == 2
        assert count(ng, "SELECT count(*) FROM drafts WHERE shared_bundle IS NOT NULL") == 2

        # A row naming an id already shared is refused (edit it instead); nothing else is kept.
        again = make_csv([GOOD, {**GOOD, "id": shared["ids"][1]}], columns=["id", *GOOD])
        status, body = await post_csv(s, ng, again)
        assert status == 400 and body["errors"][0]["line"] == 3 and body["errors"][0]["column"] == "id"
        assert "already shared" in body["errors"][0]["error"]
        assert count(ng, "SELECT count(*) FROM drafts") == 12

    audit = [r[0] for r in sqlite3.connect(ng.home / "node.db").execute("SELECT action FROM audit ORDER BY seq")]
    assert audit.count("import") == 2 and "share" in audit


async def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_cenmesh_import_command(ng, capsys, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_bytes(make_csv([GOOD, {**GOOD, "quantity_unit": "tonnes"}, GOOD, {**GOOD, "office_locode": "NG"}]))
    code, out, err = await run_cli(capsys, "import", str(bad), "--home", str(ng.home))
    assert code == 1
    assert "2 of 4 rows are wrong; nothing was imported" in err
    assert "line 3, column quantity_unit: 'tonnes' is not one of pieces, kg, g, l, cartons, packages" in err
    assert "line 5, column office_locode: 'NG' is not a UN/LOCODE (5 characters, CCLLL)" in err
    assert count(ng, "SELECT count(*) FROM drafts") == 0

    code, out, err = await run_cli(capsys, "import", str(DOCS / "seizures-example.csv"), "--home", str(ng.home),
                                   "--share", "region:WCA")
    assert code == 0, err
    assert "validated 10 rows; imported 10 seizures" in err and "shared 10 seizures to region:WCA" in err
    ids = out.split()
    assert len(ids) == 10 and count(ng, "SELECT count(*) FROM records WHERE kind='seizure'") == 10

    code, out, err = await run_cli(capsys, "import", str(tmp_path / "missing.csv"), "--home", str(ng.home))
    assert code == 1 and "missing.csv" in err
    code, out, err = await run_cli(capsys, "import", str(bad), "--home", str(ng.home), "--json")
    assert code == 1 and out == "" and "2 of 4 rows are wrong" in err
    code, out, err = await run_cli(capsys, "import", str(DOCS / "seizures-example.csv"), "--home", str(ng.home),
                                   "--json")
    assert code == 0 and json.loads(out)["imported"] == 10 and err == ""  # no progress lines with --json
