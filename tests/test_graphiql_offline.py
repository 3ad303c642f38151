"""GraphiQL at /graphql works on a network without internet: the page and everything it loads come from the server
itself (web/graphiql/). Driven in Debian's Chromium through Playwright, with every request to anywhere else refused
and no host name resolving: the editor loads, a header set in its Headers editor authenticates a query over HTTP and
a `chatEvents` subscription over the WebSocket, and messages another user sends show up in the result pane."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, Request, Response, Route, WebSocket, async_playwright, expect

from tests.conftest import unavailable
from tests.support import EVENT_TIMEOUT, Api, Server, sqlite_server
from tests.test_web_client import CHROMIUM, CHROMIUM_ARGS

WAIT_MS = EVENT_TIMEOUT * 1000
# Beside the request routing below: no host name resolves but the test server's address, as without internet.
NO_DNS = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"
EVENT_SELECTION = "__typename ... on NewMessage { chatId message { content sender { email } } }"
EXTERNAL_URL = re.compile(r"""(?:https?|wss?)://[^\s"'<>()]+""")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Production mode (the suite's SECRET_KEY, so Api's tokens work) with GraphiQL and introspection on."""
    env = {"GRAPHIQL": "on", "GRAPHQL_INTROSPECTION": "on"}
    with sqlite_server(tmp_path_factory.mktemp("graphiql"), env) as srv:
        yield srv


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        unavailable(f"Chromium ({CHROMIUM}; `make test` installs Debian's chromium)")
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, NO_DNS])
        try:
            yield launched
        finally:
            await launched.close()


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class OfflinePage:
    """A page that may reach the test server only: any other request is aborted and recorded, and so is every
    failed request, error response, uncaught exception and WebSocket (with the frames the page sent on it)."""

    def __init__(self, server: Server, page: Page) -> None:
        self.server = server
        self.page = page
        self.aborted: list[str] = []
        self.failed: list[str] = []
        self.errors: list[str] = []
        self.sockets: list[str] = []
        self.sent: list[dict[str, Any]] = []
        page.on("requestfailed", self._failed)
        page.on("response", self._response)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("websocket", self._socket)

    @classmethod
    async def open(cls, browser: Browser, server: Server) -> OfflinePage:
        context = await browser.new_context()
        offline = cls(server, await context.new_page())
        await context.route("**/*", offline._only_the_server)
        offline.page.set_default_timeout(WAIT_MS)
        return offline

    async def open_graphiql(self) -> None:
        """Load /graphql and wait for GraphiQL's editor (saying what was refused if it never shows)."""
        await self.page.goto(f"{self.server.url}/graphql")
        try:
            await expect(self.page.locator(".graphiql-query-editor .CodeMirror")).to_be_visible(timeout=WAIT_MS)
        except AssertionError as exc:
            raise AssertionError(f"GraphiQL did not load; refused: {self.aborted}, failed: {self.failed}") from exc

    async def _only_the_server(self, route: Route) -> None:
        if origin(route.request.url) == self.server.url:
            await route.continue_()
        else:
            self.aborted.append(route.request.url)
            await route.abort("internetdisconnected")

    def _failed(self, request: Request) -> None:
        if request.url not in self.aborted:
            self.failed.append(f"{request.url}: {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.failed.append(f"{response.url}: HTTP {response.status}")

    def _socket(self, socket: WebSocket) -> None:
        self.sockets.append(socket.url)
        socket.on("framesent", lambda frame: self.sent.append(json.loads(frame)))

    async def close(self) -> None:
        await self.page.context.close()


async def set_editor(editor: Locator, text: str) -> None:
    """Replace a GraphiQL (CodeMirror) editor's text as a person would: click in it, select all, type."""
    await editor.click()
    await editor.page.keyboard.press("Control+A")
    await editor.page.keyboard.insert_text(text)


async def test_graphiql_authenticates_from_its_headers_editor_and_streams_a_subscription_offline(
    server: Server, api: Api, browser: Browser
) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(bob, alice)
    cursor = (await api.data("{ eventCursor }", token=alice.token))["eventCursor"]
    offline = await OfflinePage.open(browser, server)
    page = offline.page
    try:
        await offline.open_graphiql()
        query_editor = page.locator(".graphiql-query-editor .CodeMirror")
        headers_editor = page.get_by_role("region", name="Headers").locator(".graphiql-editor:not(.hidden) .CodeMirror")
        result = page.locator(".result-window")
        run = page.locator("button.graphiql-execute-button")
        await expect(headers_editor).to_be_visible(timeout=WAIT_MS)  # open from the start
        await set_editor(headers_editor, json.dumps({"Authorization": f"Bearer {alice.token}"}))

        # A query goes over HTTP POST with the header.
        await set_editor(query_editor, "{ me { email } }")
        async with page.expect_request(lambda r: r.method == "POST" and "me { email }" in (r.post_data or "")) as sent:
            await run.click()
        assert (await sent.value).url == f"{server.url}/graphql"
        assert (await (await sent.value).all_headers())["authorization"] == f"Bearer {alice.token}"
        await expect(result).to_contain_text(alice.email, timeout=WAIT_MS)

        # A subscription goes over the WebSocket, the header as its connection_init payload; events show as they come.
        # It resumes after `cursor`, so a message sent before the socket has subscribed is replayed, not missed.
        await set_editor(query_editor, f'subscription {{ chatEvents(after: "{cursor}") {{ {EVENT_SELECTION} }} }}')
        await run.click()
        await api.send(bob, chat_id, "first from bob")
        await expect(result).to_contain_text("first from bob", timeout=WAIT_MS)
        await api.send(bob, chat_id, "then this")
        await expect(result).to_contain_text("then this", timeout=WAIT_MS)
        await expect(result).to_contain_text(bob.email, timeout=WAIT_MS)

        assert offline.sockets == [f"{server.ws_url}/graphql"]
        assert offline.sent[0] == {"type": "connection_init", "payload": {"Authorization": f"Bearer {alice.token}"}}
        assert [m["type"] for m in offline.sent[1:]] == ["subscribe"]
        assert offline.aborted == []  # it asked for nothing outside the server
        assert offline.failed == []
        assert offline.errors == []
    finally:
        await offline.close()


async def test_a_subscription_without_a_token_is_refused_visibly(server: Server, browser: Browser) -> None:
    """No header: the socket is refused at connection_init, and GraphiQL says so at once (no reconnecting)."""
    offline = await OfflinePage.open(browser, server)
    page = offline.page
    try:
        await offline.open_graphiql()
        await set_editor(
            page.locator(".graphiql-query-editor .CodeMirror"), f"subscription {{ chatEvents {{ {EVENT_SELECTION} }} }}"
        )
        await page.locator("button.graphiql-execute-button").click()
        await expect(page.locator(".result-window")).to_contain_text("socket closed: 4403", timeout=WAIT_MS)
        assert offline.sent == [{"type": "connection_init", "payload": {}}]
        assert offline.aborted == []
    finally:
        await offline.close()


class References(HTMLParser):
    """Every src and href in a page, with the integrity attribute beside it."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        for attribute in ("src", "href"):
            if named.get(attribute):
                self.found.append((named[attribute] or "", named.get("integrity")))


def test_the_page_and_its_own_script_name_nothing_outside_the_server(server: Server) -> None:
    """Every src and href of the page is on the server and answers; the vendored files are the pinned ones."""
    page_url = f"{server.url}/graphql"
    page = httpx.get(page_url, headers={"Accept": "text/html"}, timeout=EVENT_TIMEOUT)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = References()
    references.feed(page.text)
    assets = [(urljoin(page_url, ref), integrity) for ref, integrity in references.found if not ref.startswith("data:")]
    assert {url.rsplit("/", 1)[1] for url, _ in assets} == {
        "graphiql.min.css",
        "react.production.min.js",
        "react-dom.production.min.js",
        "graphiql.min.js",
        "graphql-ws.min.js",
        "page.js",
    }
    for url, integrity in assets:
        assert origin(url) == server.url, url
        asset = httpx.get(url, timeout=EVENT_TIMEOUT)
        assert asset.status_code == 200, url
        if integrity is not None:  # web/graphiql/fetch.sh prints the sums
            assert integrity == "sha384-" + base64.b64encode(hashlib.sha384(asset.content).digest()).decode(), url
        if url.endswith(".css"):  # fonts and icons are inline
            assert all(u.startswith("data:") for u in re.findall(r"url\(\s*['\"]?([^'\")]+)", asset.text)), url
        if url.endswith("/page.js"):
            assert EXTERNAL_URL.findall(asset.text) == []
    assert EXTERNAL_URL.findall(page.text) == []
    assert sum(1 for _, integrity in assets if integrity) == 5
