"""Demo data for a first run: three users and two chats, with fixed ids so tokens stay valid across runs."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
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
GROUP_NAME = "Trail crew"
# The 1:1 chat has no name of its own; this is what the listings call it.
DIRECT_NAME = "alice & bob"


@dataclass(frozen=True)
class Seeded:
    """One demo user or chat as `seed_demo` left it: `created` by this run, or already there."""

    name: str
    id: uuid.UUID
    created: bool


@dataclass(frozen=True)
class DemoData:
    """What `seed_demo` did: the ids a newcomer needs next (`cli.py notify --chat <id>`, `cli.py token <id>`)."""

    users: tuple[Seeded, ...]
    chats: tuple[Seeded, ...]


async def seed_demo(settings: Settings) -> DemoData:
    """Create the demo users and chats (idempotent: the 1:1 chat is found, the group is made once)."""
    rt = Runtime(settings)
    with _start_warnings_left_to_the_server():
        await rt.start()
    try:
        return DemoData(users=await _seed_users(rt), chats=await _seed_chats(rt))
    finally:
        await rt.stop()


@contextlib.contextmanager
def _start_warnings_left_to_the_server() -> Iterator[None]:
    """Seeding starts a short-lived runtime of its own; the warnings a runtime logs at start (development mode, an
    unreachable bus) speak of serving, so the server that follows `serve --demo` logs them, once."""
    logger = logging.getLogger(Runtime.__module__)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def _seed_users(rt: Runtime) -> tuple[Seeded, ...]:
    service = Actor.service()
    seeded = []
    for user in DEMO_USERS:
        created = not await _exists(rt, user)
        await users.upsert_user(rt, actor=service, user_id=user.id, email=user.email)
        seeded.append(Seeded(name=user.email, id=user.id, created=created))
    return tuple(seeded)


async def _exists(rt: Runtime, user: DemoUser) -> bool:
    try:
        await users.get_me(rt, actor=Actor(user_id=user.id))
    except NotFound:
        return False
    return True


async def _seed_chats(rt: Runtime) -> tuple[Seeded, ...]:
    alice_id, bob_id, _ = (u.id for u in DEMO_USERS)
    alice, bob, carol = (Actor(user_id=u.id) for u in DEMO_USERS)
    direct = await chats.create_chat(rt, actor=alice, member_ids=[bob_id])
    direct_is_new = direct.last_message is None
    if direct_is_new:
        await messages.send_message(rt, actor=bob, chat_id=direct.id, content="Hi Alice! Walk at 6?")
    group = next((c for c in await chats.my_chats(rt, actor=carol) if c.name == GROUP_NAME), None)
    group_is_new = group is None
    if group is None:
        group = await chats.create_chat(rt, actor=carol, member_ids=[alice_id, bob_id], name=GROUP_NAME, is_group=True)
        await messages.send_message(rt, actor=carol, chat_id=group.id, content="Welcome to the crew 🐾")
    return (
        Seeded(name=DIRECT_NAME, id=direct.id, created=direct_is_new),
        Seeded(name=GROUP_NAME, id=group.id, created=group_is_new),
    )


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


def _listed(item: Seeded) -> str:
    """One user or chat: its name and id, in the column layout both listings share."""
    return f"    {item.name:<22} id {item.id}"


def seed_report(data: DemoData, *, database: str) -> str:
    """What `cli.py seed-demo` prints: each user and chat with its id, and whether this run created it."""

    def listed(items: tuple[Seeded, ...]) -> list[str]:
        return [f"{_listed(item)}  ({'created' if item.created else 'already there'})" for item in items]

    return "\n".join([f"demo data in {database}:", "  users:", *listed(data.users), "  chats:", *listed(data.chats)])


def connection_help(settings: Settings, data: DemoData, *, url: str) -> str:
    """The `serve --demo` banner: where to connect (`url`: the server's http:// address), a token for each demo
    user and a service token, and the chats' ids."""
    ws = "ws" + url.removeprefix("http")
    key = settings.signing_key
    lines = [
        "",
        "TailTrail Realtime",
        f"  demo web client:   {url}/",
        f"  GraphiQL:          {url}/graphql",
        f"  GraphQL WebSocket: {ws}/graphql  (graphql-transport-ws or graphql-ws)",
        f"  legacy WebSocket:  {ws}/websocket/ws/<user_id>?token=<token>",
        "",
        "  demo users and tokens (HTTP header  Authorization: Bearer <token>; WebSocket ?token=<token>):",
    ]
    for user in data.users:
        lines.append(_listed(user))
        lines.append(f"      {issue_user_token(user.id, key=key)}")
    lines.append(f"    service token\n      {issue_service_token(key=key)}")
    lines.append("")
    lines.append("  demo chats (cli.py notify --chat <chat_id>):")
    lines += [_listed(chat) for chat in data.chats]
    lines.append("")
    return "\n".join(lines)
