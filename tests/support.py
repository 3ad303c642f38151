"""Test support: a real uvicorn server in a subprocess, and real protocol clients."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from gql import Client, gql
from gql.transport.websockets import WebsocketsTransport

from services.auth import issue_service_token, issue_user_token

ROOT = Path(__file__).resolve().parent.parent
SECRET = "test-secret-key-for-the-tailtrail-suite-0123456789"
# Every suite server serves /metrics to this token (in production mode /metrics is off without one).
METRICS_TOKEN = "test-metrics-token"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}
STARTUP_TIMEOUT = 30.0  # a cold PostgreSQL schema creation on a busy 2-core machine takes a few seconds
EVENT_TIMEOUT = 10.0

TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_GRAPHQL_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`uvicorn app:app` in a subprocess, on a free port, with the given environment."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        cli: bool = False,
        args: tuple[str, ...] = (),
        app: str = "app:app",
    ) -> None:
        self.cli = cli  # start with `python cli.py serve` (socket limits) instead of `uvicorn app:app`
        self.args = args  # more options of that command
        self.app = app  # the ASGI app uvicorn serves
        self.port = free_port()
        self.env = {**os.environ, "SECRET_KEY": SECRET, "METRICS_TOKEN": METRICS_TOKEN, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> Server:
        log = self.log_path.open("ab")
        uvicorn = [sys.executable, "-m", "uvicorn", self.app, "--host", "127.0.0.1", "--port", str(self.port)]
        uvicorn += ["--ws-per-message-deflate", "false", "--timeout-graceful-shutdown", "5"]
        cli = [sys.executable, "cli.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        self.proc = subprocess.Popen(
            [*(cli if self.cli else uvicorn), *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start within {STARTUP_TIMEOUT}s:\n{self.log()}")

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def sqlite_server(root: Path, env: dict[str, str] | None = None, *, cli: bool = False) -> Iterator[Server]:
    """A server on a SQLite file of its own in `root` (its log beside it), stopped on exit."""
    settings = {"DATABASE_URL": f"sqlite+aiosqlite:///{root / 'server.db'}", **(env or {})}
    server = Server(settings, root / "server.log", cli=cli).start()
    try:
        yield server
    finally:
        server.stop()


class GraphQLError(AssertionError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors
        self.code = errors[0].get("extensions", {}).get("code")


class Api:
    """GraphQL over HTTP with httpx, plus helpers to provision users and chats with a service token."""

    _emails = itertools.count(1)

    def __init__(self, server: Server) -> None:
        self.server = server
        self.service_token = issue_service_token(key=SECRET)

    def token(self, user_id: uuid.UUID | str, *, ttl: timedelta = timedelta(hours=1)) -> str:
        return issue_user_token(user_id, key=SECRET, ttl=ttl)

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=30) as client:
            response = await client.post(
                f"{self.server.url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        body = await self.post(query, variables, token=token)
        if body.get("errors"):
            raise GraphQLError(body["errors"])
        result: dict[str, Any] = body["data"]
        return result

    async def error_code(self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None) -> str:
        body = await self.post(query, variables, token=token)
        assert body.get("errors"), f"expected an error, got {body}"
        code: str = body["errors"][0]["extensions"]["code"]
        return code

    async def new_user(self, name: str = "user") -> User:
        user_id = uuid.uuid4()
        email = f"{name}{next(self._emails)}-{user_id.hex[:6]}@example.test"
        await self.data(
            "mutation($id: ID!, $email: String!) { upsertUser(id: $id, email: $email) { id } }",
            {"id": str(user_id), "email": email},
            token=self.service_token,
        )
        return User(id=str(user_id), email=email, token=self.token(user_id))

    async def new_chat(
        self, creator: User, *members: User, name: str | None = None, is_group: bool | None = None
    ) -> str:
        data = await self.data(
            "mutation($m: [ID!]!, $n: String, $g: Boolean) { createChat(memberIds: $m, name: $n, isGroup: $g) { id } }",
            {"m": [m.id for m in members], "n": name, "g": is_group},
            token=creator.token,
        )
        chat_id: str = data["createChat"]["id"]
        return chat_id

    async def send(self, user: User, chat_id: str, content: str, client_id: str | None = None) -> dict[str, Any]:
        data = await self.data(
            "mutation($c: ID!, $t: String!, $k: String) { sendMessage(chatId: $c, content: $t, clientId: $k) "
            "{ id chatId seq content clientId sender { id email } } }",
            {"c": chat_id, "t": content, "k": client_id},
            token=user.token,
        )
        message: dict[str, Any] = data["sendMessage"]
        return message

    async def notify_user(self, user_id: str, notification: dict[str, Any]) -> None:
        await self.data(
            "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
            {"u": user_id, "n": notification},
            token=self.service_token,
        )


class User:
    def __init__(self, id: str, email: str, token: str) -> None:
        self.id = id
        self.email = email
        self.token = token

    def __repr__(self) -> str:
        return f"<User {self.email}>"


PRESENCE_EVENTS = ("UserOnline", "UserOffline")
CHAT_EVENTS = """
subscription($after: String) {
  chatEvents(after: $after) {
    __typename
    ... on NewMessage { cursor chatId message { id chatId seq content createdAt updatedAt clientId
                                                 sender { id email imageUrl } } }
    ... on MessagesRead { cursor chatId userId lastReadSeq }
    ... on UserTyping { chatId userId }
    ... on UserStoppedTyping { chatId userId }
    ... on UserOnline { chatId userId }
    ... on UserOffline { chatId userId lastSeen }
    ... on UserJoined { cursor chatId userId }
    ... on UserLeft { cursor chatId userId }
    ... on ChatCreated { cursor chatId name isGroup createdBy memberIds }
    ... on ChatMemberAdded { cursor chatId userId addedBy }
    ... on ChatMemberRemoved { cursor chatId userId removedBy }
    ... on GlobalNotification { cursor payload }
    ... on BlockChanged { cursor userId blockedUserId blocked }
    ... on MessageEdited { cursor chatId messageId messageSeq userId content editedAt clientId }
    ... on MessageDeleted { cursor chatId messageId messageSeq deletedBy deletedAt }
    ... on ReactionChanged { cursor chatId messageId messageSeq userId emoji added counts { emoji count } }
    ... on ResyncRequired { reason }
  }
}
"""


def without_cursor(event: dict[str, Any]) -> dict[str, Any]:
    """A durable event without its cursor, which is asserted present (every durable event carries one)."""
    assert isinstance(event.get("cursor"), str) and event["cursor"], f"no cursor on {event}"
    return {k: v for k, v in event.items() if k != "cursor"}


async def metrics_text(server: Server) -> str:
    """The server's /metrics page (Prometheus text format)."""
    async with httpx.AsyncClient(timeout=10) as client:
        return (await client.get(f"{server.url}/metrics", headers=METRICS_AUTH)).text


class Subscriber:
    """A real `chatEvents` subscription (gql over websockets), its events collected in a queue.

    `ready()` proves the stream is live end to end: it sends the user probe notifications until one
    arrives. Probes are filtered out of `next()`.
    """

    def __init__(
        self,
        api: Api,
        user: User,
        protocol: str = TRANSPORT_WS,
        *,
        init_payload: dict[str, Any] | None = None,
        after: str | None = None,
        query: str | None = None,
        presence: bool = False,
    ) -> None:
        self.api = api
        self.presence = presence  # keep UserOnline / UserOffline (others are not told of them)
        self.after = after
        # The subscription document: CHAT_EVENTS, or one that selects `... on GlobalNotification { payload }` too.
        self.query = query or CHAT_EVENTS
        self.user = user
        self.protocol = protocol
        self.init_payload = init_payload if init_payload is not None else {"token": user.token}
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._probe = 0
        self.closed = asyncio.Event()

    async def _run(self) -> None:
        transport = WebsocketsTransport(
            url=f"{self.api.server.ws_url}/graphql",
            init_payload=self.init_payload,
            subprotocols=[self.protocol],
        )
        try:
            async with Client(transport=transport) as session:
                request = gql(self.query)
                request.variable_values = {"after": self.after}
                async for result in session.subscribe(request):
                    event = result["chatEvents"]
                    payload = event.get("payload")
                    if event["__typename"] == "GlobalNotification" and isinstance(payload, dict) and "probe" in payload:
                        self._probe_seen = payload["probe"]
                        self._probe_event.set()
                        continue
                    if event["__typename"] in PRESENCE_EVENTS and not self.presence:
                        continue  # the comings and goings of the other test users: only presence tests ask for them
                    await self.events.put(event)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc
        finally:
            self.closed.set()

    async def start(self) -> Subscriber:
        self._probe_event = asyncio.Event()
        self._probe_seen: int | None = None
        self._task = asyncio.create_task(self._run())
        await self.ready()
        return self

    async def ready(self, timeout: float = EVENT_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.closed.is_set():
                raise AssertionError(f"subscription ended: {self.error!r}")
            self._probe += 1
            self._probe_event.clear()
            await self.api.notify_user(self.user.id, {"probe": self._probe})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._probe_event.wait(), 0.3)
                return
        raise AssertionError("subscription never became live")

    async def next(self, typename: str | None = None, *, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        """The next event (of `typename`, skipping others)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {typename or 'event'} within {timeout}s")
            try:
                event = await asyncio.wait_for(self.events.get(), remaining)
            except TimeoutError:
                raise AssertionError(f"no {typename or 'event'} within {timeout}s") from None
            if typename is None or event["__typename"] == typename:
                return event

    async def collect_until(
        self, predicate: Callable[[dict[str, Any]], bool], *, timeout: float = EVENT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """All events up to and including the first one matching `predicate`."""
        seen = []
        while True:
            event = await self.next(timeout=timeout)
            seen.append(event)
            if predicate(event):
                return seen

    async def marker(self, name: str) -> list[dict[str, Any]]:
        """Send a marker notification and return every event that arrived before it.

        Events are delivered in publish order, so anything the server published before the marker and
        meant for this user has arrived by then: this is how tests assert that something did *not* arrive.
        """
        await self.api.notify_user(self.user.id, {"marker": name})
        seen = await self.collect_until(
            lambda e: e["__typename"] == "GlobalNotification" and e["payload"] == {"marker": name}
        )
        return seen[:-1]

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


@contextlib.asynccontextmanager
async def subscribed(
    api: Api, user: User, protocol: str = TRANSPORT_WS, *, after: str | None = None, presence: bool = False
) -> AsyncIterator[Subscriber]:
    sub = Subscriber(api, user, protocol, after=after, presence=presence)
    await sub.start()
    try:
        yield sub
    finally:
        await sub.close()
