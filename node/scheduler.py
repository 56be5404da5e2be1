"""APScheduler jobs. They only call the sync driver and housekeeping; no logic lives here."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from node.context import Node
from node.peers import SyncDriver
from node.store import bundles as bundle_store

log = logging.getLogger("cenmesh.scheduler")


def tick_seconds(interval_s: int) -> int:
    """How often the sync job wakes up to let each peer's machine start its round if due.

    A round starts at the first tick at or after its due time, so the realized period
    is interval + jitter + up to one tick. A tick of interval/3 made a 30 s interval
    about 40 s, and a bundle two pull hops away (hub -> hub -> national) took up to
    3 intervals; a tenth of the interval keeps the realized period within ~10%. A tick
    that finds nothing due costs no request.
    """
    return max(1, interval_s // 10)


async def _sync(driver: SyncDriver) -> None:
    try:
        await driver.sync_all()
    except Exception:  # one bad round must not kill the schedule
        log.exception("sync round failed")


async def _expire(node: Node) -> None:
    dropped = await node.store.write(bundle_store.delete_expired, node.now_ms())
    if dropped:
        log.info("dropped %d expired bundles", dropped)


def start_scheduler(node: Node, driver: SyncDriver) -> AsyncIOScheduler:
    """Sync every interval (with jitter, so a region's nodes do not poll in step) and expire hourly."""
    scheduler = AsyncIOScheduler(timezone="UTC")
    s = node.settings.sync
    # Poll at a fraction of the interval: each peer's machine decides whether its round is due,
    # which is what keeps back-off and jitter per peer.
    tick = tick_seconds(s.interval_s)
    scheduler.add_job(_sync, "interval", seconds=tick, jitter=None, args=[driver], id="sync",
                      max_instances=1, coalesce=True)
    scheduler.add_job(_expire, "interval", hours=1, args=[node], id="expire", max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
