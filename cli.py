"""Command line (Typer): `python cli.py serve|seed-demo|token|service-token|notify|db upgrade|export-schema`.

Every command and group has `--help`; `python cli.py --help` lists them. `notify` is a client of a running
server's GraphQL API (with a service token); the others work on this process's settings and database.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import sys
import threading
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, NoReturn

import httpx
import typer

from server.config import HTTP_PROTOCOL, LISTEN_BACKLOG, WS_PROTOCOL, ConfigError, Settings
from services.auth import issue_service_token, issue_user_token

app = typer.Typer(
    name="cli.py",
    help="TailTrail Realtime: run the server, print tokens, send notifications, manage the database schema.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    # Rich tracebacks may print local variables; a CLI that holds SECRET_KEY keeps plain ones.
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema (DATABASE_URL).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(db_app, name="db")

# A notification is one small insert on the server; 10 s covers a busy server and a slow link without
# leaving a script hanging on one that never answers.
NOTIFY_TIMEOUT = 10.0
# The service token `notify` makes is used for one request at once; 5 minutes still tolerates a server whose
# clock is a little ahead.
NOTIFY_TOKEN_TTL = timedelta(minutes=5)
NOTIFY_USER = "mutation($u: ID!, $n: JSON!) { sendGlobalNotification(userId: $u, notification: $n) }"
NOTIFY_CHAT = (
    "mutation($c: ID!, $n: JSON!, $x: ID) { notifyChatParticipants(chatId: $c, notification: $n, excludeUserId: $x) }"
)
# `serve`'s port, and where the commands that call a running server look for it when PORT is not set.
DEFAULT_PORT = 8000
# The "serving on" line waits for the server's first HTTP answer; each probe waits this long for it (a request made
# while the app is still starting is answered as soon as it is up) before the next probe.
SERVING_PROBE_TIMEOUT = 10.0
SERVING_PROBE_INTERVAL = 0.1
# Hosts meaning "every interface", and the loopback address this machine reaches them by.
EVERY_INTERFACE = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


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
    port: Annotated[int, typer.Option(help="TCP port.")] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="Processes (more than 1 needs BROADCAST_URL=redis://…).")] = 1,
    demo: Annotated[bool, typer.Option("--demo", help="Seed the demo users and chats and print their tokens.")] = False,
    log_format: Annotated[
        str | None, typer.Option(help="Log lines as 'text' or 'json' (default: LOG_FORMAT, else text).")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING… (default: LOG_LEVEL, else INFO).")
    ] = None,
) -> None:
    """Run the server.

    `uvicorn app:app` with the socket limits of SECURITY.md: per-message deflate off, frames capped at
    MAX_FRAME_BYTES, a capped kernel send buffer per client socket. "serving on …" (with --demo: the addresses,
    tokens and chat ids) is printed once the server answers; Ctrl-C stops it. A port in use exits 1.
    """
    # Through the environment, so that every worker process reads the same settings.
    for option, name, value in (("--log-format", "LOG_FORMAT", log_format), ("--log-level", "LOG_LEVEL", log_level)):
        if value is not None:
            try:
                Settings.from_env({name: value})
            except ConfigError as error:
                raise typer.BadParameter(str(error).split(": ", 1)[1], param_hint=option) from None
            os.environ[name] = value
    settings = _settings()
    if workers > 1 and settings.broadcast_url.startswith("memory://"):
        # Refused here, before any worker starts: each worker would refuse on its own, and uvicorn's supervisor
        # would report the start as a success.
        typer.echo(
            f"Error: --workers {workers} needs a shared event bus: BROADCAST_URL=memory:// connects the processes "
            "of one server only. Set BROADCAST_URL=redis://… (and a shared DATABASE_URL), or run one worker.",
            err=True,
        )
        raise typer.Exit(2)
    # Bound first: a port in use is said before anything else is done or printed.
    sock = bind_or_exit(settings, host=host, port=port)
    url = local_url(host, port)
    banner = serving_line(url, host=host)
    if demo:
        from server.demo import connection_help, seed_demo

        banner = connection_help(settings, asyncio.run(seed_demo(settings)), url=url) + "\n" + banner
    serve_app(settings, sock, url=url, banner=banner, workers=workers)


@app.command("seed-demo")
def seed_demo_command() -> None:
    """Create the demo users and chats.

    Three users and two chats in DATABASE_URL, with fixed ids; running it again changes nothing. Prints each
    with its id.
    """
    from server.demo import seed_demo, seed_report

    settings = _settings()
    print(seed_report(asyncio.run(seed_demo(settings)), database=database_name(settings)))


@app.command()
def token(
    user_id: Annotated[uuid.UUID, typer.Argument(metavar="USER_ID", help="The user's id (a UUID).")],
    days: Annotated[float, typer.Option(help="Validity in days.")] = 7.0,
) -> None:
    """Print a user token signed with SECRET_KEY."""
    settings = _settings()
    print(issue_user_token(user_id, key=settings.signing_key, ttl=_lifetime(settings, days)))


@app.command("service-token")
def service_token(days: Annotated[float, typer.Option(help="Validity in days.")] = 1.0) -> None:
    """Print a service token signed with SECRET_KEY.

    It may call upsertUser and the server-side operations (notifications, online users).
    """
    settings = _settings()
    print(issue_service_token(key=settings.signing_key, ttl=_lifetime(settings, days)))


def _lifetime(settings: Settings, days: float) -> timedelta:
    """`--days` as a token lifetime the server accepts (TOKEN_MAX_LIFETIME), or a usage error."""
    if not 0 < days * 86400 <= settings.token_max_lifetime:
        limit = settings.token_max_lifetime / 86400
        raise typer.BadParameter(
            f"expected more than 0 and at most {limit:g} (TOKEN_MAX_LIFETIME)", param_hint="--days"
        )
    return timedelta(days=days)


@app.command()
def notify(
    user: Annotated[uuid.UUID | None, typer.Option(metavar="USER_ID", help="Send to this user's devices.")] = None,
    chat: Annotated[
        uuid.UUID | None, typer.Option(metavar="CHAT_ID", help="Send to every member of this chat.")
    ] = None,
    exclude: Annotated[
        uuid.UUID | None, typer.Option(metavar="USER_ID", help="With --chat: leave out this member.")
    ] = None,
    title: Annotated[str | None, typer.Option(metavar="TEXT", help='Sets "title" in the notification.')] = None,
    body: Annotated[str | None, typer.Option(metavar="TEXT", help='Sets "body" in the notification.')] = None,
    data: Annotated[
        str | None, typer.Option(metavar="JSON", help="The notification as a JSON object; --title/--body are added.")
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The running server (its /graphql endpoint is called). Default: http://127.0.0.1:$PORT when the "
            f"PORT environment variable is set (`make run PORT=…` serves there), else http://127.0.0.1:{DEFAULT_PORT}.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send a notification through a running server.

    To one user (--user: sendGlobalNotification; clients get the object as given, legacy `global_notification`,
    GraphQL `GlobalNotification.payload`) or to the members of a chat (--chat: notifyChatParticipants; clients
    get `{"type": "chat_notification", "chat_id": …, "notification": …}`). Signed with a service token made from
    SECRET_KEY, which must be the server's. Exits 1 when the server refuses (its error code is printed) or
    cannot be reached.
    """
    if (user is None) == (chat is None):
        got = "both" if user is not None else "neither"
        raise typer.BadParameter(f"exactly one is needed, got {got}", param_hint="--user / --chat")
    if exclude is not None and chat is None:
        raise typer.BadParameter("only goes with --chat", param_hint="--exclude")
    notification = _notification(data, title=title, body=body)
    service = issue_service_token(key=_settings().signing_key, ttl=NOTIFY_TOKEN_TTL)
    variables: dict[str, Any]
    if user is not None:
        query, variables = NOTIFY_USER, {"u": str(user), "n": notification}
        target = f"user {user}"
    else:
        query = NOTIFY_CHAT
        variables = {"c": str(chat), "n": notification, "x": None if exclude is None else str(exclude)}
        target = f"the members of chat {chat}" + ("" if exclude is None else f" except {exclude}")
    _graphql(url or running_server_url(), query, variables, token=service)
    print(f"notification sent to {target}")


def running_server_url() -> str:
    """Where the commands that call a server find it by default: the port `make run PORT=…` serves on when PORT is
    exported, else the default one."""
    port = os.environ.get("PORT", "").strip() or str(DEFAULT_PORT)
    if not (port.isdecimal() and 0 < int(port) < 65536):
        raise typer.BadParameter(f"expected a TCP port number, got {port!r}", param_hint="PORT (environment variable)")
    return f"http://127.0.0.1:{port}"


def _notification(data: str | None, *, title: str | None, body: str | None) -> dict[str, Any]:
    notification: dict[str, Any] = {}
    if data is not None:
        try:
            notification = json.loads(data)
        except json.JSONDecodeError as error:
            raise typer.BadParameter(f"not JSON: {error}", param_hint="--data") from None
        if not isinstance(notification, dict):
            raise typer.BadParameter(f"expected a JSON object, got {data!r}", param_hint="--data")
    if title is not None:
        notification["title"] = title
    if body is not None:
        notification["body"] = body
    if not notification:
        raise typer.BadParameter("an empty notification: give at least one", param_hint="--title / --body / --data")
    return notification


def _graphql(url: str, query: str, variables: dict[str, Any], *, token: str) -> None:
    """POST one operation to `<url>/graphql`; any failure is printed and exits 1."""
    endpoint = url.rstrip("/")
    endpoint = endpoint if endpoint.endswith("/graphql") else f"{endpoint}/graphql"
    try:
        response = httpx.post(
            endpoint,
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
            timeout=NOTIFY_TIMEOUT,
        )
    except httpx.HTTPError as error:
        _fail(f"cannot reach the server at {endpoint}: {error.__class__.__name__}: {error}")
    try:
        answer = response.json()
    except ValueError:
        _fail(f"{endpoint} answered HTTP {response.status_code}, not GraphQL: {response.text[:200]!r}")
    if not isinstance(answer, dict):
        _fail(f"{endpoint} answered HTTP {response.status_code} with {answer!r}")
    if answer.get("errors"):
        for problem in answer["errors"]:
            code = (problem.get("extensions") or {}).get("code", "ERROR")
            typer.echo(f"Error: {code}: {problem.get('message')}", err=True)
        raise typer.Exit(1)
    if response.status_code != 200 or not isinstance(answer.get("data"), dict):
        _fail(f"{endpoint} answered HTTP {response.status_code} with {answer!r}")


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations to DATABASE_URL.

    The server also applies them at start-up; this does it without serving.
    """
    from models import Database

    settings = _settings()
    asyncio.run(_db_upgrade(Database(settings.database_url)))
    print(f"database schema up to date: {database_name(settings)}")


def database_name(settings: Settings) -> str:
    """DATABASE_URL without its credentials, for messages."""
    return settings.database_url.split("@")[-1]


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
    sock.listen(LISTEN_BACKLOG)
    sock.set_inheritable(True)
    return sock


def bind_or_exit(settings: Settings, *, host: str, port: int) -> socket.socket:
    """`listening_socket`, or one line saying why not (exit 1): a port in use is a newcomer's first obstacle."""
    try:
        return listening_socket(settings, host=host, port=port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE:
            _fail(
                f"port {port} on {host} is already in use (another server?): pick another one, "
                f"e.g. `make run PORT={port + 1}` or `cli.py serve --port {port + 1}`"
            )
        _fail(f"cannot listen on {host} port {port}: {error.strerror or error}")


def local_url(host: str, port: int) -> str:
    """The server's http:// address as this machine reaches it."""
    host = EVERY_INTERFACE.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serving_line(url: str, *, host: str) -> str:
    """The line that says the server is up, where, and how to stop it."""
    where = f" (listening on {host or '0.0.0.0'}: every interface)" if host in EVERY_INTERFACE else ""
    return f"serving on {url}{where}; Ctrl-C stops the server"


def announce_when_serving(url: str, banner: str, stop: threading.Event) -> None:
    """Print `banner` once the server at `url` answers HTTP, from a thread of this process: with --workers N the
    app runs in uvicorn's worker processes, and the socket accepts connections from the moment it is bound, so
    only an answer says that a client can use the addresses printed."""

    def probe() -> None:
        with httpx.Client(timeout=SERVING_PROBE_TIMEOUT, trust_env=False) as client:
            while not stop.is_set():
                try:
                    if client.get(f"{url}/healthz").status_code == 200:
                        print(banner, flush=True)
                        return
                except httpx.HTTPError:
                    pass
                stop.wait(SERVING_PROBE_INTERVAL)

    threading.Thread(target=probe, name="announce-when-serving", daemon=True).start()


def serve_app(settings: Settings, sock: socket.socket, *, url: str, banner: str, workers: int = 1) -> None:
    """Serve the app on `sock` until stopped; `banner` is printed once it answers at `url`."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from server.logging_setup import log_config

    stop = threading.Event()
    announce_when_serving(url, banner, stop)
    config = uvicorn.Config(
        "app:app",
        workers=workers,
        # Per-message deflate costs ~300 KiB per connection when a client offers it (docs/library-notes.md); chat
        # frames are small. Off, deliberately.
        ws_per_message_deflate=False,
        # Inbound frames are refused above MAX_FRAME_BYTES by the app; uvicorn need not buffer more than that.
        ws_max_size=settings.max_frame_bytes + 1,
        timeout_graceful_shutdown=10,
        # uvicorn listens again on the socket it is given (asyncio's `create_server` does), with its own backlog
        # (2,048 by default): without this, the queue `listening_socket` asked for would be cut back to that.
        backlog=LISTEN_BACKLOG,
        http=HTTP_PROTOCOL,
        ws=WS_PROTOCOL,
        log_config=log_config(settings.log_format, settings.log_level),
    )
    # The socket itself, not its file descriptor: given `fd=`, uvicorn reopens it as a Unix socket, and the event
    # loop then serves TCP clients as pipes (no TCP_NODELAY: replies wait for the client's delayed ACK).
    server = uvicorn.Server(config)
    try:
        if workers > 1:
            from uvicorn.supervisors import Multiprocess

            Multiprocess(config, sockets=[sock]).run()
        else:
            server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    if workers == 1 and not server.started:
        sys.exit(STARTUP_FAILURE)


if __name__ == "__main__":
    sys.exit(main())
