#!/usr/bin/env python3
"""A test client for the legacy JSON protocol (the one the original WebSocket guide mentions).

Connects to ws://HOST:PORT/websocket/ws/{user_id}, prints every incoming event readably, and sends the
commands you type (or pass with --command):

  chats                       get_my_chats
  status                      get_chat_status
  send CHAT_ID TEXT...        send_message
  typing CHAT_ID on|off       typing
  read CHAT_ID                mark_read
  join CHAT_ID / leave CHAT_ID
  edit MESSAGE_ID TEXT...     edit_message (your own message)
  delete MESSAGE_ID           delete_message (your own message)
  react / unreact MESSAGE_ID EMOJI
                              add_reaction / remove_reaction
  block / unblock USER_ID     block_user / unblock_user
  blocked                     get_blocked_users
  exit CHAT_ID                exit_chat (leave the chat for good)
  raw {"type": ..., "data": ...}
  quit

Examples:
  python websocket_test_client.py --user-id 00000000-0000-4000-8000-00000000a11c --secret "$SECRET_KEY"
  python websocket_test_client.py --user-id $ID --token $TOKEN --command chats --listen 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from datetime import timedelta
from typing import Any

import websockets

from server.config import DEV_SECRET_KEY


def describe(frame: dict[str, Any]) -> str:
    """One readable line per server frame."""
    kind, data = frame.get("type"), frame.get("data") or {}
    if kind == "new_message":
        sender = (data.get("sender") or {}).get("email")
        return f"💬 [{data.get('chat_id')} #{data.get('seq')}] {sender}: {data.get('content')}"
    if kind in ("user_typing", "user_stopped_typing"):
        verb = "is typing" if kind == "user_typing" else "stopped typing"
        return f"✍️  {data.get('user_id')} {verb} in {data.get('chat_id')}"
    if kind == "messages_read":
        return f"👀 {data.get('user_id')} read {data.get('chat_id')} up to #{data.get('last_read_seq')}"
    if kind in ("user_joined", "user_left"):
        return f"🚪 {data.get('user_id')} {'joined' if kind == 'user_joined' else 'left'} {data.get('chat_id')}"
    if kind == "user_online":
        return f"🟢 {data.get('user_id')} is online"
    if kind == "user_offline":
        return f"⚪ {data.get('user_id')} went offline (last seen {data.get('last_seen')})"
    if kind == "message_edited":
        return (
            f"✏️  [{data.get('chat_id')}] {data.get('user_id')} edited {data.get('message_id')}: {data.get('content')}"
        )
    if kind == "message_deleted":
        return f"🗑️  [{data.get('chat_id')}] message {data.get('message_id')} deleted"
    if kind == "reaction_changed":
        counts = " ".join(f"{c.get('emoji')}{c.get('count')}" for c in data.get("counts", []))
        verb = "added" if data.get("added") else "removed"
        return f"😀 {data.get('user_id')} {verb} {data.get('emoji')} on {data.get('message_id')}: {counts or 'none'}"
    if kind == "my_chats":
        lines = [f"📋 {data.get('total_chats')} chats"]
        for chat in data.get("chats", []):
            who = ", ".join(
                p["email"] + (" (online)" if p.get("is_online") else "") for p in chat.get("participants", [])
            )
            lines.append(f"   {chat['id']}  {chat.get('name') or '1:1'}  unread={chat.get('unread_count')}  [{who}]")
        return "\n".join(lines)
    if kind == "chat_status":
        return f"📡 online others: {data.get('total_online_users')}  " + json.dumps(data.get("chats"))
    if kind == "error":
        return f"⚠️  {data.get('code')}: {data.get('message')}"
    return f"🔔 {kind}: {json.dumps(data, ensure_ascii=False)}"


def parse_command(line: str) -> dict[str, Any] | None:
    """A typed command as a protocol frame; None for `quit`. Raises ValueError on a malformed line."""
    words = line.strip().split()
    if not words:
        raise ValueError("empty command")
    name, args = words[0], words[1:]
    if name == "quit":
        return None
    if name == "raw":
        frame: dict[str, Any] = json.loads(line.strip()[3:])
        return frame
    if name == "chats":
        return {"type": "get_my_chats", "data": {}}
    if name == "status":
        return {"type": "get_chat_status", "data": {}}
    if name == "send" and len(args) >= 2:
        return {"type": "send_message", "data": {"chat_id": args[0], "content": " ".join(args[1:])}}
    if name == "typing" and len(args) == 2 and args[1] in ("on", "off"):
        return {"type": "typing", "data": {"chat_id": args[0], "is_typing": args[1] == "on"}}
    if name in ("read", "join", "leave", "exit") and len(args) == 1:
        kind = {"read": "mark_read", "join": "join_chat", "leave": "leave_chat", "exit": "exit_chat"}[name]
        return {"type": kind, "data": {"chat_id": args[0]}}
    if name == "edit" and len(args) >= 2:
        return {"type": "edit_message", "data": {"message_id": args[0], "content": " ".join(args[1:])}}
    if name == "delete" and len(args) == 1:
        return {"type": "delete_message", "data": {"message_id": args[0]}}
    if name in ("react", "unreact") and len(args) == 2:
        kind = "add_reaction" if name == "react" else "remove_reaction"
        return {"type": kind, "data": {"message_id": args[0], "emoji": args[1]}}
    if name in ("block", "unblock") and len(args) == 1:
        return {"type": f"{name}_user", "data": {"user_id": args[0]}}
    if name == "blocked" and not args:
        return {"type": "get_blocked_users", "data": {}}
    raise ValueError(f"unknown command: {line.strip()!r} (see --help)")


async def run(args: argparse.Namespace) -> int:
    token = args.token
    if token is None:
        from services.auth import issue_user_token

        token = issue_user_token(args.user_id, key=args.secret, ttl=timedelta(hours=1))
    url = f"{args.url.rstrip('/')}/websocket/ws/{args.user_id}?token={token}"
    async with websockets.connect(url) as ws:
        print(f"🚀 connected as {args.user_id}: subscribed to all your chats", flush=True)

        async def receive() -> None:
            async for raw in ws:
                print(describe(json.loads(raw)), flush=True)

        receiver = asyncio.create_task(receive())
        for line in args.command:
            frame = parse_command(line)
            if frame is None:
                break
            await ws.send(json.dumps(frame))
        if args.listen is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(receiver), args.listen)
        elif sys.stdin.isatty() or not args.command:
            loop = asyncio.get_running_loop()
            while True:
                line = await loop.run_in_executor(None, sys.stdin.readline)
                if not line:
                    break
                try:
                    frame = parse_command(line)
                except ValueError as exc:
                    print(f"? {exc}", flush=True)
                    continue
                if frame is None:
                    break
                await ws.send(json.dumps(frame))
        receiver.cancel()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="ws://127.0.0.1:8000", help="server base URL (default: %(default)s)")
    parser.add_argument("--user-id", required=True, help="your user id (UUID)")
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument("--token", help="a user token for that user id")
    auth.add_argument(
        "--secret", default=DEV_SECRET_KEY, help="or: the server's SECRET_KEY, to sign a token (default: the dev key)"
    )
    parser.add_argument("--command", action="append", default=[], help="a command to send on connect (repeatable)")
    parser.add_argument("--listen", type=float, help="print events for this many seconds, then exit")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except (OSError, websockets.InvalidHandshake, websockets.ConnectionClosed) as exc:
        print(f"connection failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
