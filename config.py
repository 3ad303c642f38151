"""Settings from the environment (SPEC §3). Built once by the caller and passed in, never imported as a global."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./tailtrail.db"
DEFAULT_BROADCAST_URL = "memory://"
# A well-known key used only in the explicit, loudly logged development mode (SECRET_KEY unset).
DEV_SECRET_KEY = "tailtrail-dev-insecure-key-do-not-use-in-production"


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
    # The original guide's clients refresh typing every few seconds; 10 s is SPEC §9's default.
    typing_ttl: float = 10.0
    # Per-connection outbox bounds: enough for a burst of a busy group chat (1,000 events or 1 MiB,
    # Centrifugo's per-client queue default) before the connection counts as a slow consumer.
    outbox_max_events: int = 1000
    outbox_max_bytes: int = 1024 * 1024
    # Message content limits (SPEC §8).
    max_message_length: int = 10_000
    # GraphQL WebSocket subscriptions per connection (SPEC §8); one chatEvents stream is all a client needs.
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
    # Open streams (legacy sockets + chatEvents subscriptions) of one user: phones, tabs and laptops, not a botnet.
    max_connections_per_user: int = 20
    # GraphQL documents: the deepest legitimate query (myChats -> lastMessage -> sender -> id) has depth 3 (the
    # root field is 0); 10 leaves room for schema growth. 2,000 tokens is several times GraphiQL's introspection
    # query's need.
    graphql_max_depth: int = 10
    graphql_max_tokens: int = 2000
    graphql_max_aliases: int = 15
    # How long durable events stay replayable for resuming clients (SPEC §9 retention window).
    retention_days: float = 7.0
    # The most events one resume replays; a client further behind is told to refetch (resync_required).
    resume_max_events: int = 10_000
    # A process silent this long (SIGKILL, lost machine) is forgotten: its users go offline, its typing stops.
    presence_timeout: float = 15.0
    # Browser origins allowed to open WebSockets, besides same-origin and non-browser clients.
    allowed_origins: tuple[str, ...] = ()
    # Logs on stderr: "text" lines or "json" objects, one per record, each with its connection id.
    log_format: str = "text"
    log_level: str = "INFO"

    @property
    def dev_mode(self) -> bool:
        return not self.secret_key

    @property
    def signing_key(self) -> str:
        return self.secret_key or DEV_SECRET_KEY

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        origins = tuple(o.strip() for o in env.get("ALLOWED_ORIGINS", "").split(",") if o.strip())
        return cls(
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            broadcast_url=env.get("BROADCAST_URL") or DEFAULT_BROADCAST_URL,
            secret_key=env.get("SECRET_KEY") or None,
            typing_ttl=_number(env, "TYPING_TTL", cls.typing_ttl, minimum=0.05),
            outbox_max_events=_integer(env, "OUTBOX_MAX_EVENTS", cls.outbox_max_events),
            outbox_max_bytes=_integer(env, "OUTBOX_MAX_BYTES", cls.outbox_max_bytes, minimum=1024),
            max_message_length=_integer(env, "MAX_MESSAGE_LENGTH", cls.max_message_length),
            max_subscriptions_per_connection=_integer(
                env, "MAX_SUBSCRIPTIONS_PER_CONNECTION", cls.max_subscriptions_per_connection
            ),
            retention_days=_number(env, "RETENTION_DAYS", cls.retention_days, minimum=1e-6),
            resume_max_events=_integer(env, "RESUME_MAX_EVENTS", cls.resume_max_events),
            presence_timeout=_number(env, "PRESENCE_TIMEOUT", cls.presence_timeout, minimum=1.0),
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
        )
