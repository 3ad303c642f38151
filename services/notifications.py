"""Server-side notifications (docs/operations.md "Server-side API"): to the members of a chat, or to one user."""

from __future__ import annotations

import uuid
from typing import Any

from realtime.events import GlobalNotification
from services.auth import Actor, require_service
from services.errors import NotFound
from services.runtime import Runtime


async def notify_chat_participants(
    rt: Runtime,
    *,
    actor: Actor,
    chat_id: uuid.UUID,
    notification: dict[str, Any],
    exclude_user_id: uuid.UUID | None = None,
) -> bool:
    require_service(actor)
    payload = {"type": "chat_notification", "chat_id": str(chat_id), "notification": notification}
    event = GlobalNotification(payload_data=payload, chat_id=chat_id, exclude_user_id=exclude_user_id)
    if not await rt.store.record_chat_event(event, chat_id=chat_id, member=None):
        raise NotFound("chat not found")
    return True


async def send_global_notification(
    rt: Runtime, *, actor: Actor, user_id: uuid.UUID, notification: dict[str, Any]
) -> bool:
    require_service(actor)
    await rt.store.record_user_event(
        GlobalNotification(payload_data=notification, target_user_id=user_id), user_id=user_id
    )
    return True
