"""Tokens (docs/configuration.md "Tokens"): HS256 JWTs signed with SECRET_KEY, carrying `user_id` (or `sub`) or `role: service`."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from jwt.algorithms import HMACAlgorithm

from server.config import Settings
from services.errors import Forbidden, Unauthenticated

ALGORITHM = "HS256"


class _PreparedKeyHMAC(HMACAlgorithm):
    """HS256 with each key prepared once. PyJWT prepares the key on every decode: it checks that the secret does
    not look like a PEM, SSH, DER or JWK key (a JSON parse that fails, with its exception, among them) — ~5 µs per
    token, a sixth of a verification, and the answer depends on the key alone. A key that fails the checks is
    refused every time, as before (a failure is not remembered)."""

    def prepare_key(self, key: str | bytes) -> bytes:
        return _prepared_key(key)


@functools.lru_cache(maxsize=4)  # the server has one signing key; tests start a few
def _prepared_key(key: str | bytes) -> bytes:
    return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)


# The decoder of `authenticate`: PyJWT's, with HS256 as above (registered on this instance only).
_decoder = jwt.PyJWT()
_decoder._jws.unregister_algorithm(ALGORITHM)
_decoder._jws.register_algorithm(ALGORITHM, _PreparedKeyHMAC(HMACAlgorithm.SHA256))


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is calling: a user, or another TailTrail service (`user_id` is None); `expires_at` is the token's
    `exp` (a Unix time), or None for an actor no token made (the server acting on its own behalf)."""

    user_id: uuid.UUID | None
    is_service: bool = False
    expires_at: float | None = None

    @classmethod
    def service(cls, *, expires_at: float | None = None) -> Actor:
        return cls(user_id=None, is_service=True, expires_at=expires_at)


@dataclass(frozen=True, slots=True)
class TokenRules:
    """How tokens are checked: the signing key, the longest lifetime accepted, and the clock skew tolerated."""

    key: str
    max_lifetime: float = 7 * 24 * 3600.0
    leeway: float = 30.0

    @classmethod
    def of(cls, settings: Settings) -> TokenRules:
        return cls(key=settings.signing_key, max_lifetime=settings.token_max_lifetime, leeway=settings.token_leeway)


def authenticate(token: str | None, rules: TokenRules) -> Actor:
    """The actor a token stands for, or `Unauthenticated` with the reason.

    Beyond the signature (HS256 only) and `exp`: `exp`, `iat` and `nbf` must be numbers (a numeric string is not);
    `iat`/`nbf` in the future and a lifetime over `max_lifetime` are refused (each with `leeway`); a user token's
    `user_id` and `sub` must agree; a service token (`role: service`) carries no user at all."""
    if not token:
        raise Unauthenticated("a token is required")
    try:
        claims = _decoder.decode(
            token, rules.key, algorithms=[ALGORITHM], options={"require": ["exp"]}, leeway=rules.leeway
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("token expired") from None
    except jwt.ImmatureSignatureError:
        raise Unauthenticated("token not yet valid") from None
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token") from None
    times: dict[str, float] = {}
    for name in ("exp", "iat", "nbf"):
        if name in claims:
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Unauthenticated("invalid token: exp, iat and nbf must be numbers")
            times[name] = float(value)
    now = time.time()
    expires_at = float(times["exp"])
    issued_at = float(times.get("iat", now))
    if expires_at - min(now, issued_at) > rules.max_lifetime + rules.leeway:
        raise Unauthenticated("token lifetime exceeds the server's maximum (TOKEN_MAX_LIFETIME)")
    users = {name: claims[name] for name in ("user_id", "sub") if claims.get(name) is not None}
    if claims.get("role") == "service":
        if users:
            raise Unauthenticated("invalid token: a service token carries no user")
        return Actor.service(expires_at=expires_at)
    try:
        ids = {uuid.UUID(str(value)) for value in users.values()}
    except ValueError:
        raise Unauthenticated("invalid token") from None
    if len(ids) != 1:
        raise Unauthenticated("invalid token: user_id and sub disagree" if ids else "invalid token")
    return Actor(user_id=ids.pop(), expires_at=expires_at)


def refresh(current: Actor, token: str | None, rules: TokenRules) -> Actor:
    """The actor of a fresh token handed over on an open socket: valid, and for the same user (or, on a service's
    socket, a service token). `Unauthenticated` for a token that is not valid, `Forbidden` for another user's."""
    fresh = authenticate(token, rules)
    if fresh.user_id != current.user_id or fresh.is_service != current.is_service:
        raise Forbidden("the new token is for another user")
    return fresh


def token_from(*, authorization: str | None = None, query_token: str | None = None) -> str | None:
    """The token of an `Authorization: Bearer <t>` header or a `?token=` query parameter."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def token_from_connection_params(params: Mapping[str, object] | None) -> str | None:
    """`connection_init` payload: `{"token": t}` or `{"Authorization": "Bearer t"}` (docs/configuration.md "Tokens")."""
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
    now = datetime.now(UTC)
    claims = {"user_id": str(user_id), "iat": now, "exp": now + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def issue_service_token(*, key: str, ttl: timedelta = timedelta(days=1)) -> str:
    now = datetime.now(UTC)
    claims = {"role": "service", "iat": now, "exp": now + ttl}
    return jwt.encode(claims, key, algorithm=ALGORITHM)
