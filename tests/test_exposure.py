"""What the server shows of itself, in production mode (SECRET_KEY set) and in development mode, by default and
as set: GraphQL introspection, "Did you mean …?" suggestions, GraphiQL, and /metrics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Server

INTROSPECTION = "{ __schema { queryType { name } } }"
TYPO = "{ mee { id } }"  # "Cannot query field 'mee' on type 'Query'. Did you mean 'me'?"


def _start(tmp_path: Path, name: str, env: dict[str, str]) -> Server:
    return Server({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / f'{name}.db'}", **env}, tmp_path / f"{name}.log")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    root = tmp_path_factory.mktemp("exposure")
    configs = {
        "production": {"METRICS_TOKEN": ""},
        "production-with-metrics-token": {"METRICS_TOKEN": "scrape-me-0123456789"},
        "production-explorable": {"GRAPHQL_INTROSPECTION": "on", "GRAPHIQL": "on", "METRICS_TOKEN": ""},
        "development": {"SECRET_KEY": "", "METRICS_TOKEN": ""},
        "development-closed": {
            "SECRET_KEY": "",
            "GRAPHQL_INTROSPECTION": "off",
            "GRAPHQL_SUGGESTIONS": "on",  # no effect: suggestions are off whenever introspection is
            "GRAPHIQL": "off",
            "METRICS_TOKEN": "scrape-me-0123456789",
        },
    }
    started = {name: _start(root, name, env).start() for name, env in configs.items()}
    yield started
    for server in started.values():
        server.stop()


def _post(server: Server, query: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.post(f"{server.url}/graphql", json={"query": query}, timeout=10).json()
    return body


def _introspection_allowed(server: Server) -> bool:
    body = _post(server, INTROSPECTION)
    if body.get("errors"):
        assert body["errors"][0]["extensions"]["code"] == "BAD_REQUEST", body
        assert "introspection" in body["errors"][0]["message"].lower(), body
        return False
    return bool(body["data"]["__schema"]["queryType"]["name"] == "Query")


def _suggests(server: Server) -> bool:
    body = _post(server, TYPO)
    message = body["errors"][0]["message"]
    assert "Cannot query field 'mee'" in message, body
    return "Did you mean" in message


def _graphiql(server: Server) -> int:
    return httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"}, timeout=10).status_code


def _metrics(server: Server, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{server.url}/metrics", headers=headers, timeout=10).status_code


@pytest.mark.parametrize(
    ("name", "introspection", "suggestions", "graphiql", "metrics"),
    [
        ("production", False, False, 404, 404),
        ("production-with-metrics-token", False, False, 404, 401),
        ("production-explorable", True, True, 200, 404),
        ("development", True, True, 200, 200),
        ("development-closed", False, False, 404, 401),
    ],
)
def test_defaults_and_settings(
    servers: dict[str, Server], name: str, introspection: bool, suggestions: bool, graphiql: int, metrics: int
) -> None:
    server = servers[name]
    assert _introspection_allowed(server) is introspection
    assert _suggests(server) is suggestions
    assert _graphiql(server) == graphiql
    assert _metrics(server) == metrics
    assert _post(server, "{ __typename }")["data"] == {"__typename": "Query"}  # clients' own __typename is fine


@pytest.mark.parametrize("name", ["production-with-metrics-token", "development-closed"])
def test_metrics_with_the_token(servers: dict[str, Server], name: str) -> None:
    server = servers[name]
    assert _metrics(server, "wrong-token") == 401
    response = httpx.get(f"{server.url}/metrics", headers={"Authorization": "Bearer scrape-me-0123456789"}, timeout=10)
    assert response.status_code == 200 and "tailtrail_connections" in response.text


def test_suggestions_are_left_out_of_variable_errors_too(servers: dict[str, Server]) -> None:
    # an input of the wrong shape: graphql-core's coercion error may suggest field names
    body = httpx.post(
        f"{servers['production'].url}/graphql",
        json={"query": "query($c: ID!) { chat(id: $c) { id } }", "variables": {"d": "x"}},
        timeout=10,
    ).json()
    assert body["errors"] and not any("Did you mean" in e["message"] for e in body["errors"]), body
