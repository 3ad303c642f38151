"""The demo web client at `/`, driven in real headless Chromium (Debian's `chromium`) through Playwright.

Two browser contexts are two people: Alice and Bob, picked from the demo users of a server in development mode
with the demo data seeded, as `make run` starts it. Each page must see the other's message, typing indicator and
read receipt, and unread badges must count and clear.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from config import Settings
from demo import DEMO_USERS, seed_demo
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Development mode (no SECRET_KEY), demo data seeded: what `python cli.py serve --demo` serves."""
    tmp = tmp_path_factory.mktemp("web")
    env = {"SECRET_KEY": "", "BROADCAST_URL": "memory://", "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'demo.db'}"}
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


def sign_in(browser: Browser, server: Server, email: str) -> Page:
    """A new browser context (its own storage) on `/`, signed in as a demo user by clicking their name."""
    page = browser.new_context().new_page()
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
