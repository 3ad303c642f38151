"""Command line: `python cli.py serve|seed-demo|token|service-token|db upgrade|export-schema` (each with --help)."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from config import Settings
from services.auth import issue_service_token, issue_user_token


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cli.py", description="TailTrail Realtime")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the server (uvicorn app:app, with the socket limits of SECURITY.md)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="processes (needs BROADCAST_URL=redis://…)")
    serve.add_argument("--demo", action="store_true", help="seed demo users and chats and print their tokens")

    commands.add_parser("seed-demo", help="create the demo users and chats")

    token = commands.add_parser("token", help="print a user token signed with SECRET_KEY")
    token.add_argument("user_id", type=uuid.UUID)
    token.add_argument("--days", type=float, default=7.0, help="validity (default: 7 days)")

    service = commands.add_parser("service-token", help="print a service token signed with SECRET_KEY")
    service.add_argument("--days", type=float, default=1.0, help="validity (default: 1 day)")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply the migrations to DATABASE_URL (the server also does at start-up)")

    export = commands.add_parser("export-schema", help="write the GraphQL schema (SDL) to a file")
    export.add_argument("path", nargs="?", default="schema.graphql", help="default: schema.graphql")

    args = parser.parse_args(argv)
    settings = Settings.from_env()

    if args.command == "token":
        print(issue_user_token(args.user_id, key=settings.signing_key, ttl=timedelta(days=args.days)))
    elif args.command == "service-token":
        print(issue_service_token(key=settings.signing_key, ttl=timedelta(days=args.days)))
    elif args.command == "db":
        from models import Database

        asyncio.run(_db_upgrade(Database(settings.database_url)))
        print(f"database schema up to date: {settings.database_url.split('@')[-1]}")
    elif args.command == "export-schema":
        from resolvers.app import schema_sdl

        with open(args.path, "w", encoding="utf-8") as f:
            f.write(schema_sdl())
    elif args.command == "seed-demo":
        from demo import seed_demo

        asyncio.run(seed_demo(settings))
    elif args.command == "serve":
        if args.demo:
            from demo import connection_help, seed_demo

            asyncio.run(seed_demo(settings))
            print(connection_help(settings, host=args.host, port=args.port), flush=True)
        serve_app(settings, host=args.host, port=args.port, workers=args.workers)
    return 0


async def _db_upgrade(db: Any) -> None:
    try:
        await db.create_schema()
    finally:
        await db.dispose()


def listening_socket(settings: Settings, *, host: str, port: int) -> socket.socket:
    """The server's socket, bound here so accepted connections inherit a capped kernel send buffer."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, settings.socket_send_buffer)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve_app(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    import uvicorn

    sock = listening_socket(settings, host=host, port=port)
    print(f"serving on http://{host}:{port}", flush=True)
    uvicorn.run(
        "app:app",
        fd=sock.fileno(),
        workers=workers,
        # Per-message deflate costs ~300 KiB per connection when a client offers it (PITFALLS); chat frames
        # are small. Off, deliberately.
        ws_per_message_deflate=False,
        # Inbound frames are refused above MAX_FRAME_BYTES by the app; uvicorn need not buffer more than that.
        ws_max_size=settings.max_frame_bytes + 1,
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    sys.exit(main())
