"""Demo data for a first run: three users and two chats, with fixed ids so tokens stay valid across runs."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from server.config import Settings
from services import chats, messages, users
from services.auth import Actor, issue_service_token, issue_user_token
from services.errors import NotFound
from services.runtime import Runtime


@dataclass(frozen=True)
class DemoUser:
    id: uuid.UUID
    email: str


DEMO_USERS = (
    DemoUser(uuid.UUID("00000000-0000-4000-8000-00000000a11c"), "alice@tailtrail.dev"),
    DemoUser(uuid.UUID("00000000-0000-4000-8000-000000000b0b"), "bob@tailtrail.dev"),
    DemoUser(uuid.UUID("00000000-0000-4000-8000-0000000ca201"), "carol@tailtrail.dev"),
)


async def seed_demo(settings: Settings) -> None:
    """Create the demo users and chats (idempotent: the 1:1 chat is found, the group is made once)."""
    rt = Runtime(settings)
    await rt.start()
    try:
        service = Actor.service()
        for user in DEMO_USERS:
            await users.upsert_user(rt, actor=service, user_id=user.id, email=user.email)
        alice_id, bob_id, _ = (u.id for u in DEMO_USERS)
        alice, bob, carol = (Actor(user_id=u.id) for u in DEMO_USERS)
        direct = await chats.create_chat(rt, actor=alice, member_ids=[bob_id])
        if direct.last_message is None:
            await messages.send_message(rt, actor=bob, chat_id=direct.id, content="Hi Alice! Walk at 6?")
        existing = await chats.my_chats(rt, actor=carol)
        if not any(c.name == "Trail crew" for c in existing):
            group = await chats.create_chat(
                rt,
                actor=carol,
                member_ids=[alice_id, bob_id],
                name="Trail crew",
                is_group=True,
            )
            await messages.send_message(rt, actor=carol, chat_id=group.id, content="Welcome to the crew 🐾")
    finally:
        await rt.stop()


async def demo_users(rt: Runtime) -> list[dict[str, str]]:
    """The demo users this server has (seeded), with a fresh token each: the web client's user picker."""
    key = rt.settings.signing_key
    present = []
    for user in DEMO_USERS:
        try:
            await users.get_me(rt, actor=Actor(user_id=user.id))
        except NotFound:
            continue
        present.append({"id": str(user.id), "email": user.email, "token": issue_user_token(user.id, key=key)})
    return present


def connection_help(settings: Settings, *, host: str, port: int) -> str:
    key = settings.signing_key
    lines = [
        "",
        "TailTrail Realtime",
        f"  demo web client:  http://{host}:{port}/",
        f"  GraphiQL:         http://{host}:{port}/graphql",
        f"  legacy WebSocket: ws://{host}:{port}/websocket/ws/<user_id>?token=<token>",
        "",
        "  demo tokens (HTTP header  Authorization: Bearer <token>; WebSocket ?token=<token>):",
    ]
    for user in DEMO_USERS:
        lines.append(f"    {user.email:<22} id {user.id}")
        lines.append(f"      {issue_user_token(user.id, key=key)}")
    lines.append(f"    service token\n      {issue_service_token(key=key)}")
    lines.append("")
    return "\n".join(lines)
