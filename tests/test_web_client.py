"""The demo web client at `/`, driven in real headless Chromium (Debian's `chromium`) through Playwright.

Two browser contexts are two people: Alice and Bob, picked from the demo users of a server in development mode
with the demo data seeded, as `make run` starts it. Each page must see the other's message, typing indicator and
read receipt, and unread badges must count and clear; edits, deletions and reactions show live.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, WebSocketRoute, expect, sync_playwright

from server.config import Settings
from server.demo import DEMO_USERS, seed_demo
from services.auth import issue_service_token
from tests.conftest import unavailable
from tests.support import EVENT_TIMEOUT, Server

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# As root in a container without a display; no background networking on a machine with a closed network.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = EVENT_TIMEOUT * 1000
PAGE_ERRORS: list[str] = []  # uncaught exceptions in the pages' JavaScript
ALICE, BOB, CAROL = DEMO_USERS
OPEN_CONTEXTS: list[BrowserContext] = []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Development mode (no SECRET_KEY), demo data seeded: what `python cli.py serve --demo` serves."""
    tmp = tmp_path_factory.mktemp("web")
    env = {"SECRET_KEY": "", "BROADCAST_URL": "memory://", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'demo.db'}"}
    env["PRESENCE_GRACE"] = "1"  # a closed page's user shows offline a second later
    asyncio.run(seed_demo(Settings.from_env(env)))
    srv = Server(env, tmp / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        unavailable(f"Chromium ({CHROMIUM}; `make test` installs Debian's chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(autouse=True)
def close_pages() -> Iterator[None]:
    """Each test's pages are closed after it: a page left open on a chat would go on reading it."""
    yield
    while OPEN_CONTEXTS:
        OPEN_CONTEXTS.pop().close()


def new_page(browser: Browser, **device: Any) -> Page:
    """A page in a new browser context; `device` is Playwright's context options (viewport, is_mobile, …)."""
    context = browser.new_context(**device)
    OPEN_CONTEXTS.append(context)
    return context.new_page()


def sign_in(browser: Browser, server: Server, email: str, **device: Any) -> Page:
    """A new browser context (its own storage) on `/`, signed in as a demo user by clicking their name."""
    page = new_page(browser, **device)
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: PAGE_ERRORS.append(f"{email}: {exc}"))
    page.goto(server.url + "/")
    page.get_by_role("button", name=email).click()
    expect(page.locator("#connection")).to_have_text("online")
    expect(page.locator("#whoami")).to_have_text(email)
    return page


def notify(server: Server, user_id: str, title: str) -> None:
    """A notification through the service API: seeing it proves the page's subscription is live."""
    token = issue_service_token(key=Settings(secret_key=None).signing_key)
    response = httpx.post(
        f"{server.url}/graphql",
        json={
            "query": "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
            "variables": {"u": user_id, "n": {"title": title}},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=EVENT_TIMEOUT,
    )
    assert response.json() == {"data": {"sendGlobalNotification": True}}, response.text


def chat_button(page: Page, title: str) -> Locator:
    return page.locator("#chats button", has=page.locator(".title", has_text=title))


def my_message(page: Page, text: str) -> Locator:
    return page.locator(".message.mine", has_text=text)


def test_two_people_chat_and_each_sees_typing_message_and_read_receipt(server: Server, browser: Browser) -> None:
    alice_user, bob_user, _ = DEMO_USERS
    alice = sign_in(browser, server, alice_user.email)
    bob = sign_in(browser, server, bob_user.email)
    for page, user in ((alice, alice_user), (bob, bob_user)):
        notify(server, str(user.id), f"hello {user.email}")
        expect(page.locator(".notification", has_text=f"hello {user.email}")).to_be_visible()

    # The seed: Bob wrote "Hi Alice! Walk at 6?" in their direct chat, Carol welcomed both to "Trail crew".
    expect(chat_button(alice, "bob").locator(".badge")).to_have_text("1")
    expect(chat_button(alice, "Trail crew").locator(".badge")).to_have_text("1")
    chat_button(bob, "alice").click()
    expect(my_message(bob, "Walk at 6?").locator(".receipt")).to_have_text("✓ Sent")

    # Alice opens the chat: her badge clears, and Bob's page shows his message read.
    chat_button(alice, "bob").click()
    expect(alice.locator(".message", has_text="Hi Alice! Walk at 6?")).to_be_visible()
    expect(chat_button(alice, "bob").locator(".badge")).to_be_hidden()
    expect(my_message(bob, "Walk at 6?").locator(".receipt")).to_have_text("✓✓ Read")

    # Alice types: Bob sees it; she sends: Bob sees the message, the indicator goes, and Alice sees it read.
    alice.locator("#message-input").press_sequentially("On my w")
    expect(bob.locator("#typing")).to_have_text("alice is typing…")
    alice.locator("#message-input").press_sequentially("ay!")
    alice.locator("#message-input").press("Enter")
    expect(bob.locator(".message", has_text="On my way!")).to_be_visible()
    expect(bob.locator("#typing")).to_have_text("")
    expect(my_message(alice, "On my way!").locator(".receipt")).to_have_text("✓✓ Read")

    # And the other way round.
    bob.locator("#message-input").press_sequentially("Bringing the leash")
    expect(alice.locator("#typing")).to_have_text("bob is typing…")
    bob.locator("#message-input").press("Enter")
    expect(alice.locator(".message", has_text="Bringing the leash")).to_be_visible()
    expect(alice.locator("#typing")).to_have_text("")
    expect(my_message(bob, "Bringing the leash").locator(".receipt")).to_have_text("✓✓ Read")

    # Receipts survive a reload: the page reads every member's read marker with its chats.
    bob.reload()
    expect(bob.locator("#connection")).to_have_text("online")
    chat_button(bob, "alice").click()
    expect(my_message(bob, "Bringing the leash").locator(".receipt")).to_have_text("✓✓ Read")
    expect(my_message(bob, "Walk at 6?").locator(".receipt")).to_have_text("✓✓ Read")

    # A message in a chat Alice is not looking at counts on its badge, live; opening it reads it.
    chat_button(bob, "Trail crew").click()
    bob.locator("#message-input").fill("Count me in")
    bob.locator("#message-input").press("Enter")
    expect(chat_button(alice, "Trail crew").locator(".badge")).to_have_text("2")
    expect(chat_button(alice, "Trail crew").locator(".preview")).to_have_text("Count me in")
    chat_button(alice, "Trail crew").click()
    expect(chat_button(alice, "Trail crew").locator(".badge")).to_be_hidden()
    expect(my_message(bob, "Count me in").locator(".receipt")).to_have_text("✓✓ Read by alice")

    assert PAGE_ERRORS == []


def test_presence_dots_go_live_and_a_read_on_one_device_clears_the_other(server: Server, browser: Browser) -> None:
    alice_user, bob_user, _ = DEMO_USERS
    phone, laptop = sign_in(browser, server, alice_user.email), sign_in(browser, server, alice_user.email)
    bobs_dot = chat_button(laptop, "bob").locator(".presence")
    expect(bobs_dot).to_have_attribute("data-online", "false")

    # Bob comes online: Alice's dot for him lights up, live.
    bob = sign_in(browser, server, bob_user.email)
    expect(bobs_dot).to_have_attribute("data-online", "true")
    expect(chat_button(phone, "bob").locator(".presence")).to_have_attribute("data-online", "true")

    # He writes: both of Alice's devices count it; she reads it on her phone, and her laptop's count clears.
    chat_button(bob, "alice").click()
    bob.locator("#message-input").fill("Are you there?")
    bob.locator("#message-input").press("Enter")
    for page in (phone, laptop):
        expect(chat_button(page, "bob").locator(".preview")).to_have_text("Are you there?")
    chat_button(phone, "bob").click()
    expect(phone.locator(".message", has_text="Are you there?")).to_be_visible()
    expect(chat_button(laptop, "bob").locator(".badge")).to_be_hidden()

    # Bob leaves: his dot goes out once the grace is over.
    bob.context.close()
    expect(bobs_dot).to_have_attribute("data-online", "false")
    assert PAGE_ERRORS == []


class Tap:
    """The page's /graphql WebSocket routed through Playwright: hold the server's replies to one kind of
    operation, drop the connection, refuse new ones for a while."""

    def __init__(self, page: Page) -> None:
        self.routes: list[tuple[WebSocketRoute, WebSocketRoute]] = []
        self.refusing = False
        self.hold: str | None = None  # hold the server's frames for operations whose document contains this
        self._held_ids: set[str] = set()
        self.held: list[tuple[WebSocketRoute, str]] = []
        self.seen: list[str] = []  # every frame from the server
        page.route_web_socket("**/graphql", self._route)

    def _route(self, page_side: WebSocketRoute) -> None:
        if self.refusing:
            page_side.close(code=1011, reason="refused by the test")
            return
        server_side = page_side.connect_to_server()
        self.routes.append((page_side, server_side))

        def outgoing(frame: str | bytes) -> None:
            message = json.loads(frame)
            query = (message.get("payload") or {}).get("query", "") if message.get("type") == "subscribe" else ""
            if self.hold is not None and self.hold in query:
                self._held_ids.add(message["id"])
            server_side.send(frame)

        def incoming(frame: str | bytes) -> None:
            self.seen.append(str(frame))
            if json.loads(frame).get("id") in self._held_ids:
                self.held.append((page_side, frame))  # type: ignore[arg-type]
            else:
                page_side.send(frame)

        page_side.on_message(outgoing)
        server_side.on_message(incoming)

    def release(self) -> None:
        self.hold = None
        for page_side, frame in self.held:
            page_side.send(frame)
        self.held.clear()

    def drop(self) -> None:
        page_side, server_side = self.routes[-1]
        server_side.close(code=1000)
        page_side.close(code=4000, reason="dropped by the test")


class Demo:
    """The demo users' tokens, for acting as them (or as a service) beside the page."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.tokens = {u["email"]: u["token"] for u in httpx.get(f"{server.url}/demo/users").json()["users"]}

    def gql(self, email: str | None, query: str, **variables: object) -> dict[str, Any]:
        token = self.tokens[email] if email else issue_service_token(key=Settings(secret_key=None).signing_key)
        body = httpx.post(
            f"{self.server.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
            timeout=EVENT_TIMEOUT,
        ).json()
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    def direct_chat(self) -> str:
        chats = self.gql(ALICE.email, "{ myChats { id isGroup } }")["myChats"]
        return next(c["id"] for c in chats if not c["isGroup"])

    def contents(self, chat_id: str) -> list[str]:
        messages = self.gql(ALICE.email, "query($c: ID!) { messages(chatId: $c) { content } }", c=chat_id)
        return [m["content"] for m in messages["messages"]]


def tapped_page(browser: Browser, server: Server, email: str) -> tuple[Page, Tap]:
    page = new_page(browser)
    page.set_default_timeout(WAIT_MS)
    page.on("pageerror", lambda exc: PAGE_ERRORS.append(f"{email}: {exc}"))
    tap = Tap(page)
    page.goto(server.url + "/")
    page.get_by_role("button", name=email).click()
    expect(page.locator("#connection")).to_have_text("online")
    return page, tap


def test_what_happens_while_the_socket_is_down_is_there_after_the_reconnect(server: Server, browser: Browser) -> None:
    demo, chat_id = Demo(server), None
    page, tap = tapped_page(browser, server, ALICE.email)
    chat_id = demo.direct_chat()
    chat_button(page, "bob").click()
    demo.gql(BOB.email, "mutation($c: ID!) { setTyping(chatId: $c, isTyping: true) }", c=chat_id)
    expect(page.locator("#typing")).to_have_text("bob is typing…")

    tap.refusing = True
    tap.drop()
    expect(page.locator("#connection")).to_have_text("reconnecting")
    demo.gql(BOB.email, "mutation($c: ID!) { setTyping(chatId: $c, isTyping: false) }", c=chat_id)
    demo.gql(
        BOB.email, 'mutation($c: ID!) { sendMessage(chatId: $c, content: "while you were away") { id } }', c=chat_id
    )
    demo.gql(
        None,
        "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }",
        u=str(ALICE.id),
        n={"title": "missed notification"},
    )
    tap.refusing = False

    expect(page.locator("#connection")).to_have_text("online")
    expect(page.locator(".notification", has_text="missed notification")).to_be_visible()
    expect(page.locator(".message", has_text="while you were away")).to_have_count(1)
    expect(page.locator("#typing")).to_have_text("")
    assert PAGE_ERRORS == []


def test_a_message_arriving_while_history_loads_is_shown(server: Server, browser: Browser) -> None:
    demo = Demo(server)
    page, tap = tapped_page(browser, server, CAROL.email)
    group = next(c["id"] for c in demo.gql(CAROL.email, "{ myChats { id isGroup } }")["myChats"] if c["isGroup"])
    tap.hold = "query History"
    chat_button(page, "Trail crew").click()
    wait_until(page, lambda: len(tap.held) > 0)
    demo.gql(BOB.email, 'mutation($c: ID!) { sendMessage(chatId: $c, content: "during history") { id } }', c=group)
    expect(chat_button(page, "Trail crew").locator(".preview")).to_have_text("during history")
    tap.release()
    expect(page.locator(".message", has_text="during history")).to_have_count(1)
    expect(page.locator(".message", has_text="Welcome to the crew")).to_have_count(1)
    assert PAGE_ERRORS == []


def test_an_edit_and_a_reaction_arriving_while_history_loads_are_shown(server: Server, browser: Browser) -> None:
    """The history's answer was read before the edit and the reaction: the page applies them on top of it."""
    demo = Demo(server)
    group = next(c["id"] for c in demo.gql(CAROL.email, "{ myChats { id isGroup } }")["myChats"] if c["isGroup"])
    send = 'mutation($c: ID!) { sendMessage(chatId: $c, content: "bring water") { id } }'
    message_id = demo.gql(BOB.email, send, c=group)["sendMessage"]["id"]
    page, tap = tapped_page(browser, server, CAROL.email)
    tap.hold = "query History"
    chat_button(page, "Trail crew").click()
    wait_until(page, lambda: len(tap.held) > 0)
    demo.gql(BOB.email, 'mutation($m: ID!) { addReaction(messageId: $m, emoji: "💧") { id } }', m=message_id)
    demo.gql(BOB.email, 'mutation($m: ID!) { editMessage(id: $m, content: "bring more water") { id } }', m=message_id)
    # Both reached the page (in order): the chat's preview, its last message, shows the edit.
    expect(chat_button(page, "Trail crew").locator(".preview")).to_have_text("bring more water")
    tap.release()
    message = page.locator(f'.message[data-message-id="{message_id}"]')
    expect(message.locator(".content")).to_have_text("bring more water")
    expect(message.locator(".edited")).to_have_text("(edited)")
    expect(message.locator(".reaction")).to_have_text("💧 1")
    assert PAGE_ERRORS == []


def test_a_send_retried_after_a_lost_answer_is_stored_once(server: Server, browser: Browser) -> None:
    demo = Demo(server)
    page, tap = tapped_page(browser, server, ALICE.email)
    chat_id = demo.direct_chat()
    chat_button(page, "bob").click()
    tap.hold = "mutation Send"
    page.locator("#message-input").fill("exactly once")
    page.locator("#message-input").press("Enter")
    wait_until(page, lambda: len(tap.held) > 0)  # the server has stored it and answered; the answer is lost
    tap.held.clear()
    tap.hold = None
    tap.drop()
    expect(page.locator("#message-input")).to_have_value("exactly once")  # given back: not sent, as far as it knows
    expect(page.locator("#connection")).to_have_text("online")
    page.locator("#message-input").press("Enter")
    expect(page.locator("#message-input")).to_have_value("")
    expect(page.locator(".message", has_text="exactly once")).to_have_count(1)
    assert demo.contents(chat_id).count("exactly once") == 1
    assert PAGE_ERRORS == []


def test_events_during_a_chat_list_reload_are_kept(server: Server, browser: Browser) -> None:
    """A new chat makes the page read its chat list again; a message arriving meanwhile still counts."""
    demo = Demo(server)
    page, tap = tapped_page(browser, server, ALICE.email)
    chat_id = demo.direct_chat()
    before = int(chat_button(page, "bob").locator(".badge").text_content() or 0)
    tap.hold = "query Snapshot"
    demo.gql(
        CAROL.email, 'mutation($m: [ID!]!) { createChat(memberIds: $m, name: "Vet visit") { id } }', m=[str(ALICE.id)]
    )
    wait_until(page, lambda: len(tap.held) > 0)
    demo.gql(BOB.email, 'mutation($c: ID!) { sendMessage(chatId: $c, content: "during the reload") { id } }', c=chat_id)
    wait_until(page, lambda: any("during the reload" in frame for frame in tap.seen))  # it arrived while held
    tap.release()
    expect(chat_button(page, "Vet visit")).to_be_visible()
    expect(chat_button(page, "bob").locator(".preview")).to_have_text("during the reload")
    unread = next(c for c in demo.gql(ALICE.email, "{ myChats { id unreadCount } }")["myChats"] if c["id"] == chat_id)
    assert unread["unreadCount"] == before + 1
    expect(chat_button(page, "bob").locator(".badge")).to_have_text(str(before + 1))
    assert PAGE_ERRORS == []


def test_removed_from_the_open_chat_the_page_closes_it(server: Server, browser: Browser) -> None:
    demo = Demo(server)
    page, _ = tapped_page(browser, server, BOB.email)
    group = next(c["id"] for c in demo.gql(BOB.email, "{ myChats { id isGroup } }")["myChats"] if c["isGroup"])
    chat_button(page, "Trail crew").click()
    expect(page.locator("#composer")).to_be_visible()
    demo.gql(
        CAROL.email, "mutation($c: ID!, $u: ID!) { removeChatMember(chatId: $c, userId: $u) }", c=group, u=str(BOB.id)
    )
    expect(chat_button(page, "Trail crew")).to_have_count(0)
    expect(page.get_by_role("region", name="No chat open")).to_be_visible()
    expect(page.locator("#chat-title")).to_be_hidden()
    expect(page.locator("#composer")).to_be_hidden()
    assert PAGE_ERRORS == []


def test_edits_deletions_and_reactions_show_live_on_both_pages(server: Server, browser: Browser) -> None:
    alice, bob = sign_in(browser, server, ALICE.email), sign_in(browser, server, BOB.email)
    chat_button(alice, "bob").click()
    chat_button(bob, "alice").click()
    alice.locator("#message-input").fill("Meet at the gate")
    alice.locator("#message-input").press("Enter")
    expect(my_message(alice, "Meet at the gate").locator(".receipt")).to_have_text("✓✓ Read")  # Bob has it
    message_id = my_message(alice, "Meet at the gate").get_attribute("data-message-id")
    mine, theirs = (page.locator(f'.message[data-message-id="{message_id}"]') for page in (alice, bob))
    expect(theirs.locator(".content")).to_have_text("Meet at the gate")
    expect(theirs.locator(".edit")).to_have_count(0)  # only the sender edits or deletes
    expect(theirs.locator(".delete")).to_have_count(0)

    # Alice edits it: Escape cancels, Enter saves; Bob's page shows the new text, marked edited.
    mine.locator(".edit").click()
    expect(mine.locator(".edit-input")).to_have_value("Meet at the gate")
    mine.locator(".edit-input").press("Escape")
    expect(mine.locator(".edit-input")).to_have_count(0)
    mine.locator(".edit").click()
    mine.locator(".edit-input").fill("Meet at the north gate")
    mine.locator(".edit-input").press("Enter")
    for message in (mine, theirs):
        expect(message.locator(".content")).to_have_text("Meet at the north gate")
        expect(message.locator(".edited")).to_have_text("(edited)")
    expect(chat_button(bob, "alice").locator(".preview")).to_have_text("Meet at the north gate")

    # Alice reacts, then Bob with the chip: each count shows on both pages, pressed for the one who reacted.
    mine.locator(".react", has_text="👍").click()
    expect(theirs.locator(".reaction")).to_have_text("👍 1")
    expect(theirs.locator(".reaction")).to_have_attribute("aria-pressed", "false")
    expect(mine.locator(".reaction")).to_have_attribute("aria-pressed", "true")
    theirs.locator(".reaction").click()
    expect(mine.locator(".reaction")).to_have_text("👍 2")
    expect(mine.locator(".reaction")).to_have_attribute("aria-pressed", "true")
    expect(theirs.locator(".reaction")).to_have_attribute("aria-pressed", "true")

    # Bob takes his back with the chip; Alice's stays.
    theirs.locator(".reaction").click()
    expect(mine.locator(".reaction")).to_have_text("👍 1")
    expect(theirs.locator(".reaction")).to_have_attribute("aria-pressed", "false")
    expect(mine.locator(".reaction")).to_have_attribute("aria-pressed", "true")

    # Alice deletes it: a tombstone on both pages, no chips, no actions; Bob's chat list says so.
    mine.locator(".delete").click()
    for message in (mine, theirs):
        expect(message.locator(".content.deleted")).to_have_text("message deleted")
        expect(message.locator(".reaction")).to_have_count(0)
        expect(message.locator(".actions")).to_have_count(0)
    expect(bob.locator(".message", has_text="north gate")).to_have_count(0)
    expect(chat_button(bob, "alice").locator(".preview")).to_have_text("message deleted")
    expect(chat_button(alice, "bob").locator(".preview")).to_have_text("message deleted")
    assert PAGE_ERRORS == []


def wait_until(page: Page, condition: Callable[[], bool]) -> None:
    """Playwright's callbacks (the tap's) run only while the test waits in Playwright: poll through it."""
    deadline = time.monotonic() + EVENT_TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        page.wait_for_timeout(20)


def test_demo_users_are_offered_in_development_mode_only_and_once_seeded(tmp_path: Path, server: Server) -> None:
    """With SECRET_KEY set, `/demo/users` hands out no tokens (the page asks for one instead); in development mode
    it lists the demo users the database has."""
    listed = httpx.get(f"{server.url}/demo/users").json()["users"]
    assert [u["email"] for u in listed] == [u.email for u in DEMO_USERS]
    unseeded = Server(
        {"SECRET_KEY": "", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}, tmp_path / "empty.log"
    ).start()
    try:
        assert httpx.get(f"{unseeded.url}/demo/users").json() == {"users": []}
    finally:
        unseeded.stop()
    srv = Server({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'prod.db'}"}, tmp_path / "server.log").start()
    try:
        assert httpx.get(f"{srv.url}/demo/users").status_code == 404
        page = httpx.get(f"{srv.url}/")
        assert page.status_code == 200 and "TailTrail Realtime" in page.text
        assert httpx.get(f"{srv.url}/web/app.js").headers["content-type"].startswith("text/javascript")
    finally:
        srv.stop()
