"""Tokens (SPEC §4): HS256 JWTs signed with SECRET_KEY, carrying `user_id` (or `sub`) or `role: service`."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

from services.errors import Forbidden, Unauthenticated

ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is calling: a user, or another TailTrail service (`user_id` is None)."""

    user_id: uuid.UUID | None
    is_service: bool = False

    @classmethod
    def service(cls) -> Actor:
        return cls(user_id=None, is_service=True)


def authenticate(token: str | None, *, key: str) -> Actor:
    if not token:
        raise Unauthenticated("a token is required")
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp"]})
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token") from None
    if claims.get("role") == "service":
        return Actor.service()
    raw = claims.get("user_id") or claims.get("sub")
    try:
        return Actor(user_id=uuid.UUID(str(raw)))
    except ValueError:
        raise Unauthenticated("invalid token") from None


def token_from(*, authorization: str | None = None, query_token: str | None = None) -> str | None:
    """The token of an `Authorization: Bearer <t>` header or a `?token=` query parameter."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def token_from_connection_params(params: Mapping[str, object] | None) -> str | None:
    """`connection_init` payload: `{"token": t}` or `{"Authorization": "Bearer t"}` (SPEC §4)."""
    if not isinstance(params, Mapping):
        return None
    token = params.get("token")
    if isinstance(token, str) and token:
        return token
    for key in ("Authorization", "authorization"):
        header = params.get(key)
        if isinstance(header, str):
            return token_from(authorization=header)
    return None


def require_user(actor: Actor) -> uuid.UUID:
    if actor.user_id is None:
        raise Forbidden("a user token is required")
    return actor.user_id


def require_service(actor: Actor) -> None:
    if not actor.is_service:
        raise Forbidden("a service token is required")


def issue_user_token(user_id: uuid.UUID | str, *, key: str, ttl: timedelta = timedelta(days=7)) -> str:
    claims = {"user_id": str(user_id), "exp": datetime.now(UTC) + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def issue_service_token(*, key: str, ttl: timedelta = timedelta(days=1)) -> str:
    claims = {"role": "service", "exp": datetime.now(UTC) + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)
