"""Garbage collection for a process whose objects live as long as its connections.

A full CPython collection walks every tracked object: a few hundred per open connection, so ~250 ms per
thousand connections on this class of machine — a pause every event in flight waits out. CPython starts one
whenever the objects that survived into the oldest generation grow by a quarter, which a burst of new
connections does at once, and steady traffic does every few minutes. Yet nearly all of those objects stay
alive until their connection closes, and a closed connection is freed by reference counting (the hub and the
GraphQL context drop the references that used to make it a cycle).

So, every `FREEZE_SECONDS` (a second), the young generations are collected and the survivors moved to the permanent
generation (`gc.freeze`): full collections then walk only what is new. Frozen objects freed by reference
counting leave it at once. What stays behind is the few reference cycles a closed connection still leaves
(tens of objects for a GraphQL one, next to none for a legacy one): they are reclaimed by one full collection
each time as many connections have closed as are open (at least `TURNOVER_MIN`) — so the garbage kept
is bounded by a fraction of the live objects, and a steady population pays no full collection at all.

CPython's own full collections are switched off (`FULL_COLLECTION_THRESHOLD`): it would start one after every ten
collections of the middle generation once the objects that reached the oldest one outnumber a quarter of those the
last full collection left there — and once those were frozen, that is a quarter of almost nothing. In a reconnect
storm of 10,000 clients it started one every second or so, 50-80 ms each (10-20 % of the server's time), walking
what the next freeze moves out of its way anyway. The young generations keep CPython's thresholds: larger ones
made their collections cost more in total, not less (measured).
"""

from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger(__name__)

FREEZE_SECONDS = 1.0
TURNOVER_MIN = 1000
# The oldest generation's threshold while a policy is installed: CPython never gets there.
FULL_COLLECTION_THRESHOLD = 1 << 30

# The policy of this process, if it has one (the server's; scripts and tests leave their collector alone).
_installed: GcPolicy | None = None


def settle() -> None:
    """After a burst of allocation whose results live on (a large GraphQL document parsed and validated, now
    cached and in flight): collect what is new since the last freeze and freeze the survivors.

    Without it, every full collection CPython starts in the meantime walks those objects again: a few of them
    per large document kept the event loop waiting 20-80 ms each. Because survivors are frozen each time, this
    walks only what was allocated since the previous freeze (one document's worth), and it frees the cyclic
    garbage among it before it could be frozen. Nothing happens in a process without a policy."""
    if _installed is not None:
        gc.collect()
        gc.freeze()


class GcPolicy:
    def __init__(self, *, turnover_min: int = TURNOVER_MIN) -> None:
        self.turnover_min = turnover_min
        self.full_collections = 0
        self._closed_at_collection = 0
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_THRESHOLD)
        global _installed
        _installed = self

    def tick(self, *, closed: int, open_now: int) -> None:
        """Freeze what survived the young generations; collect everything once after a turnover of connections.

        `closed` is the running total of connections closed in this process, `open_now` how many are open."""
        gc.collect(1)
        gc.freeze()
        if closed - self._closed_at_collection < max(self.turnover_min, open_now):
            return
        self._closed_at_collection = closed
        started = time.perf_counter()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        collected = gc.collect()
        gc.freeze()
        self.full_collections += 1
        log.info(
            "full garbage collection after %d closed connections: %d objects walked, %d collected in %.0f ms",
            closed,
            frozen,
            collected,
            (time.perf_counter() - started) * 1000,
        )
