"""The bench client's storm retries: a connection that fails to open is opened again, as a real client does, and
every retry is counted (the report shows them)."""

from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from bench import client
from bench.client import STORM_ATTEMPTS, Retried


def failing(times: int) -> tuple[Callable[[], Coroutine[Any, Any, str]], list[int]]:
    """An attempt that fails its first `times` calls, then opens; and the list of its calls."""
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(len(calls) + 1)
        if len(calls) <= times:
            raise ConnectionError("closed before the handshake completed")
        return "open"

    return attempt, calls


async def test_a_failed_storm_connection_is_opened_again_and_the_retry_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "STORM_RETRY_DELAY", 0.0)
    retried = Retried()
    attempt, calls = failing(STORM_ATTEMPTS - 1)
    assert await retried.open(attempt) == "open"
    assert calls == list(range(1, STORM_ATTEMPTS + 1)) and retried.retries == STORM_ATTEMPTS - 1
    opens_at_once, calls = failing(0)
    assert await retried.open(opens_at_once) == "open" and calls == [1] and retried.retries == STORM_ATTEMPTS - 1


async def test_a_storm_connection_that_never_opens_fails_after_the_last_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client, "STORM_RETRY_DELAY", 0.0)
    retried = Retried()
    attempt, calls = failing(STORM_ATTEMPTS)
    with pytest.raises(ConnectionError):
        await retried.open(attempt)
    assert len(calls) == STORM_ATTEMPTS and retried.retries == STORM_ATTEMPTS - 1


async def test_a_storm_connection_that_timed_out_is_not_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "STORM_RETRY_DELAY", 0.0)
    retried = Retried()
    calls: list[int] = []

    async def attempt() -> str:
        calls.append(1)
        raise TimeoutError

    with pytest.raises(TimeoutError):
        await retried.open(attempt)
    assert calls == [1] and retried.retries == 0
