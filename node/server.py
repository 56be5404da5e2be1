"""The aiohttp application: federation API, officer API, and their error mapping.

``make_app(node)`` wires every long-lived resource through ``cleanup_ctx``;
``signature_middleware`` authenticates each federation request before any
handler runs; aiohttp's own errors are converted to the JSON errors of
PROTOCOL.md section 6 in one place.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from node.context import Node
from node.federation import PREFIX, Federation, Reply
from node.store.db import StoreFull

log = logging.getLogger("cenmesh.server")

NODE_KEY = web.AppKey("node", Node)
FEDERATION_KEY = web.AppKey("federation", Federation)
CALLER_KEY = web.RequestKey("caller", str)
BODY_KEY = web.RequestKey("body", bytes)

# Bodies up to this size are read without asking the budget: a sync peer's feed, fetch and push
# requests are this small, so a flood of large bodies never makes them wait.
SMALL_BODY = 256 * 1024
# How many maximum-size bodies the node holds at once (read, inflated, parsed); more wait their turn.
BUDGET_BODIES = 4
SIGNATURE_HEADERS = ("Signature-Input", "Signature", "Content-Digest")


class BodyBudget:
    """Bytes of large federation request bodies held at once; a request waits until its share is free.

    Without it, every connection may make the node buffer ``max_body_bytes``
    (and inflate and parse it) at the same time: memory would grow with the
    number of connections a flooder opens. Waiting requests hold a socket, not
    memory: TCP holds their bytes back at the sender.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._cond = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, size: int) -> AsyncIterator[None]:
        size = min(size, self.limit)
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + size <= self.limit)
            self.used += size
        try:
            yield
        finally:
            async with self._cond:
                self.used -= size
                self._cond.notify_all()


BUDGET_KEY = web.AppKey("body-budget", BodyBudget)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error answer (PROTOCOL.md section 6)."""
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


def to_response(r: Reply) -> web.Response:
    if r.status == 304:
        return web.Response(status=304, headers=r.headers)
    return web.Response(status=r.status, body=r.body, content_type="application/json", headers=r.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map aiohttp's HTTP exceptions and unexpected failures to JSON errors."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        return json_error(413, "too-large", "request body is larger than this node accepts")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason.lower().replace(" ", "-"), exc.text or exc.reason)
    except StoreFull as exc:  # any handler's write (a draft, the audit log): the cause, not "internal"
        log.error("store full on %s %s: %s", request.method, request.path, exc)
        return json_error(503, "store-full", str(exc), {"Retry-After": "60"})
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return json_error(500, "internal", "the node failed to answer; see its log")


@web.middleware
async def signature_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate every federation request except GET /descriptor, before its handler."""
    if not request.path.startswith(PREFIX + "/") or (request.method == "GET" and request.path == PREFIX + "/descriptor"):
        return await handler(request)
    # Refusals that need no body come before reading it: a flood of large unsigned or oversized
    # bodies then costs the node neither their bytes nor the time to read them.
    limit = request.app[NODE_KEY].settings.server.max_body_bytes
    length = request.content_length
    if length is not None and length > limit:
        return json_error(413, "too-large", "request body is larger than this node accepts")
    if any(name not in request.headers for name in SIGNATURE_HEADERS):
        return json_error(401, "bad-signature", "missing")  # what verify_request answers, without the read
    gzipped = request.headers.get("Content-Encoding", "identity").lower() == "gzip"
    # A gzip body may inflate to the limit, and a chunked one may be as long: both count as the limit.
    size = limit if gzipped or (length is None and request.body_exists) else (length or 0)
    async with request.app[BUDGET_KEY].hold(0 if size <= SMALL_BODY and not gzipped else size):
        return await _authenticated(request, handler, limit)


async def _authenticated(request: web.Request, handler: Handler, limit: int) -> web.StreamResponse:
    # The runner does not decompress (see make_runner): Content-Digest covers the bytes as sent
    # (RFC 9530), so the signature is checked on them and only then is a gzip body inflated.
    sent = await request.read()
    fed = request.app[FEDERATION_KEY]
    outcome = fed.authenticate(
        method=request.method, authority=request.host, path=request.rel_url.raw_path,
        query=request.rel_url.raw_query_string, body=sent, headers=request.headers,
    )
    if isinstance(outcome, Reply):
        return to_response(outcome)
    request[CALLER_KEY] = outcome
    encoding = request.headers.get("Content-Encoding", "identity").lower()
    if encoding == "gzip":
        # Inflating up to the limit takes tens of milliseconds; zlib lets go of the GIL meanwhile.
        body = await asyncio.to_thread(inflate, sent, limit) if len(sent) > 4096 else inflate(sent, limit)
        if body is None:
            return json_error(413, "too-large", "gzip body inflates beyond this node's limit, or is not gzip")
        request[BODY_KEY] = body
    elif encoding != "identity":
        return json_error(415, "unsupported-encoding", f"Content-Encoding {encoding!r}; use gzip or none")
    else:
        request[BODY_KEY] = sent
    return await handler(request)


def inflate(data: bytes, limit: int) -> bytes | None:
    """Gunzip at most ``limit`` bytes; None for bad data or a bomb."""
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error:
        return None
    if len(out) > limit or not d.eof:
        return None
    return out


def make_runner(app: web.Application, keepalive_s: float = 75) -> web.AppRunner:
    """The runner every node uses: request bodies reach the middleware exactly as sent, and idle
    connections stay open longer than the peers' sync interval."""
    return web.AppRunner(app, handle_signals=False, access_log=None, auto_decompress=False,
                         keepalive_timeout=max(75, keepalive_s))


async def federation_handler(request: web.Request) -> web.StreamResponse:
    fed = request.app[FEDERATION_KEY]
    body = request.get(BODY_KEY, b"")
    reply = await fed.handle(request.get(CALLER_KEY), request.method, request.path, dict(request.query), body,
                             headers=request.headers)
    return to_response(reply)


def make_app(node: Node, *, extra_setup: Callable[[web.Application], None] | None = None) -> web.Application:
    """Build the node's aiohttp application."""
    app = web.Application(
        middlewares=[error_middleware, signature_middleware],
        client_max_size=node.settings.server.max_body_bytes,
    )
    app[NODE_KEY] = node
    app[FEDERATION_KEY] = Federation(node)
    app[BUDGET_KEY] = BodyBudget(BUDGET_BODIES * node.settings.server.max_body_bytes)
    for method, route in (("GET", "/descriptor"), ("GET", "/directory"), ("GET", "/feed"),
                          ("POST", "/fetch"), ("POST", "/push")):
        app.router.add_route(method, PREFIX + route, federation_handler)
    if extra_setup is not None:
        extra_setup(app)
    return app


def dumps(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=False)
