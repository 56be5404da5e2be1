"""Moving signed requests between nodes: the interface, an HTTP transport and an in-memory one.

``PeerClient`` signs every request (PROTOCOL.md section 5) and turns answers
into protocol messages; what carries the bytes is a ``Transport``. The
in-memory transport calls another node's ``Federation`` directly, with the
same authentication, so a test or simulation can run many nodes in one
process (DESIGN.md principle 8). aiohttp's exceptions are converted here,
in one place, to ``PeerUnavailable``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode, urlsplit

import aiohttp
from multidict import CIMultiDict

from crypto.httpsig import sign_request
from crypto.keys import IdentityKey
from node.federation import PREFIX, Federation
from protocol.canonical import b64u_encode, canonical, parse_json
from protocol.errors import CenmeshError, MalformedJSON, RemoteProtocolError
from protocol.sync import FeedPage, FetchResponse, PushResponse


class PeerUnavailable(CenmeshError):
    """The peer could not be reached or answered with an error status."""

    def __init__(self, detail: str, status: int | None = None, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


@dataclass
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str]


class Transport(Protocol):
    """Sends one request to the node at ``base_url`` and returns its answer."""

    async def send(self, base_url: str, method: str, path: str, query: str, body: bytes,
                   headers: dict[str, str]) -> Response: ...


def authority_of(base_url: str) -> str:
    """host[:port] as an HTTP client writes the Host header (default ports left out)."""
    parts = urlsplit(base_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme == "https" else 80
    return host if parts.port in (None, default) else f"{host}:{parts.port}"


class HttpTransport:
    """aiohttp client with timeouts on everything."""

    def __init__(self, timeout_s: float = 30, ssl: Any = None, keepalive_s: float = 60) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(10, timeout_s))
        # Longer than a sync interval, so an idle poll reuses its connection (no new TCP/TLS handshake).
        self._keepalive_s = keepalive_s
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0

    async def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(keepalive_timeout=self._keepalive_s, ssl=self._ssl)
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=True, connector=connector)
        return self._session

    async def send(self, base_url: str, method: str, path: str, query: str, body: bytes,
                   headers: dict[str, str]) -> Response:
        session = await self._get_session()
        url = base_url.rstrip("/") + path + (f"?{query}" if query else "")
        self.requests += 1
        self.bytes_sent += len(body)
        try:
            async with session.request(method, url, data=body if method == "POST" else None,
                                       headers=headers) as resp:
                data = await resp.read()
                self.bytes_received += len(data)
                # Header names are case-insensitive (aiohttp delivers "Etag"): keep the multidict.
                return Response(resp.status, data, CIMultiDict(resp.headers))
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerUnavailable(f"{base_url}: {type(exc).__name__}: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class MemoryTransport:
    """Delivers requests to in-process nodes registered by URL; same signatures, no sockets."""

    def __init__(self) -> None:
        self.nodes: dict[str, Federation] = {}
        self.down: set[str] = set()
        self.requests = 0
        self.bytes = 0

    def register(self, base_url: str, fed: Federation) -> None:
        self.nodes[base_url.rstrip("/")] = fed

    async def send(self, base_url: str, method: str, path: str, query: str, body: bytes,
                   headers: dict[str, str]) -> Response:
        fed = self.nodes.get(base_url.rstrip("/"))
        if fed is None or base_url.rstrip("/") in self.down:
            raise PeerUnavailable(f"{base_url}: unreachable")
        self.requests += 1
        self.bytes += len(body)
        caller: str | None = None
        if not (method == "GET" and path == PREFIX + "/descriptor"):
            outcome = fed.authenticate(method=method, authority=authority_of(base_url), path=path,
                                       query=query, body=body, headers=headers)
            if not isinstance(outcome, str):
                return Response(outcome.status, outcome.body, CIMultiDict(outcome.headers))
            caller = outcome
        q = dict(pair.split("=", 1) for pair in query.split("&") if "=" in pair)
        r = await fed.handle(caller, method, path, q, body, headers=headers)
        self.bytes += len(r.body)
        return Response(r.status, r.body, CIMultiDict(r.headers))


class PeerClient:
    """Signed federation requests from one node, decoded into protocol messages."""

    def __init__(self, identity: IdentityKey, transport: Transport, clock: Any) -> None:
        self.identity = identity
        self.transport = transport
        self.clock = clock

    async def _call(self, base_url: str, method: str, route: str, *, query: dict[str, Any] | None = None,
                    body: bytes = b"", sign: bool = True, extra: dict[str, str] | None = None) -> Response:
        path = PREFIX + route
        qs = urlencode(query or {})
        headers = {"Accept": "application/json", **(extra or {})}
        if method == "POST":
            headers["Content-Type"] = "application/json"
        if sign:
            headers.update(sign_request(method=method, authority=authority_of(base_url), path=path, query=qs,
                                        body=body, key=self.identity, now_s=int(self.clock()),
                                        nonce=b64u_encode(os.urandom(16))))
        resp = await self.transport.send(base_url, method, path, qs, body, headers)
        if resp.status >= 400:
            retry = resp.headers.get("Retry-After")
            detail = resp.body[:300].decode("utf-8", "replace")
            raise PeerUnavailable(f"{base_url}{route}: HTTP {resp.status} {detail}", resp.status,
                                  int(retry) if retry and retry.isdigit() else None)
        return resp

    @staticmethod
    def _json(resp: Response) -> Any:
        try:
            return parse_json(resp.body)
        except MalformedJSON as exc:
            raise RemoteProtocolError(f"answer is not valid JSON: {exc}") from None

    async def descriptor(self, base_url: str) -> Any:
        return self._json(await self._call(base_url, "GET", "/descriptor", sign=False))

    async def directory(self, base_url: str, etag: str | None) -> tuple[list[Any] | None, str | None]:
        """(descriptors, etag); descriptors is None when unchanged since ``etag``."""
        resp = await self._call(base_url, "GET", "/directory", extra={"If-None-Match": etag} if etag else None)
        if resp.status == 304:
            return None, etag
        obj = self._json(resp)
        if not isinstance(obj, dict) or not isinstance(obj.get("descriptors"), list):
            raise RemoteProtocolError("directory answer has no descriptors list")
        return obj["descriptors"], resp.headers.get("ETag")

    async def feed(self, base_url: str, after: int, limit: int) -> FeedPage:
        resp = await self._call(base_url, "GET", "/feed", query={"after": after, "limit": limit})
        try:
            return FeedPage.from_body(resp.body)
        except MalformedJSON as exc:
            raise RemoteProtocolError(f"answer is not valid JSON: {exc}") from None

    async def fetch(self, base_url: str, ids: list[str]) -> list[Any]:
        """The bundles the peer answers with: each its own JSON text (bytes) or, from a peer that
        writes its answer differently, a JSON object (both are what ``ingest`` takes)."""
        resp = await self._call(base_url, "POST", "/fetch", body=canonical({"ids": ids}))
        try:
            return FetchResponse.items_of(resp.body)
        except MalformedJSON as exc:
            raise RemoteProtocolError(f"answer is not valid JSON: {exc}") from None

    async def push(self, base_url: str, bundles: list[Any]) -> PushResponse:
        resp = await self._call(base_url, "POST", "/push", body=canonical({"bundles": bundles}))
        return PushResponse.from_json(self._json(resp))
