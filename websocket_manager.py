"""`websocket_manager`: the original backend's server-side API (docs/operations.md "Server-side API"), for code that runs beside the server.

Inside the server process it is bound to the running app by the app's lifespan. Another process (a worker,
a script) binds it to a runtime of its own with `async with websocket_manager.connect(settings): ...`; with a
shared broker (`BROADCAST_URL=redis://…`) and database its notifications reach every server process.

    from websocket_manager import websocket_manager
    await websocket_manager.notify_chat_participants(chat_id, {"type": "system_message", "message": "…"})
    await websocket_manager.send_global_notification(user_id, {"type": "account_warning", "message": "…"})
    online = await websocket_manager.get_online_users()
    await websocket_manager.block_user(blocker_id, blocked_id)  # mirror a block the main app keeps
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from server.config import Settings
from services import blocks, chats, notifications
from services.auth import Actor
from services.runtime import Runtime

_SYSTEM = Actor.service()
log = logging.getLogger(__name__)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


class WebsocketManager:
    def __init__(self) -> None:
        self._runtime: Runtime | None = None

    def bind(self, runtime: Runtime | None) -> None:
        self._runtime = runtime

    @contextlib.asynccontextmanager
    async def connect(self, settings: Settings | None = None) -> AsyncIterator[WebsocketManager]:
        """Start a runtime of this process's own (for use outside the server) and bind to it."""
        runtime = Runtime(settings or Settings.from_env())
        if runtime.settings.broadcast_url.startswith("memory://"):
            log.warning("websocket_manager.connect() with BROADCAST_URL=memory:// reaches no server process")
        await runtime.start()
        await runtime.presence_settled()
        self.bind(runtime)
        try:
            yield self
        finally:
            self.bind(None)
            await runtime.stop()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError(
                "websocket_manager is not bound: use it inside the server, or `async with websocket_manager.connect()`"
            )
        return self._runtime

    async def notify_chat_participants(
        self,
        chat_id: uuid.UUID | str,
        notification: dict[str, Any],
        exclude_user: uuid.UUID | str | None = None,
    ) -> bool:
        return await notifications.notify_chat_participants(
            self.runtime,
            actor=_SYSTEM,
            chat_id=_uuid(chat_id),
            notification=notification,
            exclude_user_id=None if exclude_user is None else _uuid(exclude_user),
        )

    async def send_global_notification(self, user_id: uuid.UUID | str, notification: dict[str, Any]) -> bool:
        return await notifications.send_global_notification(
            self.runtime, actor=_SYSTEM, user_id=_uuid(user_id), notification=notification
        )

    async def get_online_users(self) -> list[str]:
        return sorted(str(u) for u in self.runtime.online_users())

    async def is_user_online(self, user_id: uuid.UUID | str) -> bool:
        return self.runtime.is_online(_uuid(user_id))

    async def get_user_chats_list(self, user_id: uuid.UUID | str) -> list[str]:
        return [str(c) for c in await chats.user_chat_ids(self.runtime, user_id=_uuid(user_id))]

    async def block_user(self, blocker_id: uuid.UUID | str, blocked_id: uuid.UUID | str) -> bool:
        """Mirror a block the main app keeps: `blocked_id`'s messages and typing stop reaching `blocker_id`, on every
        server process (services.blocks). Idempotent."""
        return await self._set_block(blocker_id, blocked_id, blocked=True)

    async def unblock_user(self, blocker_id: uuid.UUID | str, blocked_id: uuid.UUID | str) -> bool:
        """Undo `block_user`. Idempotent."""
        return await self._set_block(blocker_id, blocked_id, blocked=False)

    async def _set_block(self, blocker_id: uuid.UUID | str, blocked_id: uuid.UUID | str, *, blocked: bool) -> bool:
        return await blocks.set_block(
            self.runtime, actor=_SYSTEM, user_id=_uuid(blocked_id), blocked=blocked, blocker_id=_uuid(blocker_id)
        )


websocket_manager = WebsocketManager()
