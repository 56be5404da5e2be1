"""Users, roles and the audit chain: one real node on loopback, the real `cenmesh` CLI in-process."""

from __future__ import annotations

import asyncio
import json
import sqlite3

import aiohttp
import pytest

from node import cli
from node.auth import PERMISSIONS, ROLES
from tests.federation.harness import Federation, make_seizure


@pytest.fixture
async def ng(tmp_path):
    fed = Federation(tmp_path)
    member = fed.add("Nigeria", "NG", "national", ["WCA"])
    await fed.start()
    yield member
    await fed.stop()


async def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`cenmesh ARGV` in a thread (the node it may call runs on this event loop)."""
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def call(session, member, method, path, token, body=None):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with session.request(method, member.url + path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def add_user(capsys, member, name, role) -> str:
    code, out, err = await run_cli(capsys, "user", "add", name, "--role", role, "--home", str(member.home))
    assert code == 0, err
    made = json.loads(out)
    assert made["role"] == role and made["token"].startswith("cm_")
    return str(made["token"])


def test_permission_table():
    assert set(PERMISSIONS) == set(ROLES)
    assert PERMISSIONS["officer"] == {"record", "share", "feedback", "search", "view"}
    assert PERMISSIONS["analyst"] == {"search", "view", "export", "statistics"}
    assert PERMISSIONS["admin"] >= PERMISSIONS["officer"] | PERMISSIONS["analyst"] | {"admin"}


async def test_roles_are_enforced_and_every_action_is_audited(ng, capsys):
    officer = await add_user(capsys, ng, "alice", "officer")
    analyst = await add_user(capsys, ng, "bob", "analyst")
    stored = sqlite3.connect(ng.home / "node.db").execute("SELECT hash FROM tokens WHERE name='alice'").fetchone()[0]
    assert officer not in stored and len(stored) == 64  # only the hash is kept

    async with aiohttp.ClientSession() as s:
        # No token, a wrong token: 401 JSON, before any handler.
        status, body = await call(s, ng, "GET", "/api/v1/records", None)
        assert status == 401 and body["error"] == "unauthorized" and "Bearer" in body["detail"]
        status, body = await call(s, ng, "GET", "/api/v1/records", "cm_not-a-token")
        assert status == 401 and "unknown token" in body["detail"]

        # The officer records and shares; may not administer.
        status, made = await call(s, ng, "POST", "/api/v1/records", officer, {"kind": "seizure", "record": make_seizure()})
        assert status == 201, made
        rid = made["id"]
        status, shared = await call(s, ng, "POST", f"/api/v1/records/{rid}/share", officer,
                                    {"audience": f"nodes:{ng.node_id}"})
        assert status == 201, shared
        status, body = await call(s, ng, "GET", "/api/v1/users", officer)
        assert status == 403 and body["error"] == "forbidden", body
        assert "'alice' is 'officer'" in body["detail"] and "admin" in body["detail"]
        status, body = await call(s, ng, "POST", "/api/v1/groups", officer,
                                  {"name": "op:X", "members": [], "not_after": "2999-01-01"})
        assert status == 403

        # The analyst reads, but may not record, share or answer.
        status, body = await call(s, ng, "GET", f"/api/v1/records/{rid}", analyst)
        assert status == 200 and body["record"]["id"] == rid
        status, body = await call(s, ng, "POST", "/api/v1/records", analyst, {"kind": "seizure", "record": make_seizure()})
        assert status == 403 and "'record' needs one of the roles admin, officer" in body["detail"], body
        status, body = await call(s, ng, "POST", f"/api/v1/records/{rid}/share", analyst, {"audience": "federation"})
        assert status == 403
        status, body = await call(s, ng, "POST", f"/api/v1/alerts/{rid}/feedback", analyst, {"outcome": "acknowledged"})
        assert status == 403
        status, body = await call(s, ng, "POST", "/api/v1/import", analyst)
        assert status == 403

        # The admin token (the CLI's default) may do everything, users included.
        status, body = await call(s, ng, "GET", "/api/v1/users", ng.token)
        assert status == 200 and [u["name"] for u in body["users"]] == ["admin", "alice", "bob"]
        assert all("hash" not in u for u in body["users"])

        # Disabling takes effect on the very next request.
        code, out, err = await run_cli(capsys, "user", "disable", "alice", "--home", str(ng.home))
        assert code == 0 and "disabled" in out, err
        status, body = await call(s, ng, "GET", "/api/v1/records", officer)
        assert status == 401 and "'alice' is disabled" in body["detail"]
        code, out, err = await run_cli(capsys, "user", "disable", "nobody", "--home", str(ng.home))
        assert code == 1 and "'nobody': no such user" in err

        # An admin disables over the API too.
        status, body = await call(s, ng, "POST", "/api/v1/users/bob/disable", ng.token)
        assert status == 200 and body["disabled"] is True
        status, body = await call(s, ng, "GET", "/api/v1/records", analyst)
        assert status == 401

    code, out, err = await run_cli(capsys, "user", "list", "--home", str(ng.home), "--json")
    assert code == 0 and {u["name"]: u["disabled"] for u in json.loads(out)} == {"admin": False, "alice": True, "bob": True}
    code, out, err = await run_cli(capsys, "user", "add", "alice", "--role", "officer", "--home", str(ng.home))
    assert code == 1 and "exists already" in err

    # The audit log: who, what, when, from where, in order.
    code, out, err = await run_cli(capsys, "audit", "--home", str(ng.home), "--json", "--limit", "1000")
    assert code == 0, err
    log = json.loads(out)
    seen = [(e["user"], e["role"], e["action"], e["target"]) for e in log]
    assert ("alice", "officer", "record", rid) in seen
    assert ("alice", "officer", "share", rid) in seen
    assert ("bob", "analyst", "view", rid) in seen
    assert ("admin", "admin", "admin", None) in seen  # the user list
    assert ("admin", "admin", "admin", "bob") in seen  # disabled over the API
    cli_entries = [e for e in log if e["source"] == "cli"]
    assert [e["target"] for e in cli_entries] == ["alice", "bob", "alice"]  # added, added, disabled
    assert all(e["source"] == "127.0.0.1" for e in log if e["user"] in ("alice", "bob"))
    assert [e["seq"] for e in log] == sorted(e["seq"] for e in log)
    share = next(e for e in log if e["action"] == "share")
    assert f"nodes:{ng.node_id}" in share["detail"] and shared["bundle"] in share["detail"]
    # Refused calls did nothing, so they left no entry as if they had.
    assert not any(e["user"] == "bob" and e["action"] in ("record", "share") for e in log)

    code, out, err = await run_cli(capsys, "audit", "--home", str(ng.home), "--user", "bob")
    assert code == 0 and "analyst" in out and "alice" not in out
    code, out, err = await run_cli(capsys, "audit", "--home", str(ng.home), "--verify")
    assert code == 0 and f"audit chain intact: {len(log)} entries" in out


def _tamper(member, *statements: str) -> None:
    conn = sqlite3.connect(member.home / "node.db", isolation_level=None)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


@pytest.mark.parametrize(("statements", "bad", "why"), [
    (["UPDATE audit SET user = 'mallory' WHERE seq = 3"], 3, "content was changed"),
    (["UPDATE audit SET detail = 'nothing to see' WHERE seq = 2"], 2, "content was changed"),
    (["DELETE FROM audit WHERE seq = 2"], 3, "entries 2..2 are missing"),
    (["DELETE FROM audit WHERE seq = 4"], 4, "entries after 3 were deleted"),
])
async def test_verify_names_the_first_tampered_entry(ng, capsys, statements, bad, why):
    async with aiohttp.ClientSession() as s:
        for _ in range(4):
            status, _body = await call(s, ng, "GET", "/api/v1/records", ng.token)
            assert status == 200
    # The triggers refuse changes made the ordinary way.
    conn = sqlite3.connect(ng.home / "node.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET user = 'x' WHERE seq = 1")
    conn.close()
    code, out, _ = await run_cli(capsys, "audit", "--home", str(ng.home), "--verify")
    assert code == 0 and "intact: 4 entries" in out

    _tamper(ng, *statements)
    code, out, err = await run_cli(capsys, "audit", "--home", str(ng.home), "--verify")
    assert code == 1
    assert f"audit chain BROKEN at entry {bad}: " in err and why in err, err
    code, out, err = await run_cli(capsys, "audit", "--home", str(ng.home), "--verify", "--json")
    assert code == 1 and json.loads(out)["first_bad"] == bad


async def test_rewriting_an_entry_with_a_correct_hash_breaks_the_next_link(ng, capsys):
    from node.audit import entry_hash

    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            await call(s, ng, "GET", "/api/v1/inbox", ng.token)
    conn = sqlite3.connect(ng.home / "node.db")
    conn.row_factory = sqlite3.Row
    r = conn.execute("SELECT * FROM audit WHERE seq = 2").fetchone()
    forged = entry_hash(r["prev"], r["at"], "mallory", r["role"], r["action"], r["target"], r["detail"], r["source"])
    conn.close()
    _tamper(ng, f"UPDATE audit SET user = 'mallory', hash = '{forged}' WHERE seq = 2")
    code, _, err = await run_cli(capsys, "audit", "--home", str(ng.home), "--verify")
    assert code == 1 and "BROKEN at entry 3: does not point at the entry before it" in err, err
