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
    yield GcPolicy(turnover_min=100)
    gcpolicy._installed = None  # leave the test process's collector as it was
    gc.unfreeze()
    gc.collect()


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
