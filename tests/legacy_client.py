"""A real legacy-protocol client for tests (the `websockets` library), with frames collected in a queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

from tests.support import EVENT_TIMEOUT, Api, User


class LegacyClient:
    def __init__(self, api: Api, user: User, *, token: str | None = None, path_user: str | None = None) -> None:
        self.api = api
        self.user = user
        self.url = f"{api.server.ws_url}/websocket/ws/{path_user or user.id}?token={token or user.token}"
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._probe = 0
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> LegacyClient:
        self.ws = await websockets.connect(self.url, max_size=None)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                await self.frames.put(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self.closed.set()

    async def send(self, type_: str, data: Any = None, *, raw: str | None = None) -> None:
        assert self.ws is not None
        await self.ws.send(
            raw if raw is not None else json.dumps({"type": type_, "data": {} if data is None else data})
        )

    async def next(self, type_: str | None = None, *, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next frame (of `type_`, skipping others); fails at once when the server has closed and no frame
        is left."""
        deadline = time.monotonic() + timeout
        while True:
            if self.frames.empty() and self.closed.is_set():
                raise AssertionError(f"no {type_ or 'frame'}: the server closed the connection ({self.close_code})")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {type_ or 'frame'} within {timeout}s")
            getter = asyncio.ensure_future(self.frames.get())
            closer = asyncio.ensure_future(self.closed.wait())
            try:
                await asyncio.wait({getter, closer}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                closer.cancel()
                if not getter.done():
                    getter.cancel()
            if not getter.done() or getter.cancelled():
                continue
            frame = getter.result()
            if type_ is None or frame["type"] == type_:
                return frame

    async def request(self, type_: str, data: Any = None, *, reply: str) -> dict[str, Any]:
        await self.send(type_, data)
        return await self.next(reply)

    async def ready(self) -> LegacyClient:
        """The stream is live once a command's reply arrives: commands are served after subscription."""
        await self.request("get_chat_status", reply="chat_status")
        return self

    async def collect_until(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = EVENT_TIMEOUT
    ) -> list[dict[str, Any]]:
        seen = []
        while True:
            frame = await self.next(timeout=timeout)
            seen.append(frame)
            if predicate(frame):
                return seen

    async def marker(self, name: str) -> list[dict[str, Any]]:
        """Every frame that arrived before a marker notification sent now (frames arrive in publish order)."""
        await self.api.notify_user(self.user.id, {"marker": name})
        seen = await self.collect_until(lambda f: f["type"] == "global_notification" and f["data"] == {"marker": name})
        return seen[:-1]

    async def wait_closed(self, timeout: float = EVENT_TIMEOUT) -> int | None:
        await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._reader, 5)


@contextlib.asynccontextmanager
async def legacy(api: Api, user: User) -> AsyncIterator[LegacyClient]:
    client = await LegacyClient(api, user).connect()
    await client.ready()
    try:
        yield client
    finally:
        await client.close()
