"""The legacy JSON protocol's frames (docs/protocols.md) and the translation of events and service results into them.

Every frame is `{"type": <string>, "data": <object>}`, snake_case, timestamps ISO 8601 UTC. Fields beyond the
original guide's (docs/protocols.md) are additive. Durable-event frames also carry a top-level `"cursor"` once resume exists.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from realtime import events
from realtime.jsontext import dumps
from services import views

# -- client -> server -------------------------------------------------------------------------------

CommandType = Literal[
    "get_my_chats",
    "get_chat_status",
    "send_message",
    "typing",
    "mark_read",
    "join_chat",
    "leave_chat",
    "get_messages",  # new, additive: history by seq
    "refresh_token",  # new, additive: a fresh token for the open socket, before the current one expires
    "edit_message",  # new, additive: the sender edits a message
    "delete_message",  # new, additive: the sender deletes a message (a tombstone stays)
    "add_reaction",  # new, additive: a member reacts to a message
    "remove_reaction",  # new, additive
    "exit_chat",  # new, additive: leave a chat for good (`leave_chat` only pauses the socket's stream)
    "block_user",  # new, additive: the blocked user's messages and typing stop reaching the user
    "unblock_user",  # new, additive
    "get_blocked_users",  # new, additive
]


class ClientFrame(TypedDict):
    """Client -> server: a command."""

    type: CommandType
    data: dict[str, Any]


# -- server -> client -------------------------------------------------------------------------------


class ServerFrame(TypedDict):
    """Server -> client: an event, a reply or an error."""

    type: str
    data: Any


class ErrorData(TypedDict, total=False):
    """Server -> client: `error` frame data. `code` is one of docs/protocols.md's codes."""

    message: str
    code: str
    details: dict[str, Any]


def blocked_users_frame(user_ids: list[Any]) -> str:
    """Reply to `block_user`, `unblock_user` and `get_blocked_users` (new, additive): whom the user blocks now."""
    return encode({"type": "blocked_users", "data": {"user_ids": [str(u) for u in user_ids]}})


def token_refreshed_frame(expires_at: float) -> str:
    """Reply to `refresh_token` (new, additive): the socket now lasts until the fresh token's expiry."""
    moment = datetime.fromtimestamp(expires_at, UTC)
    return encode({"type": "token_refreshed", "data": {"expires_at": moment.isoformat()}})


def encode(frame: ServerFrame) -> str:
    return dumps(frame)


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def event_frame(event: events.Event, cursor: str | None = None) -> str:
    """The wire text of one event (encoded once per event, shared by every legacy connection): its `type` and
    the data its declaration gives (`Event.legacy_data`).

    Durable events carry the resume cursor of the stream once it has them as a top-level `"cursor"` (additive).
    """
    frame: dict[str, Any] = {"type": event.type, "data": event.legacy_data()}
    if cursor is not None:
        frame["cursor"] = cursor
    return dumps(frame)


def error_frame(code: str, message: str, details: dict[str, Any] | None = None) -> str:
    data: ErrorData = {"message": message, "code": code}
    if details:
        data["details"] = details
    return encode({"type": "error", "data": data})


def my_chats_frame(chats: list[views.ChatView], *, connected: set[Any]) -> str:
    return encode(
        {
            "type": "my_chats",
            "data": {
                "chats": [
                    {
                        "id": str(c.id),
                        "name": c.name,
                        "is_group": c.is_group,
                        "created_at": _iso(c.created_at),
                        "updated_at": _iso(c.updated_at),
                        "participants": [
                            {
                                "id": str(p.id),
                                "email": p.email,
                                "image_url": p.image_url,
                                "is_online": p.is_online,
                                "last_seen": _iso(p.last_seen),
                            }
                            for p in c.participants
                        ],
                        "last_message": None if c.last_message is None else c.last_message.content,
                        "last_message_time": None if c.last_message is None else _iso(c.last_message.created_at),
                        "unread_count": c.unread_count,
                        "is_connected": c.id in connected,
                        "admin_id": None if c.admin_id is None else str(c.admin_id),
                    }
                    for c in chats
                ],
                "total_chats": len(chats),
            },
        }
    )


def chat_status_frame(status: views.ChatStatus) -> str:
    return encode(
        {
            "type": "chat_status",
            "data": {
                "chats": [
                    {
                        "chat_id": str(c.chat_id),
                        "online_users": [str(u) for u in c.online_user_ids],
                        "typing_users": [str(u) for u in c.typing_user_ids],
                        "users_count": c.users_count,
                    }
                    for c in status.chats
                ],
                "total_online_users": status.total_online_users,
            },
        }
    )


def history_message(m: views.MessageView) -> dict[str, Any]:
    """A message of history: as `new_message` carries it, with its reactions as the requesting user sees them."""
    reactions = [{"emoji": r.emoji, "count": r.count, "reacted_by_me": r.reacted_by_me} for r in m.reactions]
    return {**events.legacy_message(m), "reactions": reactions}


def messages_frame(chat_id: Any, page: list[views.MessageView], *, max_bytes: int, keep_newest: bool) -> str:
    """Reply to `get_messages` (new, additive): a page of history, ascending by seq, at most `max_bytes` long
    (cut at the oldest messages when `keep_newest`, else at the newest; always at least one message)."""
    items = [history_message(m) for m in page]
    sizes = [len(json.dumps(item, ensure_ascii=False).encode()) + 1 for item in items]
    total = sum(sizes)
    while len(items) > 1 and total > max_bytes:
        total -= sizes.pop(0 if keep_newest else -1)
        items.pop(0 if keep_newest else -1)
    return encode({"type": "messages", "data": {"chat_id": str(chat_id), "messages": items}})
