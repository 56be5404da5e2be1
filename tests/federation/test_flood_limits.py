"""A flood of large or malformed federation requests costs the node bounded memory and time.

Found by scripts/load: an unsigned or oversized body was read whole before it
was refused; 8 MB of ``{},{},...`` took seconds and hundreds of MB to parse on
the event loop; and every connection could make the node hold a maximum-size
body at once.
"""

from __future__ import annotations

import asyncio
import os
import time

import aiohttp

from crypto.keys import generate_encryption_key, generate_identity
from node.federation import MAX_FETCH_BODY, parse_bounded
from node.server import BodyBudget
from protocol.canonical import canonical
from protocol.errors import MalformedJSON
from tests.federation.harness import (
    identity_of,
    make_seizure,
    push_as,
    raw_call,
    seal_from,
    signed_headers,
)

PUSH = "/federation/v1/push"
FETCH = "/federation/v1/fetch"


def build(fed):
    hub = fed.add("WCA hub", "CI", "hub", ["WCA"])
    ng = fed.add("Nigeria", "NG", "national", ["WCA"])
    gh = fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    return hub, ng, gh


async def head_only(member, headers: dict[str, str]) -> bytes:
    """Send a POST's head (no body bytes at all) and return the status line the node answers with."""
    host, port = member.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [f"POST {PUSH} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json",
                 *(f"{k}: {v}" for k, v in headers.items()), "", ""]
        writer.write("\r\n".join(lines).encode())
        await writer.drain()
        # The node must answer from the head alone: it never gets a body to wait for.
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()


async def test_oversized_or_unsigned_bodies_are_refused_before_they_are_read(fed):
    _hub, ng, gh = build(fed)
    await fed.start()
    limit = gh.node.settings.server.max_body_bytes
    signed = signed_headers(identity_of(ng), gh, "POST", PUSH, body=b"x")
    assert (await head_only(gh, {**signed, "Content-Length": str(limit + 1)})).startswith(b"HTTP/1.1 413")
    assert (await head_only(gh, {"Content-Length": str(limit // 2)})).startswith(b"HTTP/1.1 401")
    async with aiohttp.ClientSession() as s:
        status, answer = await raw_call(s, gh, "POST", PUSH, body=b'{"bundles":[]}')
        assert status == 401 and answer == {"error": "bad-signature", "detail": "missing"}, answer


async def test_bodies_of_tiny_json_values_are_refused_unparsed(fed):
    _hub, ng, gh = build(fed)
    await fed.start()
    tiny = b'{"bundles":[' + b"{}," * 400_000 + b"{}]}"  # 1.2 MB, 400,000 objects
    deep = b"[" * 500_000 + b"]" * 500_000
    ids = canonical({"ids": ["A" * 43] * 1100})
    async with aiohttp.ClientSession() as s:
        for body in (tiny, deep):
            headers = signed_headers(identity_of(ng), gh, "POST", PUSH, body=body)
            t0 = time.perf_counter()
            status, answer = await raw_call(s, gh, "POST", PUSH, body=body, headers=headers)
            took = time.perf_counter() - t0
            assert status == 400 and "JSON values" in answer["detail"], answer
            print(f"{len(body)} bytes refused in {took * 1000:.0f} ms")
        assert len(ids) > MAX_FETCH_BODY
        status, answer = await raw_call(s, gh, "POST", FETCH, body=ids,
                                        headers=signed_headers(identity_of(ng), gh, "POST", FETCH, body=ids))
        assert status == 413 and answer["error"] == "too-large", answer
        # Real pushes pass the bound, large ones (parsed in a thread) too.
        bundles = [seal_from(ng, [gh]) for _ in range(200)]
        status, answer = await push_as(s, ng, gh, bundles)
        assert status == 200 and len(answer["accepted"]) == 200, answer
        assert len(canonical({"bundles": [b.obj for b in bundles]})) > 256 * 1024


def test_the_densest_real_push_passes_the_bound(fed):
    """A bundle to the protocol's 512 recipients is the most values per byte a real push holds."""
    _hub, ng, gh = build(fed)
    extra = {generate_identity(os.urandom).node_id: generate_encryption_key(os.urandom).public for _ in range(510)}
    bundle = seal_from(ng, [gh], make_seizure(concealment="x", narrative="x"), extra_keys=extra)
    assert len(bundle.obj["recipients"]) == 512
    body = canonical({"bundles": [bundle.obj] * 3})
    assert parse_bounded(body)["bundles"][0] == bundle.obj
    try:
        parse_bounded(b'{"bundles":[' + b"{}," * 1000 + b"{}]}")
    except MalformedJSON as exc:
        assert "JSON values" in str(exc)
    else:
        raise AssertionError("a body of tiny values passed")


async def test_body_budget_makes_large_bodies_wait_their_turn():
    budget = BodyBudget(2)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with budget.hold(1):
            order.append(f"{name} in")
            await release.wait()
        order.append(f"{name} out")

    first = [asyncio.create_task(hold(n)) for n in ("a", "b")]
    await asyncio.sleep(0)
    third = asyncio.create_task(hold("c"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert order == ["a in", "b in"] and budget.used == 2  # c waits: the budget is spent
    release.set()
    await asyncio.gather(*first, third)
    assert order.index("c in") > order.index("a out") and budget.used == 0
    async with budget.hold(10):  # a request larger than the whole budget still runs, alone
        assert budget.used == 2
