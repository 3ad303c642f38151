"""GraphQL over HTTP, proved with clients nobody here wrote, against a live server (docs/protocols.md "GraphQL over
HTTP"): graphql-http's audit suite, graphql-sse's client and Apollo Client streaming `chatEvents` over HTTP with
resume, a subscription sent without a stream, and a stalled HTTP stream cut off at a WebSocket's bounds."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.support import EVENT_TIMEOUT, ROOT, Api, Server, User, metrics_text

JS_DIR = ROOT / "tests" / "js"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"


class NodeScript:
    """A script of tests/js run with node; its output read one JSON line at a time."""

    def __init__(self, script: str, env: dict[str, str]) -> None:
        self.script = script
        self.env = {**os.environ, **env}
        self.proc: asyncio.subprocess.Process | None = None
        self.printed: list[dict[str, Any]] = []

    async def __aenter__(self) -> NodeScript:
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(JS_DIR / self.script), env=self.env, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()

    async def next(self, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, f"{self.script} exited; it printed {self.printed}"
        line: dict[str, Any] = json.loads(raw)
        self.printed.append(line)
        return line

    async def until(self, wanted: str, timeout: float = EVENT_TIMEOUT) -> list[dict[str, Any]]:
        """The lines printed up to and including the first whose content or typename is `wanted`, or that has a
        `wanted` entry (`started`, `complete`, `error`)."""
        deadline = time.monotonic() + timeout
        lines = []
        while True:
            lines.append(await self.next(max(0.01, deadline - time.monotonic())))
            if wanted in lines[-1] or wanted in (lines[-1].get("content"), lines[-1].get("typename")):
                return lines


@pytest.fixture(scope="module")
def audited(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server for the audit suite: production settings but for introspection, which the suite's documents use
    (`__type(name:)`); with introspection off those few audits get an error they do not expect."""
    env = {"DATABASE_URL": database_url, "GRAPHQL_INTROSPECTION": "true"}
    server = Server(env, tmp_path_factory.mktemp("audited") / "server.log").start()
    yield server
    server.stop()


@pytest.mark.parametrize("signed_in", [False, True], ids=["no-token", "token"])
async def test_graphql_http_audit_suite_passes_every_audit(audited: Server, signed_in: bool) -> None:
    env = {"TAILTRAIL_URL": f"{audited.url}/graphql"}
    if signed_in:
        env["TAILTRAIL_TOKEN"] = (await Api(audited).new_user("auditor")).token
    proc = await asyncio.create_subprocess_exec(
        "node", str(JS_DIR / "http_audit.js"), env={**os.environ, **env}, cwd=JS_DIR, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    results = [json.loads(line) for line in out.decode().splitlines()]
    failed = [result for result in results if result["status"] != "ok"]
    assert not failed, failed
    # Every audit of the pinned graphql-http (1.23.1: 61, the MUSTs and the SHOULDs), and all of them ran.
    assert len(results) == 61
    assert proc.returncode == 0


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("accept", ["application/json", GRAPHQL_RESPONSE_JSON])
async def test_a_subscription_without_a_stream_gets_bad_request_and_logs_no_traceback(
    api: Api, method: str, accept: str
) -> None:
    user = await api.new_user("plain")
    query = "subscription { chatEvents { __typename } }"
    headers = {"Authorization": f"Bearer {user.token}", "Accept": accept}
    before = api.server.log()
    async with httpx.AsyncClient(base_url=api.server.url, timeout=EVENT_TIMEOUT) as http:
        if method == "POST":
            response = await http.post("/graphql", json={"query": query}, headers=headers)
        else:
            response = await http.get("/graphql", params={"query": query}, headers=headers)
    assert response.headers["content-type"].startswith(accept)
    # application/graphql-response+json says what went wrong with the status too; application/json stays 200.
    assert response.status_code == (400 if accept == GRAPHQL_RESPONSE_JSON else 200)
    body = response.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "text/event-stream" in error["message"]
    assert "Traceback" not in api.server.log()[len(before) :]


async def _live(client: NodeScript, api: Api, user: User) -> None:
    """Wait until the client's stream is live: notify the user until a notification comes through."""
    await client.until("started")
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        await api.notify_user(user.id, {"probe": True})
        try:
            await client.until("GlobalNotification", timeout=0.5)
            return
        except TimeoutError:
            assert time.monotonic() < deadline, f"the stream never became live; printed {client.printed}"


def _stream_client(api: Api, user: User, transport: str, after: str | None = None) -> NodeScript:
    env = {"TRANSPORT": transport, "TAILTRAIL_URL": f"{api.server.url}/graphql", "TAILTRAIL_TOKEN": user.token}
    if after is not None:
        env["AFTER"] = after
    return NodeScript("http_stream_client.js", env)


@pytest.mark.parametrize("transport", ["sse", "multipart"], ids=["graphql-sse", "apollo-multipart"])
async def test_http_stream_clients_receive_events_and_resume_with_exactly_the_missed_ones(
    api: Api, transport: str
) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with _stream_client(api, bob, transport) as first:
        await _live(first, api, bob)
        await api.send(alice, chat_id, "one")
        await api.send(alice, chat_id, "two")
        seen = [line for line in await first.until("two") if line["typename"] == "NewMessage"]
        assert [line["content"] for line in seen] == ["one", "two"]
        cursor = seen[-1]["cursor"]
    # The connection dropped (the client is gone); what happens meanwhile is missed, then asked for with after:.
    await api.send(alice, chat_id, "three")
    await api.send(alice, chat_id, "four")
    async with _stream_client(api, bob, transport, after=cursor) as second:
        await second.until("started")
        missed = [await second.next(), await second.next()]
        assert [(line["typename"], line["content"]) for line in missed] == [
            ("NewMessage", "three"),
            ("NewMessage", "four"),
        ]
        await api.send(alice, chat_id, "five")  # and then it is live
        assert (await second.next())["content"] == "five"


async def test_a_stalled_http_stream_is_cut_off_at_the_bounds_of_a_stalled_websocket(tmp_path: Path) -> None:
    server = Server(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'stall.db'}",
            "RATE_LIMIT_PER_SECOND": "100000",
            "RATE_LIMIT_BURST": "100000",
            "OUTBOX_MAX_EVENTS": "50",
        },
        tmp_path / "server.log",
        cli=True,  # the production start: capped kernel send buffers
    ).start()
    try:
        api = Api(server)
        alice = await api.new_user("alice")
        http_reader, ws_reader = await api.new_user("http"), await api.new_user("ws")
        chat_id = await api.new_chat(alice, http_reader, ws_reader, name="busy", is_group=True)
        async with _stalled_http_stream(server, http_reader) as http_sock, _stalled_websocket(server, ws_reader) as ws:
            deadline = time.monotonic() + 60
            while server.log().count("http stream cut off") < 1 or "closing slow consumer" not in server.log():
                assert time.monotonic() < deadline, "a stalled stream was not cut off"
                await api.send(alice, chat_id, "x" * 900)
            # The HTTP response ends where it was, without its `complete` event; the WebSocket closes with 1013.
            tail = await _read_to_end(http_sock)
            assert b"event: complete" not in tail
            with pytest.raises(websockets.ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), EVENT_TIMEOUT)
            assert ws.close_code == 1013
        # Both streams are closed on the server (hub, presence, the user's connection count), not left behind.
        while server.log().count("overflow=True") < 2:
            assert time.monotonic() < deadline + EVENT_TIMEOUT, "a cut-off stream was never closed"
            await asyncio.sleep(0.05)
        metrics = await metrics_text(server)
        assert "\ntailtrail_outbox_overflows_total 2\n" in metrics, metrics
        assert "ASGI callable returned without completing response" not in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def _small_socket(server: Server) -> socket.socket:
    """A client socket that buffers 4 KiB: once its reader stops, TCP backs up into the server almost at once."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    return sock


class _stalled_http_stream:
    """An SSE subscription whose client reads its response headers and then nothing more."""

    def __init__(self, server: Server, user: User) -> None:
        self.server, self.user = server, user

    async def __aenter__(self) -> socket.socket:
        self.sock = _small_socket(self.server)
        body = json.dumps(
            {"query": "subscription { chatEvents { __typename ... on NewMessage { cursor message { content } } } }"}
        )
        request = (
            f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
            f"Authorization: Bearer {self.user.token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        )
        self.sock.sendall(request.encode())
        self.sock.settimeout(EVENT_TIMEOUT)
        head = self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 200"), head
        return self.sock

    async def __aexit__(self, *exc: object) -> None:
        self.sock.close()


async def _read_to_end(sock: socket.socket) -> bytes:
    """Read what is left until the server closes the connection; the last 64 KiB of it."""
    loop = asyncio.get_running_loop()
    sock.setblocking(False)
    tail = b""
    while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), EVENT_TIMEOUT):
        tail = (tail + chunk)[-65536:]
    return tail


class _stalled_websocket:
    """A graphql-transport-ws subscription whose client stops reading once it is subscribed."""

    def __init__(self, server: Server, user: User) -> None:
        self.server, self.user = server, user

    async def __aenter__(self) -> websockets.ClientConnection:
        self.ws = await websockets.connect(
            f"{self.server.ws_url}/graphql",
            sock=_small_socket(self.server),
            subprotocols=[websockets.Subprotocol("graphql-transport-ws")],
            max_queue=1,
        )
        await self.ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {self.user.token}"}})
        )
        assert json.loads(await self.ws.recv())["type"] == "connection_ack"
        query = "subscription { chatEvents { __typename ... on NewMessage { cursor message { content } } } }"
        await self.ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        return self.ws

    async def __aexit__(self, *exc: object) -> None:
        await self.ws.close()
