"""Where a durable event stands in the event log, and how far a stream has got: positions and vectors.

Every process writes through one writer (storage), which holds a writer slot: an event's position is (slot, n),
where n is that writer's own gap-free counter, taken in the transaction that records the event (so n follows the
writer's commit order, and a transaction that rolls back takes no n). No counter is shared by two writers: nothing
serializes the cluster's writes.

A stream's progress is a vector: per writer slot, the highest n up to which everything for this stream has been
delivered. A client's resume cursor is such a vector, opaque to it: `tt2.` then `slot-n` pairs in hexadecimal,
joined with `.`. The one-writer cursors of earlier builds (`tt1.<n>`) read as slot 0, where those events stay.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

_PREFIX = "tt2."
_LEGACY_PREFIX = "tt1."
# A cursor longer than this is not one of ours (64 writer slots of 12 hex digits fit easily).
MAX_CURSOR_LENGTH = 2048


@dataclass(frozen=True, slots=True, order=True)
class Pos:
    """A durable event's position: the writer slot that recorded it and that writer's counter."""

    writer: int
    n: int

    def encode(self) -> list[int]:
        return [self.writer, self.n]

    @classmethod
    def decode(cls, value: object) -> Pos:
        if (
            isinstance(value, list)
            and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        ):
            return cls(value[0], value[1])
        raise ValueError(f"expected [writer, n], got {value!r}")


class Vector:
    """Per writer slot, the highest n reached (absent: 0). Immutable."""

    __slots__ = ("_encoded", "_items")

    def __init__(self, items: Mapping[int, int] | Iterable[tuple[int, int]] = ()) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self._items: dict[int, int] = {w: n for w, n in pairs if n > 0}
        self._encoded: str | None = None

    def __getitem__(self, writer: int) -> int:
        return self._items.get(writer, 0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vector) and self._items == other._items

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return f"Vector({dict(sorted(self._items.items()))})"

    def items(self) -> Iterable[tuple[int, int]]:
        return self._items.items()

    @property
    def writers(self) -> set[int]:
        return set(self._items)

    def with_(self, pos: Pos) -> Vector:
        """This vector, moved to `pos` for its writer if that is further."""
        if pos.n <= self[pos.writer]:
            return self
        return Vector({**self._items, pos.writer: pos.n})

    def max(self, other: Vector) -> Vector:
        """Per writer, the further of the two."""
        return Vector({w: max(self[w], other[w]) for w in self.writers | other.writers})

    def covers(self, pos: Pos) -> bool:
        """True if `pos` is at or below this vector (delivered, for the stream it describes)."""
        return pos.n <= self._items.get(pos.writer, 0)

    def beyond(self, other: Vector) -> bool:
        """True if this vector is ahead of `other` for some writer."""
        return any(n > other[w] for w, n in self._items.items())

    def cursor(self) -> str:
        """The opaque resume cursor (computed once per vector)."""
        if self._encoded is None:
            self._encoded = _PREFIX + ".".join(f"{w:x}-{n:x}" for w, n in sorted(self._items.items()))
        return self._encoded

    @classmethod
    def from_cursor(cls, cursor: object) -> Vector | None:
        """The vector of a cursor, or None if it is not one of ours."""
        if not isinstance(cursor, str) or len(cursor) > MAX_CURSOR_LENGTH:
            return None
        try:
            if cursor.startswith(_LEGACY_PREFIX):
                return cls({0: _hex(cursor[len(_LEGACY_PREFIX) :])})
            if not cursor.startswith(_PREFIX):
                return None
            body = cursor[len(_PREFIX) :]
            items: dict[int, int] = {}
            for pair in body.split(".") if body else ():
                writer, _, n = pair.partition("-")
                w = _hex(writer)
                if w in items:
                    return None
                items[w] = _hex(n)
            return cls(items)
        except ValueError:
            return None


def _hex(text: str) -> int:
    if not text or len(text) > 16 or not all(c in "0123456789abcdef" for c in text):
        raise ValueError(text)
    return int(text, 16)
