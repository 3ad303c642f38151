"""Run a coroutine synchronously up to its first suspension — Python 3.12's eager tasks, for one call site.

A WebSocket send to a socket that can take more data completes without ever suspending (uvicorn writes the
frame to the transport and returns). Waking a writer task per connection per event costs more than the
send itself, so the hub's fan-out starts each such send right where it is (`start`): usually it is done
then and there; if the socket is applying backpressure the send suspends, and the connection's writer task
takes over the suspended coroutine (`Suspended.finish`) before anything else queued for that socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class Suspended:
    """A coroutine that stopped at an `await`: `finish()` drives it to the end, as its task would have."""

    __slots__ = ("awaiting", "coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], awaiting: Any) -> None:
        self.coro = coro
        self.awaiting = awaiting

    async def finish(self) -> None:
        coro, awaiting = self.coro, self.awaiting
        try:
            while True:
                if awaiting is None:  # a bare yield (asyncio.sleep(0)): just let the loop run once
                    await asyncio.sleep(0)
                else:
                    # What a Task does with the future a coroutine yielded: wait until it is done, then resume
                    # the coroutine, which reads the future's result or exception itself.
                    awaiting._asyncio_future_blocking = False
                    if not awaiting.done():
                        await _done(awaiting)
                try:
                    awaiting = coro.send(None)
                except StopIteration:
                    return
        except BaseException:
            coro.close()
            raise


async def _done(future: asyncio.Future[Any]) -> None:
    """Wait until `future` is done, without taking its result (the suspended coroutine reads that)."""
    done = asyncio.get_running_loop().create_future()

    def wake(_: asyncio.Future[Any]) -> None:
        if not done.done():
            done.set_result(None)

    future.add_done_callback(wake)
    await done


def start(coro: Coroutine[Any, Any, Any]) -> Suspended | None:
    """Run `coro` until it finishes (None) or first suspends (a `Suspended` to finish later).
    An exception the coroutine raises before suspending propagates."""
    try:
        awaiting = coro.send(None)
    except StopIteration:
        return None
    return Suspended(coro, awaiting)
