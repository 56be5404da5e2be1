"""The sync driver: a thin loop that moves bytes for the PeerSync machines of protocol/sync.py.

For each peer it asks the machine what to do (poll the feed, fetch missing
ids, or wait), does it through the PeerClient, ingests what arrives and
reports back; the cursor is saved only after the bundles before it are
stored. It also pushes new bundles at once to the peers that may receive
them: our own new bundles, and on a hub, urgent bundles it has just accepted.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

from node.context import Node
from node.ingest import WriteGroup, ingest
from node.store import bundles as bundle_store
from node.store import peers as peer_store
from node.store.db import StoreFull
from node.transport import PeerClient, PeerUnavailable
from protocol.audience import may_receive
from protocol.bundle import Bundle
from protocol.errors import RemoteProtocolError
from protocol.sync import PULL_LIMIT, Cursor, FeedPage, Fetch, PeerSync, PollFeed, Wait

log = logging.getLogger("cenmesh.peers")

T = TypeVar("T")

# Each request of a round is tried this many times before the round fails. Every request
# (feed, fetch, push) is idempotent, so trying again is safe; failing the whole round on the
# first lost request made 20% loss fail about half the rounds of a peer with new bundles.
ATTEMPTS = 3

# A fetch of many ids goes out as this many requests (slices of at least FETCH_SLICE_MIN ids),
# at most SLICES_IN_FLIGHT at a time to one peer (over a page and the early fetches of the pages after it),
# so that transfers overlap checking and writing. Measured with
# scripts/bench sync (pages of 1,000, 2 cores): 8 slices cost B 190 us of CPU a bundle and
# 4 cost 150-170; 2 were no better than 4 within the noise, and leave less overlap on a slow link.
# All 4 in flight at once: 0.41 and 0.40 against 0.38 and 0.36 with 3, in alternating runs.
SLICES_PER_FETCH = 4
FETCH_SLICE_MIN = 64
SLICES_IN_FLIGHT = 4


@dataclass
class Peer:
    node: str
    url: str
    machine: PeerSync
    lock: asyncio.Lock
    etag: str | None = None
    saved: Cursor | None = None
    directory_at: int = 0  # when we last asked for its directory (ms)
    # Fetch requests to this peer in flight at once, over this page and the early fetches after it.
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(SLICES_IN_FLIGHT))


# Feed pages asked for (and their bundles fetched, checked and stored) ahead of the page whose
# cursor is next saved. With one, the worker processes waited for the next page's bundles after
# every page: two keep them busy while a page commits (scripts/bench sync, B's work over time).
LOOK_AHEAD_PAGES = 2


class _NoPage(Exception):
    """The page before a look-ahead was the last one: there is nothing to ask for."""


@dataclass
class _Ahead:
    """A later feed page, asked for while this page's bundles come in, and the early fetch of its bodies."""

    poll: PollFeed | None  # the poll it answers; None until the page before it is in
    page: asyncio.Future[FeedPage] = field(init=False)
    bodies: asyncio.Future[tuple[set[str], set[str]]] = field(init=False)  # (ids asked for, ids now stored)

    async def close(self) -> None:
        """Done with it: stop asking for the page, and wait for the fetch of its bodies to end.

        The fetch is let finish rather than cancelled: it ends soon (every
        request has a timeout; without the page it stops at once), and what it
        has stored is then whole, with its rosters refreshed and its urgent
        bundles relayed.
        """
        self.page.cancel()
        await asyncio.gather(self.page, self.bodies, return_exceptions=True)


class SyncDriver:
    """Runs sync rounds and pushes for one node."""

    def __init__(self, node: Node, client: PeerClient, *, rng: random.Random | None = None) -> None:
        self.node = node
        self.client = client
        self.rng = rng or random.Random()  # jitter only; nothing secret
        self.peers: dict[str, Peer] = {}
        self.feed_limit = PULL_LIMIT  # feed items asked for per page (tests make pages small)
        self.rounds = 0
        self._push_tasks: set[asyncio.Task[dict[str, str]]] = set()
        # Bundle id -> the fetch that is bringing it in, so that two peers offering the same
        # new bundle in concurrent rounds transfer its body once.
        self._inflight: dict[str, asyncio.Future[None]] = {}

    @property
    def interval_ms(self) -> int:
        return self.node.settings.sync.interval_s * 1000

    def _jitter(self) -> int:
        return self.rng.randint(0, self.node.settings.sync.jitter_s * 1000)

    async def load(self) -> None:
        """(Re)read the peers table; new peers start from their saved cursor."""
        now = self.node.now_ms()
        rows = await self.node.store.read(peer_store.list_peers)
        seen = set()
        for row in rows:
            seen.add(row["node"])
            if row["node"] in self.peers:
                self.peers[row["node"]].url = row["url"]
                continue
            machine = PeerSync(row["node"], Cursor(row["epoch"], row["cursor"]), interval_ms=self.interval_ms, now_ms=now,
                               feed_limit=self.feed_limit)
            self.peers[row["node"]] = Peer(row["node"], row["url"], machine, asyncio.Lock(), row["directory_etag"],
                                           machine.cursor)
        for gone in set(self.peers) - seen:
            del self.peers[gone]

    def _directory_due(self, peer: Peer, force: bool) -> bool:
        """Ask for a peer's directory every ``directory_every`` intervals, when forced, or until
        we hold its ETag; a 304 makes the check cheap."""
        s = self.node.settings.sync
        return force or not peer.etag or self.node.now_ms() - peer.directory_at >= s.directory_every * s.interval_s * 1000

    async def sync_all(self, *, force: bool = False, directory: bool = False) -> dict[str, str]:
        """One pass over every peer whose round is due (all of them with ``force``); ``directory``
        also asks every peer for its directory now (an operator's ``cenmesh sync``)."""
        await self.node.reload_async()
        await self.load()
        self.rounds += 1
        if force:
            for p in self.peers.values():
                p.machine.sync_now(self.node.now_ms())
        results = await asyncio.gather(*(self.sync_peer(p, directory=directory) for p in list(self.peers.values())))
        return dict(zip(self.peers, results, strict=False))

    async def sync_peer(self, peer: Peer, *, directory: bool = False) -> str:
        """Run the peer's machine until it says Wait; returns 'ok', 'waiting' or the error."""
        if peer.lock.locked():
            return "busy"
        async with peer.lock:
            machine = peer.machine
            if not machine.in_round and self.node.now_ms() < machine.due_ms:
                return "waiting"
            refresh = self._directory_due(peer, directory)
            aheads: list[_Ahead] = []  # the pages after this one, asked for early, in order
            current: _Ahead | None = None  # this page, when it was asked for early
            saves: list[asyncio.Future[None]] = []  # cursor writes queued this round, in order
            try:
                while True:
                    action = machine.next_action(self.node.now_ms())
                    if isinstance(action, Wait):
                        await asyncio.gather(*saves)
                        await self.node.store.write(peer_store.mark_ok, peer.node, self.node.now_ms())
                        return "ok"
                    if isinstance(action, PollFeed):
                        if refresh:  # inside the round, so a dead peer is backed off like any failure
                            refresh = False
                            await self.refresh_directory(peer)
                        if current is not None:
                            await current.close()
                            current = None
                        if aheads and aheads[0].poll == action:
                            current = aheads.pop(0)
                        else:
                            for left in aheads:
                                await left.close()
                            aheads = []
                        if current is not None:
                            page = await current.page
                        else:
                            page = await self._retry(partial(self.client.feed, peer.url, action.after, action.limit))
                        machine.feed_received(page, await self._not_held(page), self.node.now_ms(),
                                              jitter_ms=self._jitter())
                        if page.more and machine.in_round:
                            if not aheads:
                                aheads.append(self._look_ahead(peer, PollFeed(page.next, action.limit), action.limit))
                            while len(aheads) < LOOK_AHEAD_PAGES:
                                aheads.append(self._look_ahead(peer, aheads[-1], action.limit))
                    elif isinstance(action, Fetch):
                        ids = list(action.ids)
                        stored: set[str] = set()
                        if current is not None:
                            try:
                                asked, stored = await asyncio.shield(current.bodies)
                                # Asked for already: a bundle the peer did not send or we rejected is
                                # not asked for again (nor counted twice in the rejections).
                                ids = [i for i in ids if i not in asked]
                            except (PeerUnavailable, RemoteProtocolError, StoreFull) as exc:
                                log.info("early fetch from %s failed, asking again: %s", peer.node, exc)
                                stored = await self.node.store.read(bundle_store.known_ids, ids)  # what it stored
                                ids = [i for i in ids if i not in stored]
                        if ids:
                            stored |= await self._fetch_once(peer, ids)
                        machine.fetched(stored, self.node.now_ms(), jitter_ms=self._jitter())
                    if machine.cursor != peer.saved:
                        saves.append(self._save(peer))
            except (PeerUnavailable, RemoteProtocolError, StoreFull) as exc:
                if machine.in_round:
                    machine.failed(self.node.now_ms(), jitter_ms=self._jitter())
                log.warning("sync with %s failed (%d in a row): %s", peer.node, machine.failures, exc)
                await self.node.store.write(peer_store.mark_failed, peer.node, str(exc), self.node.now_ms(),
                                            machine.failures, machine.due_ms)
                return f"error: {exc}"
            finally:
                for left in ([current] if current is not None else []) + aheads:
                    await left.close()
                if any(isinstance(r, BaseException) for r in await asyncio.gather(*saves, return_exceptions=True)):
                    peer.saved = None  # not known to be written: the next page saves it again

    def _look_ahead(self, peer: Peer, after: PollFeed | _Ahead, limit: int) -> _Ahead:
        """Ask for a later feed page now, and fetch its new bundles as soon as it is in.

        ``after``: the poll of the page after this one (a page done moves the
        cursor to page.next), or the look-ahead of the page before it, whose
        ``next`` it then asks from. Only the work is early: each cursor is
        saved once its page and every page before it are stored, so a crash
        in between fetches the later pages again and stores nothing twice
        (their bundles are known by then). All pages' requests share the
        peer's gate, first come first served, so the earlier page's go first,
        and a later page's bundles are checked and written while the earlier
        page's last slices finish and commit, instead of after (measured by
        scripts/bench sync).
        """
        ahead = _Ahead(after if isinstance(after, PollFeed) else None)

        async def page() -> FeedPage:
            if isinstance(after, _Ahead):
                before = await after.page
                if not before.more:
                    raise _NoPage()
                ahead.poll = PollFeed(before.next, limit)
            assert ahead.poll is not None
            poll = ahead.poll
            return await self._retry(partial(self.client.feed, peer.url, poll.after, poll.limit))

        async def bodies() -> tuple[set[str], set[str]]:
            missing = await self._not_held(await ahead.page)
            return set(missing), (await self._fetch_once(peer, missing) if missing else set())

        ahead.page = asyncio.ensure_future(page())
        ahead.bodies = asyncio.ensure_future(bodies())
        return ahead

    async def _not_held(self, page: FeedPage) -> list[str]:
        """The ids of a feed page that this node does not hold, in the page's order."""
        ids = [item.id for item in page.items]
        known = await self.node.store.read(bundle_store.known_ids, ids) if ids else set()
        return [i for i in ids if i not in known]

    async def _fetch_once(self, peer: Peer, ids: list[str]) -> set[str]:
        """Fetch and ingest ``ids`` from ``peer``, leaving to another peer's fetch what it is already
        bringing in; returns the ids now stored."""
        mine = [i for i in ids if i not in self._inflight]
        others = {self._inflight[i] for i in ids if i in self._inflight}
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for i in mine:
            self._inflight[i] = done  # claimed without an await in between: waits form no cycle
        try:
            if others:
                await asyncio.gather(*others, return_exceptions=True)
            claimed = set(mine)
            theirs = [i for i in ids if i not in claimed]
            stored = await self.node.store.read(bundle_store.known_ids, theirs) if theirs else set()
            wanted = mine + [i for i in theirs if i not in stored]
            if wanted:
                stored |= await self._fetch_slices(peer, wanted)
            return stored
        finally:
            for i in mine:
                self._inflight.pop(i, None)
            done.set_result(None)

    async def _fetch_slices(self, peer: Peer, ids: list[str]) -> set[str]:
        """Fetch and ingest ``ids`` in slices, at most ``SLICES_IN_FLIGHT`` requests at a time to the peer; returns the ids now stored.

        One slice's request and transfer overlap another's checks and writes, so
        the peer, the network, the worker processes and the store's writer are
        busy at once instead of in turn. The slices are ingested in one
        ``WriteGroup``: those whose checks overlap share a transaction (fewer,
        larger commits), and the writer never waits for a request. If one
        fails, the others still finish (nothing is left half done), and then
        its error is raised: the machine gives up the round and keeps the
        cursor, and the next round skips what was stored.
        """
        group = WriteGroup(self.node)

        async def one(part: list[str]) -> set[str]:
            async with peer.gate:
                objs = await self._retry(lambda: self.client.fetch(peer.url, part))
            # Checked and stored outside the gate, so the next request goes out meanwhile.
            result = await ingest(self.node, objs, via=peer.node, group=group)
            # An urgent bundle that comes in by pull more than an interval after it was made
            # (we were down, or cut off) has had a round to reach its recipients some other
            # way: pushing it now mostly sends them a second copy (measured by
            # scripts/simulate: most duplicate bodies in the partition and hub-down runs).
            fresh_after = self.node.now_ms() - self.interval_ms
            self._relay_urgent([b for b in result.new_urgent if b.created >= fresh_after], peer.node)
            return {*result.accepted, *result.duplicate}

        size = max(FETCH_SLICE_MIN, -(-len(ids) // SLICES_PER_FETCH))
        outcomes = await asyncio.gather(*(one(ids[i:i + size]) for i in range(0, len(ids), size)),
                                        return_exceptions=True)
        stored: set[str] = set()
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            stored |= outcome
        return stored

    @staticmethod
    async def _retry(call: Callable[[], Awaitable[T]]) -> T:
        """``call()``, tried again at once when the peer could not be reached (a lost
        request or a dropped connection); a peer that answered with an error is not retried."""
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await call()
            except PeerUnavailable:
                if attempt == ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _save(self, peer: Peer) -> asyncio.Future[None]:
        """Queue the write of the peer's cursor, and go on; the round waits for it before it ends.

        The bundles before the cursor are committed already, and the single
        writer runs writes in the order they are queued. Awaited here, the
        save waited behind the next page's transaction, queued first, so no
        feed request went out until that page was stored too: B's worker
        processes stood idle about 100 ms every second page (scripts/bench
        sync, with B's fetches, checks and writes logged against time).
        """
        c = peer.saved = peer.machine.cursor
        return asyncio.ensure_future(
            self.node.store.write(peer_store.save_cursor, peer.node, c.epoch, c.seq, self.node.now_ms(), None))

    async def refresh_directory(self, peer: Peer) -> None:
        """Merge the peer's directory (only when its ETag changed)."""
        peer.directory_at = self.node.now_ms()
        descriptors, etag = await self._retry(lambda: self.client.directory(peer.url, peer.etag))
        if descriptors is not None:
            change = await self.node.merge_descriptors(descriptors, source=peer.node)
            if change.added or change.updated:
                log.info("directory from %s: %d new, %d updated", peer.node, change.added, change.updated)
        if etag != peer.etag:
            peer.etag = etag
            await self.node.store.write(peer_store.set_etag, peer.node, etag)

    # -- pushing -------------------------------------------------------------------------

    def _relay_urgent(self, bundles: Iterable[Bundle], via: str) -> None:
        """A hub pushes urgent bundles on at once; nationals never relay.

        What came from another hub goes on to our nationals only: the sending
        hub has pushed it to its own hub peers already, and RILO hubs are meshed,
        so passing it hub to hub again would send every other hub H-2 copies
        (measured by scripts/simulate: 90 duplicate bodies per alert at 11 hubs).
        Of the nationals, a hub pushes only to those of its own regions: a national
        that also peers with another region's hub (as a backup) gets the push from
        its own hub, and pulls from the backup only what its own hub missed.
        """
        if self.node.is_hub:
            urgent = [b for b in bundles if b.urgent]
            if urgent:
                exclude = {via} | {p for p in self.peers if not self._is_hub(p) and not self._in_my_regions(p)}
                if self._is_hub(via):
                    exclude |= {p for p in self.peers if self._is_hub(p)}
                self.push_soon(urgent, exclude=exclude)

    def _in_my_regions(self, node: str) -> bool:
        d = self.node.directory.get(node)
        return d is not None and bool(set(d.regions) & set(self.node.descriptor.regions))

    def _is_hub(self, node: str) -> bool:
        d = self.node.directory.get(node)
        return d is not None and d.is_hub

    def on_pushed(self, bundles: list[Bundle], via: str) -> None:
        """Federation callback for bundles that arrived by push."""
        self._relay_urgent(bundles, via)

    def push_soon(self, bundles: list[Bundle], *, exclude: set[str] | None = None) -> None:
        """Start pushing in the background; the caller does not wait for peers."""
        task = asyncio.get_running_loop().create_task(self.push(bundles, exclude=exclude or set()))
        self._push_tasks.add(task)
        task.add_done_callback(self._push_tasks.discard)

    async def push(self, bundles: list[Bundle], *, exclude: set[str]) -> dict[str, str]:
        """Push each bundle to the peers that may receive it (section 4's serving rule).

        A hub pushes to every such peer. A national pushes to its non-hub peers (bilateral
        peerings) and to ONE hub: its own region's first, another only if that one cannot be
        reached. The hubs are meshed and pull from each other, so a second hub would only
        receive, and relay, a second copy.
        """
        await self.load()
        outcome: dict[str, str] = {}

        async def one(peer: Peer) -> bool:
            allowed = [b.obj for b in bundles if may_receive(peer.node, b, self.node.directory)]
            if not allowed:
                return False
            try:
                answer = await self._retry(lambda: self.client.push(peer.url, allowed))
                outcome[peer.node] = f"{len(answer.accepted)} accepted, {len(answer.duplicate)} duplicate, {len(answer.rejected)} rejected"
                return True
            except (PeerUnavailable, RemoteProtocolError) as exc:
                outcome[peer.node] = f"error: {exc}"
                log.warning("push to %s failed (it will pull later): %s", peer.node, exc)
                return False

        targets = [p for p in self.peers.values() if p.node not in exclude]
        if self.node.is_hub:
            await asyncio.gather(*(one(p) for p in targets))
            return outcome

        hubs = sorted((p for p in targets if self._is_hub(p.node)), key=lambda p: not self._in_my_regions(p.node))

        async def first_hub() -> None:
            for p in hubs:
                if await one(p):
                    return

        await asyncio.gather(first_hub(), *(one(p) for p in targets if p not in hubs))
        return outcome

    @property
    def pending_pushes(self) -> int:
        return len(self._push_tasks)

    async def drain(self) -> None:
        """Wait for background pushes (shutdown and tests)."""
        while self._push_tasks:
            await asyncio.gather(*list(self._push_tasks), return_exceptions=True)
