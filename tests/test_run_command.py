"""The run command a newcomer types (`make run` = `python cli.py serve --demo`): it serves, it prints where
GraphiQL is and tokens that work, with no configuration at all."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support import ROOT, STARTUP_TIMEOUT, free_port
from tests.test_first_run import BANNER_END, Running, fresh_shell, parse_banner


@dataclass
class DemoServer:
    url: str
    port: int
    output: str
    tokens: dict[str, str]  # demo user's email -> the token printed under it


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    """`python cli.py serve --demo --port <free>` on a fresh SQLite file, no SECRET_KEY, as on a fresh machine."""
    tmp = tmp_path_factory.mktemp("demo")
    port = free_port()
    env = fresh_shell(DATABASE_URL=f"sqlite+aiosqlite:///{tmp / 'demo.db'}")
    argv = [sys.executable, "cli.py", "serve", "--demo", "--port", str(port)]
    with Running(argv, cwd=ROOT, env=env, log=tmp / "output.log") as server:
        output = server.wait_for(lambda out: BANNER_END in out, "banner", STARTUP_TIMEOUT)
        yield DemoServer(url=f"http://127.0.0.1:{port}", port=port, output=output, tokens=parse_banner(output).tokens)


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
    """The CLI's default, read by running the CLI with socket binding and uvicorn's server recorded."""
    import uvicorn

    import cli

    bound: list[tuple[str, int]] = []
    listening = object()
    served: list[tuple[Any, list[Any] | None]] = []

    def fake_socket(settings: Any, *, host: str, port: int) -> Any:
        bound.append((host, port))
        return listening

    def run(self: uvicorn.Server, sockets: list[Any] | None = None) -> None:
        self.started = True
        served.append((self.config.app, sockets))

    monkeypatch.setattr(cli, "listening_socket", fake_socket)
    monkeypatch.setattr(uvicorn.Server, "run", run)
    assert cli.main(["serve"]) == 0
    assert bound == [("127.0.0.1", 8000)]
    assert served == [("app:app", [listening])]
