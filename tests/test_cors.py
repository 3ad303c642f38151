"""A browser page on another origin (the TailTrail web app on its own domain) uses the API: from an origin listed
in ALLOWED_ORIGINS, a query over HTTP (CORS, with its preflight: the request carries `Authorization`) and a
subscription over WebSocket work; from an origin not listed, both are refused. Real Chromium, real servers."""

from __future__ import annotations

import asyncio
import functools
import shutil
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from playwright.async_api import Page, async_playwright

from tests.conftest import unavailable
from tests.support import EVENT_TIMEOUT, Api, Server, free_port
from tests.test_web_client import CHROMIUM, CHROMIUM_ARGS

# The other origin's page: a query over HTTP and a chatEvents subscription over graphql-transport-ws, written
# without a library; what happens goes into `window.outcome`.
PAGE = """<!doctype html>
<meta charset="utf-8">
<script>
const params = new URLSearchParams(location.search);
const api = params.get('api'), token = params.get('token');
window.outcome = {};
fetch(`${api}/graphql`, {
  method: 'POST',
  headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
  body: JSON.stringify({ query: '{ me { email } }' }),
}).then((r) => r.json()).then(
  (body) => { window.outcome.http = body.data.me.email; },
  (error) => { window.outcome.http = `refused: ${error}`; },
);
const ws = new WebSocket(`${api.replace('http', 'ws')}/graphql`, 'graphql-transport-ws');
ws.onopen = () => ws.send(JSON.stringify({ type: 'connection_init', payload: { Authorization: `Bearer ${token}` } }));
ws.onmessage = (frame) => {
  const message = JSON.parse(frame.data);
  if (message.type === 'connection_ack') {
    const query = 'subscription { chatEvents { __typename ... on NewMessage { message { content } } } }';
    ws.send(JSON.stringify({ id: '1', type: 'subscribe', payload: { query } }));
    window.outcome.ws = 'subscribed';
  } else if (message.type === 'next' && message.payload.data.chatEvents.message) {
    window.outcome.event = message.payload.data.chatEvents.message.content;
  }
};
ws.onclose = (event) => { if (!window.outcome.ws) window.outcome.ws = `refused: ${event.code}`; };
</script>
"""


@pytest.fixture(scope="module")
def other_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A second web server, on its own port: its page is on another origin than the API's."""
    root = tmp_path_factory.mktemp("other-origin")
    (root / "index.html").write_text(PAGE, encoding="utf-8")
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()


@pytest.fixture(scope="module")
def api_server(other_origin: int, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("cors")
    env = {
        "DATABASE_URL": f"sqlite+aiosqlite:///{root / 'cors.db'}",
        "ALLOWED_ORIGINS": f"http://127.0.0.1:{other_origin}",
    }
    server = Server(env, root / "server.log").start()
    yield server
    server.stop()


async def _outcome(page: Page, key: str) -> Any:
    await page.wait_for_function(f"window.outcome && window.outcome.{key} !== undefined", timeout=EVENT_TIMEOUT * 1000)
    return await page.evaluate(f"window.outcome.{key}")


async def _open(api: Api, page: Page, host: str, port: int, token: str) -> None:
    await page.goto(f"http://{host}:{port}/index.html?{urlencode({'api': api.server.url, 'token': token})}")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["listed", "unlisted"])
async def test_a_page_on_another_origin_uses_the_api_only_if_its_origin_is_allowed(
    api_server: Server, other_origin: int, host: str
) -> None:
    if shutil.which(CHROMIUM) is None:
        unavailable(f"Chromium ({CHROMIUM}; `make test` installs Debian's chromium)")
    api = Api(api_server)
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await _open(api, page, host, other_origin, bob.token)
            http, ws = await _outcome(page, "http"), await _outcome(page, "ws")
            if host == "localhost":  # http://localhost:<port> is not in ALLOWED_ORIGINS
                assert http.startswith("refused: TypeError"), http
                assert ws.startswith("refused: "), ws
                return
            assert (http, ws) == (bob.email, "subscribed")
            # Subscribed is not yet live: send until a message comes through.
            deadline = time.monotonic() + EVENT_TIMEOUT
            while await page.evaluate("window.outcome.event") is None:
                assert time.monotonic() < deadline, "no event reached the page"
                await api.send(alice, chat_id, "across origins")
                await asyncio.sleep(0.2)
            assert await page.evaluate("window.outcome.event") == "across origins"
        finally:
            await browser.close()


async def test_the_preflight_names_what_a_listed_origin_may_send(api_server: Server, other_origin: int) -> None:
    origin = f"http://127.0.0.1:{other_origin}"
    preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
    async with httpx.AsyncClient(base_url=api_server.url) as http:
        allowed = await http.options(
            "/graphql", headers={**preflight, "Access-Control-Request-Headers": "authorization,content-type"}
        )
        refused = await http.options("/graphql", headers={**preflight, "Origin": "http://elsewhere.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == origin
    assert {"authorization", "content-type"} <= set(allowed.headers["access-control-allow-headers"].lower().split(", "))
    assert "access-control-allow-credentials" not in allowed.headers  # tokens go in headers, never cookies
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
