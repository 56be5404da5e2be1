"""Feed, fetch and push messages (PROTOCOL.md section 4) and the per-peer pull machine.

``PeerSync`` is sans-I/O: the driver asks ``next_action(now_ms)``, performs the
action, and reports the outcome as an event. It never reads a clock or a random
source; randomness enters only as ``jitter_ms``, passed with each event that may
end a round and added to the next due time only if that event does end it.

Rules of ``PeerSync`` (every transition lives in this file)::

    IDLE --next_action, now < due---------------> Wait(due)            (stays IDLE)
    IDLE --next_action, now >= due--------------> PollFeed(cursor.seq)  -> POLLING
    POLL --next_action--------------------------> PollFeed(cursor.seq)  -> POLLING
    POLLING --feed_received--------------------->  see below
    FETCH --next_action-------------------------> Fetch(<= FETCH_BATCH ids) -> FETCHING
    FETCHING --fetched-------------------------->  FETCH if ids remain, else page done
    POLL|POLLING|FETCH|FETCHING --failed-------->  IDLE, backing off
    any --sync_now------------------------------>  due = now (a running round is left alone)

1. feed_received: a page from another epoch than a non-empty cursor epoch
   means the peer's store was replaced: the cursor becomes (new epoch, 0) and,
   unless the poll was already for ``after=0``, the page is discarded -> POLL.
   Otherwise the missing ids (page order, de-duplicated) are queued -> FETCH;
   with nothing missing the page is done at once.
2. Page done: the cursor advances to (page.epoch, page.next); then ``more``
   -> POLL, else the round ends: failures = 0, due = now + interval + jitter -> IDLE.
3. Batch ids the peer did not return or that were rejected are not retried
   (the peer may never serve them to us) but counted as ``unavailable``.
4. failed: the round is abandoned and the cursor stays where it was last
   advanced; due = now + min(interval * 2**(failures-1), max_backoff) + jitter,
   where max_backoff is ``BACKOFF_INTERVALS`` intervals (at most MAX_BACKOFF_MS):
   a peer that comes back is noticed within a few intervals, not ten minutes.
5. The cursor never moves backwards within an epoch: a page whose ``next`` or
   item seqs do not lie after the polled cursor raises ``InvalidMessage`` and
   changes nothing (the driver then reports ``failed``). Events out of order,
   or a ``missing`` id that is not on the page, raise ``LocalProtocolError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import Field, dataclass, fields
from itertools import pairwise
from typing import Annotated, Any, ClassVar, Self, TypeVar

import msgspec

from protocol import shapes
from protocol.canonical import MAX_SAFE_INT, SafeUInt, encode_sorted, parse_json
from protocol.errors import InvalidMessage, LocalProtocolError

FEED_LIMIT_DEFAULT = 500  # what a server answers when the caller names no limit (section 4)
FEED_LIMIT_MAX = 1000
MAX_ITEMS = 1000
# What our puller asks for: whole pages of 1000, fetched in one batch (the driver splits the
# batch into overlapping requests). Every batch must be stored before the cursor moves on, so
# the pipeline drains at each batch's end: larger batches drain less often (scripts/bench sync).
PULL_LIMIT = FEED_LIMIT_MAX
FETCH_BATCH = MAX_ITEMS
DEFAULT_INTERVAL_MS = 30_000
MAX_BACKOFF_MS = 600_000
# Back-off stops growing at this many sync intervals. A failed poll costs one request, so
# retrying a dead peer every few intervals is cheap, while a 600 s cap at a 30 s interval
# left a node with a single peer deaf for 20 intervals after one unlucky round.
BACKOFF_INTERVALS = 4

BUNDLE_ID = re.compile(r"[A-Za-z0-9_-]{43}")
EPOCH = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DIGITS = re.compile(r"[0-9]{1,16}")


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SAFE_INT:
        raise InvalidMessage(field, f"must be an integer between 0 and {MAX_SAFE_INT}")
    return value


def _bundle_id(value: Any, field: str) -> str:
    if not isinstance(value, str) or not BUNDLE_ID.fullmatch(value):
        raise InvalidMessage(field, "is not a bundle id")
    return value


def _items(value: Any, field: str, low: int = 0) -> tuple[Any, ...]:
    if not isinstance(value, list | tuple):
        raise InvalidMessage(field, "must be a list")
    if not low <= len(value) <= MAX_ITEMS:
        raise InvalidMessage(field, f"must hold {low} to {MAX_ITEMS} items")
    return tuple(value)


def _ids(value: Any, field: str, low: int = 0) -> tuple[str, ...]:
    ids = tuple(_bundle_id(v, f"{field}[{i}]") for i, v in enumerate(_items(value, field, low)))
    if len(set(ids)) != len(ids):
        raise InvalidMessage(field, "holds duplicate ids")
    return ids


def _nested(kind: type[W], value: Any, field: str) -> tuple[W, ...]:
    """A list of ``kind``, given as instances or wire objects; errors name the full path."""
    out = []
    for i, item in enumerate(_items(value, field)):
        try:
            out.append(item if isinstance(item, kind) else kind.from_json(item))
        except InvalidMessage as exc:
            raise InvalidMessage(f"{field}[{i}]" + (f".{exc.field}" if exc.field else ""), exc.why) from None
    return tuple(out)


class _Wire:
    """Wire form shared by the messages: exactly the dataclass fields, tuples as lists.

    ``from_json`` checks the keys, then the constructor validates the values, so
    the only error either raises is ``InvalidMessage``.
    """

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # makes fields() type-check

    @classmethod
    def from_json(cls, obj: Any) -> Self:
        """Parse the wire form strictly; raises InvalidMessage."""
        return cls(**shapes.exact_keys(obj, "", [f.name for f in fields(cls)]))

    def to_json(self) -> dict[str, Any]:
        """The JSON-ready wire form."""
        return {f.name: _wire(getattr(self, f.name)) for f in fields(self)}

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # normalise a frozen field (lists from JSON -> tuples)


def _wire(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_wire(v) for v in value]
    return value.to_json() if isinstance(value, _Wire) else value


W = TypeVar("W", bound=_Wire)


@dataclass(frozen=True)
class FeedItem(_Wire):
    """One line of a peer's feed: a bundle it holds and may serve to the caller."""

    seq: int
    id: str
    origin: str
    created: int
    size: int

    def __post_init__(self) -> None:
        for name in ("seq", "created", "size"):
            _int(getattr(self, name), name)
        _bundle_id(self.id, "id")
        shapes.node_id(self.origin, "origin")


@dataclass(frozen=True)
class FeedPage(_Wire):
    """Answer to ``GET /feed``: items strictly increasing by seq, none past ``next``."""

    epoch: str
    items: tuple[FeedItem, ...]
    next: int
    more: bool

    def __post_init__(self) -> None:
        if not isinstance(self.epoch, str) or not EPOCH.fullmatch(self.epoch):
            raise InvalidMessage("epoch", "must be 1-64 characters of [A-Za-z0-9_-]")
        self._set("items", _nested(FeedItem, self.items, "items"))
        for i in range(1, len(self.items)):
            if not self.items[i - 1].seq < self.items[i].seq:
                raise InvalidMessage(f"items[{i}].seq", "must be strictly increasing")
        if _int(self.next, "next") < (self.items[-1].seq if self.items else 0):
            raise InvalidMessage("next", "is before the last item's seq")
        if not isinstance(self.more, bool):
            raise InvalidMessage("more", "must be true or false")

    @classmethod
    def from_body(cls, body: bytes) -> FeedPage:
        """``from_json(parse_json(body))``, from a feed answer's bytes.

        A page written canonically (as cenmesh writes it) is checked by a typed
        msgspec decode and an exact re-encode, with the same rules as
        ``from_json``, and built without the per-item dataclass checks (a
        feed page is up to 1,000 items, and every bundle a node pulls comes
        through one). Anything else takes the strict parse, which words the
        error; tests/protocol/test_sync.py holds the two to the same answers.
        """
        page = _page_fast(body)
        return page if page is not None else cls.from_json(parse_json(body))


class _WireItem(msgspec.Struct, forbid_unknown_fields=True):
    created: SafeUInt
    id: Annotated[str, msgspec.Meta(pattern=f"^{BUNDLE_ID.pattern}\\Z")]
    origin: Annotated[str, msgspec.Meta(pattern=f"^{shapes.NODE_ID.pattern}\\Z")]
    seq: SafeUInt
    size: SafeUInt


class _WirePage(msgspec.Struct, forbid_unknown_fields=True):
    epoch: Annotated[str, msgspec.Meta(pattern=f"^{EPOCH.pattern}\\Z")]
    items: Annotated[list[_WireItem], msgspec.Meta(max_length=MAX_ITEMS)]
    more: bool
    next: SafeUInt


_decode_page = msgspec.json.Decoder(_WirePage).decode


def _page_fast(body: bytes) -> FeedPage | None:
    try:
        wire = _decode_page(body)
        if encode_sorted(wire) != body:  # not canonical: a repeated key, spaces, escapes
            return None
    except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
        return None
    seqs = [i.seq for i in wire.items]
    if any(a >= b for a, b in pairwise(seqs)) or (seqs and wire.next < seqs[-1]):
        return None
    items = tuple(map(_item_new, wire.items))
    page = object.__new__(FeedPage)
    page.__dict__.update(epoch=wire.epoch, items=items, next=wire.next, more=wire.more)
    return page


def _item_new(w: _WireItem) -> FeedItem:
    item = object.__new__(FeedItem)
    item.__dict__.update(seq=w.seq, id=w.id, origin=w.origin, created=w.created, size=w.size)
    return item


@dataclass(frozen=True)
class FetchRequest(_Wire):
    """Body of ``POST /fetch``: 1 to 1000 distinct bundle ids."""

    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        self._set("ids", _ids(self.ids, "ids", 1))


@dataclass(frozen=True)
class _BundleList(_Wire):
    """Bundles as JSON objects; each is checked later, one by one, by ``parse_bundle``."""

    bundles: tuple[dict[str, Any], ...]
    MIN_ITEMS: ClassVar[int] = 0

    def __post_init__(self) -> None:
        self._set("bundles", _items(self.bundles, "bundles", self.MIN_ITEMS))
        for i, item in enumerate(self.bundles):
            if not isinstance(item, dict):
                raise InvalidMessage(f"bundles[{i}]", "must be an object")

    @classmethod
    def items_of(cls, body: bytes) -> list[Any]:
        """The bundles of a message's body, for ``parse_bundle`` one by one.

        A body written as cenmesh writes it (``{"bundles":[`` and the bundles'
        texts joined by commas, nothing else) is cut into the bundles' own
        texts without building any object: the bundle parse reads a canonical
        text fastest, and a node passes the texts to its workers more cheaply
        than objects. Any other body is parsed strictly (``parse_json``, then
        ``from_json``), which raises MalformedJSON or InvalidMessage as the
        message deserves, and its bundles come back as objects.
        """
        try:
            texts = [bytes(raw) for raw in _decode_raw_list(body).bundles]
        except (msgspec.MsgspecError, ValueError, TypeError, RecursionError):
            texts = None
        if (
            texts is not None
            and cls.MIN_ITEMS <= len(texts) <= MAX_ITEMS
            # Only the frame and the commas between items: no whitespace, no second key.
            and len(body) == len(_LIST_OPEN) + len(_LIST_CLOSE) + sum(map(len, texts)) + max(len(texts) - 1, 0)
            and body.startswith(_LIST_OPEN)
            and all(t[:1] == b"{" for t in texts)
        ):
            return texts
        return list(cls.from_json(parse_json(body)).bundles)


class _RawList(msgspec.Struct, forbid_unknown_fields=True):
    bundles: Annotated[list[msgspec.Raw], msgspec.Meta(max_length=MAX_ITEMS)]


_decode_raw_list = msgspec.json.Decoder(_RawList).decode
_LIST_OPEN = b'{"bundles":['
_LIST_CLOSE = b"]}"


@dataclass(frozen=True)
class FetchResponse(_BundleList):
    """Answer to ``POST /fetch``: 0 to 1000 bundles."""


@dataclass(frozen=True)
class PushRequest(_BundleList):
    """Body of ``POST /push``: 1 to 1000 bundles."""

    MIN_ITEMS: ClassVar[int] = 1


@dataclass(frozen=True)
class Rejection(_Wire):
    """One refused pushed bundle; ``id`` is "" when the bundle was too broken to hash."""

    id: str
    reason: str

    def __post_init__(self) -> None:
        if self.id != "":
            _bundle_id(self.id, "id")
        shapes.text({"reason": self.reason}, "reason", max_len=200)


@dataclass(frozen=True)
class PushResponse(_Wire):
    """Answer to ``POST /push``: the fate of every pushed bundle."""

    accepted: tuple[str, ...]
    duplicate: tuple[str, ...]
    rejected: tuple[Rejection, ...]

    def __post_init__(self) -> None:
        self._set("accepted", _ids(self.accepted, "accepted"))
        self._set("duplicate", _ids(self.duplicate, "duplicate"))
        self._set("rejected", _nested(Rejection, self.rejected, "rejected"))


def parse_feed_query(after: str | None, limit: str | None) -> tuple[int, int]:
    """Server side of ``GET /feed?after=&limit=``: (after, limit), limit capped at 1000."""
    values = []
    for name, raw, default in (("after", after, 0), ("limit", limit, FEED_LIMIT_DEFAULT)):
        if raw is None:
            values.append(default)
        elif not _DIGITS.fullmatch(raw) or int(raw) > MAX_SAFE_INT:
            raise InvalidMessage(name, "must be a non-negative integer")
        else:
            values.append(int(raw))
    if values[1] < 1:
        raise InvalidMessage("limit", "must be at least 1")
    return values[0], min(values[1], FEED_LIMIT_MAX)


@dataclass(frozen=True)
class Cursor:
    """How far this node has read one peer's feed; ``epoch`` "" means never read."""

    epoch: str
    seq: int

    def __post_init__(self) -> None:
        ok_epoch = self.epoch == "" or (isinstance(self.epoch, str) and EPOCH.fullmatch(self.epoch))
        ok_seq = isinstance(self.seq, int) and not isinstance(self.seq, bool) and self.seq >= 0
        if not (ok_epoch and ok_seq and (self.epoch or self.seq == 0)):
            raise LocalProtocolError(f"invalid cursor {self!r}")

    @classmethod
    def start(cls) -> Cursor:
        return cls("", 0)


@dataclass(frozen=True)
class PollFeed:
    """Send ``GET /feed?after=&limit=`` and report ``feed_received`` or ``failed``."""

    after: int
    limit: int


@dataclass(frozen=True)
class Fetch:
    """Send ``POST /fetch`` with these ids, ingest the answer, report ``fetched`` or ``failed``."""

    ids: tuple[str, ...]


@dataclass(frozen=True)
class Wait:
    """Nothing to do before ``until_ms``."""

    until_ms: int


Action = PollFeed | Fetch | Wait
_IDLE, _POLL, _POLLING, _FETCH, _FETCHING = "idle", "poll", "polling", "fetch", "fetching"


class PeerSync:
    """The pull side of syncing with one peer; see the module docstring for the rules."""

    def __init__(self, peer: str, cursor: Cursor, *, interval_ms: int = DEFAULT_INTERVAL_MS, now_ms: int,
                 feed_limit: int = PULL_LIMIT, fetch_batch: int = FETCH_BATCH) -> None:
        if interval_ms <= 0:
            raise LocalProtocolError("interval_ms must be positive")
        self.peer = peer
        self.interval_ms = interval_ms
        self.max_backoff_ms = min(MAX_BACKOFF_MS, BACKOFF_INTERVALS * interval_ms)
        self._cursor = cursor
        self._state = _IDLE
        self._due = now_ms
        self._failures = 0
        self._after = 0
        self._page: FeedPage | None = None
        self._queue: list[str] = []
        self._batch: tuple[str, ...] = ()
        self._feed_limit = feed_limit
        self._fetch_batch = fetch_batch
        self.stats = {"rounds": 0, "polls": 0, "fetched": 0, "unavailable": 0, "failures": 0}

    @property
    def cursor(self) -> Cursor:
        """Persist this after every event: it is where the next round resumes."""
        return self._cursor

    @property
    def failures(self) -> int:
        return self._failures

    @property
    def due_ms(self) -> int:
        """When the next round may start (meaningful while not ``in_round``)."""
        return self._due

    @property
    def backoff_until(self) -> int | None:
        """The end of the current back-off, or None when the last round did not fail."""
        return self._due if self._failures and self._state == _IDLE else None

    @property
    def in_round(self) -> bool:
        return self._state != _IDLE

    def next_action(self, now_ms: int) -> Action:
        """What the driver should do now."""
        if self._state == _IDLE:
            if now_ms < self._due:
                return Wait(self._due)
            self._state = _POLL
        if self._state == _POLL:
            self._state, self._after = _POLLING, self._cursor.seq
            self.stats["polls"] += 1
            return PollFeed(self._after, self._feed_limit)
        if self._state == _FETCH:
            self._batch, self._queue = tuple(self._queue[:self._fetch_batch]), self._queue[self._fetch_batch:]
            self._state = _FETCHING
            return Fetch(self._batch)
        raise LocalProtocolError(f"a request to {self.peer} is outstanding ({self._state})")

    def feed_received(self, page: FeedPage, missing: Iterable[str], now_ms: int, *, jitter_ms: int = 0) -> None:
        """The peer answered the PollFeed; ``missing`` are the page's ids this node lacks."""
        self._expect(_POLLING, "feed_received")
        jitter_ms = self._jitter(jitter_ms)
        wanted = list(dict.fromkeys(missing))
        if not {item.id for item in page.items}.issuperset(wanted):
            raise LocalProtocolError("missing holds ids that are not on the page")
        new_epoch = bool(self._cursor.epoch) and page.epoch != self._cursor.epoch
        if new_epoch and self._after != 0:
            self._cursor, self._state = Cursor(page.epoch, 0), _POLL
            return
        # Checked before any change, so a lying peer cannot move the cursor backwards or loop.
        if page.next < self._after or (page.more and page.next == self._after):
            raise InvalidMessage("next", "does not move past the cursor")
        if page.items and page.items[0].seq <= self._after:
            raise InvalidMessage("items[0].seq", "is not after the cursor")
        if new_epoch:
            self._cursor = Cursor(page.epoch, 0)
        order = {item.id: item.seq for item in reversed(page.items)}
        self._page, self._queue = page, sorted(wanted, key=order.__getitem__)
        self._state = _FETCH
        if not self._queue:
            self._page_done(now_ms, jitter_ms)

    def fetched(self, stored: Iterable[str], now_ms: int, *, jitter_ms: int = 0) -> None:
        """The last Fetch batch was ingested; ``stored`` are the ids now held (others are ignored)."""
        self._expect(_FETCHING, "fetched")
        jitter_ms = self._jitter(jitter_ms)
        got = set(stored).intersection(self._batch)
        self.stats["fetched"] += len(got)
        self.stats["unavailable"] += len(self._batch) - len(got)
        self._batch = ()
        self._state = _FETCH
        if not self._queue:
            self._page_done(now_ms, jitter_ms)

    def failed(self, now_ms: int, *, jitter_ms: int = 0) -> None:
        """A request to the peer failed: drop the round and back off exponentially."""
        if self._state == _IDLE:
            raise LocalProtocolError("failed() outside a round")
        jitter_ms = self._jitter(jitter_ms)
        self._failures += 1
        self.stats["failures"] += 1
        delay = min(self.interval_ms * 2 ** min(self._failures - 1, 32), self.max_backoff_ms)
        self._reset(now_ms + delay + jitter_ms)

    def sync_now(self, now_ms: int) -> None:
        """Make a round due at once (``cenmesh sync``, or the peer came back)."""
        if self._state == _IDLE:
            self._due = now_ms

    def _page_done(self, now_ms: int, jitter_ms: int) -> None:
        assert self._page is not None
        self._cursor = Cursor(self._page.epoch, self._page.next)
        if self._page.more:
            self._page, self._state = None, _POLL
            return
        self._failures = 0
        self.stats["rounds"] += 1
        self._reset(now_ms + self.interval_ms + jitter_ms)

    def _reset(self, due: int) -> None:
        self._state, self._due = _IDLE, due
        self._page, self._queue, self._batch = None, [], ()

    def _expect(self, state: str, event: str) -> None:
        if self._state != state:
            raise LocalProtocolError(f"{event}() while {self._state}, expected {state}")

    @staticmethod
    def _jitter(jitter_ms: int) -> int:
        if jitter_ms < 0:
            raise LocalProtocolError("jitter_ms must not be negative")
        return jitter_ms
