"""Structured logs with connection ids, read from a real server's stderr.

Every WebSocket is named when it arrives (`legacy-7`, `graphql-8`) and every record logged while serving it
carries that id; `LOG_FORMAT=json` makes each record one JSON object.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

from config import ConfigError, Settings
from tests.legacy_client import LegacyClient
from tests.support import EVENT_TIMEOUT, Api, Server, Subscriber


def records(server: Server) -> list[dict[str, Any]]:
    return [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]


def wait_for_record(server: Server, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first JSON record that matches, polling the log until EVENT_TIMEOUT."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        found = [r for r in records(server) if match(r)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no such record in the log:\n{server.log()[-4000:]}"
        time.sleep(0.05)


def wait_for_line(server: Server, match: Callable[[str], bool]) -> str:
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        found = [line for line in server.log().splitlines() if match(line)]
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"no such line in the log:\n{server.log()[-4000:]}"
        time.sleep(0.05)


@pytest.fixture
def json_server(tmp_path: Path) -> Any:
    """`python cli.py serve --log-format json` (overriding LOG_FORMAT), on its own SQLite database."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'logs.db'}", "LOG_FORMAT": "text"}
    server = Server(env, tmp_path / "server.log", cli_args=("--log-format", "json")).start()
    try:
        yield server
    finally:
        server.stop()


async def test_json_logs_name_each_socket_and_its_streams_and_mask_tokens(json_server: Server) -> None:
    api = Api(json_server)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)

    legacy = await LegacyClient(api, bob).connect()
    await legacy.send("send_message", {"chat_id": chat_id, "content": "logged"})
    await legacy.next("new_message")
    await legacy.close()
    opened = wait_for_record(json_server, lambda r: r["message"] == "stream opened" and r["user_id"] == bob.id)
    conn = opened["connection_id"]
    assert conn.startswith("legacy-") and opened["stream"] == conn and opened["chats"] == 1
    closed = wait_for_record(json_server, lambda r: r["message"] == "legacy connection closed")
    assert closed["connection_id"] == conn and closed["code"] == 1000
    # uvicorn's own record of the handshake is logged while serving the socket: it carries the id too.
    accepted = wait_for_record(json_server, lambda r: "[accepted]" in r["message"] and r.get("connection_id") == conn)
    assert "token=***" in accepted["message"]

    with pytest.raises(websockets.ConnectionClosed):
        async with websockets.connect(f"{json_server.ws_url}/websocket/ws/{bob.id}?token=forged") as ws:
            await ws.recv()
    refused = wait_for_record(json_server, lambda r: r["message"].startswith("legacy connection refused"))
    assert refused["connection_id"].startswith("legacy-") and refused["connection_id"] != conn

    stream = await Subscriber(api, alice).start()
    await api.send(bob, chat_id, "to the subscriber")
    await stream.next("NewMessage")
    await stream.close()
    sub = wait_for_record(json_server, lambda r: r["message"] == "stream opened" and r["user_id"] == alice.id)
    socket_id = sub["connection_id"]
    assert socket_id.startswith("graphql-") and sub["stream"] == f"{socket_id}.1"
    assert wait_for_record(json_server, lambda r: r["message"] == "graphql socket closed")["connection_id"] == socket_id

    log = json_server.log()
    assert alice.token not in log and bob.token not in log
    lines = [line for line in log.splitlines() if line.strip()]
    not_json = [line for line in lines if not line.startswith("{") and not line.startswith("serving on ")]
    assert not_json == [], "every record is one JSON line"
    for record in records(json_server):
        assert {"time", "level", "logger", "message"} <= record.keys()


async def test_text_logs_carry_the_connection_id_by_default(api: Api) -> None:
    """The suite's servers run plain `uvicorn app:app`: the app configures the default text format itself."""
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    await api.new_chat(alice, bob)
    legacy = await LegacyClient(api, alice).connect()
    await legacy.close()
    line = wait_for_line(api.server, lambda line: "stream opened" in line and f"user_id={alice.id}" in line)
    conn = line.split(" stream=")[1].split()[0]
    assert conn.startswith("legacy-") and f" services.streams [{conn}] stream opened " in line


def test_log_settings_are_checked() -> None:
    assert Settings.from_env({"LOG_FORMAT": "JSON", "LOG_LEVEL": "warning"}).log_format == "json"
    assert Settings.from_env({"LOG_LEVEL": "warning"}).log_level == "WARNING"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        Settings.from_env({"LOG_LEVEL": "loud"})
