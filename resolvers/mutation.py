"""Mutation: read context, call a service, convert. No logic here."""

from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON

from resolvers.context import Context, parse_id
from schema import types
from services import activity, chats, messages, notifications, users
from services.errors import BadRequest

Info = strawberry.Info[Context, None]


def _object(value: object, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: expected a JSON object")
    return value


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Send a message; `clientId` makes a retried send idempotent.")
    async def send_message(
        self, info: Info, chat_id: strawberry.ID, content: str, client_id: str | None = None
    ) -> types.Message:
        rt = info.context.rt
        data = await messages.send_message(
            rt, actor=info.context.actor, chat_id=parse_id(chat_id, "chatId"), content=content, client_id=client_id
        )
        return types.message(data, sender_online=rt.is_online(data.sender.id))

    @strawberry.mutation(description="Move my read marker to the chat's latest message.")
    async def mark_read(self, info: Info, chat_id: strawberry.ID) -> types.ReadMarker:
        marker = await messages.mark_read(
            info.context.rt, actor=info.context.actor, chat_id=parse_id(chat_id, "chatId")
        )
        return types.read_marker(marker)

    @strawberry.mutation(
        description="On a WebSocket: hand over a fresh token (for the same user) before the socket's token expires. "
        "A socket whose token expires is closed with 4401 'token expired'. Returns the fresh token's expiry."
    )
    def refresh_token(self, info: Info, token: str) -> datetime:
        actor = info.context.refresh_token(token)
        assert actor.expires_at is not None  # every token has one
        return datetime.fromtimestamp(actor.expires_at, UTC)

    @strawberry.mutation(description="Start (refresh) or stop typing; typing expires by itself after the TTL.")
    async def set_typing(self, info: Info, chat_id: strawberry.ID, is_typing: bool) -> bool:
        return await activity.set_typing(
            info.context.rt, actor=info.context.actor, chat_id=parse_id(chat_id, "chatId"), is_typing=is_typing
        )

    @strawberry.mutation(
        description="Create a chat. A user token adds its own user; a 1:1 chat of the same two users is "
        "returned, not duplicated. `isGroup` defaults to true unless there are exactly two members."
    )
    async def create_chat(
        self, info: Info, member_ids: list[strawberry.ID], name: str | None = None, is_group: bool | None = None
    ) -> types.Chat:
        view = await chats.create_chat(
            info.context.rt,
            actor=info.context.actor,
            member_ids=[parse_id(m, "memberIds") for m in member_ids],
            name=name,
            is_group=is_group,
        )
        return types.chat(view)

    @strawberry.mutation(description="Add a member to a group chat (any member, or a service).")
    async def add_chat_member(self, info: Info, chat_id: strawberry.ID, user_id: strawberry.ID) -> types.Chat:
        view = await chats.add_member(
            info.context.rt,
            actor=info.context.actor,
            chat_id=parse_id(chat_id, "chatId"),
            user_id=parse_id(user_id, "userId"),
        )
        return types.chat(view)

    @strawberry.mutation(
        description="Remove a member from a group chat: yourself, or anyone if you created it (or are a service)."
    )
    async def remove_chat_member(self, info: Info, chat_id: strawberry.ID, user_id: strawberry.ID) -> bool:
        return await chats.remove_member(
            info.context.rt,
            actor=info.context.actor,
            chat_id=parse_id(chat_id, "chatId"),
            user_id=parse_id(user_id, "userId"),
        )

    @strawberry.mutation(
        description="Create or update a user (service token only). Leaving `imageUrl` out keeps the stored "
        "image; null clears it."
    )
    async def upsert_user(
        self, info: Info, email: str, id: strawberry.ID | None = None, image_url: str | None = strawberry.UNSET
    ) -> types.User:
        view = await users.upsert_user(
            info.context.rt,
            actor=info.context.actor,
            email=email,
            user_id=None if id is None else parse_id(id, "id"),
            image_url=users.KEEP if image_url is strawberry.UNSET else image_url,
        )
        return types.user(view)

    @strawberry.mutation(description="Notify every member of a chat (service token only).")
    async def notify_chat_participants(
        self, info: Info, chat_id: strawberry.ID, notification: JSON, exclude_user_id: strawberry.ID | None = None
    ) -> bool:
        return await notifications.notify_chat_participants(
            info.context.rt,
            actor=info.context.actor,
            chat_id=parse_id(chat_id, "chatId"),
            notification=_object(notification, "notification"),
            exclude_user_id=None if exclude_user_id is None else parse_id(exclude_user_id, "excludeUserId"),
        )

    @strawberry.mutation(description="Send a notification to one user's devices (service token only).")
    async def send_global_notification(self, info: Info, user_id: strawberry.ID, notification: JSON) -> bool:
        return await notifications.send_global_notification(
            info.context.rt,
            actor=info.context.actor,
            user_id=parse_id(user_id, "userId"),
            notification=_object(notification, "notification"),
        )
