"""Tests for protocol.sync: federation messages and the per-peer pull machine.

Time is a plain integer that the tests advance; nothing sleeps.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.bundle import parse_bundle
from protocol.canonical import b64u_encode, canonical, parse_json
from protocol.errors import InvalidBundle, InvalidMessage, LocalProtocolError, MalformedJSON
from protocol.sync import (
    DEFAULT_INTERVAL_MS,
    FEED_LIMIT_DEFAULT,
    FETCH_BATCH,
    MAX_BACKOFF_MS,
    PULL_LIMIT,
    Cursor,
    FeedItem,
    FeedPage,
    Fetch,
    FetchRequest,
    FetchResponse,
    PeerSync,
    PollFeed,
    PushRequest,
    PushResponse,
    Rejection,
    Wait,
    _page_fast,
    parse_feed_query,
)

T0 = 1_700_000_000_000
PEER = "n" + "p" * 24
ORIGIN = "n" + "a" * 24


def bid(n: int | str) -> str:
    """A well-formed bundle id derived from ``n``."""
    return b64u_encode(hashlib.sha256(str(n).encode()).digest())


def item(seq: int, ident: str | None = None) -> FeedItem:
    return FeedItem(seq, ident or bid(seq), ORIGIN, T0 - 1000, 900)


def page(seqs: range | list[int], next_: int, *, more: bool = False, epoch: str = "E1") -> FeedPage:
    return FeedPage(epoch, tuple(item(s) for s in seqs), next_, more)


def machine(cursor: Cursor | None = None, now: int = T0, fetch_batch: int = FETCH_BATCH) -> PeerSync:
    return PeerSync(PEER, cursor or Cursor.start(), now_ms=now, fetch_batch=fetch_batch)


SMALL_BATCH = 300  # a machine that fetches a page in several batches


def test_our_puller_fetches_a_whole_page_in_one_batch() -> None:
    assert FETCH_BATCH >= PULL_LIMIT and PULL_LIMIT <= 1000


# --- the machine -------------------------------------------------------------------------


def test_round_with_nothing_new() -> None:
    m = machine(Cursor("E1", 10))
    assert m.next_action(T0) == PollFeed(after=10, limit=PULL_LIMIT)
    assert m.in_round
    m.feed_received(page([], 17), [], T0 + 5)
    assert m.cursor == Cursor("E1", 17)
    assert not m.in_round
    assert m.next_action(T0 + 6) == Wait(T0 + 5 + DEFAULT_INTERVAL_MS)
    assert m.stats == {"rounds": 1, "polls": 1, "fetched": 0, "unavailable": 0, "failures": 0}
    # Due exactly at the deadline: the next round starts from the advanced cursor.
    assert m.next_action(T0 + 5 + DEFAULT_INTERVAL_MS) == PollFeed(after=17, limit=PULL_LIMIT)


def test_held_ids_are_not_fetched_and_jitter_delays_the_next_round() -> None:
    m = machine()
    m.next_action(T0)
    m.feed_received(page(range(1, 4), 3), [], T0, jitter_ms=1234)
    assert m.cursor == Cursor("E1", 3)
    assert m.due_ms == T0 + DEFAULT_INTERVAL_MS + 1234


def test_missing_ids_are_fetched_in_batches() -> None:
    m = machine(Cursor("E1", 0), fetch_batch=SMALL_BATCH)
    assert isinstance(m.next_action(T0), PollFeed)
    missing = SMALL_BATCH + 50
    p = page(range(1, missing + 1), missing + 10)
    m.feed_received(p, [i.id for i in reversed(p.items)], T0)
    sizes = []
    for n in range(2):
        action = m.next_action(T0 + n)
        assert isinstance(action, Fetch)
        sizes.append(len(action.ids))
        assert m.cursor == Cursor("E1", 0)  # not advanced before the last batch is stored
        m.fetched(action.ids, T0 + n)
    assert sizes == [SMALL_BATCH, 50]
    assert m.cursor == Cursor("E1", missing + 10)
    assert m.stats["fetched"] == missing
    assert m.next_action(T0 + 2) == Wait(T0 + 1 + DEFAULT_INTERVAL_MS)


def test_fetch_batches_keep_page_order_without_duplicates() -> None:
    m = machine()
    m.next_action(T0)
    p = page(range(1, 6), 5)
    ids = [i.id for i in p.items]
    m.feed_received(p, [ids[3], ids[1], ids[3], ids[0]], T0)
    assert m.next_action(T0) == Fetch((ids[0], ids[1], ids[3]))


def test_more_chains_polls_within_one_round() -> None:
    m = machine()
    assert m.next_action(T0) == PollFeed(0, PULL_LIMIT)
    m.feed_received(page(range(1, 3), 2, more=True), [], T0)
    assert m.cursor == Cursor("E1", 2)
    assert m.in_round
    assert m.next_action(T0) == PollFeed(2, PULL_LIMIT)
    p = page([3], 9, more=True)
    m.feed_received(p, [p.items[0].id], T0)
    assert m.next_action(T0) == Fetch((p.items[0].id,))
    m.fetched([p.items[0].id], T0)
    assert m.cursor == Cursor("E1", 9)
    assert m.next_action(T0) == PollFeed(9, PULL_LIMIT)
    m.feed_received(page([], 9), [], T0)
    assert not m.in_round
    assert m.stats["polls"] == 3 and m.stats["rounds"] == 1


def test_epoch_change_restarts_from_zero() -> None:
    m = machine(Cursor("E1", 500))
    m.next_action(T0)
    p = page([3, 4], 4, epoch="E2")
    m.feed_received(p, [i.id for i in p.items], T0)
    assert m.cursor == Cursor("E2", 0)
    assert m.next_action(T0) == PollFeed(0, PULL_LIMIT)  # page discarded, nothing fetched
    m.feed_received(page([1, 2], 2, epoch="E2"), [], T0)
    assert m.cursor == Cursor("E2", 2)


def test_epoch_change_on_a_poll_from_zero_is_accepted_directly() -> None:
    m = machine(Cursor("E1", 0))
    m.next_action(T0)
    m.feed_received(page([1], 1, epoch="E2"), [], T0)
    assert m.cursor == Cursor("E2", 1)
    assert not m.in_round


def test_first_contact_adopts_the_epoch() -> None:
    m = machine()
    m.next_action(T0)
    m.feed_received(page([], 0, epoch="Store-1"), [], T0)
    assert m.cursor == Cursor("Store-1", 0)


def test_failure_mid_fetch_keeps_cursor_and_backs_off() -> None:
    m = machine(Cursor("E1", 0), fetch_batch=SMALL_BATCH)
    now = T0
    m.next_action(now)
    m.feed_received(page([1], 1, more=True), [], now)
    assert m.cursor == Cursor("E1", 1)
    m.next_action(now)
    p = page(range(2, SMALL_BATCH + 202), SMALL_BATCH + 201)
    m.feed_received(p, [i.id for i in p.items], now)
    batch = m.next_action(now)
    assert isinstance(batch, Fetch)
    m.fetched(batch.ids, now)
    m.next_action(now)
    m.failed(now)
    assert m.cursor == Cursor("E1", 1)  # the half-fetched page is not passed
    assert not m.in_round
    delays = []
    while True:
        assert m.backoff_until == m.due_ms
        delays.append(m.due_ms - now)
        now = m.due_ms
        assert m.next_action(now - 1) == Wait(now)
        assert m.next_action(now) == PollFeed(1, PULL_LIMIT)
        if len(delays) == 7:
            break
        m.failed(now)
    # Capped at BACKOFF_INTERVALS intervals (4 x 30 s), so a peer that comes back is seen soon.
    assert delays == [30_000, 60_000, 120_000, 120_000, 120_000, 120_000, 120_000]
    assert m.failures == 7 and m.stats["failures"] == 7
    m.feed_received(page([], 401), [], now)
    assert m.failures == 0
    assert m.backoff_until is None
    assert m.cursor == Cursor("E1", 401)
    assert m.next_action(now) == Wait(now + DEFAULT_INTERVAL_MS)


def test_backoff_cap_is_relative_to_the_interval_and_at_most_ten_minutes() -> None:
    for interval, cap in ((5_000, 20_000), (30_000, 4 * 30_000), (300_000, MAX_BACKOFF_MS)):
        m = PeerSync(PEER, Cursor.start(), interval_ms=interval, now_ms=T0)
        now = T0
        for _ in range(12):
            m.next_action(now)
            m.failed(now)
            last, now = m.due_ms - now, m.due_ms
        assert last == cap, (interval, last)


def test_backoff_adds_jitter() -> None:
    m = PeerSync(PEER, Cursor.start(), interval_ms=1000, now_ms=T0)
    m.next_action(T0)
    m.failed(T0, jitter_ms=77)
    assert m.due_ms == T0 + 1000 + 77


def test_sync_now() -> None:
    m = machine()
    m.next_action(T0)
    m.feed_received(page([], 0), [], T0)
    assert isinstance(m.next_action(T0 + 1), Wait)
    m.sync_now(T0 + 1)
    assert m.next_action(T0 + 1) == PollFeed(0, PULL_LIMIT)
    m.sync_now(T0 + 2)  # a running round is left alone
    assert m.in_round
    m.failed(T0 + 2)
    assert m.next_action(T0 + 3) == Wait(T0 + 2 + DEFAULT_INTERVAL_MS)
    m.sync_now(T0 + 3)  # the peer came back: skip the back-off
    assert m.next_action(T0 + 3) == PollFeed(0, PULL_LIMIT)


def test_unavailable_ids_are_counted_and_not_retried() -> None:
    m = machine()
    m.next_action(T0)
    p = page(range(1, 6), 5)
    ids = [i.id for i in p.items]
    m.feed_received(p, ids, T0)
    assert m.next_action(T0) == Fetch(tuple(ids))
    m.fetched([ids[0], ids[2], bid("not asked for")], T0)
    assert m.stats["fetched"] == 2 and m.stats["unavailable"] == 3
    assert m.cursor == Cursor("E1", 5)
    assert m.next_action(T0) == Wait(T0 + DEFAULT_INTERVAL_MS)
    m.sync_now(T0)
    assert m.next_action(T0) == PollFeed(5, PULL_LIMIT)


def test_events_out_of_order_are_local_errors() -> None:
    m = machine()
    with pytest.raises(LocalProtocolError):
        m.fetched([], T0)
    with pytest.raises(LocalProtocolError):
        m.feed_received(page([], 0), [], T0)
    with pytest.raises(LocalProtocolError):
        m.failed(T0)
    m.next_action(T0)
    with pytest.raises(LocalProtocolError):
        m.next_action(T0)  # the PollFeed is still outstanding
    with pytest.raises(LocalProtocolError):
        m.fetched([], T0)
    with pytest.raises(LocalProtocolError):
        m.feed_received(page([1], 1), [bid("elsewhere")], T0)
    with pytest.raises(LocalProtocolError):
        m.feed_received(page([1], 1), [], T0, jitter_ms=-1)
    p = page([1], 1)
    m.feed_received(p, [p.items[0].id], T0)
    m.next_action(T0)
    with pytest.raises(LocalProtocolError):
        m.next_action(T0)  # the Fetch is still outstanding
    with pytest.raises(LocalProtocolError):
        m.feed_received(p, [], T0)
    with pytest.raises(LocalProtocolError):
        PeerSync(PEER, Cursor.start(), interval_ms=0, now_ms=T0)
    with pytest.raises(LocalProtocolError):
        Cursor("", 5)
    with pytest.raises(LocalProtocolError):
        Cursor("bad epoch", 0)


@pytest.mark.parametrize(
    "bad",
    [
        page([], 5),  # next before the cursor
        page([], 10, more=True),  # more, but next does not move: would loop forever
        page([10, 11], 11),  # an item at the cursor
    ],
)
def test_a_page_that_moves_the_cursor_back_is_refused_without_change(bad: FeedPage) -> None:
    m = machine(Cursor("E1", 10))
    m.next_action(T0)
    with pytest.raises(InvalidMessage):
        m.feed_received(bad, [], T0)
    assert m.cursor == Cursor("E1", 10) and m.in_round
    m.failed(T0)
    assert m.failures == 1


# --- messages ----------------------------------------------------------------------------


def test_messages_round_trip() -> None:
    p = page(range(1, 4), 7, more=True)
    wire = p.to_json()
    assert wire["items"][0] == {"seq": 1, "id": bid(1), "origin": ORIGIN, "created": T0 - 1000, "size": 900}
    assert set(wire) == {"epoch", "items", "next", "more"}
    assert FeedPage.from_json(wire) == p
    for msg in (
        FetchRequest((bid(1), bid(2))),
        FetchResponse(()),
        FetchResponse(({"v": 1},)),
        PushRequest(({"v": 1}, {"v": 2})),
        PushResponse((bid(1),), (bid(2),), (Rejection(bid(3), "signature"), Rejection("", "shape"))),
        PushResponse((), (), ()),
    ):
        assert type(msg).from_json(msg.to_json()) == msg
    assert PushResponse((), (), (Rejection("", "too-large"),)).to_json() == {
        "accepted": [],
        "duplicate": [],
        "rejected": [{"id": "", "reason": "too-large"}],
    }
    assert FetchRequest.from_json({"ids": [bid(1)]}).ids == (bid(1),)


def _feed_wire(**change: Any) -> dict[str, Any]:
    wire = page([1, 2], 2).to_json()
    wire.update(change)
    return wire


@pytest.mark.parametrize(
    ("cls", "obj", "field"),
    [
        (FeedPage, _feed_wire(items=[item(2).to_json(), item(1).to_json()]), "items[1].seq"),
        (FeedPage, _feed_wire(items=[item(1).to_json(), item(1).to_json()]), "items[1].seq"),
        (FeedPage, _feed_wire(next=1), "next"),
        (FeedPage, _feed_wire(more=1), "more"),
        (FeedPage, _feed_wire(next=True), "next"),
        (FeedPage, _feed_wire(next=-1), "next"),
        (FeedPage, _feed_wire(epoch=""), "epoch"),
        (FeedPage, _feed_wire(epoch="x" * 65), "epoch"),
        (FeedPage, _feed_wire(epoch="a/b"), "epoch"),
        (FeedPage, _feed_wire(extra=1), "extra"),
        (FeedPage, {"epoch": "E", "items": [], "next": 0}, "more"),
        (FeedPage, _feed_wire(items={}), "items"),
        (FeedPage, _feed_wire(items=[item(s).to_json() for s in range(1, 1002)], next=2000), "items"),
        (FeedPage, _feed_wire(items=[{**item(1).to_json(), "seq": True}]), "items[0].seq"),
        (FeedPage, _feed_wire(items=[{**item(1).to_json(), "id": "short"}]), "items[0].id"),
        (FeedPage, _feed_wire(items=[{**item(1).to_json(), "origin": "nX"}]), "items[0].origin"),
        (FeedPage, _feed_wire(items=[{**item(1).to_json(), "flag": 1}]), "items[0].flag"),
        (FeedPage, _feed_wire(items=[7]), "items[0]"),
        (FeedPage, [], ""),
        (FetchRequest, {"ids": []}, "ids"),
        (FetchRequest, {"ids": [bid(1), bid(1)]}, "ids"),
        (FetchRequest, {"ids": [bid(1), bid(2)[:-1] + "="]}, "ids[1]"),
        (FetchRequest, {"ids": [bid(n) for n in range(1001)]}, "ids"),
        (FetchRequest, {"ids": bid(1)}, "ids"),
        (PushRequest, {"bundles": []}, "bundles"),
        (PushRequest, {"bundles": [[]]}, "bundles[0]"),
        (FetchResponse, {"bundles": [1]}, "bundles[0]"),
        (FetchResponse, {"bundles": [], "more": False}, "more"),
        (PushResponse, {"accepted": [], "duplicate": [], "rejected": [{"id": "x", "reason": "r"}]}, "rejected[0].id"),
        (PushResponse, {"accepted": [], "duplicate": [], "rejected": [{"id": "", "reason": ""}]}, "rejected[0].reason"),
        (PushResponse, {"accepted": [""], "duplicate": [], "rejected": []}, "accepted[0]"),
        (PushResponse, {"accepted": [], "duplicate": []}, "rejected"),
    ],
)
def test_bad_messages_are_refused_naming_the_field(cls: Any, obj: Any, field: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        cls.from_json(obj)
    assert info.value.field == field


def test_parse_feed_query() -> None:
    assert parse_feed_query(None, None) == (0, FEED_LIMIT_DEFAULT)
    assert parse_feed_query("42", "10") == (42, 10)
    assert parse_feed_query("0", "1000") == (0, 1000)
    assert parse_feed_query("7", "5000") == (7, 1000)  # capped, not refused
    for after in ("-1", "1.5", "", "abc", " 5", "٣", "1e3", "99999999999999999"):
        with pytest.raises(InvalidMessage) as info:
            parse_feed_query(after, None)
        assert info.value.field == "after"
    for limit in ("0", "-5", "ten", "+3"):
        with pytest.raises(InvalidMessage) as info:
            parse_feed_query(None, limit)
        assert info.value.field == "limit"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=50)
    | st.sampled_from([bid(1), bid(2), ORIGIN, "", "E1"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
FIELDS = ["epoch", "items", "next", "more", "seq", "id", "origin", "created", "size", "ids",
          "bundles", "accepted", "duplicate", "rejected", "reason"]
NEAR = st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=6)
PARSERS = [FeedItem, FeedPage, FetchRequest, FetchResponse, PushRequest, PushResponse, Rejection]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=JSON | NEAR | st.builds(lambda items: {"epoch": "E", "items": items, "next": 9, "more": False},
                                    st.lists(st.dictionaries(st.sampled_from(FIELDS), JSON), max_size=3)))
def test_random_json_raises_only_invalid_message(obj: Any) -> None:
    for cls in PARSERS:
        try:
            msg = cls.from_json(obj)
        except InvalidMessage:
            continue
        assert cls.from_json(msg.to_json()) == msg


# --- simulation against a model peer -----------------------------------------------------


class ModelPeer:
    """A peer's feed: every bundle gets a seq; some are invisible to us; ``next`` skips them."""

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.entries: list[tuple[int, str, bool]] = []

    def add(self, visible: list[bool]) -> None:
        for v in visible:
            seq = len(self.entries) + 1
            self.entries.append((seq, bid(f"{self.epoch}/{seq}"), v))

    def feed(self, after: int, limit: int) -> FeedPage:
        items: list[FeedItem] = []
        next_ = after
        for seq, ident, visible in self.entries:
            if seq <= after:
                continue
            if len(items) == limit:
                break
            next_ = seq
            if visible:
                items.append(item(seq, ident))
        more = any(seq > next_ for seq, _, _ in self.entries)
        return FeedPage(self.epoch, tuple(items), next_, more)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_simulated_sync_keeps_the_cursor_invariants(data: st.DataObject) -> None:
    peer = ModelPeer("E1")
    peer.add(data.draw(st.lists(st.booleans(), max_size=30)))
    page_limit = data.draw(st.integers(1, 6))  # a server may answer fewer items than asked
    m = machine()
    store: set[str] = set()
    given_up: set[str] = set()
    now = T0
    epochs = 1

    def step(allow_failure: bool) -> None:
        nonlocal now
        action = m.next_action(now)
        if isinstance(action, Wait):
            assert action.until_ms > now
            now = action.until_ms
            return
        if allow_failure and data.draw(st.integers(0, 6)) == 0:
            m.failed(now, jitter_ms=data.draw(st.integers(0, 1000)))
            return
        if isinstance(action, PollFeed):
            p = peer.feed(action.after, min(action.limit, page_limit))
            m.feed_received(p, [i.id for i in p.items if i.id not in store], now)
            return
        served = {i for _, i, vis in peer.entries if vis} & set(action.ids)
        stored = {i for i in served if data.draw(st.integers(0, 9)) > 0}  # some withheld or rejected
        store.update(stored)
        given_up.update(set(action.ids) - stored)
        m.fetched(sorted(stored), now)

    def check(before: Cursor) -> None:
        after = m.cursor
        if after.epoch == before.epoch:
            assert after.seq >= before.seq, "cursor moved backwards within an epoch"
        if after.epoch == peer.epoch:
            for seq, ident, visible in peer.entries:
                if visible and seq <= after.seq:
                    assert ident in store or ident in given_up, "cursor passed an unfetched id"

    for _ in range(data.draw(st.integers(1, 80))):
        before = m.cursor
        event = data.draw(st.sampled_from(["step"] * 6 + ["add", "new-epoch", "sync-now", "tick"]))
        if event == "step":
            step(allow_failure=True)
        elif event == "add":
            peer.add(data.draw(st.lists(st.booleans(), max_size=10)))
        elif event == "new-epoch":
            epochs += 1
            peer = ModelPeer(f"E{epochs}")
            peer.add(data.draw(st.lists(st.booleans(), max_size=10)))
        elif event == "sync-now":
            m.sync_now(now)
        else:
            now += data.draw(st.integers(0, 100_000))
        check(before)

    # Liveness: with the peer answering, a round started now reaches the end of its feed.
    def finish_round() -> None:
        for _ in range(10_000):
            before = m.cursor
            step(allow_failure=False)
            check(before)
            if not m.in_round:
                return

    if m.in_round:
        finish_round()  # a round begun before the last change of the peer
    m.sync_now(now)
    finish_round()
    assert not m.in_round and m.failures == 0
    assert m.cursor == Cursor(peer.epoch, len(peer.entries))
    assert all(i in store or i in given_up for _, i, vis in peer.entries if vis)


def test_bundle_lists_written_as_cenmesh_writes_them_are_cut_into_texts() -> None:
    a, b = b'{"v":1,"x":"a"}', b'{"v":2,"nested":{"k":[1,2]}}'
    assert FetchResponse.items_of(b'{"bundles":[' + a + b"," + b + b"]}") == [a, b]
    assert FetchResponse.items_of(b'{"bundles":[]}') == []
    assert PushRequest.items_of(b'{"bundles":[' + a + b"]}") == [a]
    # Any other spelling is parsed strictly, and its bundles come back as objects.
    assert FetchResponse.items_of(b'{"bundles": [' + a + b"]}") == [{"v": 1, "x": "a"}]
    assert FetchResponse.items_of(b'{"bundles":[' + a + b"] }") == [{"v": 1, "x": "a"}]
    # A bad bundle inside a well-framed list is that bundle's problem: the bundle parse
    # refuses it (and ingest counts it), the others go on.
    for bad in (b'{"v":1.5}', b'{"v":1,"v":1}', b'{"v":1 }'):
        texts = FetchResponse.items_of(b'{"bundles":[' + a + b"," + bad + b"]}")
        assert texts == [a, bad]
        with pytest.raises(InvalidBundle) as info:
            parse_bundle(bad)
        assert info.value.reason == "shape"


@pytest.mark.parametrize(
    ("cls", "body", "error"),
    [
        (FetchResponse, b'{"bundles":[],"bundles":[]}', MalformedJSON),  # a repeated key
        (FetchResponse, b'{"bundles":[1]}', InvalidMessage),
        (FetchResponse, b'{"bundles":[[]]}', InvalidMessage),
        (FetchResponse, b'{"bundles":{}}', InvalidMessage),
        (FetchResponse, b'{"bundles":[],"more":false}', InvalidMessage),
        (FetchResponse, b'{"bundles":[' + b",".join([b"{}"] * 1001) + b"]}", InvalidMessage),
        (PushRequest, b'{"bundles":[]}', InvalidMessage),
        (FetchResponse, b'{"bundles":[{}]', MalformedJSON),
        (FetchResponse, b"", MalformedJSON),
    ],
)
def test_bad_bundle_lists_are_refused_as_the_strict_parse_refuses_them(cls: Any, body: bytes, error: type) -> None:
    with pytest.raises(error):
        cls.items_of(body)


def _page_outcome(parse: Any, body: bytes) -> tuple[Any, ...]:
    try:
        return ("ok", parse(body).to_json())
    except InvalidMessage as exc:
        return ("InvalidMessage", exc.field, exc.why)
    except MalformedJSON as exc:
        return ("MalformedJSON", str(exc))


def _feed_bodies() -> list[bytes]:
    good = canonical(page(range(1, 6), 9, more=True).to_json())
    one = canonical(item(3).to_json())
    bodies = [good, canonical(page([], 0).to_json()), canonical(page([7], 7, epoch="x" * 64).to_json())]
    swaps = [
        (b'"next":9', b'"next":4'), (b'"next":9', b'"next":-1'), (b'"next":9', b'"next":9.0'),
        (b'"next":9', b'"next":9007199254740992'), (b'"more":true', b'"more":1'), (b'"epoch":"E1"', b'"epoch":""'),
        (b'"epoch":"E1"', b'"epoch":"E 1"'), (b'"epoch":"E1"', b'"epoch":"E1","epoch":"E2"'),
        (b'"seq":2', b'"seq":1'), (b'"seq":2', b'"seq":9'), (b'"seq":2', b'"seq":"2"'), (b'"size":900', b'"size":-900'),
        (b'"origin":"n', b'"origin":"N'), (b'"origin":"n', b'"origin":"\\u006e'), (b'"id":"', b'"id":"x'),
        (b'"id":"', b'"flag":1,"id":"'), (b'"created":', b'"created": '), (b"{", b" {"), (b'"items":[', b'"items":[7,'),
        (b'"items":[', b'"items":[' + one + b","), (b',"more":true', b""),
    ]
    for old, new in swaps:
        assert old in good, old
        bodies.append(good.replace(old, new, 1))
    bodies.append(good[:-1])
    bodies.append(b'{"epoch":"E1","items":' + b"[" + b",".join([one] * 1001) + b'],"more":false,"next":3}')
    return bodies


def test_feed_pages_parse_from_bytes_as_the_strict_parse_does() -> None:
    fast_path_taken = 0
    for body in _feed_bodies():
        expected = _page_outcome(lambda b: FeedPage.from_json(parse_json(b)), body)
        assert _page_outcome(FeedPage.from_body, body) == expected, body[:200]
        fast_path_taken += _page_fast(body) is not None
    assert fast_path_taken == 3  # the canonical valid pages; every other one went the strict way
