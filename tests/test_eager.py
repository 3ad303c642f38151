"""realtime.eager: a coroutine run up to its first suspension, finished later exactly as a task would."""

from __future__ import annotations

import asyncio

import pytest

from realtime import eager


async def test_a_coroutine_that_never_suspends_is_done_at_once() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("sent")

    assert eager.start(quick()) is None
    assert done == ["sent"]


async def test_a_suspended_coroutine_resumes_with_its_futures_results_in_order() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    seen: list[object] = []

    async def slow() -> None:
        seen.append("started")
        seen.append(await first)
        await asyncio.sleep(0)  # a bare yield in between
        seen.append(await second)

    suspended = eager.start(slow())
    assert suspended is not None and seen == ["started"]
    finishing = asyncio.create_task(suspended.finish())
    loop.call_soon(first.set_result, "one")
    loop.call_later(0.01, second.set_result, "two")
    await asyncio.wait_for(finishing, 5)
    assert seen == ["started", "one", "two"]


async def test_exceptions_reach_the_coroutine_and_propagate() -> None:
    loop = asyncio.get_running_loop()
    failing = loop.create_future()
    handled: list[str] = []

    async def sender() -> None:
        try:
            await failing
        except ConnectionError:
            handled.append("saw it")
            raise

    suspended = eager.start(sender())
    assert suspended is not None
    failing.set_exception(ConnectionError("gone"))
    with pytest.raises(ConnectionError):
        await suspended.finish()
    assert handled == ["saw it"]

    async def broken() -> None:
        raise ValueError("before any await")

    with pytest.raises(ValueError):
        eager.start(broken())


async def test_cancelling_finish_closes_the_coroutine() -> None:
    never = asyncio.get_running_loop().create_future()
    cleaned: list[str] = []

    async def stuck() -> None:
        try:
            await never
        finally:
            cleaned.append("closed")

    suspended = eager.start(stuck())
    assert suspended is not None
    task = asyncio.create_task(suspended.finish())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["closed"]
