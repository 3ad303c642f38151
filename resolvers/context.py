"""The per-request (HTTP) or per-socket (WebSocket) GraphQL context.

On a WebSocket one context serves every operation of the socket (docs/library-notes.md): it holds the authenticated
actor and the runtime, never a database session.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request
from starlette.websockets import WebSocket

from resolvers.sockets import socket_of
from server.logging_setup import connection_id
from services.auth import Actor, TokenRules, authenticate, refresh, token_from
from services.errors import BadRequest, DomainError
from services.runtime import Runtime


@dataclass
class Context:
    rt: Runtime
    request: Request | WebSocket
    response: Any = None
    connection_params: dict[str, Any] | None = None
    _actor: Actor | None = field(default=None, repr=False)
    _streams: int = field(default=0, repr=False)

    @property
    def actor(self) -> Actor:
        """The caller, authenticated on first use (HTTP) or at `connection_init` (WebSocket)."""
        if self._actor is None:
            # HTTP: the Authorization header only. A token in the URL ends up in access logs, browser history
            # and Referer headers; every HTTP client can send a header (WebSockets take `?token=`, browsers
            # cannot set headers on those).
            token = token_from(authorization=self.request.headers.get("authorization"))
            self._actor = authenticate(token, TokenRules.of(self.rt.settings))
        return self._actor

    def set_actor(self, actor: Actor) -> None:
        self._actor = actor

    def refresh_token(self, token: str) -> Actor:
        """Take a fresh token for this WebSocket (same user): the socket now closes when that one expires."""
        current = self.actor
        socket = socket_of(self.request.scope) if isinstance(self.request, WebSocket) else None
        if socket is None:
            raise BadRequest("refreshToken is for a WebSocket: over HTTP every request carries its own token")
        actor = refresh(current, token, TokenRules.of(self.rt.settings))
        self._actor = actor
        socket.watch_expiry(actor.expires_at, leeway=self.rt.settings.token_leeway)
        return actor

    def stream_id(self) -> str | None:
        """An id for the next `chatEvents` stream of this socket: the socket's, numbered (`graphql-8.1`)."""
        socket_id = connection_id.get()
        if socket_id is None:
            return None
        self._streams += 1
        return f"{socket_id}.{self._streams}"

    def release(self) -> None:
        """Let go of the socket and the request once the connection has ended."""
        # Typed as always set while the connection lives; after it, nothing may hold the socket or the request.
        self.request = self.response = self.connection_params = None  # type: ignore[assignment]


def coded(error: DomainError) -> GraphQLError:
    extensions: dict[str, Any] = {"code": error.code}
    if error.details:
        extensions["details"] = error.details
    return GraphQLError(error.message, extensions=extensions)


def parse_id(value: str, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise BadRequest(f"{name}: expected a UUID") from None
