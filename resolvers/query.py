"""Query: read context, call a service, convert. No logic here."""

import strawberry

from resolvers.context import Context, parse_id
from schema import types
from services import blocks, chats, messages, streams, users
from services.auth import require_service
from services.messages import DEFAULT_PAGE

Info = strawberry.Info[Context, None]


@strawberry.type
class Query:
    @strawberry.field(description="The calling user.")
    async def me(self, info: Info) -> types.User:
        return types.user(await users.get_me(info.context.rt, actor=info.context.actor))

    @strawberry.field(description="My chats, most recently active first, with last message and my unread count.")
    async def my_chats(self, info: Info) -> list[types.Chat]:
        views = await chats.my_chats(info.context.rt, actor=info.context.actor)
        return [types.chat(v) for v in views]

    @strawberry.field(description="Who is online and typing in each of my chats.")
    async def chat_status(self, info: Info) -> types.ChatStatus:
        return types.chat_status(await chats.chat_status(info.context.rt, actor=info.context.actor))

    @strawberry.field(description="One of my chats (FORBIDDEN if I am not a member).")
    async def chat(self, info: Info, id: strawberry.ID) -> types.Chat | None:
        view = await chats.get_chat(info.context.rt, actor=info.context.actor, chat_id=parse_id(id, "id"))
        return types.chat(view)

    @strawberry.field(
        description="History by seq, ascending: after `after`, or the `limit` messages just before `before` "
        "(the newest when neither is given)."
    )
    async def messages(
        self,
        info: Info,
        chat_id: strawberry.ID,
        before: int | None = None,
        after: int | None = None,
        limit: int = DEFAULT_PAGE,
    ) -> list[types.Message]:
        rt = info.context.rt
        page = await messages.list_messages(
            rt,
            actor=info.context.actor,
            chat_id=parse_id(chat_id, "chatId"),
            before=before,
            after=after,
            limit=limit,
        )
        return [types.message(m, sender_online=rt.is_online(m.sender.id)) for m in page]

    @strawberry.field(
        description="The event stream's position now. Read it before myChats and messages, then subscribe with "
        "chatEvents(after: eventCursor): what happens in between is replayed, not missed."
    )
    async def event_cursor(self, info: Info) -> str:
        return await streams.current_cursor(info.context.rt, actor=info.context.actor)

    @strawberry.field(description="The users I block (their ids).")
    async def blocked_users(self, info: Info) -> list[strawberry.ID]:
        return [strawberry.ID(str(u)) for u in await blocks.blocked_users(info.context.rt, actor=info.context.actor)]

    @strawberry.field(description="Users online now (service token only).")
    async def online_users(self, info: Info) -> list[strawberry.ID]:
        require_service(info.context.actor)
        return [strawberry.ID(str(u)) for u in sorted(info.context.rt.online_users())]

    @strawberry.field(description="Whether a user is online now (service token only).")
    async def is_user_online(self, info: Info, user_id: strawberry.ID) -> bool:
        require_service(info.context.actor)
        return info.context.rt.is_online(parse_id(user_id, "userId"))
