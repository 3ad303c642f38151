"""Checks on client-supplied values that every service shares."""

from __future__ import annotations

from services.errors import BadRequest

# Seqs are 64-bit integers in the database: a bound outside that range is a client error, not an overflow.
MIN_SEQ, MAX_SEQ = -(2**63), 2**63 - 1


def valid_text(value: str, name: str) -> str:
    """Text we can store on every database: valid Unicode (no lone surrogates) and no NUL characters."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{name}: expected valid Unicode text") from None
    if "\x00" in value:
        raise BadRequest(f"{name}: NUL characters are not allowed")
    return value
