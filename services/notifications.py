"""Server-side notifications (SPEC §7): to the members of a chat, or to one user."""

from __future__ import annotations

import uuid
from typing import Any

from realtime.events import GlobalNotification
from services import journal
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
    async with rt.chat_order(chat_id):
        async with rt.db.write() as session:
            recorded = await journal.record_chat_event(session, chat_id, event)
            if recorded is None:
                raise NotFound("chat not found")
        rt.publish_recorded(recorded)
    return True


async def send_global_notification(
    rt: Runtime, *, actor: Actor, user_id: uuid.UUID, notification: dict[str, Any]
) -> bool:
    require_service(actor)
    async with rt.db.write() as session:
        recorded = await journal.append(session, GlobalNotification(payload_data=notification, target_user_id=user_id))
    rt.publish_recorded(recorded)
    return True
