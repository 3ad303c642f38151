"""`realtime.jsontext.dumps`: json.dumps's compact, non-ASCII-as-is text byte for byte for what events and frames
hold, and json.dumps itself for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from realtime.events import EVENT_TYPES
from realtime.jsontext import dumps
from tests.test_services_unit import build


def reference(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


@pytest.mark.parametrize(
    "value",
    [
        {"type": "new_message", "data": {"content": 'quotes " and \\ backslash', "seq": 9_223_372_036_854_775_807}},
        {"text": "ünïcödé, 🐾, \u2028\u2029, control \x01\x1f\x7f, tab\t newline\n, slash /"},
        {"nested": [1, "two", None, True, False, {"deep": [[[]]], "empty": {}}], "negative": -(2**63)},
        [],
        "just a string",
    ],
)
def test_dumps_writes_what_json_dumps_writes(value: Any) -> None:
    assert dumps(value) == reference(value)


@pytest.mark.parametrize("nulls", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("event_type", sorted(EVENT_TYPES))
def test_every_event_envelope_is_json_dumps_text(event_type: str, nulls: bool) -> None:
    event = build(EVENT_TYPES[event_type], nulls=nulls)
    assert event.encode() == reference(json.loads(event.encode()))


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value",
    [2**64, -(2**63) - 1, {"n": 10**30}, nested(300), {"lone": "\ud800"}],
    ids=["u64-plus-one", "i64-minus-one", "big-int-inside", "300-deep", "lone-surrogate"],
)
def test_what_orjson_refuses_takes_json_dumps(value: Any) -> None:
    assert dumps(value) == reference(value)
