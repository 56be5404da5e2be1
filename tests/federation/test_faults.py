"""Faults: a peer that is down is backed off and caught up; two paths, one copy; pushes are idempotent."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.federation.harness import api, build_wca, make_seizure, push_as, seal_from, share_new


async def share(member, session, audience, i=0, urgent=False):
    return await share_new(member, session, "seizure", make_seizure(i), audience, urgent)


async def _down_hub_is_backed_off_then_caught_up(fed, *, warm_up: bool, emulate_etag: bool = False):
    build_wca(fed)
    await fed.start()
    ng, gh, hub = fed.members["Nigeria"], fed.members["Ghana"], fed.members["WCA hub"]
    if warm_up:
        # One good round first: Ghana then holds the hub's directory ETag, and its next round
        # (round 2) need not begin with a directory refresh.
        await fed.sync()
        if emulate_etag:
            # The ETag as PeerClient.directory stores it (header names are case-insensitive).
            _, etag = await gh.driver.client.directory(hub.url, None)
            etag = etag or (await gh.driver.client._call(hub.url, "GET", "/directory")).headers.get("Etag")
            assert etag
            gh.driver.peers[hub.node_id].etag = etag
    await fed.stop("WCA hub")
    async with aiohttp.ClientSession() as s:
        rid, shared = await share(ng, s, f"nodes:{gh.node_id}")
        await fed.drain()  # the push to the hub fails; the officer is not bothered
        bid = shared["bundle"]
        assert bid in fed.ids("Nigeria")
        assert bid not in fed.ids("Ghana")

        before = gh.node.now_ms()
        await fed.sync("Ghana")  # must not raise: a down peer is an ordinary event
        machine = gh.driver.peers[hub.node_id].machine
        assert machine.failures >= 1
        assert machine.due_ms > before
        assert machine.backoff_until is not None and machine.backoff_until > gh.node.now_ms()
        # A second, unforced round respects the back-off: the peer is not even tried.
        requests = gh.driver.client.transport.requests
        assert (await gh.driver.sync_all())[hub.node_id] == "waiting"
        assert gh.driver.client.transport.requests == requests
        row = await gh.node.store.read(lambda c: c.execute(
            "SELECT failures, backoff_until, last_error FROM peers WHERE node=?", (hub.node_id,)).fetchone())
        assert row["failures"] >= 1 and row["backoff_until"] == machine.due_ms and row["last_error"]

        await fed.start("WCA hub")
        await fed.sync("WCA hub", "Nigeria", "Ghana")  # forced: the back-off is cut short
        assert bid in fed.ids("WCA hub")
        assert bid in fed.ids("Ghana")
        assert machine.failures == 0
        status, rec = await api(gh, s, "GET", f"/api/v1/records/{rid}")
        assert status == 200 and rec["origin"] == ng.node_id
        # The hub's own store was reopened from its folder: nothing lost, nothing doubled.
        n, distinct = fed_count(hub)
        assert n == distinct


async def test_down_peer_backed_off_and_caught_up_feed_failure(fed):
    """The back-off path when the failing request is the feed poll (directory refresh not due)."""
    await _down_hub_is_backed_off_then_caught_up(fed, warm_up=True, emulate_etag=True)


async def test_down_peer_backed_off_and_caught_up(fed):
    await _down_hub_is_backed_off_then_caught_up(fed, warm_up=True)


async def test_peer_down_from_the_first_round_is_backed_off(fed):
    await _down_hub_is_backed_off_then_caught_up(fed, warm_up=False)


async def test_missed_push_is_caught_up_by_pull(fed):
    """Without relying on back-off: the hub was down when Nigeria shared; pulling delivers it later."""
    build_wca(fed)
    await fed.start()
    ng = fed.members["Nigeria"]
    await fed.stop("WCA hub")
    async with aiohttp.ClientSession() as s:
        _, shared = await share(ng, s, "region:WCA", urgent=True)
        await fed.drain()
        assert shared["bundle"] not in fed.ids("WCA hub")
        await fed.start("WCA hub")
        await fed.sync("WCA hub", "Ghana")
        assert shared["bundle"] in fed.ids("WCA hub") and shared["bundle"] in fed.ids("Ghana")


async def test_directory_etag_is_kept_between_rounds(fed):
    build_wca(fed)
    await fed.start()
    gh, hub = fed.members["Ghana"], fed.members["WCA hub"]
    await fed.sync("Ghana")
    assert gh.driver.peers[hub.node_id].etag is not None
    descriptors, _ = await gh.driver.client.directory(hub.url, gh.driver.peers[hub.node_id].etag)
    assert descriptors is None  # 304: unchanged


def build_two_hubs(fed):
    fed.add("Hub A", "CI", "hub", ["WCA"])
    fed.add("Hub B", "SN", "hub", ["WCA"])
    fed.add("Nigeria", "NG", "national", ["WCA"])
    fed.add("Ghana", "GH", "national", ["WCA"])
    fed.wire()
    fed.peer("Ghana", "Hub A")
    fed.peer("Hub A", "Hub B")
    fed.peer("Nigeria", "Hub A")
    fed.peer("Nigeria", "Hub B")


async def _both_hubs_hold(fed, n):
    """Ghana shares ``n`` seizures to the region; both hubs end up holding them, Nigeria none yet."""
    await fed.start()
    gh = fed.members["Ghana"]
    bids = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            _, shared = await share(gh, s, "region:WCA", i)
            bids.append(shared["bundle"])
    await fed.drain()
    await fed.sync("Hub B")
    assert set(bids) <= fed.ids("Hub A") and set(bids) <= fed.ids("Hub B")
    assert not set(bids) & fed.ids("Nigeria")
    return bids


async def test_two_paths_one_copy_one_transfer(fed):
    build_two_hubs(fed)
    bids = await _both_hubs_hold(fed, 3)
    ng = fed.members["Nigeria"]
    hub_a, hub_b = fed.members["Hub A"], fed.members["Hub B"]
    drv = ng.driver
    await drv.load()
    transport = drv.client.transport
    calls: list[tuple[str, str, int]] = []  # (peer url, path, bytes received)
    real_send = transport.send

    async def send(base_url, method, path, query, body, headers):
        resp = await real_send(base_url, method, path, query, body, headers)
        calls.append((base_url, path, len(resp.body)))
        return resp

    transport.send = send
    try:
        # Hub A first, then Hub B, one after the other.
        for hub in (hub_a, hub_b):
            peer = drv.peers[hub.node_id]
            peer.machine.sync_now(ng.node.now_ms())
            assert await drv.sync_peer(peer) == "ok"
    finally:
        del transport.send
    fetches = [(url, n) for url, path, n in calls if path.endswith("/fetch")]
    assert [url for url, _ in fetches] == [hub_a.url]  # the bodies came once, from Hub A
    assert fetches[0][1] > 3 * 1000
    assert any(url == hub_b.url and path.endswith("/feed") for url, path, _ in calls)  # B was polled
    assert drv.peers[hub_a.node_id].machine.stats["fetched"] == 3
    assert drv.peers[hub_b.node_id].machine.stats["fetched"] == 0
    assert set(bids) <= fed.ids("Nigeria")
    n, distinct = fed_count(ng)
    assert n == distinct == 3
    # Later full rounds over both hubs change nothing.
    await fed.sync("Nigeria", rounds=2)
    assert fed_count(ng) == (3, 3)


def fed_count(member):
    from tests.federation.harness import db_rows

    return db_rows(member, "SELECT count(*), count(DISTINCT id) FROM bundles")[0]


async def test_two_paths_concurrent_rounds_transfer_once(fed):
    build_two_hubs(fed)
    bids = await _both_hubs_hold(fed, 3)
    ng = fed.members["Nigeria"]
    drv = ng.driver
    # Both hubs answer their feed before either fetch is done (a barrier makes the race certain).
    client = drv.client
    real_feed = client.feed
    arrived = 0
    both = asyncio.Event()

    async def feed(url, after, limit):
        nonlocal arrived
        page = await real_feed(url, after, limit)
        if page.items:
            arrived += 1
            if arrived >= 2:
                both.set()
            await asyncio.wait_for(both.wait(), 5)
        return page

    real_fetch = client.fetch
    requested: list[str] = []

    async def fetch(url, ids):
        requested.extend(ids)
        return await real_fetch(url, ids)

    client.feed, client.fetch = feed, fetch
    try:
        await asyncio.wait_for(fed.sync("Nigeria"), 20)
    finally:
        del client.feed, client.fetch
    assert set(bids) <= fed.ids("Nigeria")
    n, distinct = fed_count(ng)
    assert n == distinct  # stored once in any case
    assert sorted(requested) == sorted(bids), f"{len(requested)} bodies transferred for 3 bundles"


async def test_pushing_the_same_batch_twice_stores_nothing_twice(fed):
    build_wca(fed)
    await fed.start()
    ng, gh, hub = fed.members["Nigeria"], fed.members["Ghana"], fed.members["WCA hub"]
    batch = [seal_from(ng, [gh], make_seizure(i)) for i in range(5)]
    ids = [b.id for b in batch]
    async with aiohttp.ClientSession() as s:
        for target in (gh, hub):
            before = fed.ids(target.name)
            status, first = await push_as(s, ng, target, batch)
            assert status == 200, first
            assert sorted(first["accepted"]) == sorted(ids) and first["duplicate"] == [] and first["rejected"] == []
            status, second = await push_as(s, ng, target, batch)
            assert status == 200, second
            assert second["accepted"] == [] and sorted(second["duplicate"]) == sorted(ids)
            assert second["rejected"] == []
            assert fed.ids(target.name) == before | set(ids)
            n, distinct = fed_count(target)
            assert n == distinct
        # The same bundle twice within one batch: one accepted, the other copy a duplicate.
        one = seal_from(ng, [gh], make_seizure(99))
        status, answer = await push_as(s, ng, gh, [one, one])
        assert status == 200
        assert answer["accepted"] == [one.id] and answer["duplicate"] == [one.id]
        status, records = await api(gh, s, "GET", "/api/v1/records?limit=500")
        assert sorted(r["bundle_id"] for r in records["records"]) == sorted([*ids, one.id])
        # Pulling afterwards brings nothing twice either.
        await fed.sync(rounds=2)
        for name in ("Ghana", "WCA hub", "Nigeria"):
            n, distinct = fed_count(fed.members[name])
            assert n == distinct


async def test_bundle_committed_during_a_feed_read_is_not_skipped(fed, monkeypatch):
    from node.ingest import ingest
    from node.store import bundles as bundle_store

    build_wca(fed)
    await fed.start()
    ng, gh, hub = fed.members["Nigeria"], fed.members["Ghana"], fed.members["WCA hub"]
    await fed.sync("Ghana")  # Ghana's cursor into the hub is now at the hub's top
    late = seal_from(ng, [gh], make_seizure(7))
    loop = asyncio.get_running_loop()
    real_max_seq = bundle_store.max_seq
    armed = True

    def max_seq_after_a_commit(conn):
        # Exactly the interleaving of a push being stored while the hub serves Ghana's feed:
        # the commit lands after the page's SELECT and before max_seq().
        nonlocal armed
        if armed:
            armed = False
            result = asyncio.run_coroutine_threadsafe(ingest(hub.node, [late.obj], via=ng.node_id), loop).result(10)
            assert result.accepted == [late.id]
        return real_max_seq(conn)

    monkeypatch.setattr(bundle_store, "max_seq", max_seq_after_a_commit)
    await asyncio.wait_for(fed.sync("Ghana"), 20)
    assert not armed and late.id in fed.ids("WCA hub")
    monkeypatch.setattr(bundle_store, "max_seq", real_max_seq)
    await fed.sync("Ghana", rounds=2)
    assert late.id in fed.ids("Ghana")


async def test_directory_is_asked_for_every_directory_every_intervals(fed):
    """Unforced rounds on a fake clock: the directory is checked once per directory_every intervals."""
    from tests.federation.harness import set_setting

    build_wca(fed)
    gh = fed.members["Ghana"]
    set_setting(gh, "sync", "directory_every", 2)
    set_setting(gh, "sync", "jitter_s", 0)
    await fed.start()
    hub = fed.members["WCA hub"]
    now = [gh.node.clock()]
    gh.node.clock = lambda: now[0]
    transport = gh.driver.client.transport
    paths: list[str] = []
    real_send = transport.send

    async def send(base_url, method, path, query, body, headers):
        paths.append(path)
        return await real_send(base_url, method, path, query, body, headers)

    transport.send = send
    asked = []
    try:
        for _ in range(5):
            paths.clear()
            await gh.driver.sync_all()
            asked.append(paths.count("/federation/v1/directory"))
            now[0] += gh.node.settings.sync.interval_s
    finally:
        del transport.send
    assert gh.driver.peers[hub.node_id].etag
    assert asked == [1, 0, 1, 0, 1], asked
