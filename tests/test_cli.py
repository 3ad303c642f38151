"""The command line (`python cli.py …`), run as a user runs it: every command's --help, the tokens it prints,
and `notify` end to end through a real server to real legacy and GraphQL clients.

`db upgrade` on fresh databases is proved in test_migrations.py, `export-schema` in test_schema_file.py and
`serve --demo` in test_run_command.py and test_first_run.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import typer.main

import cli
from server.demo import DEMO_USERS
from services.auth import TokenRules, authenticate
from services.errors import Unauthenticated
from tests.legacy_client import legacy
from tests.support import ROOT, SECRET, Api, Server, free_port, sqlite_server, subscribed
from tests.test_first_run import UUID

# Every command path and the options its --help must show. A command missing here fails
# test_every_command_of_the_app_has_a_help_test.
COMMANDS: dict[str, tuple[str, ...]] = {
    "serve": ("--host", "--port", "--workers", "--demo"),
    "seed-demo": (),
    "token": ("USER_ID", "--days"),
    "service-token": ("--days",),
    "notify": ("--user", "--chat", "--exclude", "--title", "--body", "--data", "--url", "PORT"),
    "db": ("upgrade",),
    "db upgrade": (),
    "export-schema": ("PATH",),
}
OTHER_SECRET = "not-the-servers-key-0123456789-0123456789-0123456789"


def run_cli(*args: str, secret: str = SECRET, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if k != "PORT"}, "SECRET_KEY": secret, **settings}
    return subprocess.run(
        [sys.executable, "cli.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


async def notify(server: Server, *args: str, secret: str = SECRET) -> subprocess.CompletedProcess[str]:
    """`cli.py notify --url <server> …` in a thread, so this test's clients keep reading meanwhile."""
    return await asyncio.to_thread(run_cli, "notify", "--url", server.url, *args, secret=secret)


def command_paths(group: Any, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        path = f"{prefix}{name}"
        yield path
        if hasattr(command, "commands"):
            yield from command_paths(command, f"{path} ")


def test_every_command_of_the_app_has_a_help_test() -> None:
    assert set(command_paths(typer.main.get_command(cli.app))) == set(COMMANDS)


def test_top_level_help_lists_every_command() -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: cli.py ")
    for path in COMMANDS:
        assert f"  {path.split()[0]} " in done.stdout, path


@pytest.mark.parametrize("path", list(COMMANDS))
def test_command_help_shows_usage_and_options(path: str) -> None:
    done = run_cli(*path.split(), "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Usage: cli.py {path} "), done.stdout
    for option in COMMANDS[path]:
        assert option in done.stdout, f"{option} missing from `cli.py {path} --help`:\n{done.stdout}"


def test_token_prints_a_user_token_that_the_server_accepts_for_that_user() -> None:
    user_id = uuid.uuid4()
    done = run_cli("token", str(user_id), "--days", "2")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert authenticate(token, TokenRules(key=SECRET)).user_id == user_id
    expires = datetime.fromtimestamp(jwt.decode(token, SECRET, algorithms=["HS256"])["exp"], UTC)
    assert abs(expires - (datetime.now(UTC) + timedelta(days=2))) < timedelta(minutes=1)
    with pytest.raises(Unauthenticated):
        authenticate(token, TokenRules(key=OTHER_SECRET))


def test_token_refuses_a_user_id_that_is_not_a_uuid() -> None:
    done = run_cli("token", "alice")
    assert done.returncode == 2
    assert "USER_ID" in done.stderr and "UUID" in done.stderr


def test_service_token_prints_a_service_token_signed_with_secret_key() -> None:
    done = run_cli("service-token")
    assert done.returncode == 0, done.stderr
    actor = authenticate(done.stdout.strip(), TokenRules(key=SECRET))
    assert actor.is_service and actor.user_id is None
    with pytest.raises(Unauthenticated):
        authenticate(done.stdout.strip(), TokenRules(key=OTHER_SECRET))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One SQLite server for this module (the `api` fixture uses it): the CLI is the subject, not the backend."""
    tmp: Path = tmp_path_factory.mktemp("cli")
    srv = Server({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'cli.db'}"}, tmp / "server.log").start()
    yield srv
    srv.stop()


async def test_notify_user_reaches_that_users_legacy_socket(api: Api) -> None:
    alice = await api.new_user("alice")
    async with legacy(api, alice) as socket:
        done = await notify(api.server, "--user", alice.id, "--title", "Walk at 6", "--body", "Rex is ready")
        assert done.returncode == 0, done.stderr
        assert f"notification sent to user {alice.id}" in done.stdout
        frame = await socket.next("global_notification")
    assert frame["data"] == {"title": "Walk at 6", "body": "Rex is ready"}


async def test_notify_user_with_data_reaches_a_graphql_subscriber(api: Api) -> None:
    bob = await api.new_user("bob")
    data = {"kind": "vet_reminder", "pet": {"name": "Rex"}, "title": "replaced by --title"}
    async with subscribed(api, bob) as sub:
        done = await notify(api.server, "--user", bob.id, "--data", json.dumps(data), "--title", "Vet at 10")
        assert done.returncode == 0, done.stderr
        event = await sub.next("GlobalNotification")
    assert event["payload"] == {"kind": "vet_reminder", "pet": {"name": "Rex"}, "title": "Vet at 10"}


async def test_notify_chat_reaches_every_member_and_exclude_leaves_one_out(api: Api) -> None:
    alice, bob, carol = await api.new_user("alice"), await api.new_user("bob"), await api.new_user("carol")
    chat_id = await api.new_chat(alice, bob, carol, name="Trail crew", is_group=True)

    def chat_notification(title: str) -> dict[str, Any]:
        return {"type": "chat_notification", "chat_id": chat_id, "notification": {"title": title}}

    async with legacy(api, alice) as a, legacy(api, bob) as b, legacy(api, carol) as c:
        done = await notify(api.server, "--chat", chat_id, "--title", "Trail closed")
        assert done.returncode == 0, done.stderr
        for socket in (a, b, c):
            assert (await socket.next("global_notification"))["data"] == chat_notification("Trail closed")

        done = await notify(api.server, "--chat", chat_id, "--exclude", carol.id, "--title", "Not for Carol")
        assert done.returncode == 0, done.stderr
        assert f"except {carol.id}" in done.stdout
        for socket in (a, b):
            assert (await socket.next("global_notification"))["data"] == chat_notification("Not for Carol")
        # Frames arrive in publish order: anything for Carol published before the marker has arrived by then.
        before_marker = await c.marker("after-the-excluding-notify")
    assert [f for f in before_marker if f["type"] == "global_notification"] == []


async def test_notify_without_url_calls_the_server_on_the_port_in_PORT(api: Api) -> None:
    """`make run PORT=…` serves elsewhere than 8000; with PORT exported, `notify` finds it without --url."""
    erin = await api.new_user("erin")
    async with legacy(api, erin) as socket:
        done = await asyncio.to_thread(
            run_cli, "notify", "--user", erin.id, "--title", "found you", PORT=str(api.server.port)
        )
        assert done.returncode == 0, done.stderr
        frame = await socket.next("global_notification")
    assert frame["data"] == {"title": "found you"}


def test_notify_with_a_port_that_is_not_a_number_in_PORT_is_a_usage_error() -> None:
    done = run_cli("notify", "--user", str(uuid.uuid4()), "--title", "t", PORT="eight thousand")
    assert done.returncode == 2, done
    assert "PORT" in done.stderr and "eight thousand" in done.stderr, done.stderr


def seeded_lines(output: str) -> dict[str, tuple[str, str]]:
    """`seed-demo`'s output: each user's or chat's name -> (its id, created / already there)."""
    lines = (
        re.match(rf"^\s+(\S.*?)\s+id ({UUID})\s+\((created|already there)\)$", line) for line in output.splitlines()
    )
    return {m.group(1): (m.group(2), m.group(3)) for m in lines if m is not None}


def test_seed_demo_prints_the_users_and_chats_with_their_ids_and_a_second_run_creates_nothing(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'server.db'}"
    first, second = run_cli("seed-demo", DATABASE_URL=database), run_cli("seed-demo", DATABASE_URL=database)
    assert first.returncode == 0 and second.returncode == 0, (first, second)
    created, again = seeded_lines(first.stdout), seeded_lines(second.stdout)
    users = {user.email: (str(user.id), "created") for user in DEMO_USERS}
    assert {name: seen for name, seen in created.items() if name in users} == users, first.stdout
    assert set(created) == {*users, "alice & bob", "Trail crew"}, first.stdout
    assert all(how == "created" for _, how in created.values()), first.stdout
    assert again == {name: (id_, "already there") for name, (id_, _) in created.items()}, second.stdout
    with sqlite_server(tmp_path) as server:  # the same database file
        api = Api(server)
        chats = asyncio.run(api.data("{ myChats { id name } }", token=api.token(DEMO_USERS[0].id)))["myChats"]
    assert {chat["name"] or "alice & bob": chat["id"] for chat in chats} == {
        name: created[name][0] for name in ("alice & bob", "Trail crew")
    }


async def test_notify_signed_with_another_key_is_refused_with_the_servers_code(api: Api) -> None:
    user = await api.new_user("dana")
    done = await notify(api.server, "--user", user.id, "--title", "forged", secret=OTHER_SECRET)
    assert done.returncode == 1
    assert "UNAUTHENTICATED" in done.stderr, done.stderr
    assert "notification sent" not in done.stdout


async def test_notify_to_an_unknown_chat_prints_not_found(api: Api) -> None:
    done = await notify(api.server, "--chat", str(uuid.uuid4()), "--title", "nobody")
    assert done.returncode == 1
    assert "NOT_FOUND" in done.stderr, done.stderr


def test_notify_to_an_unreachable_server_says_so() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # free: nothing listens there
    done = run_cli("notify", "--url", url, "--user", str(uuid.uuid4()), "--title", "hello?")
    assert done.returncode == 1
    assert f"cannot reach the server at {url}/graphql" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--title", "t"], "exactly one is needed, got neither"),
        (["--user", str(uuid.uuid4()), "--chat", str(uuid.uuid4()), "--title", "t"], "exactly one is needed, got both"),
        (["--user", str(uuid.uuid4()), "--exclude", str(uuid.uuid4()), "--title", "t"], "only goes with --chat"),
        (["--user", str(uuid.uuid4())], "an empty notification"),
        (["--user", str(uuid.uuid4()), "--data", "[1, 2]"], "expected a JSON object"),
        (["--user", str(uuid.uuid4()), "--data", "{title"], "not JSON"),
        (["--user", "alice", "--title", "t"], "UUID"),
    ],
)
def test_notify_usage_mistakes_exit_2_before_calling_any_server(args: list[str], message: str) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}"  # had it been called, the error would be "cannot reach"
    done = run_cli("notify", "--url", unreachable, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr


def test_serve_with_workers_and_the_memory_bus_is_refused_before_forking() -> None:
    """A start that cannot work fails with a non-zero status and the reason, before any worker starts (uvicorn's
    own supervisor would stop the workers and exit 0)."""
    env = {**os.environ, "SECRET_KEY": SECRET, "BROADCAST_URL": "memory://"}
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "cli.py", "serve", "--workers", "2", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "--workers 2 needs a shared event bus" in done.stderr and "BROADCAST_URL=redis://" in done.stderr
    assert "Started parent process" not in done.stderr + done.stdout  # nothing was forked
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_gives_uvicorn_the_tcp_socket_itself(monkeypatch: pytest.MonkeyPatch, workers: int) -> None:
    """uvicorn reopens a socket passed as `fd=` as a Unix socket, and uvloop then serves every TCP client as a
    pipe: no TCP_NODELAY, so a small frame can wait for the client's delayed ACK. `serve` hands over the bound
    socket object, TCP as bound, with one worker and with several."""
    import uvicorn
    import uvicorn.supervisors

    served: list[list[Any]] = []

    def run_one(self: uvicorn.Server, sockets: list[Any] | None = None) -> None:
        self.started = True
        served.append(list(sockets or []))

    def run_many(self: uvicorn.supervisors.Multiprocess) -> None:
        served.append(list(self.sockets))

    monkeypatch.setattr(uvicorn.Server, "run", run_one)
    monkeypatch.setattr(uvicorn.supervisors.Multiprocess, "run", run_many)
    settings = cli.Settings.from_env()
    sock = cli.listening_socket(settings, host="127.0.0.1", port=0)
    with sock:
        cli.serve_app(settings, sock, url="http://127.0.0.1:1", banner="", workers=workers)
        assert len(served) == 1 and served[0] == [sock]
        assert served[0][0].family == socket.AF_INET and served[0][0].type == socket.SOCK_STREAM
