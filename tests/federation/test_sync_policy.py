"""How a node spends requests: a lost request is retried inside its round; a national pushes its
own bundle to one hub; a hub pushes urgent bundles only to the nationals of its own region."""

from __future__ import annotations

import asyncio
import json

import aiohttp

from node.peers import ATTEMPTS
from node.transport import PeerUnavailable
from tests.federation.harness import build_wca, db_rows, make_seizure, share_new


class DropEvery:
    """The network between one node and its peers loses every ``n``-th request."""

    def __init__(self, inner, n: int) -> None:
        self.inner, self.n, self.sent, self.lost = inner, n, 0, 0

    async def send(self, base_url, method, path, query, body, headers):
        self.sent += 1
        if self.sent % self.n == 1:
            self.lost += 1
            raise PeerUnavailable(f"{base_url}: lost")
        return await self.inner.send(base_url, method, path, query, body, headers)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def share(member, session, audience, i=0, urgent=False):
    """The id of the bundle that shares a new seizure."""
    return (await share_new(member, session, "seizure", make_seizure(i), audience, urgent))[1]["bundle"]


async def test_a_lost_request_is_retried_inside_the_round(fed):
    hub, ng, gh = build_wca(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        bid = await share(ng, s, f"nodes:{gh.node_id}")
        await fed.drain()
    assert bid in fed.ids("WCA hub")
    lossy = DropEvery(gh.driver.client.transport, 2)  # the first request of the round, and every other one
    gh.driver.client.transport = lossy
    result = await gh.driver.sync_all(force=True, directory=True)
    assert result[hub.node_id] == "ok", result
    assert lossy.lost >= 2  # the directory, the feed and the fetch each lost a try
    assert bid in fed.ids("Ghana")
    machine = gh.driver.peers[hub.node_id].machine
    assert machine.failures == 0 and machine.stats["failures"] == 0


def build_two_regions(fed):
    fed.add("Hub WCA", "CI", "hub", ["WCA"])
    fed.add("Hub ESA", "KE", "hub", ["ESA"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Kenya", "KE", "national", ["ESA"])
    fed.wire()
    fed.peer("Hub WCA", "Hub ESA")
    # Each national peers with its own hub and, as a backup, with the other region's hub.
    fed.peer("Nigeria", "Hub WCA")
    fed.peer("Nigeria", "Hub ESA")
    fed.peer("Kenya", "Hub ESA")
    fed.peer("Kenya", "Hub WCA")


async def test_a_national_pushes_its_own_bundle_to_one_hub_its_own_first(fed):
    build_two_regions(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        first = await share(fed.members["Nigeria"], s, "region:WCA", 1)
        await fed.drain()
        assert first in fed.ids("Hub WCA")
        assert first not in fed.ids("Hub ESA")  # it pulls it from Hub WCA; a push would be a second copy
        await fed.stop("Hub WCA")
        second = await share(fed.members["Nigeria"], s, "region:WCA", 2)
        await fed.drain()
        assert second in fed.ids("Hub ESA")  # its own hub is down: the backup takes it


class Recorder:
    """Notes every request one node sends (base URL, path)."""

    def __init__(self, inner) -> None:
        self.inner, self.sent = inner, []

    async def send(self, base_url, method, path, query, body, headers):
        self.sent.append((base_url.rstrip("/"), path))
        return await self.inner.send(base_url, method, path, query, body, headers)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_a_hub_pushes_urgent_bundles_to_the_nationals_of_its_region_only(fed):
    build_two_regions(fed)
    await fed.start()
    kenya, wca, esa = fed.members["Kenya"], fed.members["Hub WCA"], fed.members["Hub ESA"]
    wca_net, esa_net = Recorder(wca.driver.client.transport), Recorder(esa.driver.client.transport)
    wca.driver.client.transport, esa.driver.client.transport = wca_net, esa_net
    async with aiohttp.ClientSession() as s:
        bid = await share(fed.members["Nigeria"], s, f"nodes:{kenya.node_id}", urgent=True)
        await fed.drain()
    # Hub WCA relayed to Hub ESA, which pushed to Kenya; Hub WCA, Kenya's backup, did not push too.
    assert bid in fed.ids("Kenya")
    assert (esa.url, "/federation/v1/push") in wca_net.sent
    assert (kenya.url, "/federation/v1/push") not in wca_net.sent
    assert esa_net.sent == [(kenya.url, "/federation/v1/push")]
    assert db_rows(kenya, "SELECT via FROM bundles WHERE id=?", bid) == [(esa.node_id,)]


async def test_reloading_trust_reuses_the_descriptors_already_parsed(fed):
    build_two_regions(fed)
    await fed.start("Nigeria")
    node = fed.members["Nigeria"].node
    before = dict(node.directory)
    await node.reload_async()
    assert len(node.directory) == len(before) >= 4
    assert all(node.directory[n] is before[n] for n in before)  # same objects: nothing re-parsed


async def test_an_identical_descriptor_is_unchanged_without_checking_its_signatures_again(fed, monkeypatch):
    """Directory gossip re-sends every descriptor at each refresh: a copy identical to the one
    accepted is 'unchanged' at once; its signatures were checked when it was accepted (re-checking
    cost O(directory) Ed25519 verifications per refresh on every node)."""
    import nacl.bindings

    build_two_regions(fed)
    await fed.start("Nigeria")
    node = fed.members["Nigeria"].node
    copies = [node.directory[fed.members[n].node_id].obj for n in ("Kenya", "Hub ESA", "Hub WCA")]
    real, checks = nacl.bindings.crypto_sign_open, []

    def counting(*a):
        checks.append(1)
        return real(*a)

    monkeypatch.setattr(nacl.bindings, "crypto_sign_open", counting)
    change = await node.merge_descriptors(copies, source=fed.members["Hub WCA"].node_id)
    assert (change.unchanged, change.refused, change.added, change.updated) == (3, 0, 0, 0)
    assert checks == []


async def test_a_hub_relays_a_pulled_urgent_bundle_only_while_it_is_fresh(fed):
    """A hub that was down pulls the urgent alerts it missed. One made less than a sync interval
    ago is pushed on at once; an older one is left to its recipients' own rounds (they have had
    a round to get it some other way, and a push would mostly be a second copy)."""
    fed.add("WCA hub", "CI", "hub", ["WCA"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Ghana", "GH", "national", ["WCA"])
    fed.add("Benin", "BJ", "national", ["WCA"])
    fed.wire()
    for n in ("Nigeria", "Ghana", "Benin"):
        fed.peer(n, "WCA hub")
    await fed.start()
    ng, gh, bj = fed.members["Nigeria"], fed.members["Ghana"], fed.members["Benin"]

    async def missed_alert(to, i):
        await fed.stop("WCA hub")
        async with aiohttp.ClientSession() as s:
            bid = await share(ng, s, f"nodes:{to.node_id}", i, urgent=True)
            await fed.drain()  # the hub is down: the push fails
        await fed.start("WCA hub")
        return bid, db_rows(ng, "SELECT created FROM bundles WHERE id=?", bid)[0][0]

    stale, created = await missed_alert(bj, 1)
    hub = fed.members["WCA hub"]
    interval_ms = hub.node.settings.sync.interval_s * 1000
    hub.node.clock = lambda: (created + interval_ms + 5000) / 1000  # the hub comes back 35 s later
    await hub.driver.sync_all(force=True)
    await fed.drain()
    assert stale in fed.ids("WCA hub")
    assert stale not in fed.ids("Benin")  # not pushed
    await fed.sync("Benin")
    assert stale in fed.ids("Benin")  # Benin's own round brings it

    fresh, _ = await missed_alert(gh, 2)
    await fed.members["WCA hub"].driver.sync_all(force=True)
    await fed.drain()
    assert fresh in fed.ids("Ghana")  # pushed on at once


class Watching:
    """Counts a node's feed and fetch requests; after ``cut_after_feeds`` feed requests the peer is gone."""

    def __init__(self, inner) -> None:
        self.inner, self.feeds, self.fetched, self.cut_after_feeds = inner, 0, [], None

    async def send(self, base_url, method, path, query, body, headers):
        if path.endswith("/feed"):
            self.feeds += 1
        if self.cut_after_feeds is not None and self.feeds > self.cut_after_feeds:
            raise PeerUnavailable(f"{base_url}: gone")
        if path.endswith("/fetch"):
            self.fetched += json.loads(body)["ids"]
        return await self.inner.send(base_url, method, path, query, body, headers)

    def __getattr__(self, name):
        return getattr(self.inner, name)


async def test_a_long_catch_up_cut_short_moves_the_cursor_only_past_what_is_stored(fed):
    """A catch-up over many pages (the next page asked for while the current one's bundles come
    in slices) that is cut short keeps its cursor behind every bundle not stored, and the next
    round fetches nothing twice."""
    hub, ng, gh = build_wca(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        shared = {await share(ng, s, f"nodes:{gh.node_id}", i) for i in range(30)}
        await fed.drain()
    assert shared <= fed.ids("WCA hub") and not shared & fed.ids("Ghana")
    gh.driver.feed_limit = 4  # about 8 pages for the 30 bundles
    gh.driver.peers.clear()
    watching = Watching(gh.driver.client.transport)
    gh.driver.client.transport = watching

    watching.cut_after_feeds = 3  # the hub goes away with pages and their bundles in flight
    result = await gh.driver.sync_all(force=True)
    assert result[hub.node_id].startswith("error"), result
    held = shared & fed.ids("Ghana")
    assert held  # some pages were stored before the cut
    seq_at_hub = dict(db_rows(hub, "SELECT id, seq FROM bundles"))
    cursor = gh.driver.peers[hub.node_id].saved
    assert cursor is not None
    behind = {i for i in shared if seq_at_hub[i] <= cursor.seq}
    assert behind <= held  # nothing the cursor passed is missing

    watching.cut_after_feeds, before = None, len(watching.fetched)
    result = await gh.driver.sync_all(force=True)
    assert result[hub.node_id] == "ok", result
    assert shared <= fed.ids("Ghana")
    again = watching.fetched[before:]
    assert not set(again) & held and len(again) == len(set(again))  # nothing stored is fetched again
    assert watching.feeds - 3 >= 5  # the healthy round walked several pages


class SlowFetches(Watching):
    """Watching, with each fetch answer held back a while and the most fetches in flight at once noted."""

    def __init__(self, inner, hold_s: float) -> None:
        super().__init__(inner)
        self.hold_s, self.in_flight, self.most_in_flight = hold_s, 0, 0

    async def send(self, base_url, method, path, query, body, headers):
        if not path.endswith("/fetch"):
            return await super().send(base_url, method, path, query, body, headers)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            answer = await super().send(base_url, method, path, query, body, headers)
            await asyncio.sleep(self.hold_s)
            return answer
        finally:
            self.in_flight -= 1


async def test_a_catch_up_fetches_two_pages_ahead_while_this_one_comes_in_and_nothing_twice(fed):
    """Over many pages, the next two pages' bundles are asked for while this page's fetch is
    still out (a page of 4 is one request, so three fetches at once can only be this page's and
    the next two's); every bundle is fetched once and stored, and the round returns only once
    the cursor past them all is in the database (saving it never held the round up)."""
    hub, ng, gh = build_wca(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        shared = {await share(ng, s, f"nodes:{gh.node_id}", i) for i in range(24)}
        await fed.drain()
    gh.driver.feed_limit = 4  # 6 pages
    gh.driver.peers.clear()
    slow = SlowFetches(gh.driver.client.transport, hold_s=0.25)
    gh.driver.client.transport = slow

    result = await gh.driver.sync_all(force=True)
    assert result[hub.node_id] == "ok", result
    assert shared <= fed.ids("Ghana")
    assert sorted(slow.fetched) == sorted(set(slow.fetched)) and shared <= set(slow.fetched)
    assert slow.most_in_flight >= 3
    top = max(seq for _, seq in db_rows(hub, "SELECT id, seq FROM bundles"))
    [(saved,)] = db_rows(gh, "SELECT cursor FROM peers WHERE node = ?", hub.node_id)
    assert saved >= top and gh.driver.peers[hub.node_id].saved.seq == saved


class FailOnce(Watching):
    """Watching that loses every attempt at a fetch of the ids in ``doomed`` (``attempts`` times, so
    that request fails for good), and holds back the answer to a fetch of ``held`` ids a while."""

    def __init__(self, inner, attempts: int, hold_s: float) -> None:
        super().__init__(inner)
        self.doomed: set[str] = set()
        self.held: set[str] = set()
        self.left, self.hold_s = attempts, hold_s

    async def send(self, base_url, method, path, query, body, headers):
        ids = set(json.loads(body)["ids"]) if path.endswith("/fetch") else set()
        if self.left and ids & self.doomed:
            self.left -= 1
            raise PeerUnavailable(f"{base_url}: lost")
        answer = await super().send(base_url, method, path, query, body, headers)
        if ids & self.held:
            await asyncio.sleep(self.hold_s)
        return answer


async def test_a_failed_early_fetch_asks_again_only_for_what_it_did_not_store(fed):
    """The next page's early fetch stores two of its slices and loses the third; the page, taken
    up meanwhile with all its ids missing, asks again for the lost slice only."""
    hub, ng, gh = build_wca(fed)
    await fed.start()
    async with aiohttp.ClientSession() as s:
        shared = [await share(ng, s, f"nodes:{gh.node_id}", i) for i in range(260)]
        await fed.drain()
    gh.driver.feed_limit = 130  # 2 pages, each fetched as slices of 64, 64 and 2
    gh.driver.peers.clear()
    failing = FailOnce(gh.driver.client.transport, ATTEMPTS, hold_s=0.5)
    seq_at_hub = dict(db_rows(hub, "SELECT id, seq FROM bundles"))
    second_page = sorted(shared, key=seq_at_hub.__getitem__)[130:]
    failing.doomed, failing.held = set(second_page[-2:]), set(second_page[:-2])
    gh.driver.client.transport = failing

    result = await gh.driver.sync_all(force=True)
    assert result[hub.node_id] == "ok", result
    assert set(shared) <= fed.ids("Ghana")
    assert failing.left == 0  # the early fetch did fail
    assert sorted(failing.fetched) == sorted(set(failing.fetched))  # nothing it stored was fetched again
