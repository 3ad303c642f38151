"""Structured logs with connection ids, read from a real server's stderr.

Every WebSocket is named when it arrives (`legacy-7`, `graphql-8`) and every record logged while serving it
carries that id; `LOG_FORMAT=json` makes each record one JSON object.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import websockets

from realtime.typing_state import TypingTracker
from server.config import ConfigError, Settings
from server.logging_setup import BATCH_MAX_LINES, LoopBatchedHandler, TextFormatter, bind_connection, connection_id
from tests.legacy_client import LegacyClient
from tests.support import EVENT_TIMEOUT, Api, Server, Subscriber, User


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
    server = Server(env, tmp_path / "server.log", cli=True, args=("--log-format", "json")).start()
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


async def a_legacy_session(server: Server) -> User:
    """A user with a chat opens a legacy socket, gets one reply and closes; the user is returned."""
    api = Api(server)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    await api.new_chat(alice, bob)
    legacy = await LegacyClient(api, alice).connect()
    # The reply comes after the stream is open: its INFO lines, and uvicorn's, are written by then.
    await legacy.request("get_chat_status", reply="chat_status")
    await legacy.close()
    return alice


async def test_log_level_warning_silences_the_per_connection_lines(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}", "LOG_LEVEL": "WARNING"}
    server = Server(env, tmp_path / "server.log", cli=True).start()
    try:
        await a_legacy_session(server)
        log = server.log()
        for quiet in ("stream opened", "[accepted]", "connection open", "GET /healthz", "Application startup"):
            assert quiet not in log
    finally:
        server.stop()


async def test_plain_uvicorn_keeps_the_operators_logging_flags(tmp_path: Path) -> None:
    """`uvicorn app:app --no-access-log`: no access lines; the app's own records still carry connection ids."""
    env = {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'flags.db'}"}
    server = Server(env, tmp_path / "server.log", args=("--no-access-log",)).start()
    try:
        alice = await a_legacy_session(server)
        line = wait_for_line(server, lambda line: "stream opened" in line and f"user_id={alice.id}" in line)
        assert " services.streams [legacy-" in line
        assert "POST /graphql" not in server.log() and "GET /healthz" not in server.log()
    finally:
        server.stop()


async def test_a_typing_expiry_started_by_a_connection_runs_as_no_connection() -> None:
    """It fires after the request that started it (maybe after its socket closed): its records must not carry
    that connection's id."""
    seen: asyncio.Queue[str | None] = asyncio.Queue()
    tracker = TypingTracker(0.01, lambda chat, user, typing: seen.put_nowait(None if typing else connection_id.get()))

    async def a_connection() -> None:
        bind_connection("legacy-99")
        tracker.start(uuid.uuid4(), uuid.uuid4())

    await asyncio.create_task(a_connection())
    assert await asyncio.wait_for(seen.get(), EVENT_TIMEOUT) is None  # the start
    assert await asyncio.wait_for(seen.get(), EVENT_TIMEOUT) is None  # the expiry, in no connection's context


def test_log_settings_are_checked() -> None:
    assert Settings.from_env({"LOG_FORMAT": "JSON", "LOG_LEVEL": "warning"}).log_format == "json"
    assert Settings.from_env({"LOG_LEVEL": "warning"}).log_level == "WARNING"
    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Settings.from_env({"LOG_FORMAT": "xml"})
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        Settings.from_env({"LOG_LEVEL": "loud"})


async def test_a_sockets_handshake_is_logged_once(api: Api) -> None:
    """uvicorn's `[accepted]` line names the socket; websockets' `connection open` after it said nothing more."""
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    await api.new_chat(alice, bob)
    legacy = await LegacyClient(api, alice).connect()
    await legacy.request("get_chat_status", reply="chat_status")
    await legacy.close()
    wait_for_line(api.server, lambda line: "[accepted]" in line and f"/websocket/ws/{alice.id}" in line)
    assert "connection open" not in api.server.log()


def test_text_lines_carry_loggings_own_timestamp_across_seconds() -> None:
    """The text formatter renders the date and time of day once a second: each record still gets logging's
    default timestamp (local time, milliseconds) for its own moment, across second boundaries."""
    ours, reference = TextFormatter(), logging.Formatter()
    start = time.time()
    for created in (start, start + 0.0004, start + 0.5, start + 0.9996, start + 1.0, start + 1.25, start + 3601.1):
        record = logging.LogRecord("tailtrail", logging.INFO, __file__, 1, "m", None, None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        assert ours.formatTime(record) == reference.formatTime(record)
        assert ours.format(record).startswith(reference.formatTime(record) + " INFO    tailtrail m")


class Writes(io.StringIO):
    """A stream that remembers each write."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def batched_logger(stream: Writes) -> tuple[logging.Logger, LoopBatchedHandler]:
    handler = LoopBatchedHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"tailtrail.test.{uuid.uuid4()}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


async def test_lines_logged_in_one_turn_of_the_loop_go_out_in_one_write_in_order() -> None:
    stream = Writes()
    logger, _ = batched_logger(stream)
    for n in range(3):
        logger.info("line %d", n)
    assert stream.writes == [], "written before the loop's turn ended"
    await asyncio.sleep(0)  # the turn ends; the handler's write runs at the start of the next one
    await asyncio.sleep(0)
    assert stream.writes == ["line 0\nline 1\nline 2\n"]
    logger.info("line 3")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert stream.writes[1:] == ["line 3\n"]


async def test_another_threads_line_goes_out_at_once_after_the_waiting_ones() -> None:
    stream = Writes()
    logger, _ = batched_logger(stream)
    logger.info("from the loop")
    await asyncio.to_thread(logger.info, "from a thread")
    assert stream.writes == ["from the loop\nfrom a thread\n"]


async def test_waiting_lines_are_bounded_and_flushed_by_logging_at_exit() -> None:
    stream = Writes()
    logger, handler = batched_logger(stream)
    for n in range(BATCH_MAX_LINES):
        logger.info("%d", n)
    assert len(stream.writes) == 1 and stream.getvalue().count("\n") == BATCH_MAX_LINES, "no write at the bound"
    logger.info("last")
    logging.shutdown([weakref.ref(handler)])  # what logging runs at exit: waiting lines are not lost
    assert stream.writes[1:] == ["last\n"]
