"""docs/clients.md: the npm `graphql-ws` recipe runs as written in Node.js against a live server."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

from tests.support import EVENT_TIMEOUT, ROOT, Api
from tests.test_legacy_protocol import _read_lines_until

DOC = ROOT / "docs" / "clients.md"


def recipe(heading: str, language: str) -> str:
    """The first `language` code block under the section titled `heading`, exactly as the document shows it."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"```{language}\n(.*?)```", section, re.DOTALL)
    assert match, f"no {language} block under {heading!r}"
    return match.group(1)


async def test_graphql_ws_recipe_runs_as_written(api: Api, tmp_path: Path) -> None:
    alice, bob = await api.new_user("alice"), await api.new_user("bob")
    chat_id = await api.new_chat(alice, bob)
    script = tmp_path / "chat-events.js"
    script.write_text(recipe("JavaScript: `graphql-ws` (npm)", "js"), encoding="utf-8")
    env = {
        **os.environ,
        "NODE_PATH": str(ROOT / "tests" / "js" / "node_modules"),  # the packages the recipe's npm install names
        "TAILTRAIL_URL": f"{api.server.ws_url}/graphql",
        "TAILTRAIL_TOKEN": bob.token,
    }
    proc = await asyncio.create_subprocess_exec("node", str(script), env=env, stdout=asyncio.subprocess.PIPE)
    try:
        await _read_lines_until(proc, "connected")
        # Connected is not yet subscribed: probe with notifications until the stream shows one.
        deadline = time.monotonic() + EVENT_TIMEOUT
        while True:
            await api.notify_user(bob.id, {"probe": True})
            try:
                await _read_lines_until(proc, "GlobalNotification", timeout=0.5)
                break
            except (AssertionError, TimeoutError):
                assert time.monotonic() < deadline, "the recipe's subscription never became live"
        await api.send(alice, chat_id, "hello from the docs")
        lines = await _read_lines_until(proc, "hello from the docs")
    finally:
        proc.kill()
        await proc.wait()
    assert lines[-1] == f"{alice.email}: hello from the docs"
