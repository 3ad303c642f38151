#!/usr/bin/env python3
"""Resume after a disconnect, in either protocol: print events, remember the cursor, pick up where you left.

    python examples/resume_demo.py --user-id ID --token TOKEN --protocol legacy  --state /tmp/cursor --listen 5
    python examples/resume_demo.py --user-id ID --token TOKEN --protocol graphql --state /tmp/cursor --listen 5

Run it, stop it, let others send messages, run it again: it first prints exactly what you missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
from pathlib import Path
from urllib.parse import quote


def remember(state: Path, cursor: str | None) -> None:
    # Save after handling each event: a crash between handling and saving replays it once more, never loses it.
    # Write a new file and rename it over the old one: a crash mid-write must not leave an empty cursor behind.
    if cursor:
        partial = state.with_name(state.name + ".new")
        partial.write_text(cursor)
        os.replace(partial, state)


async def legacy(args: argparse.Namespace, state: Path) -> None:
    import websockets

    cursor = state.read_text().strip() if state.exists() else None
    url = f"{args.url}/websocket/ws/{args.user_id}?token={quote(args.token)}"
    if cursor:
        url += f"&cursor={quote(cursor)}"
    async with websockets.connect(url) as ws:
        async for raw in ws:
            frame = json.loads(raw)
            if frame["type"] == "resync_required":
                print("resync required: refetch chats and history", flush=True)
            elif frame["type"] == "new_message":
                print(f"message #{frame['data']['seq']}: {frame['data']['content']}", flush=True)
            else:
                print(frame["type"], flush=True)
            remember(state, frame.get("cursor"))


SUBSCRIPTION = """
subscription($after: String) {
  chatEvents(after: $after) {
    __typename
    ... on NewMessage { cursor message { seq content } }
    ... on MessagesRead { cursor }
    ... on UserJoined { cursor }
    ... on UserLeft { cursor }
    ... on ChatCreated { cursor }
    ... on ChatMemberAdded { cursor }
    ... on ChatMemberRemoved { cursor }
    ... on GlobalNotification { cursor }
  }
}
"""


async def graphql(args: argparse.Namespace, state: Path) -> None:
    from gql import Client, gql
    from gql.transport.websockets import WebsocketsTransport

    cursor = state.read_text().strip() if state.exists() else None
    transport = WebsocketsTransport(
        url=f"{args.url}/graphql", init_payload={"token": args.token}, subprotocols=["graphql-transport-ws"]
    )
    async with Client(transport=transport) as session:
        request = gql(SUBSCRIPTION)
        request.variable_values = {"after": cursor}
        async for result in session.subscribe(request):
            event = result["chatEvents"]
            if event["__typename"] == "ResyncRequired":
                print("resync required: refetch chats and history", flush=True)
            elif event["__typename"] == "NewMessage":
                print(f"message #{event['message']['seq']}: {event['message']['content']}", flush=True)
            else:
                print(event["__typename"], flush=True)
            remember(state, event.get("cursor"))


def main() -> None:
    parser = argparse.ArgumentParser(description="Print chat events and resume after a disconnect.")
    parser.add_argument("--url", default="ws://127.0.0.1:8000")
    parser.add_argument("--user-id", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--protocol", choices=["legacy", "graphql"], default="legacy")
    parser.add_argument("--state", default=".tailtrail-cursor", help="file that keeps the last cursor")
    parser.add_argument("--listen", type=float, help="stop after this many seconds")
    args = parser.parse_args()
    run = legacy if args.protocol == "legacy" else graphql
    with contextlib.suppress(TimeoutError, KeyboardInterrupt):
        asyncio.run(asyncio.wait_for(run(args, Path(args.state)), args.listen))


if __name__ == "__main__":
    main()
