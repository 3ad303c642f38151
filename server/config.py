"""Settings from the environment (docs/configuration.md). Built once by the caller and passed in, never imported as a global."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tailtrail.db"
DEFAULT_BROADCAST_URL = "memory://"
# A well-known key used only in the explicit, loudly logged development mode (SECRET_KEY unset).
DEV_SECRET_KEY = "tailtrail-dev-insecure-key-do-not-use-in-production"
# An HS256 key must be at least as long as the hash (RFC 7518 §3.2: 256 bits); a shorter one can be guessed.
MIN_SECRET_KEY_BYTES = 32
# HISTORY_VISIBILITY's values: a group's earlier messages are "shared" with every member, or shown from "joined" on.
HISTORY_VISIBILITIES = ("shared", "joined")
# The kernel's queue of accepted handshakes waiting for the event loop (`listen`'s backlog; the kernel caps it at
# net.core.somaxconn). A reconnect storm brings thousands of handshakes faster than a busy loop takes them; those that
# find the queue full are dropped and retried by the client's TCP, and reset if that takes too long.
LISTEN_BACKLOG = 16384
# uvicorn's protocols with a request-head timeout, a cap on connections per client address, and protocol violations
# logged as one line (server.uvicorn_protocols): what `cli.py serve` runs, named for uvicorn to import.
HTTP_PROTOCOL = "server.uvicorn_protocols:GuardedHttpToolsProtocol"
WS_PROTOCOL = "server.uvicorn_protocols:GuardedWebSocketProtocol"


class ConfigError(ValueError):
    """A setting has a value the server cannot run with."""


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name}: expected a number >= {minimum}, got {raw!r}")
    return value


def _integer(env: Mapping[str, str], name: str, default: int, *, minimum: int = 1) -> int:
    value = _number(env, name, default, minimum=minimum)
    if value != int(value):
        raise ConfigError(f"{name}: expected an integer, got {env.get(name)!r}")
    return int(value)


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}: expected on or off (true/false, 1/0), got {env.get(name)!r}")


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip()
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise ConfigError(f"{name}: expected one of {', '.join(choices)}, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    broadcast_url: str = DEFAULT_BROADCAST_URL
    secret_key: str | None = None
    # The original guide's clients refresh typing every few seconds; 10 s is the documented default (docs/configuration.md).
    typing_ttl: float = 10.0
    # Per-connection outbox bounds: enough for a burst of a busy group chat (1,000 events or 1 MiB,
    # Centrifugo's per-client queue default) before the connection counts as a slow consumer.
    outbox_max_events: int = 1000
    outbox_max_bytes: int = 1024 * 1024
    # Message content limits (docs/protocols.md).
    max_message_length: int = 10_000
    # Distinct emoji on one message (a further one is refused with BAD_REQUEST; existing ones can still be added).
    max_reactions_per_message: int = 20
    # GraphQL WebSocket subscriptions per connection (docs/protocols.md); one chatEvents stream is all a client needs.
    max_subscriptions_per_connection: int = 10
    # Inbound WebSocket frame limit: 64 KiB (Centrifugo's default) holds a 10,000-character message sent as
    # UTF-8 (up to 4 bytes a character). A client that \u-escapes non-ASCII text needs up to 12 bytes for an
    # emoji, so 10,000 escaped emoji do not fit: send UTF-8, or raise the limit. Larger: close 1009.
    max_frame_bytes: int = 64 * 1024
    # Commands per connection: a token bucket refilled at `rate_limit_per_second` holding `rate_limit_burst`.
    # A person types and reads far below 20 commands a second; a reconnecting client's burst fits in 40.
    rate_limit_per_second: float = 20.0
    rate_limit_burst: int = 40
    # Refused commands within 10 s after which the connection is closed (1008): sustained abuse, not a burst.
    rate_limit_strikes: int = 100
    # Kernel send buffer of each client socket (set on the listening socket by `cli.py serve`): Linux would
    # otherwise let a client that stops reading park up to tcp_wmem's maximum (4 MiB here) in the kernel before
    # the server notices. 64 KiB (the kernel doubles it) still fills a 100 ms path at over 1 MB/s.
    socket_send_buffer: int = 64 * 1024
    # WebSockets of one user (legacy sockets and authenticated GraphQL sockets): phones, tabs and laptops, not a
    # botnet.
    max_connections_per_user: int = 20
    # GraphQL documents: the deepest legitimate query (myChats -> lastMessage -> sender -> id) has depth 3 (the
    # root field is 0); 10 leaves room for schema growth. 2,000 tokens is several times GraphiQL's introspection
    # query's need.
    graphql_max_depth: int = 10
    graphql_max_tokens: int = 2000
    graphql_max_aliases: int = 15
    # How long durable events stay replayable for resuming clients (docs/resume.md).
    retention_days: float = 7.0
    # The most events one resume replays; a client further behind is told to refetch (resync_required).
    resume_max_events: int = 10_000
    # A process silent this long (SIGKILL, lost machine) is forgotten: its users go offline, its typing stops.
    presence_timeout: float = 15.0
    # A user offline for less than this (a reconnect, a page reload, a phone between networks) was never offline:
    # `user_offline` goes to their chat partners only after it, and a `user_online` only after a real absence.
    presence_grace: float = 5.0
    # Presence events go to chats of at most this many members. In a bigger group every arrival would be news to
    # everyone (a crowd coming online costs members² events); its members read presence from `chatStatus`.
    presence_max_members: int = 100
    # Browser origins allowed to open WebSockets and to call the API over HTTP (CORS), besides same-origin pages
    # and non-browser clients.
    allowed_origins: tuple[str, ...] = ()
    # Logs on stderr: "text" lines or "json" objects, one per record, each with its connection id.
    log_format: str = "text"
    log_level: str = "INFO"
    # HTTP request bodies: a GraphQL request is a few KiB; the largest legitimate one, a 10,000-character message
    # with every character \u-escaped, is ~120 KiB. 1 MiB (Apollo Router's default is 2 MB) leaves room for big
    # notification payloads. Larger: 413, refused before the body is read.
    max_request_bytes: int = 1024 * 1024
    # Tokens: the longest lifetime accepted (`exp` - `iat`, and `exp` - now): 7 days, what `cli.py token` issues
    # by default. A token for year 9999 is refused; an open socket is closed when its token expires unless the
    # client hands over a fresh one (SECURITY.md).
    token_max_lifetime: float = 7 * 24 * 3600.0
    # Clock skew tolerated on `exp`, `nbf` and `iat`, and the grace after expiry before an open socket is closed.
    token_leeway: float = 30.0
    # GraphQL introspection (what GraphiQL and code generators read) and "Did you mean …?" suggestions in errors:
    # on in development mode, off in production unless set (None: the mode decides). Suggestions are off whenever
    # introspection is: they leak the schema one name at a time.
    graphql_introspection: bool | None = None
    graphql_suggestions: bool | None = None
    # GraphiQL on a browser GET of /graphql: development mode only unless set.
    graphiql: bool | None = None
    # /metrics: open in development mode; in production it needs `Authorization: Bearer <METRICS_TOKEN>`, and is
    # off (404) while no METRICS_TOKEN is set.
    metrics_token: str | None = None
    # GraphQL WebSockets that have not sent connection_init yet, per client address (both subprotocols; the
    # init timeout closes each after 10 s). A client opens one socket; a few reconnecting tabs behind one NAT
    # fit in 50.
    max_pending_sockets_per_address: int = 50
    # `cli.py serve` only (plain uvicorn has no such options; SECURITY.md says what the proxy must do instead).
    # A request head (request line and headers) must arrive within this: a slowloris client sending one header
    # line every few seconds is cut off. nginx's client_header_timeout is 60 s; a real client needs milliseconds.
    http_header_timeout: float = 10.0
    # TCP connections per client address. Phones behind a carrier-grade NAT share addresses, so the bound is
    # generous; connections from FORWARDED_ALLOW_IPS (a trusted proxy, 127.0.0.1 by default) are not counted
    # (behind a proxy every client shares its address). 0: no bound.
    max_connections_per_address: int = 1000
    # Typing: commands a user may send per second across all their sockets and HTTP (a token bucket holding
    # `typing_burst`; over it, RATE_LIMITED). Older clients send one per keystroke: 10 a second is a fast typist
    # (120 words a minute). And the shortest interval between two broadcasts of one user's typing state in one
    # chat: a user toggling 100 times a second reaches the chat's members once per second, with the latest state.
    typing_per_second: float = 10.0
    typing_burst: int = 20
    typing_broadcast_interval: float = 1.0
    # Members of one chat: `createChat` with more, or `addChatMember` to a full chat, is refused (BAD_REQUEST). A
    # chat is a conversation, not a broadcast channel; the bound also caps one call's work and one message's fan-out.
    max_chat_members: int = 256
    # Who sees a group's messages from before they joined (Matrix's terms): "shared", every member sees the whole
    # history; "joined", a member sees what was sent since they (last) joined. 1:1 chats always show everything.
    history_visibility: str = "shared"

    @property
    def dev_mode(self) -> bool:
        return not self.secret_key

    @property
    def signing_key(self) -> str:
        return self.secret_key or DEV_SECRET_KEY

    @property
    def introspection(self) -> bool:
        return self.dev_mode if self.graphql_introspection is None else self.graphql_introspection

    @property
    def suggestions(self) -> bool:
        wanted = self.introspection if self.graphql_suggestions is None else self.graphql_suggestions
        return wanted and self.introspection

    @property
    def graphiql_enabled(self) -> bool:
        return self.dev_mode if self.graphiql is None else self.graphiql

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        origins = tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        secret_key = env.get("SECRET_KEY") or None
        if secret_key is not None and len(secret_key.encode()) < MIN_SECRET_KEY_BYTES:
            raise ConfigError(
                f"SECRET_KEY: expected at least {MIN_SECRET_KEY_BYTES} bytes (an HS256 key as long as the hash, "
                f"RFC 7518 §3.2), got {len(secret_key.encode())}; generate one with: openssl rand -hex 32"
            )

        def optional_flag(name: str) -> bool | None:
            return _flag(env, name, False) if (env.get(name) or "").strip() else None

        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            broadcast_url=env.get("BROADCAST_URL") or DEFAULT_BROADCAST_URL,
            secret_key=secret_key,
            typing_ttl=_number(env, "TYPING_TTL", cls.typing_ttl, minimum=0.05),
            outbox_max_events=_integer(env, "OUTBOX_MAX_EVENTS", cls.outbox_max_events),
            outbox_max_bytes=_integer(env, "OUTBOX_MAX_BYTES", cls.outbox_max_bytes, minimum=1024),
            max_message_length=_integer(env, "MAX_MESSAGE_LENGTH", cls.max_message_length),
            max_reactions_per_message=_integer(env, "MAX_REACTIONS_PER_MESSAGE", cls.max_reactions_per_message),
            max_subscriptions_per_connection=_integer(
                env, "MAX_SUBSCRIPTIONS_PER_CONNECTION", cls.max_subscriptions_per_connection
            ),
            retention_days=_number(env, "RETENTION_DAYS", cls.retention_days, minimum=1e-6),
            resume_max_events=_integer(env, "RESUME_MAX_EVENTS", cls.resume_max_events),
            presence_timeout=_number(env, "PRESENCE_TIMEOUT", cls.presence_timeout, minimum=1.0),
            presence_grace=_number(env, "PRESENCE_GRACE", cls.presence_grace),
            presence_max_members=_integer(env, "PRESENCE_MAX_MEMBERS", cls.presence_max_members),
            max_frame_bytes=_integer(env, "MAX_FRAME_BYTES", cls.max_frame_bytes, minimum=1024),
            rate_limit_per_second=_number(env, "RATE_LIMIT_PER_SECOND", cls.rate_limit_per_second, minimum=0.1),
            rate_limit_burst=_integer(env, "RATE_LIMIT_BURST", cls.rate_limit_burst),
            rate_limit_strikes=_integer(env, "RATE_LIMIT_STRIKES", cls.rate_limit_strikes),
            socket_send_buffer=_integer(env, "SOCKET_SEND_BUFFER", cls.socket_send_buffer, minimum=4096),
            max_connections_per_user=_integer(env, "MAX_CONNECTIONS_PER_USER", cls.max_connections_per_user),
            graphql_max_depth=_integer(env, "GRAPHQL_MAX_DEPTH", cls.graphql_max_depth),
            graphql_max_tokens=_integer(env, "GRAPHQL_MAX_TOKENS", cls.graphql_max_tokens),
            graphql_max_aliases=_integer(env, "GRAPHQL_MAX_ALIASES", cls.graphql_max_aliases),
            allowed_origins=origins,
            log_format=_choice(env, "LOG_FORMAT", cls.log_format, ("text", "json")),
            log_level=_choice(env, "LOG_LEVEL", cls.log_level, ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")),
            max_request_bytes=_integer(env, "MAX_REQUEST_BYTES", cls.max_request_bytes, minimum=1024),
            token_max_lifetime=_number(env, "TOKEN_MAX_LIFETIME", cls.token_max_lifetime, minimum=1.0),
            token_leeway=_number(env, "TOKEN_LEEWAY", cls.token_leeway),
            graphql_introspection=optional_flag("GRAPHQL_INTROSPECTION"),
            graphql_suggestions=optional_flag("GRAPHQL_SUGGESTIONS"),
            graphiql=optional_flag("GRAPHIQL"),
            metrics_token=env.get("METRICS_TOKEN") or None,
            max_pending_sockets_per_address=_integer(
                env, "MAX_PENDING_SOCKETS_PER_ADDRESS", cls.max_pending_sockets_per_address
            ),
            http_header_timeout=_number(env, "HTTP_HEADER_TIMEOUT", cls.http_header_timeout, minimum=0.1),
            max_connections_per_address=_integer(
                env, "MAX_CONNECTIONS_PER_ADDRESS", cls.max_connections_per_address, minimum=0
            ),
            typing_per_second=_number(env, "TYPING_PER_SECOND", cls.typing_per_second, minimum=0.01),
            typing_burst=_integer(env, "TYPING_BURST", cls.typing_burst),
            typing_broadcast_interval=_number(env, "TYPING_BROADCAST_INTERVAL", cls.typing_broadcast_interval),
            max_chat_members=_integer(env, "MAX_CHAT_MEMBERS", cls.max_chat_members, minimum=2),
            history_visibility=_choice(env, "HISTORY_VISIBILITY", cls.history_visibility, HISTORY_VISIBILITIES),
        )


def uvicorn_workers() -> int:
    """How many uvicorn worker processes this one is part of (1 outside `uvicorn --workers N`)."""
    if multiprocessing.parent_process() is None:
        return 1
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            args = f.read().decode(errors="replace").split("\0")
    except OSError:
        args = []
    for i, arg in enumerate(args):
        value = args[i + 1] if arg == "--workers" and i + 1 < len(args) else None
        if arg.startswith("--workers="):
            value = arg.split("=", 1)[1]
        if value and value.isdigit():
            return int(value)
    env = os.environ.get("WEB_CONCURRENCY", "")
    return int(env) if env.isdigit() else 1
