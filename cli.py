"""Command line (Typer): `python cli.py serve|seed-demo|token|service-token|db upgrade|export-schema`.

Every command and group has `--help`; `python cli.py --help` lists them.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any

import typer

from config import ConfigError, Settings
from services.auth import issue_service_token, issue_user_token

app = typer.Typer(
    name="cli.py",
    help="TailTrail Realtime: run the server, print tokens, manage the database schema.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    # Rich tracebacks may print local variables; a CLI that holds SECRET_KEY keeps plain ones.
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (DATABASE_URL).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line on `argv` (default: `sys.argv[1:]`) and return its exit status."""
    try:
        app(args=None if argv is None else list(argv), prog_name="cli.py")
    except SystemExit as done:
        return done.code if isinstance(done.code, int) else int(done.code is not None)
    return 0


def _settings() -> Settings:
    """Settings from the environment; a bad value is the user's mistake: say which, exit 2."""
    try:
        return Settings.from_env()
    except ConfigError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Processes (more than 1 needs BROADCAST_URL=redis://…).")] = 1,
    demo: Annotated[bool, typer.Option("--demo", help="Seed the demo users and chats and print their tokens.")] = False,
) -> None:
    """Run the server.

    `uvicorn app:app` with the socket limits of SECURITY.md: per-message deflate off, frames capped at
    MAX_FRAME_BYTES, a capped kernel send buffer per client socket.
    """
    settings = _settings()
    if demo:
        from demo import connection_help, seed_demo

        asyncio.run(seed_demo(settings))
        print(connection_help(settings, host=host, port=port), flush=True)
    serve_app(settings, host=host, port=port, workers=workers)


@app.command("seed-demo")
def seed_demo_command() -> None:
    """Create the demo users and chats.

    Three users and two chats in DATABASE_URL, with fixed ids; running it again changes nothing.
    """
    from demo import seed_demo

    asyncio.run(seed_demo(_settings()))


@app.command()
def token(
    user_id: Annotated[uuid.UUID, typer.Argument(metavar="USER_ID", help="The user's id (a UUID).")],
    days: Annotated[float, typer.Option(help="Validity in days.")] = 7.0,
) -> None:
    """Print a user token signed with SECRET_KEY."""
    print(issue_user_token(user_id, key=_settings().signing_key, ttl=timedelta(days=days)))


@app.command("service-token")
def service_token(days: Annotated[float, typer.Option(help="Validity in days.")] = 1.0) -> None:
    """Print a service token signed with SECRET_KEY.

    It may call upsertUser and the server-side operations (notifications, online users).
    """
    print(issue_service_token(key=_settings().signing_key, ttl=timedelta(days=days)))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to DATABASE_URL.

    The server also applies them at start-up; this does it without serving.
    """
    from models import Database

    settings = _settings()
    asyncio.run(_db_upgrade(Database(settings.database_url)))
    print(f"database schema up to date: {settings.database_url.split('@')[-1]}")


@app.command("export-schema")
def export_schema(
    path: Annotated[str, typer.Argument(metavar="PATH", help="File to write.")] = "schema.graphql",
) -> None:
    """Write the GraphQL schema (SDL) to a file.

    schema.graphql is this output, committed (a test fails when it is stale).
    """
    from resolvers.app import schema_sdl

    with open(path, "w", encoding="utf-8") as f:
        f.write(schema_sdl())


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
