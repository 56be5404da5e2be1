"""Starting and stopping a node: wiring settings, store, keys, app, sync driver and scheduler."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from config.settings import Settings, SettingsError, load_settings
from node import officer_api, pages, search_api
from node.context import Node
from node.keystore import KeyStore
from node.peers import SyncDriver
from node.scheduler import start_scheduler
from node.server import FEDERATION_KEY, make_app, make_runner
from node.store.db import Store
from node.transport import HttpTransport, PeerClient

log = logging.getLogger("cenmesh.run")

DRIVER_APP_KEY = web.AppKey("sync-driver", SyncDriver)


def open_node(home: str | Path, settings: Settings | None = None) -> Node:
    """Load a node from its folder (settings, keys, store) without starting anything."""
    settings = settings or load_settings(home)
    store = Store(settings.path(settings.store.path), max_size_mb=settings.store.max_size_mb)
    return Node(settings, store, KeyStore(Path(home)))


def build_app(node: Node, *, scheduled: bool = True) -> web.Application:
    """The full application: federation + officer API, with the driver and scheduler as app resources."""
    sync = node.settings.sync
    transport = HttpTransport(timeout_s=sync.request_timeout_s, ssl=client_ssl(node.settings),
                              keepalive_s=sync.interval_s + sync.jitter_s + 30)
    driver = SyncDriver(node, PeerClient(node.identity, transport, node.clock))

    def extra(app: web.Application) -> None:
        officer_api.setup(app, driver)
        search_api.setup(app)
        pages.setup(app)

    app = make_app(node, extra_setup=extra)
    app[DRIVER_APP_KEY] = driver
    app[FEDERATION_KEY].on_new_urgent.append(driver.on_pushed)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await driver.load()
        if scheduled:
            await node.verifier.warm_up()
        scheduler = start_scheduler(node, driver) if scheduled else None
        yield
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        await driver.drain()
        await transport.close()
        node.verifier.close()
        node.store.close()  # waits for queued writes: no half-written batch

    app.cleanup_ctx.append(lifecycle)
    return app


def client_ssl(settings: Settings) -> ssl.SSLContext | None:
    """Verify https:// peers against the system store, plus the operator's CA file if given."""
    if not settings.sync.ca_file:
        return None
    return ssl.create_default_context(cafile=str(settings.path(settings.sync.ca_file)))


def server_ssl(settings: Settings) -> ssl.SSLContext | None:
    if not settings.server.tls_cert:
        return None
    if not settings.server.tls_key:
        raise SettingsError("node.toml: server.tls_key: required when server.tls_cert is set")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(settings.path(settings.server.tls_cert), settings.path(settings.server.tls_key))
    except (OSError, ssl.SSLError) as exc:
        raise SettingsError(f"node.toml: server.tls_cert/tls_key: cannot load: {exc}") from None
    return ctx


async def serve(home: str | Path) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly."""
    node = open_node(home)
    app = build_app(node)
    runner = make_runner(app, keepalive_s=node.settings.sync.interval_s + node.settings.sync.jitter_s + 60)
    await runner.setup()
    s = node.settings.server
    site = web.TCPSite(runner, s.host, s.port, ssl_context=server_ssl(node.settings), shutdown_timeout=10)
    await site.start()
    # Modules, settings and the app live as long as the process: freezing them keeps every later
    # full collection from walking them again. Ingest makes objects at a high rate; in
    # scripts/bench sync, B's main process then spent 11 us a bundle in collections, not 16.
    gc.freeze()
    log.info("cenmesh node %s (%s) listening on %s", node.node_id, node.settings.node.name, s.listen)
    print(f"cenmesh node {node.node_id} ({node.settings.node.name}) listening on {s.listen}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    await runner.cleanup()
