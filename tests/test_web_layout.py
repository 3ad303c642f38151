"""The demo web client's layout in real Chromium, on a phone (390x844, touch) and on a desktop (1280x800).

A long chat scrolls in its own pane between the chat's header and the composer, which stay in view; scrolled to the
top, the page reads older messages and the one the reader was looking at does not move; a new message comes into
view if the reader was at the bottom, and leaves them where they were if not. A phone shows the chat list or the
chat, with a way back; a toast keeps off the Send button; a chat opened with unread messages marks where they
begin. The screenshots of both sizes (docs/screenshots/, rewritten with UPDATE_SCREENSHOTS=1) are of the demo
group with a day of history behind it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from server.config import Settings
from server.demo import seed_demo
from services import chats, messages
from services.auth import Actor
from services.runtime import Runtime
from tests import test_web_client as web
from tests.support import ROOT, Server
from tests.test_web_client import ALICE, BOB, CAROL, PAGE_ERRORS, Demo, chat_button, notify, sign_in

# The web client tests' fixtures: one demo server for this module, one Chromium, each test's pages closed after it.
browser, close_pages, server = web.browser, web.close_pages, web.server

SIZES: dict[str, dict[str, Any]] = {
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "is_mobile": True,
        "has_touch": True,
        "device_scale_factor": 2,
    },
    "desktop": {"viewport": {"width": 1280, "height": 800}},
}
LONG = 200  # messages in a long chat: four times the page the client reads at once
BATCH = 10  # messages per GraphQL request (aliased mutations; the server allows 15 aliases)
SAME_PLACE_PX = 2  # how far a message may move on the screen while older messages load above it
SCREENSHOTS = ROOT / "docs" / "screenshots"


def write_long_chat(demo: Demo, name: str) -> str:
    """A new group of the three demo users with LONG messages, "<name> #1" … "#LONG", ten at a time from each in
    turn; its id."""
    create = "mutation($m: [ID!]!, $n: String!) { createChat(memberIds: $m, name: $n, isGroup: true) { id } }"
    chat_id: str = demo.gql(ALICE.email, create, m=[str(BOB.id), str(CAROL.id)], n=name)["createChat"]["id"]
    for start in range(0, LONG, BATCH):
        author = (ALICE, BOB, CAROL)[start // BATCH % 3]
        sends = " ".join(
            f'm{n}: sendMessage(chatId: $c, content: "{name} #{n}") {{ id }}'
            for n in range(start + 1, start + BATCH + 1)
        )
        demo.gql(author.email, f"mutation($c: ID!) {{ {sends} }}", c=chat_id)
    return chat_id


def send_button(page: Page) -> Locator:
    return page.locator("#composer button[type=submit]")


def history(page: Page) -> Locator:
    return page.locator("#messages .message")


def assert_fits_the_width(page: Page, size: str) -> None:
    """Nothing wider than the screen; on a phone, the pane shown (the chat list or the chat) takes all of it."""
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    if size == "phone":
        shown = page.locator("#chat-list:visible, #conversation:visible")
        expect(shown).to_have_count(1)
        assert shown.evaluate("pane => pane.getBoundingClientRect().width === window.innerWidth")


def assert_in_view(page: Page, size: str) -> None:
    """The page fits the width, and the banner, the chat's header, its newest message and the Send button are all
    wholly on the screen (not scrolled away, not clipped by the history's pane)."""
    assert_fits_the_width(page, size)
    for part in (page.locator("body > header"), page.locator("#chat-title"), history(page).last, send_button(page)):
        expect(part).to_be_in_viewport(ratio=1)


def scroll_to_top(page: Page) -> dict[str, Any]:
    """Scroll the history to its top, as a reader does; the first message then in view, and where it is on the
    screen (read at once, before the page can answer the scroll)."""
    seen: dict[str, Any] = page.evaluate(
        """() => {
            const pane = document.querySelector("#messages");
            pane.scrollTop = 0;
            const top = pane.getBoundingClientRect().top;
            const first = [...pane.querySelectorAll(".message")].find((m) => m.getBoundingClientRect().bottom > top);
            return { id: first.dataset.messageId, y: first.getBoundingClientRect().top };
        }"""
    )
    return seen


def on_screen_y(page: Page, message_id: str) -> float:
    box = page.locator(f'.message[data-message-id="{message_id}"]').bounding_box()
    assert box is not None
    return box["y"]


def wait_for_more_messages(page: Page, than: int) -> int:
    page.wait_for_function("n => document.querySelectorAll('#messages .message').length > n", arg=than)
    return history(page).count()


@pytest.mark.parametrize("size", SIZES)
def test_a_long_chat_scrolls_in_its_own_pane_and_older_messages_load_in_place(
    server: Server, browser: Browser, size: str
) -> None:
    name = f"Long walk {size}"
    write_long_chat(Demo(server), name)
    page = sign_in(browser, server, ALICE.email, **SIZES[size])
    chat_button(page, name).click()

    # The newest page, at the bottom, with everything that matters in view.
    expect(history(page).last.locator(".content")).to_have_text(f"{name} #{LONG}")
    shown = history(page).count()
    assert shown < LONG
    assert_in_view(page, size)
    expect(page.get_by_role("navigation", name="Chats")).to_be_visible(visible=size == "desktop")

    # Scrolled to the top, again and again: each older page comes in above, and the message the reader saw first
    # stays where it was on the screen.
    while shown < LONG:
        seen = scroll_to_top(page)
        shown = wait_for_more_messages(page, than=shown)
        assert abs(on_screen_y(page, seen["id"]) - seen["y"]) <= SAME_PLACE_PX, (shown, seen)
    scroll_to_top(page)
    expect(page.locator(".history-edge")).to_have_text("The start of the conversation")
    expect(history(page)).to_have_count(LONG)
    expect(history(page).first.locator(".content")).to_have_text(f"{name} #1")
    assert_fits_the_width(page, size)
    assert PAGE_ERRORS == []


@pytest.mark.parametrize("size", SIZES)
def test_a_new_message_comes_into_view_only_for_a_reader_at_the_bottom(
    server: Server, browser: Browser, size: str
) -> None:
    demo, name = Demo(server), f"Busy walk {size}"
    chat_id = write_long_chat(demo, name)
    page = sign_in(browser, server, ALICE.email, **SIZES[size])
    chat_button(page, name).click()
    expect(history(page).last.locator(".content")).to_have_text(f"{name} #{LONG}")
    send = "mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { id } }"

    # At the bottom: Bob's message scrolls into view.
    demo.gql(BOB.email, send, c=chat_id, t="at the bottom you see me")
    expect(page.locator(".message", has_text="at the bottom you see me")).to_be_in_viewport(ratio=1)

    # Scrolled up to read (once the page has seen the scroll): Bob's next message does not pull the reader down.
    seen = page.evaluate(
        """() => new Promise((done) => {
            const pane = document.querySelector("#messages");
            pane.addEventListener("scroll", () => done(pane.scrollTop), { once: true });
            pane.scrollTop = pane.scrollHeight / 2;
        })"""
    )
    demo.gql(BOB.email, send, c=chat_id, t="reading above, you do not")
    expect(page.locator(".message", has_text="reading above, you do not")).to_have_count(1)
    expect(page.locator(".message", has_text="reading above, you do not")).not_to_be_in_viewport()
    assert abs(page.evaluate("document.querySelector('#messages').scrollTop") - seen) <= SAME_PLACE_PX

    # What I send myself comes into view wherever I was.
    page.locator("#message-input").fill("and mine I always see")
    page.locator("#message-input").press("Enter")
    expect(page.locator(".message.mine", has_text="and mine I always see")).to_be_in_viewport(ratio=1)
    assert_in_view(page, size)
    assert PAGE_ERRORS == []


def test_on_a_phone_the_chat_list_and_the_chat_take_turns_with_a_way_back(server: Server, browser: Browser) -> None:
    page = sign_in(browser, server, ALICE.email, **SIZES["phone"])
    chat_list, chat = page.get_by_role("navigation", name="Chats"), page.locator("#conversation")
    expect(chat_list).to_be_visible()
    expect(chat).to_be_hidden()
    assert_fits_the_width(page, "phone")

    # A chat takes the whole screen; the back button returns to the list, on the chat just left.
    chat_button(page, "bob").click()
    expect(chat).to_be_visible()
    expect(chat_list).to_be_hidden()
    expect(page.locator(".message", has_text="Hi Alice! Walk at 6?")).to_be_in_viewport(ratio=1)
    assert_in_view(page, "phone")
    page.get_by_role("button", name="Back to chats").click()
    expect(chat_list).to_be_visible()
    expect(chat).to_be_hidden()
    expect(chat_button(page, "bob")).to_be_focused()
    expect(chat_button(page, "bob")).to_have_attribute("aria-current", "false")

    # The system's back gesture (the browser's history) and Escape do the same.
    chat_button(page, "Trail crew").click()
    expect(page.get_by_role("region", name="Trail crew")).to_be_visible()
    page.go_back()
    expect(chat_list).to_be_visible()
    expect(chat).to_be_hidden()
    chat_button(page, "Trail crew").click()
    expect(chat).to_be_visible()
    page.keyboard.press("Escape")
    expect(chat_list).to_be_visible()
    assert_fits_the_width(page, "phone")
    assert PAGE_ERRORS == []


@pytest.mark.parametrize("size", SIZES)
def test_a_notification_leaves_the_send_button_clear(server: Server, browser: Browser, size: str) -> None:
    page = sign_in(browser, server, ALICE.email, **SIZES[size])
    chat_button(page, "Trail crew").click()
    expect(send_button(page)).to_be_in_viewport(ratio=1)
    notify(server, str(ALICE.id), "The ridge trail is closed today: take the valley path instead")
    toast = page.locator(".notification", has_text="The ridge trail is closed")
    expect(toast).to_be_visible()
    toast_box, send_box = toast.bounding_box(), send_button(page).bounding_box()
    assert toast_box is not None and send_box is not None
    apart = (
        toast_box["x"] + toast_box["width"] <= send_box["x"]
        or send_box["x"] + send_box["width"] <= toast_box["x"]
        or toast_box["y"] + toast_box["height"] <= send_box["y"]
        or send_box["y"] + send_box["height"] <= toast_box["y"]
    )
    assert apart, (toast_box, send_box)
    send_button(page).click(trial=True)  # Playwright's check that a click there reaches the button itself

    # It can be dismissed before it goes by itself.
    toast.get_by_role("button", name="Dismiss notification").click()
    expect(toast).to_have_count(0)
    assert PAGE_ERRORS == []


def test_a_chat_opened_with_unread_messages_shows_where_they_begin(server: Server, browser: Browser) -> None:
    demo = Demo(server)
    create = 'mutation($m: [ID!]!) { createChat(memberIds: $m, name: "Picnic", isGroup: true) { id } }'
    chat_id = demo.gql(ALICE.email, create, m=[str(BOB.id), str(CAROL.id)])["createChat"]["id"]
    send = "mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { id createdAt } }"
    demo.gql(ALICE.email, send, c=chat_id, t="Who brings the blanket?")
    demo.gql(BOB.email, send, c=chat_id, t="I do")
    demo.gql(ALICE.email, "mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", c=chat_id)
    snacks = demo.gql(CAROL.email, send, c=chat_id, t="I bring snacks")["sendMessage"]
    demo.gql(BOB.email, send, c=chat_id, t="And the frisbee")

    page = sign_in(browser, server, ALICE.email, **SIZES["desktop"])
    expect(page.get_by_role("region", name="No chat open")).to_be_visible()
    picnic = chat_button(page, "Picnic")
    expect(picnic.locator(".badge")).to_have_text("2")
    expect(picnic.locator(".avatar")).to_have_text("P")
    picnic.click()

    # The divider sits right above the first message Alice had not read, and stays once it is read.
    expect(page.locator(".unread-divider")).to_have_text("New messages")
    expect(page.locator(".unread-divider + .message .content")).to_have_text("I bring snacks")
    expect(picnic.locator(".badge")).to_be_hidden()
    expect(page.locator(".unread-divider")).to_have_count(1)

    # One day, one label; each message says when it was sent; the others' show who wrote them.
    expect(page.locator("#messages .day")).to_have_text(["Today"])
    carols = page.locator(f'.message[data-message-id="{snacks["id"]}"]')
    expect(carols.locator("time")).to_have_attribute("datetime", snacks["createdAt"])
    clock = "iso => new Date(iso).toLocaleTimeString([], { hour: 'numeric', minute: '2-digit' })"
    expect(carols.locator("time")).to_have_text(page.evaluate(clock, snacks["createdAt"]))
    expect(carols.locator(".avatar")).to_have_text("C")
    expect(carols.locator(".sender")).to_have_text("carol")
    expect(page.locator(".message.mine .avatar")).to_have_count(0)

    # Opened again with nothing unread: no divider.
    chat_button(page, "bob").click()
    picnic.click()
    expect(page.locator(".message", has_text="And the frisbee")).to_be_visible()
    expect(page.locator(".unread-divider")).to_have_count(0)
    assert PAGE_ERRORS == []


# ---- screenshots -------------------------------------------------------------------------------------------

YESTERDAY = (  # after Carol's "Welcome to the crew 🐾" of the demo data
    (BOB, "Thanks Carol! Rex can't wait 🐕"),
    (ALICE, "Which trail tomorrow?"),
    (CAROL, "Ridge loop, 6 pm at the north gate"),
)


async def seed_yesterday(settings: Settings) -> None:
    """The demo data and more of the demo group's first messages, written before the server starts (then dated a
    day back)."""
    await seed_demo(settings)
    rt = Runtime(settings)
    await rt.start()
    try:
        crew = next(c for c in await chats.my_chats(rt, actor=Actor(user_id=CAROL.id)) if c.name == "Trail crew")
        for author, text in YESTERDAY:
            await messages.send_message(rt, actor=Actor(user_id=author.id), chat_id=crew.id, content=text)
    finally:
        await rt.stop()


@pytest.fixture
def showcase(tmp_path: Path) -> Iterator[Server]:
    """A demo server whose chats have yesterday's messages and today's: the API cannot backdate a message, so the
    seeded ones are moved a day back in the database before the server starts."""
    db = tmp_path / "showcase.db"
    env = {"SECRET_KEY": "", "BROADCAST_URL": "memory://", "DATABASE_URL": f"sqlite+aiosqlite:///{db}"}
    with ThreadPoolExecutor(1) as apart:  # Playwright's sync API keeps an event loop running on this thread
        apart.submit(asyncio.run, seed_yesterday(Settings.from_env(env))).result()
    with sqlite3.connect(db) as connection:  # stored as "YYYY-MM-DD HH:MM:SS.ffffff"
        connection.execute("UPDATE messages SET created_at = datetime(created_at, '-1 day') || substr(created_at, 20)")
    srv = Server(env, tmp_path / "server.log").start()
    try:
        yield srv
    finally:
        srv.stop()


def write_today(demo: Demo) -> None:
    """Today in the demo group: messages from all three, reactions, an edit; Alice has read up to her own."""
    crew = next(
        c["id"] for c in demo.gql(ALICE.email, "{ myChats { id name } }")["myChats"] if c["name"] == "Trail crew"
    )
    send = "mutation($c: ID!, $t: String!) { sendMessage(chatId: $c, content: $t) { id } }"
    react = "mutation($m: ID!, $e: String!) { addReaction(messageId: $m, emoji: $e) { id } }"
    by_text = {
        m["content"]: m["id"]
        for m in demo.gql(ALICE.email, "query($c: ID!) { messages(chatId: $c) { id content } }", c=crew)["messages"]
    }
    late = demo.gql(BOB.email, send, c=crew, t="Running 5 min late, save me a spot")["sendMessage"]["id"]
    rex = demo.gql(ALICE.email, send, c=crew, t="No rush, Rex is still sniffing every tree 🌳")["sendMessage"]["id"]
    demo.gql(ALICE.email, "mutation($c: ID!) { markRead(chatId: $c) { lastReadSeq } }", c=crew)
    demo.gql(CAROL.email, send, c=crew, t="Heads up: the ridge is muddy after last night's rain. Towels for the dogs!")
    demo.gql(BOB.email, send, c=crew, t="Good call, bringing two")
    demo.gql(
        BOB.email,
        'mutation($m: ID!) { editMessage(id: $m, content: "Running 10 min late, save me a spot") { id } }',
        m=late,
    )
    for email, message_id, emoji in (
        (ALICE.email, by_text["Ridge loop, 6 pm at the north gate"], "👍"),
        (BOB.email, by_text["Ridge loop, 6 pm at the north gate"], "👍"),
        (BOB.email, by_text["Welcome to the crew 🐾"], "❤️"),
        (CAROL.email, rex, "😂"),
        (BOB.email, rex, "😂"),
    ):
        demo.gql(email, react, m=message_id, e=emoji)


@pytest.mark.parametrize("size", SIZES)
def test_screenshot_of_the_demo_group(showcase: Server, browser: Browser, size: str, tmp_path: Path) -> None:
    demo = Demo(showcase)
    write_today(demo)
    sign_in(browser, showcase, BOB.email)  # online: Alice sees his dot
    page = sign_in(browser, showcase, ALICE.email, **SIZES[size])
    expect(chat_button(page, "bob").locator(".presence")).to_have_attribute("data-online", "true")
    chat_button(page, "Trail crew").click()
    expect(page.locator("#messages .day")).to_have_text(["Yesterday", "Today"])
    expect(page.locator(".unread-divider + .message")).to_contain_text("the ridge is muddy")
    expect(page.locator(".message", has_text="10 min late").locator(".edited")).to_have_text("(edited)")
    assert_in_view(page, size)
    folder = SCREENSHOTS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=folder / f"web-{size}.png", animations="disabled", caret="hide")
    assert PAGE_ERRORS == []
