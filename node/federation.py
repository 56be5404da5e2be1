"""The node-to-node API of PROTOCOL.md sections 4 and 5, independent of the HTTP library.

``authenticate`` checks a request's signature, freshness and nonce before any
handler runs; ``handle`` answers one authenticated request. The aiohttp
server (node/server.py) and the in-memory transport both call these two, so
a simulation exercises exactly the code a real deployment runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crypto.httpsig import verify_request
from node.context import Node
from node.ingest import ingest
from node.store import bundles as bundle_store
from node.store.db import StoreFull
from protocol.audience import may_receive_header
from protocol.canonical import canonical, parse_json
from protocol.errors import InvalidMessage, InvalidSignature, MalformedJSON
from protocol.sync import FeedPage, FetchRequest, PushRequest, parse_feed_query

log = logging.getLogger("cenmesh.federation")

PREFIX = "/federation/v1"
MAX_AGE_S = 300
# A fetch names at most 1000 ids of 43 characters: its body is never larger than this.
MAX_FETCH_BODY = 1000 * 46 + 64
# The densest part of a real push is a recipient entry, {"node":"<25>","wrap":"<107>"}: about
# 50 bytes per JSON value, and a whole bundle has more. A body with a value every few bytes
# ({},{},... or [[[[...) is an attack on the parser: 8 MB of it would take seconds and hundreds
# of MB to parse. Counting "{", "[" and "," bounds the values before anything is parsed.
MIN_BYTES_PER_VALUE = 16
# Bodies larger than this are parsed in a thread, so the event loop keeps answering meanwhile.
PARSE_IN_THREAD = 256 * 1024


@dataclass
class Reply:
    """A transport-neutral answer: status, JSON body (canonical bytes) and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


def reply(status: int, obj: Any, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, canonical(obj), headers or {})


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Reply:
    """Every error answer of section 6."""
    return reply(status, {"error": code, "detail": detail}, headers)


class NonceCache:
    """Nonces seen within the signature window; a repeat is a replay.

    Bounded: entries leave when their ``expires`` passes, and at most
    ``limit`` are held (the oldest go first), so a flood cannot grow memory.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._seen: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.limit = limit

    def check_and_add(self, keyid: str, nonce: str, expires_s: int, now_s: int) -> bool:
        while self._seen:
            _, exp = next(iter(self._seen.items()))
            if exp > now_s and len(self._seen) < self.limit:
                break
            self._seen.popitem(last=False)
        if (keyid, nonce) in self._seen:
            return False
        self._seen[(keyid, nonce)] = expires_s
        return True


class RateLimiter:
    """A token bucket per peer: ``per_minute`` requests, bursting to the same number."""

    def __init__(self, per_minute: int) -> None:
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, peer: str, now_s: float) -> float:
        """0 when allowed, else the seconds to wait."""
        tokens, last = self._buckets.get(peer, (self.capacity, now_s))
        tokens = min(self.capacity, tokens + (now_s - last) * self.rate)
        if tokens >= 1:
            self._buckets[peer] = (tokens - 1, now_s)
            return 0.0
        self._buckets[peer] = (tokens, now_s)
        return (1 - tokens) / self.rate


def check_value_count(body: bytes) -> None:
    """Refuse (MalformedJSON) a request body that holds far more JSON values than a real request
    of its size could, before any parser builds them."""
    values = body.count(b"{") + body.count(b"[") + body.count(b",")
    if values > 64 + len(body) // MIN_BYTES_PER_VALUE:
        raise MalformedJSON(f"{values} JSON values in {len(body)} bytes: more than a federation request holds")


def parse_bounded(body: bytes) -> Any:
    """A request body's JSON, after ``check_value_count``."""
    check_value_count(body)
    return parse_json(body)


def push_items(body: bytes) -> list[Any]:
    """The bundles of a push body (``PushRequest.items_of``), after ``check_value_count``."""
    check_value_count(body)
    return PushRequest.items_of(body)


async def parse_body(body: bytes) -> Any:
    """``parse_bounded``, in a thread for large bodies."""
    if len(body) > PARSE_IN_THREAD:
        return await asyncio.to_thread(parse_bounded, body)
    return parse_bounded(body)


class Federation:
    """One node's federation endpoint: authentication state plus the handlers."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.nonces = NonceCache()
        self.limiter = RateLimiter(node.settings.server.requests_per_minute)
        self.on_new_urgent: list[Any] = []  # callbacks(urgent bundles, via) for relaying
        # The last directory answer and the descriptors it was made of (held, so `is` is a safe test).
        self._directory_answer: tuple[tuple[Any, ...], bytes, str] = ((), b"", "")

    def public_key_for(self, keyid: str) -> bytes | None:
        d = self.node.directory.get(keyid)
        if d is None or d.revoked or keyid == self.node.node_id:
            return None
        return d.identity_key

    def authenticate(self, *, method: str, authority: str, path: str, query: str, body: bytes,
                     headers: Mapping[str, str]) -> str | Reply:
        """The caller's node id, or the 401/429 Reply to send instead; nothing else runs first."""
        now_s = int(self.node.clock())
        try:
            verified = verify_request(method=method, authority=authority, path=path, query=query, body=body,
                                      headers=headers, now_s=now_s, public_key_for=self.public_key_for,
                                      max_age_s=MAX_AGE_S)
        except InvalidSignature as exc:
            log.info("refused %s %s: %s", method, path, exc)
            return error(401, "bad-signature", exc.reason)
        if not self.nonces.check_and_add(verified.keyid, verified.nonce, verified.expires + MAX_AGE_S, now_s):
            return error(401, "bad-signature", "replayed")
        wait = self.limiter.allow(verified.keyid, self.node.clock())
        if wait:
            return error(429, "slow-down", "too many requests", {"Retry-After": str(max(1, int(wait + 0.999)))})
        return verified.keyid

    def sees_all(self, caller: str) -> bool:
        return may_receive_header(caller, (), self.node.directory)

    async def handle(self, caller: str | None, method: str, path: str, query: Mapping[str, str], body: bytes,
                     headers: Mapping[str, str] | None = None) -> Reply:
        """Answer one request whose caller is authenticated (None only for GET /descriptor)."""
        route = path.removeprefix(PREFIX)
        try:
            if method == "GET" and route == "/descriptor":
                return reply(200, self.node.descriptor.obj)
            if caller is None:
                return error(401, "bad-signature", "missing")
            if method == "GET" and route == "/directory":
                return self._directory((headers or {}).get("If-None-Match"))
            if method == "GET" and route == "/feed":
                return await self._feed(caller, query)
            if method == "POST" and route == "/fetch":
                return await self._fetch(caller, body)
            if method == "POST" and route == "/push":
                return await self._push(caller, body)
        except (InvalidMessage, MalformedJSON) as exc:
            return error(400, "bad-request", str(exc))
        except StoreFull as exc:
            log.error("store full: %s", exc)
            return error(503, "store-full", "this node cannot store more bundles now", {"Retry-After": "60"})
        return error(404, "unknown", f"no {method} {path}")

    def _directory(self, if_none_match: str | None) -> Reply:
        # Every peer asks for this now and then, and a hub's directory holds every member: encoding
        # and hashing it is done again only when a descriptor in it has changed.
        current = tuple(self.node.directory[n] for n in sorted(self.node.directory))
        held, body, etag = self._directory_answer
        if len(held) != len(current) or any(a is not b for a, b in zip(held, current, strict=True)):
            body = canonical({"descriptors": [d.obj for d in current]})
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            self._directory_answer = (current, body, etag)
        if if_none_match == etag:
            return Reply(304, b"", {"ETag": etag})
        return Reply(200, body, {"ETag": etag})

    async def _feed(self, caller: str, query: Mapping[str, str]) -> Reply:
        after, limit = parse_feed_query(query.get("after"), query.get("limit"))
        sl = await self.node.store.read(bundle_store.feed, caller, sees_all=self.sees_all(caller),
                                        after=after, limit=limit)
        answer = reply(200, {"epoch": self.node.store.epoch, "items": sl.items, "next": sl.next, "more": sl.more})
        # Our own answer must follow the contract too. Checked from its bytes, as a puller reads it
        # (a typed decode): building and checking each item as a dataclass cost the serving node
        # about a fifth of its CPU in a catch-up (py-spy, scripts/bench sync).
        FeedPage.from_body(answer.body)
        return answer

    async def _fetch(self, caller: str, body: bytes) -> Reply:
        if len(body) > MAX_FETCH_BODY:
            return error(413, "too-large", f"a fetch body is at most {MAX_FETCH_BODY} bytes (1000 ids)")
        req = FetchRequest.from_json(await parse_body(body))
        raws = await self.node.store.read(bundle_store.bundles_for, list(req.ids), caller, sees_all=self.sees_all(caller))
        # Stored bytes are canonical already: splice them instead of parsing and re-encoding.
        return Reply(200, b'{"bundles":[' + b",".join(raws) + b"]}")

    async def _push(self, caller: str, body: bytes) -> Reply:
        bundles = await asyncio.to_thread(push_items, body) if len(body) > PARSE_IN_THREAD else push_items(body)
        result = await ingest(self.node, bundles, via=caller)
        if result.new_urgent:
            for callback in self.on_new_urgent:
                callback(result.new_urgent, caller)
        return reply(200, result.to_json())
