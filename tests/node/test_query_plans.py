"""Every statement that ingest runs stays an index lookup, whatever the store holds.

Two of them once walked a table that grows with the store: the fetch of a
national caller (see test_serving_queries.py) and the search index's re-read
of the records just written, which SQLite answered by walking every record
of the kind (3 ms a batch at 4,000 records, and growing). Here a real node
takes in a batch with every kind of rule in it (new records, a second
version, feedback, retractions before and after their record), every
statement the store's writer runs is captured as run, and SQLite's plan for
each is read: none may scan a table that grows with the store, or look up
records by kind alone.
"""

from __future__ import annotations

import sqlite3

from node.outbox import complete
from tests.node.test_search import Sender, alert, net, seizure

__all__ = ["net"]  # the fixture, used by name

GROWING = ("bundles", "bundle_recipients", "records", "record_versions", "record_facets", "records_fts")


def _bad_steps(conn: sqlite3.Connection, sql: str) -> list[str]:
    head = sql.lstrip().split(None, 1)[0].upper()
    if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH", "REPLACE"):
        return []
    try:
        plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql)]
    except sqlite3.Error:  # statements on the FTS5 shadow tables' own syntax, say
        return []
    bad = []
    for step in plan:
        words = step.split()
        if words[:1] == ["SCAN"] and len(words) > 1 and words[1] in GROWING:
            bad.append(step)
        if "records_kind_created (kind=?)" in step:  # every record of a kind
            bad.append(step)
    return bad


async def test_ingest_runs_no_statement_that_walks_the_store(net) -> None:
    ng = net.members["Nigeria"]
    gh = Sender(net, "Ghana")
    base = Sender.clock + 60_000
    # Some records to walk past, had a statement walked.
    await gh.send_many([("seizure", seizure(), base + i) for i in range(300)])
    first = complete(seizure(commodity={"description": "capsules", "hs_code": "300490"}))
    later = complete(seizure())
    the_alert = complete(alert(title="Capsules expected at Apapa"))
    items = [
        ("retract", {"ref": later["id"], "reason": "entered twice"}, base + 1000),  # before its record
        ("seizure", first, base + 1001),
        ("alert", the_alert, base + 1002),
        ("seizure", later, base + 1003),
        ("feedback", {"ref": the_alert["id"], "outcome": "acknowledged"}, base + 1004),
        ("seizure", {**first, "version": 2}, base + 1005),
        ("retract", {"ref": first["id"], "reason": "wrong office"}, base + 1006),
        *[("seizure", seizure(), base + 2000 + i) for i in range(100)],
    ]
    assert ng.node is not None
    conn = ng.node.store._write_conn
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    try:
        await gh.send_many(items)
    finally:
        conn.set_trace_callback(None)
    assert len(statements) > 10
    bad = {sql[:300]: steps for sql in set(statements) if (steps := _bad_steps(conn, sql))}
    assert not bad, bad
