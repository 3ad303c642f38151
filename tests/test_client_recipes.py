"""docs/clients.md: every recipe runs as written against a live server, and a message another user sends arrives
through it.

Each test writes a recipe's code block, exactly as the document shows it, to a file and runs it: in Node.js, with
the venv's Python, or bundled by esbuild and loaded in Chromium. Only its settings are passed in (environment
variables; in the browser, globals the page sets). A recipe is live once it prints a notification the test sends its
user (probes, repeated until one shows); then Alice's message to Bob must print as `<alice's email>: <text>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Route, async_playwright

from tests.conftest import unavailable
from tests.support import EVENT_TIMEOUT, ROOT, TRANSPORT_WS, Api, Server, User
from tests.test_web_client import CHROMIUM, CHROMIUM_ARGS

DOC = ROOT / "docs" / "clients.md"
NODE_MODULES = ROOT / "tests" / "js" / "node_modules"  # the npm packages the recipes install
PROBE_WAIT = 0.5  # how long one probe notification may take to show before the next is sent


def recipe(heading: str, language: str) -> str:
    """The first `language` code block under the section titled `heading`, exactly as the document shows it."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block under {heading!r}"
    return match.group(1)


class NotPrinted(AssertionError):
    pass


class Output:
    """What a running recipe prints, line by line, in order; every wait has a deadline."""

    def __init__(self) -> None:
        self._lines: asyncio.Queue[str | None] = asyncio.Queue()  # None: the recipe ended
        self.seen: list[str] = []
        self.ended = False

    def put(self, line: str | None) -> None:
        self._lines.put_nowait(line)

    async def until(self, needle: str, timeout: float = EVENT_TIMEOUT) -> str:
        """The next line that contains `needle` (the lines before it are passed over)."""
        deadline = time.monotonic() + timeout
        while not self.ended:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NotPrinted(f"{needle!r} not printed within {timeout}s; printed: {self.seen}")
            try:
                line = await asyncio.wait_for(self._lines.get(), remaining)
            except TimeoutError:
                continue
            if line is None:
                self.ended = True
                break
            self.seen.append(line)
            if needle in line:
                return line
        raise AssertionError(f"the recipe ended before printing {needle!r}; printed: {self.seen}")


@dataclass
class Chat:
    alice: User
    bob: User
    id: str


@pytest.fixture
async def chat(api: Api) -> Chat:
    """Alice and Bob in a 1:1 chat: Bob runs the recipe, Alice writes to him."""
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    return Chat(alice, bob, await api.new_chat(alice, bob))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """Where the recipe's file goes: Node.js and esbuild find the npm packages in its `node_modules`."""
    (tmp_path / "node_modules").symlink_to(NODE_MODULES, target_is_directory=True)
    return tmp_path


def write(workdir: Path, name: str, heading: str, language: str) -> Path:
    path = workdir / name
    path.write_text(recipe(heading, language), encoding="utf-8")
    return path


async def receives_a_message(api: Api, out: Output, chat: Chat, *, notification: str) -> None:
    """Bob's recipe is live once it prints `notification` for a probe; then Alice's message must print."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    probe = 0
    while True:
        probe += 1
        await api.notify_user(chat.bob.id, {"probe": probe})
        try:
            await out.until(notification, timeout=PROBE_WAIT)
            break
        except NotPrinted:
            assert time.monotonic() < deadline, f"the recipe's subscription never became live; printed: {out.seen}"
    text = f"hello from the docs {chat.id[:8]}"
    await api.send(chat.alice, chat.id, text)
    assert await out.until(text) == f"{chat.alice.email}: {text}"


@contextlib.asynccontextmanager
async def running(*command: str | Path, cwd: Path, env: dict[str, str]) -> AsyncIterator[Output]:
    """A recipe run as a process (stdout and stderr as its output), killed on exit."""
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=cwd, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out = Output()

    async def pump() -> None:
        assert proc.stdout is not None
        while raw := await proc.stdout.readline():
            out.put(raw.decode(errors="replace").rstrip("\n"))
        out.put(None)

    pumping = asyncio.create_task(pump())
    try:
        yield out
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        await asyncio.wait_for(pumping, EVENT_TIMEOUT)


@contextlib.asynccontextmanager
async def in_chromium(server: Server, module: Path, page_globals: dict[str, str]) -> AsyncIterator[Output]:
    """A page of the server's origin that sets `page_globals`, then loads `module`; its console is the output."""
    if shutil.which(CHROMIUM) is None:
        unavailable(f"Chromium ({CHROMIUM}; `make test` installs Debian's chromium)")
    settings = "".join(f"window.{name} = {json.dumps(value)};" for name, value in page_globals.items())
    out = Output()

    async def serve_module(route: Route) -> None:
        await route.fulfill(body=module.read_text(encoding="utf-8"), content_type="text/javascript")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            page.on("console", lambda message: out.put(message.text))
            page.on("pageerror", lambda error: out.put(f"uncaught: {error}"))
            await page.route(f"{server.url}/recipe/app.js", serve_module)
            # The document comes from the server itself (any page of it), then the test writes its page into it: a
            # document Playwright made up would have no network address, and Chromium's local network access
            # checks would refuse its WebSocket to 127.0.0.1.
            await page.goto(f"{server.url}/healthz")
            await page.set_content(
                f'<!doctype html><script>{settings}</script><script type="module" src="/recipe/app.js"></script>'
            )
            yield out
        finally:
            await browser.close()


async def test_graphql_ws_recipe_runs_as_written(api: Api, chat: Chat, workdir: Path) -> None:
    script = write(workdir, "chat-events.js", "JavaScript: `graphql-ws` (npm)", "js")
    env = {"TAILTRAIL_URL": f"{api.server.ws_url}/graphql", "TAILTRAIL_TOKEN": chat.bob.token}
    async with running("node", script, cwd=workdir, env=env) as out:
        await out.until("connected")
        await receives_a_message(api, out, chat, notification="GlobalNotification")


async def test_apollo_client_node_recipe_runs_as_written(api: Api, chat: Chat, workdir: Path) -> None:
    """The query goes over HTTP (Bearer header), the subscription over the WebSocket (`ws`, connectionParams)."""
    script = write(workdir, "chat-events.mjs", "Apollo Client (Node.js)", "js")
    env = {"TAILTRAIL_URL": f"{api.server.url}/graphql", "TAILTRAIL_TOKEN": chat.bob.token}
    async with running("node", script, cwd=workdir, env=env) as out:
        await out.until(f"signed in as {chat.bob.email}")
        await out.until("connected")  # graphql-ws connects lazily: at the subscription
        await receives_a_message(api, out, chat, notification="GlobalNotification")


async def test_apollo_client_browser_recipe_runs_as_written(api: Api, chat: Chat, workdir: Path) -> None:
    """Bundled by esbuild as the document says, loaded in Chromium from a page of the server's origin."""
    source = write(workdir, "chat-events.js", "Apollo Client (browser)", "js")
    bundle = workdir / "chat-events.bundle.js"
    esbuild = await asyncio.create_subprocess_exec(
        NODE_MODULES / ".bin" / "esbuild",
        source,
        "--bundle",
        "--format=esm",
        f"--outfile={bundle}",
        cwd=workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    log, _ = await asyncio.wait_for(esbuild.communicate(), 60)
    assert esbuild.returncode == 0, log.decode(errors="replace")
    async with in_chromium(api.server, bundle, {"TAILTRAIL_TOKEN": chat.bob.token}) as out:
        await out.until(f"signed in as {chat.bob.email}")
        await out.until("connected")
        await receives_a_message(api, out, chat, notification="GlobalNotification")
    assert not [line for line in out.seen if line.startswith("uncaught:")], out.seen


async def test_python_gql_recipe_runs_as_written_on_graphql_transport_ws(api: Api, chat: Chat, workdir: Path) -> None:
    script = write(workdir, "chat_events.py", "Python: `gql`", "python")
    env = {"TAILTRAIL_URL": f"{api.server.ws_url}/graphql", "TAILTRAIL_TOKEN": chat.bob.token, "PYTHONUNBUFFERED": "1"}
    async with running(sys.executable, script, cwd=workdir, env=env) as out:
        # The subprotocol the server accepted, as gql read it from the handshake's answer.
        assert await out.until("connected over") == f"connected over {TRANSPORT_WS}"
        await receives_a_message(api, out, chat, notification="GlobalNotification")
    # And as the server saw it: Bob's socket offered graphql-transport-ws alone (the server takes the first offered).
    log = api.server.log()
    sockets = re.findall(rf"\[(graphql-\d+)\] stream opened \S+ user_id={chat.bob.id}\b", log)
    assert len(sockets) == 1, f"Bob's GraphQL sockets in the server log: {sockets}"
    offered = re.findall(rf"\[{sockets[0]}\] graphql socket opened .*subprotocols=(\[.*?\])", log)
    assert offered == [repr([TRANSPORT_WS])]


async def test_legacy_javascript_recipe_runs_as_written(api: Api, chat: Chat, workdir: Path) -> None:
    script = write(workdir, "legacy-events.js", "The legacy JSON protocol (JavaScript)", "js")
    env = {"TAILTRAIL_URL": api.server.ws_url, "TAILTRAIL_USER_ID": chat.bob.id, "TAILTRAIL_TOKEN": chat.bob.token}
    async with running("node", script, cwd=workdir, env=env) as out:
        await out.until("connected")
        await out.until(f"chat {chat.id}: 0 unread")  # the get_my_chats reply
        await receives_a_message(api, out, chat, notification="global_notification")


@pytest.mark.parametrize(
    ("heading", "name"),
    [
        ("HTTP streaming: Apollo Client (multipart)", "chat-events-http.mjs"),
        ("HTTP streaming: `graphql-sse`", "chat-events-sse.mjs"),
    ],
)
async def test_http_streaming_recipes_run_as_written(
    api: Api, chat: Chat, workdir: Path, heading: str, name: str
) -> None:
    """No WebSocket: chatEvents arrives over an HTTP response (multipart/mixed, text/event-stream)."""
    script = write(workdir, name, heading, "js")
    env = {"TAILTRAIL_URL": f"{api.server.url}/graphql", "TAILTRAIL_TOKEN": chat.bob.token}
    async with running("node", script, cwd=workdir, env=env) as out:
        await out.until("subscribing")
        await receives_a_message(api, out, chat, notification="GlobalNotification")
    assert "graphql socket opened" not in api.server.log().split(chat.bob.id)[-1]
