"""The sync job's tick keeps the realized round period close to the configured interval."""

from __future__ import annotations

import random
from itertools import pairwise

from node.scheduler import tick_seconds
from protocol.sync import Cursor, FeedPage, PeerSync, PollFeed

EPOCH = "E1"


def realized_periods(interval_s: int, jitter_s: int, rounds: int = 200) -> list[float]:
    """Drive one peer's machine with the scheduler's ticks (and random jitter, as the driver
    does) against an idle peer; return the seconds between round starts."""
    rng = random.Random(5)
    tick_ms = tick_seconds(interval_s) * 1000
    now = 1_700_000_000_000 + rng.randrange(tick_ms)
    m = PeerSync("n" * 43, Cursor.start(), interval_ms=interval_s * 1000, now_ms=now)
    starts = []
    while len(starts) < rounds:
        action = m.next_action(now)
        if isinstance(action, PollFeed):
            starts.append(now)
            m.feed_received(FeedPage(EPOCH, (), 0, False), [], now, jitter_ms=rng.randint(0, jitter_s * 1000))
        now += tick_ms
    return [(b - a) / 1000 for a, b in pairwise(starts)]


def test_realized_period_stays_within_a_tenth_of_interval_plus_jitter() -> None:
    for interval_s, jitter_s in ((30, 5), (60, 5), (300, 30)):
        periods = realized_periods(interval_s, jitter_s)
        # A round starts at the first tick after interval + jitter: at most one tick late.
        assert max(periods) <= (interval_s + jitter_s) * 1.1 + 1, (interval_s, max(periods))
        assert min(periods) >= interval_s


def test_tick_is_at_least_a_second() -> None:
    assert tick_seconds(1) == 1 and tick_seconds(5) == 1
