"""Logs: one line per record, as text or JSON (`LOG_FORMAT`), each naming the connection it belongs to.

Every WebSocket gets an id when it arrives (`legacy-7`, `graphql-8`); it is bound to the socket's task, so every
record logged while serving that socket carries it as `connection_id`, and a `chatEvents` stream opened on a
GraphQL socket is named after it (`graphql-8.1`). Structured values go in `extra=fields(...)`.

Hygiene: tokens travel in `?token=` query strings, and uvicorn's access log prints full paths; every line our
handler writes is masked (`redact`), and records that reach uvicorn's own handlers have their message masked.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import unquote_plus

connection_id: ContextVar[str | None] = ContextVar("connection_id", default=None)

# What is masked in every record: the value of any query parameter whose name, once decoded, is one of these
# (`?%74oken=` is `?token=` to the server), any value that decodes to something shaped like a JWT, JWTs anywhere
# else (a subprotocol, an error message), and `Bearer` credentials.
SECRET_PARAMETERS = frozenset({"token", "cursor", "access_token", "authorization", "jwt"})
_QUERY = re.compile(r"\?([^\s\"'<>]*)")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER = re.compile(r"(?i)(bearer(?:\s|%20|\+)+)[^\s\"',;&]+")
MASK = "***"


def _redact_query(match: re.Match[str]) -> str:
    parts = []
    for part in match.group(1).split("&"):
        key, equals, value = part.partition("=")
        name = unquote_plus(key).strip().lower()
        if equals and (name in SECRET_PARAMETERS or _JWT.search(unquote_plus(unquote_plus(value)))):
            value = MASK
        parts.append(key + equals + value)
    return "?" + "&".join(parts)


def redact(text: str) -> str:
    """`text` with tokens masked (see SECRET_PARAMETERS)."""
    if "?" in text:
        text = _QUERY.sub(_redact_query, text)
    if "eyJ" in text:
        text = _JWT.sub(MASK, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    return text


# The key under which a WebSocket's id is also kept in its ASGI scope, for the server's transport code, which
# runs outside the connection's task (uvicorn_protocols).
SCOPE_CONNECTION_ID = "tailtrail.connection_id"


def bind_connection(conn_id: str, scope: MutableMapping[str, Any] | None = None) -> None:
    """Name the current task's connection: records logged from it (and from tasks it starts) carry the id."""
    connection_id.set(conn_id)
    if scope is not None:
        scope[SCOPE_CONNECTION_ID] = conn_id


def peer(scope: Mapping[str, Any]) -> str | None:
    """The client's `host:port` of an ASGI connection, for log records."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for structured values: JSON keys, or `key=value` after the text message."""
    return {"fields": values}


def _redacted(value: Any) -> Any:
    """`value` with every string in it masked (JSON records are masked before they are encoded: a mask must not
    eat an escape)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item) for item in value]
    return value if isinstance(value, (int, float, bool)) or value is None else redact(str(value))


class RedactTokens(logging.Filter):
    """Mask tokens in a record's message and arguments (for handlers that are not ours: uvicorn's own, under
    plain `uvicorn app:app`). Our handler masks the whole formatted line as well (`Redacted`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


class QuietProtocolErrors(logging.Filter):
    """uvicorn logs each text frame that is not UTF-8 as an ERROR with a traceback, so a client can flood the log
    with them: one WARNING line instead (`cli.py serve` closes such sockets itself, naming the connection)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Invalid UTF-8 sequence"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = "closing WebSocket: protocol violation: invalid UTF-8 in a text frame (1007)"
            record.exc_info = record.exc_text = None
        return True


class NoDuplicateLines(logging.Filter):
    """websockets logs "connection open" through uvicorn's logger once each WebSocket's handshake is answered,
    right after uvicorn's own `"WebSocket /path" [accepted]` line, which says the same and more: dropped, one line
    less to format and write per socket."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.msg != "connection open"


class ConnectionContext(logging.Filter):
    """Add `connection_id` (the socket being served, if any) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "connection_id", None) is None:
            record.connection_id = connection_id.get()
        return True


def _values(record: logging.LogRecord) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if record.__dict__.get("connection_id"):
        values["connection_id"] = record.__dict__["connection_id"]
    values.update(record.__dict__.get("fields") or {})
    return values


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, connection_id, the record's fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": os.getpid(),  # connection ids are unique within one process (`serve --workers N`)
        }
        entry.update(_values(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(_redacted(entry), default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`time LEVEL logger [connection] message key=value …`"""

    def __init__(self) -> None:
        super().__init__()
        self._second: int | None = None
        self._stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        """logging's default time (`2026-12-03 11:32:45,019`, local time), the date and time of day rendered once a
        second rather than once a record."""
        second = int(record.created)
        if second != self._second:
            self._second, self._stamp = second, time.strftime(self.default_time_format, self.converter(second))
        return f"{self._stamp},{int(record.msecs):03d}"

    def format(self, record: logging.LogRecord) -> str:
        values = _values(record)
        conn = values.pop("connection_id", None)
        where = f"{record.name} [{conn}]" if conn else record.name
        parts = [self.formatTime(record), f"{record.levelname:<7}", where, record.getMessage()]
        parts += [f"{key}={value}" for key, value in values.items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


def lean_records() -> None:
    """Records without what no line of ours prints: the caller's file, line and function (logging walks the stack
    for them), the thread's and process's names and the process id (read per record). A server logs a few records
    per connection, and each cost ~35 µs here; the recipe is the Logging HOWTO's "Optimization" section."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


# At most this many lines wait for the end of a turn of the event loop (`LoopBatchedHandler`).
BATCH_MAX_LINES = 256
_NO_CONTEXT = contextvars.Context()  # the deferred write belongs to no connection


class LoopBatchedHandler(logging.StreamHandler[TextIO]):
    """A stream handler that writes the lines an event loop's thread logs in one write at the end of the loop's
    turn (at most BATCH_MAX_LINES wait), and any other thread's lines at once (after the waiting ones).

    A write to stderr is a system call that lets other threads take the interpreter: a busy server logging a few
    lines per connection paid for each with a wait for the SQLite writer thread (~40 µs a line where formatting
    costs ~12). Waiting lines are written by `flush`, which logging also calls at exit; a process killed outright
    loses at most one turn's lines."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._waiting: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        loop = asyncio._get_running_loop()
        if loop is None:
            self._write([*self._take(), line])
            return
        self._waiting.append(line)
        if len(self._waiting) == 1:
            loop.call_soon(self.flush, context=_NO_CONTEXT)
        elif len(self._waiting) >= BATCH_MAX_LINES:
            self._write(self._take())

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._write(self._take())
            super().flush()

    def _take(self) -> list[str]:
        lines, self._waiting = self._waiting, []
        return lines

    def _write(self, lines: list[str]) -> None:
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": f"{len(lines)} log lines lost"}))


def stderr_handler(fmt: str = "text", lean: bool = False) -> logging.Handler:
    """The one handler: records on stderr as `fmt` lines, tokens masked, each with its connection id. The
    formatters mask the whole line (text) or every string in it (JSON), arguments and tracebacks included.
    `lean`: every handler of the process is this one (`cli.py serve`), so records can be `lean_records`."""
    if lean:
        lean_records()
    handler = LoopBatchedHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ConnectionContext())
    return handler


# Libraries that talk a lot at INFO or DEBUG (aiosqlite: every operation; alembic: its plugins at each start;
# httpx: every request, such as `cli.py serve`'s probe for its "serving on" line).
QUIET = ("aiosqlite", "alembic", "httpx")


def _quiet(level: str) -> str:
    return level if logging.getLevelName(level) >= logging.WARNING else "WARNING"


def log_config(fmt: str = "text", level: str = "INFO") -> dict[str, Any]:
    """What `cli.py serve` gives uvicorn: uvicorn's records and the app's through the one handler, at `level`."""
    through_root = {"handlers": [], "propagate": True, "level": level}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"stderr": {"()": stderr_handler, "fmt": fmt, "lean": True}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": through_root,
            "uvicorn.error": through_root,
            "uvicorn.access": through_root,
            **{name: {"level": _quiet(level)} for name in QUIET},
        },
    }


def _reaches_others(logger: logging.Logger) -> bool:
    """Whether a record of `logger` may reach a handler other than ours (`LoopBatchedHandler`), or none at all
    (logging's last resort prints it)."""
    handlers: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        handlers += current.handlers
        current = current.parent if current.propagate else None
    return not handlers or not all(isinstance(h, LoopBatchedHandler) for h in handlers)


def install(fmt: str = "text", level: str = "INFO") -> None:
    """Idempotent; the app calls it. When nothing writes the app's records (plain `uvicorn app:app`: uvicorn
    configures its own loggers only), give the root logger the one handler at `level`. uvicorn's loggers are
    left as they were configured (`--log-config`, `--log-level`, `--no-access-log`), only masking tokens."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(stderr_handler(fmt))
        root.setLevel(level)
        for name in QUIET:
            logging.getLogger(name).setLevel(_quiet(level))
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        # Only where a record may reach a handler that is not ours: ours masks the whole line, and masking the
        # arguments first was a second pass over every handshake's path (~2 % of a reconnect storm's CPU).
        if _reaches_others(logger) and not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    error_log = logging.getLogger("uvicorn.error")
    for quieter in (QuietProtocolErrors, NoDuplicateLines):
        if not any(isinstance(f, quieter) for f in error_log.filters):
            error_log.addFilter(quieter())
