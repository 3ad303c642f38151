"""Reading events back: the decoder of the bus envelope (`Event.encode`'s inverse, used once per event per process)
and each event type's JSON schema (`payload_schema`, what the tests check both protocols' output against)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import datetime
from typing import Any

from realtime.events import ENVELOPE_FIELDS, EVENT_TYPES, Event, hints_of
from realtime.positions import Pos


class EventDecodeError(ValueError):
    pass


def decode(raw: str) -> Event:
    """The inverse of `Event.encode` (used once per event per process)."""
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise EventDecodeError(f"expected an encoded event, got {raw[:200]!r}") from exc
    return decode_envelope(envelope)


def decode_envelope(envelope: Any) -> Event:
    """An event from its parsed JSON envelope."""
    try:
        cls = EVENT_TYPES[envelope["type"]]
        data = envelope["data"]
        raw_pos = envelope.get("pos")
        pos = None if raw_pos is None else Pos.decode(raw_pos)
        seq = envelope.get("seq")
        if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool)):
            raise TypeError("seq")
        origin = envelope.get("origin")
        if origin is not None and not isinstance(origin, str):
            raise TypeError("origin")
        event = cls.from_envelope(data, envelope)
        if pos is not None or seq is not None or origin is not None:
            event = dataclasses.replace(event, pos=pos, seq=seq, origin=origin)
        return event
    except (KeyError, TypeError, ValueError) as exc:
        raise EventDecodeError(f"expected an encoded event, got {str(envelope)[:200]!r}") from exc


def payload_schema(cls: type) -> dict[str, Any]:
    """The JSON shape of a dataclass: field name -> JSON type name, or a nested schema.

    JSON type names: "string" (also UUIDs and ISO timestamps), "integer", "boolean", "object",
    "array"; a trailing "?" marks a nullable field. An array of dataclasses is a list of one nested schema.
    """
    schema: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in ENVELOPE_FIELDS and issubclass(cls, Event):
            continue
        hint = hints_of(cls)[f.name]
        schema[f.name] = _json_type(hint)
    return schema


def _json_type(hint: Any) -> Any:
    nullable = False
    args = getattr(hint, "__args__", ())
    if type(None) in args:
        nullable = True
        hint = next(a for a in args if a is not type(None))
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        nested = payload_schema(hint)
        return {"?": nested} if nullable else nested
    if hint in (uuid.UUID, str, datetime):
        name = "string"
    elif hint is bool:
        name = "boolean"
    elif hint is int:
        name = "integer"
    elif getattr(hint, "__origin__", None) in (tuple, list):
        item = hint.__args__[0]
        if isinstance(item, type) and dataclasses.is_dataclass(item):
            return [payload_schema(item)]
        name = "array"
    else:
        name = "object"
    return name + ("?" if nullable else "")
