"""The run command a newcomer types (`make run` = `python cli.py serve --demo`): it serves, it prints where
GraphiQL is and tokens that work, with no configuration at all."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import ROOT, STARTUP_TIMEOUT, free_port

JWT = re.compile(r"^\s+(eyJ[\w-]+\.[\w-]+\.[\w-]+)\s*$")
EMAIL_LINE = re.compile(r"^\s+(\S+@\S+)\s+id\s+([0-9a-f-]{36})\s*$")


@dataclass
class DemoServer:
    url: str
    port: int
    output: str
    tokens: dict[str, str]  # demo user's email -> the token printed under it


def parse_tokens(output: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    email: str | None = None
    for line in output.splitlines():
        if (m := EMAIL_LINE.match(line)) is not None:
            email = m.group(1)
        elif (m := JWT.match(line)) is not None and email is not None:
            tokens[email] = m.group(1)
            email = None
    return tokens


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """`python cli.py serve --demo --port <free>` on a fresh SQLite file, no SECRET_KEY, as on a fresh machine."""
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "BROADCAST_URL")}
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp / 'demo.db'}"
    log_path = tmp / "output.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "cli.py", "serve", "--demo", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            output = log_path.read_text(errors="replace")
            assert proc.poll() is None, f"cli.py serve exited with {proc.returncode}:\n{output}"
            assert time.monotonic() < deadline, (
                f"cli.py serve --demo did not come up within {STARTUP_TIMEOUT}s:\n{output}"
            )
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        output = log_path.read_text(errors="replace")
        yield DemoServer(url=url, port=port, output=output, tokens=parse_tokens(output))
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def graphql(demo: DemoServer, query: str, token: str) -> dict[str, Any]:
    response = httpx.post(
        f"{demo.url}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_serve_demo_prints_the_graphiql_url_and_demo_tokens(demo: DemoServer) -> None:
    assert f"http://127.0.0.1:{demo.port}/graphql" in demo.output
    assert "GraphiQL" in demo.output
    assert set(demo.tokens) >= {"alice@tailtrail.dev", "bob@tailtrail.dev", "carol@tailtrail.dev"}, demo.output


def test_graphql_endpoint_serves_graphiql_to_a_browser(demo: DemoServer) -> None:
    response = httpx.get(f"{demo.url}/graphql", headers={"Accept": "text/html"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "graphiql" in response.text.lower()


def test_printed_demo_token_works_for_its_user(demo: DemoServer) -> None:
    for email, token in demo.tokens.items():
        body = graphql(demo, "{ me { email } }", token)
        assert body.get("data") == {"me": {"email": email}}, body


def test_demo_users_have_seeded_chats_with_messages(demo: DemoServer) -> None:
    body = graphql(demo, "{ myChats { name lastMessage { content } } }", demo.tokens["alice@tailtrail.dev"])
    chats = body["data"]["myChats"]
    assert len(chats) == 2
    assert all(c["lastMessage"] is not None for c in chats)


def test_serve_without_secret_key_says_so_loudly(demo: DemoServer) -> None:
    assert "SECRET_KEY" in demo.output


def test_serve_help_lists_the_port_option() -> None:
    result = subprocess.run(
        [sys.executable, "cli.py", "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert "--port" in result.stdout
    assert "--demo" in result.stdout


def test_serve_listens_on_port_8000_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's default, read by running the CLI with socket binding and uvicorn.run recorded."""
    import uvicorn

    import cli

    bound: list[tuple[str, int]] = []
    calls: list[dict[str, Any]] = []

    def fake_socket(settings: Any, *, host: str, port: int) -> Any:
        bound.append((host, port))
        return type("Sock", (), {"fileno": lambda self: 99})()

    monkeypatch.setattr(cli, "listening_socket", fake_socket)
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: calls.append({"args": args, **kwargs}))
    assert cli.main(["serve"]) == 0
    assert bound == [("127.0.0.1", 8000)]
    assert len(calls) == 1 and calls[0]["fd"] == 99 and calls[0]["args"] == ("app:app",)
