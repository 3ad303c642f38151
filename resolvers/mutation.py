"""Mutation: read context, call a service, convert. No logic here."""

from datetime import UTC, datetime

import strawberry
from strawberry.scalars import JSON

from realtime.events import MessageData
from resolvers.context import Context, parse_id
from schema import types
from services import activity, blocks, chats, messages, notifications, reactions, users
from services.errors import BadRequest

Info = strawberry.Info[Context, None]


def _object(value: object, name: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise BadRequest(f"{name}: expected a JSON object")
    return value


def _message(info: Info, data: MessageData) -> types.Message:
    return types.message(data, sender_online=info.context.rt.is_online(data.sender.id))


async def _react(info: Info, message_id: strawberry.ID, emoji: str, *, add: bool) -> types.Message:
    view = await reactions.set_reaction(
        info.context.rt, actor=info.context.actor, message_id=parse_id(message_id, "messageId"), emoji=emoji, add=add
    )
    return _message(info, view)


async def _set_block(info: Info, user_id: strawberry.ID, blocker_id: strawberry.ID | None, *, blocked: bool) -> bool:
    return await blocks.set_block(
        info.context.rt,
        actor=info.context.actor,
        user_id=parse_id(user_id, "userId"),
        blocked=blocked,
        blocker_id=None if blocker_id is None else parse_id(blocker_id, "blockerId"),
    )


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

    @strawberry.mutation(
        description="Edit a message I sent (every member gets MessageEdited). `clientId` makes a retried edit "
        "idempotent; a deleted message cannot be edited (BAD_REQUEST)."
    )
    async def edit_message(
        self, info: Info, id: strawberry.ID, content: str, client_id: str | None = None
    ) -> types.Message:
        view = await messages.edit_message(
            info.context.rt,
            actor=info.context.actor,
            message_id=parse_id(id, "id"),
            content=content,
            client_id=client_id,
        )
        return _message(info, view)

    @strawberry.mutation(
        description="Delete a message I sent (or any, with a service token): it stays in history as a tombstone, "
        "content empty and deletedAt set; every member gets MessageDeleted. Deleting it again changes nothing."
    )
    async def delete_message(self, info: Info, id: strawberry.ID) -> types.Message:
        view = await messages.delete_message(info.context.rt, actor=info.context.actor, message_id=parse_id(id, "id"))
        return _message(info, view)

    @strawberry.mutation(
        description="React to a message of one of my chats (every member gets ReactionChanged); again: no change."
    )
    async def add_reaction(self, info: Info, message_id: strawberry.ID, emoji: str) -> types.Message:
        return await _react(info, message_id, emoji, add=True)

    @strawberry.mutation(description="Take my reaction back (every member gets ReactionChanged); none: no change.")
    async def remove_reaction(self, info: Info, message_id: strawberry.ID, emoji: str) -> types.Message:
        return await _react(info, message_id, emoji, add=False)

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
        description="Leave a chat. A group: my membership ends (ChatMemberRemoved, removedBy me) and nobody else may "
        "add me back; I may re-join by adding myself. A 1:1 chat: hidden for me and read-only for the other member "
        "until I create it again with createChat (the same chat, its history)."
    )
    async def leave_chat(self, info: Info, chat_id: strawberry.ID) -> bool:
        return await chats.leave_chat(info.context.rt, actor=info.context.actor, chat_id=parse_id(chat_id, "chatId"))

    @strawberry.mutation(
        description="Block a user (idempotent): their messages and typing stop reaching me, and they cannot start a "
        "1:1 chat with me or add me to a group. `blockerId`: with a service token only, whose block list (the main "
        "app mirroring its own blocks); a user token blocks for its own user."
    )
    async def block_user(self, info: Info, user_id: strawberry.ID, blocker_id: strawberry.ID | None = None) -> bool:
        return await _set_block(info, user_id, blocker_id, blocked=True)

    @strawberry.mutation(description="Unblock a user (idempotent); `blockerId` as for blockUser.")
    async def unblock_user(self, info: Info, user_id: strawberry.ID, blocker_id: strawberry.ID | None = None) -> bool:
        return await _set_block(info, user_id, blocker_id, blocked=False)

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
