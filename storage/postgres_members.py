"""The PostgreSQL driver of the membership programs (storage.membership): each runs as one unit of work of the
writer's batched transaction (storage.postgres), locking the chat row whose membership it changes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from storage.base import Logged
from storage.membership import Dialect, Program, Query, advance, render

T = TypeVar("T")

DIALECT = Dialect(
    placeholder=lambda n: f"${n + 1}", lock=" FOR UPDATE", each=lambda n: f"unnest(${n + 1}::uuid[]) AS t(value)"
)


async def _execute(connection: asyncpg.Connection, query: Query) -> Any:
    statement = render(query.statement, DIALECT)
    if query.many:
        return await connection.fetch(statement, *query.params)
    return await connection.fetchrow(statement, *query.params)


def unit(make: Callable[[list[Logged]], Program[T]]) -> Callable[[asyncpg.Connection, list[Logged]], Awaitable[T]]:
    """The program `make(logged)` as a unit of work of the writer's transaction."""

    async def run(connection: asyncpg.Connection, logged: list[Logged]) -> T:
        program = make(logged)
        step = advance(program)
        while isinstance(step, Query):
            step = advance(program, await _execute(connection, step))
        return step.value

    return run
