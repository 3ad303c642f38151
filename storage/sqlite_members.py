"""The SQLite driver of the membership programs (storage.membership): each runs synchronously as one unit of work
on the group commit's thread (storage.sqlite), its values in the formats SQLAlchemy stores on SQLite."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from models.group_commit import sqlite_time, sqlite_uuid
from storage.base import Logged
from storage.membership import Dialect, Program, Query, advance, render

T = TypeVar("T")

DIALECT = Dialect(placeholder=lambda n: f"?{n + 1}", lock="", each=lambda n: f"json_each(?{n + 1})")


def _value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return sqlite_uuid(value)
    if isinstance(value, datetime):
        return sqlite_time(value)
    if isinstance(value, list):  # a list of ids, read back with json_each
        return json.dumps([_value(v) for v in value])
    return value


def _execute(connection: sqlite3.Connection, query: Query) -> Any:
    cursor = connection.execute(render(query.statement, DIALECT), tuple(_value(v) for v in query.params))
    return cursor.fetchall() if query.many else cursor.fetchone()


def unit(make: Callable[[list[Logged]], Program[T]]) -> Callable[[sqlite3.Connection, list[Logged]], T]:
    """The program `make(logged)` as a unit of work of the group commit."""

    def run(connection: sqlite3.Connection, logged: list[Logged]) -> T:
        program = make(logged)
        step = advance(program)
        while isinstance(step, Query):
            step = advance(program, _execute(connection, step))
        return step.value

    return run
