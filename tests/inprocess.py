"""A real uvicorn serving `create_app(settings)` inside the test's own event loop.

For behaviour that needs the server's process-local objects — the module-level `websocket_manager` bound by
the app's lifespan, or the app's `Runtime` — while still talking to it over real HTTP and WebSockets.
It has the `url` / `ws_url` of `tests.support.Server`, so `tests.support.Api` and `Subscriber` work on it.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType

import uvicorn
from uvicorn.server import ServerState

from app import create_app
from server.config import HTTP_PROTOCOL, WS_PROTOCOL, Settings
from services.runtime import Runtime
from tests.support import SECRET, STARTUP_TIMEOUT, free_port

# Open subscriptions are closed by the tests; this only bounds a test that forgot one.
GRACEFUL_SHUTDOWN_SECONDS = 5


def settings_for(database_url: str, **overrides: object) -> Settings:
    return Settings(database_url=database_url, secret_key=SECRET, **overrides)  # type: ignore[arg-type]


class InProcessServer:
    def __init__(self, settings: Settings, *, as_served: bool = False) -> None:
        """`as_served`: on the server's own uvicorn protocols, as `cli.py serve` runs it."""
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings)
        self._server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                ws_per_message_deflate=False,
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                **({"http": HTTP_PROTOCOL, "ws": WS_PROTOCOL} if as_served else {}),
            )
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def server_state(self) -> ServerState:
        """uvicorn's own: its open connections' protocols and the tasks serving them."""
        return self._server.server_state

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    async def __aenter__(self) -> InProcessServer:
        self._task = asyncio.create_task(self._server.serve())
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise RuntimeError("uvicorn exited during start-up")
            if time.monotonic() > deadline:
                await self.__aexit__(None, None, None)
                raise RuntimeError(f"uvicorn did not start within {STARTUP_TIMEOUT}s")
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is None:
            return
        self._server.should_exit = True
        await asyncio.wait_for(self._task, GRACEFUL_SHUTDOWN_SECONDS + 10)
