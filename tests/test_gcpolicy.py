"""realtime.gcpolicy: survivors are frozen, a steady population pays no full collection, a turnover does."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from realtime import gcpolicy
from realtime.gcpolicy import GcPolicy


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    thresholds = gc.get_threshold()
    yield GcPolicy(turnover_min=100)
    gcpolicy._installed = None  # leave the test process's collector as it was
    gc.set_threshold(*thresholds)
    gc.unfreeze()
    gc.collect()


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of every collection CPython runs meanwhile."""
    seen: list[int] = []

    def note(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(note)
    yield seen
    gc.callbacks.remove(note)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only a full collection frees it


def test_survivors_are_frozen_and_full_collections_wait_for_a_turnover(policy: GcPolicy) -> None:
    live = [Node() for _ in range(1000)]
    refs = [weakref.ref(node) for node in live]
    policy.tick(closed=0, open_now=1000)
    assert gc.get_freeze_count() >= 1000, "live objects move to the permanent generation"

    del live  # a thousand "connections" close, each leaving a cycle behind
    policy.tick(closed=99, open_now=901)
    assert policy.full_collections == 0, "fewer closed than the turnover minimum: no full collection"
    assert all(ref() is not None for ref in refs), "frozen cycles wait for the full collection"
    policy.tick(closed=1000, open_now=0)
    assert policy.full_collections == 1
    assert all(ref() is None for ref in refs), "the cycles were collected"


def test_a_large_population_needs_as_many_closes_as_are_open(policy: GcPolicy) -> None:
    policy.tick(closed=500, open_now=5000)
    assert policy.full_collections == 0
    policy.tick(closed=5000, open_now=5000)
    assert policy.full_collections == 1
    policy.tick(closed=5100, open_now=5000)  # counted from the last full collection
    assert policy.full_collections == 1


def test_a_burst_of_survivors_starts_no_full_collection_between_ticks(policy: GcPolicy, collections: list[int]) -> None:
    """A reconnect storm's objects live on: CPython's own full collections would walk them again and again until the
    next freeze. Without the policy, this burst starts several (a control, so the test cannot pass for want of one)."""
    burst = [[i] for i in range(300_000)]
    assert 0 in collections and 1 in collections, "the young generations are still collected"
    assert 2 not in collections, "no full collection until the policy asks for one"
    policy.tick(closed=0, open_now=1)
    del burst

    gc.set_threshold(*gc.get_threshold()[:2], 10)  # CPython's default for the oldest generation
    gc.collect()  # the last full collection leaves little behind: a quarter of it is soon reached
    gc.freeze()
    collections.clear()
    control = [[i] for i in range(300_000)]
    assert 2 in collections, "CPython's default starts full collections in such a burst"
    del control
