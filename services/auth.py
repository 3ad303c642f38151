"""Tokens (docs/configuration.md "Tokens"): HS256 JWTs signed with SECRET_KEY, carrying `user_id` (or `sub`) or `role: service`."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt.algorithms import HMACAlgorithm

from server.config import Settings
from services.errors import Forbidden, Unauthenticated

ALGORITHM = "HS256"


@functools.lru_cache(maxsize=4)  # the server has one signing key; tests start a few
def _prepared_key(key: str | bytes) -> bytes:
    """The key as PyJWT's HS256 prepares it: refused (`InvalidKeyError`) if it looks like a PEM, SSH, DER or JWK
    key, every time (a failure is not remembered)."""
    return HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(key)


class _Refused(Exception):
    """A token `authenticate` refuses; the argument is the reason it gives."""


_SEGMENT = re.compile(r"[A-Za-z0-9_-]*")
_SUPPORTED_CRITICAL = ("b64",)


def _segment(encoded: str) -> bytes:
    """One base64url segment, decoded as PyJWT decodes it: up to two `=` of padding (only where it completes the
    last group), nothing outside the alphabet, and only the one spelling that encodes its bytes."""
    stripped = encoded.rstrip("=")
    padding = len(encoded) - len(stripped)
    if padding > 2 or (padding and len(encoded) % 4) or len(stripped) % 4 == 1 or not _SEGMENT.fullmatch(stripped):
        raise _Refused("invalid token")
    try:
        decoded = base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))
    except binascii.Error:
        raise _Refused("invalid token") from None
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != stripped.encode():
        raise _Refused("invalid token")  # bits set past the last byte: one token, one spelling
    return decoded


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise _Refused("invalid token") from None
    if not isinstance(value, dict):
        raise _Refused("invalid token")
    return value


def _whole_seconds(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload,no-any-return]
    except (ValueError, TypeError, OverflowError):
        raise _Refused("invalid token") from None


def _verified_claims(token: str, key: str, leeway: float) -> dict[str, Any]:
    """The claims of an HS256 token signed with `key`, checked as `jwt.decode(token, key, algorithms=["HS256"],
    options={"require": ["exp"]}, leeway=leeway)` checks them (PyJWT 2.15), refusals named as `authenticate` names
    them: a signed, unexpired, mature token without `aud`, whose `sub` and `jti` (if any) are strings.

    Written out because PyJWT's general decoder spent ~60 µs on a token (a Python-level check of each character of
    each segment, options merged per call) where this takes half as long; tests/test_auth_keys.py holds it to PyJWT's
    answer on a corpus of valid, tampered and malformed tokens."""
    signing_input, dot, signature_segment = token.rpartition(".")
    header_segment, dot2, payload_segment = signing_input.partition(".")
    if not dot or not dot2:
        raise _Refused("invalid token")
    header = _json_object(_segment(header_segment))
    if "kid" in header and not isinstance(header["kid"], str):
        raise _Refused("invalid token")
    if "crit" in header:
        critical = header["crit"]
        if not isinstance(critical, list) or not critical:
            raise _Refused("invalid token")
        for extension in critical:
            if not isinstance(extension, str) or extension not in _SUPPORTED_CRITICAL or extension not in header:
                raise _Refused("invalid token")
    if header.get("b64", True) is False:  # a detached payload: never one of ours
        raise _Refused("invalid token")
    payload = _segment(payload_segment)
    signature = _segment(signature_segment)
    if header.get("alg") != ALGORITHM:
        raise _Refused("invalid token")
    try:
        prepared = _prepared_key(key)
    except jwt.PyJWTError:
        raise _Refused("invalid token") from None
    expected = hmac.new(prepared, signing_input.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        raise _Refused("invalid token")
    claims = _json_object(payload)
    if claims.get("exp") is None:
        raise _Refused("invalid token")
    _check_times(claims.get("iat", _ABSENT), claims.get("nbf", _ABSENT), claims["exp"], time.time(), leeway)
    if claims.get("aud"):
        raise _Refused("invalid token")
    for name in ("sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            raise _Refused("invalid token")
    return claims


_ABSENT = object()  # a claim the token does not have (`null` is a value: refused)


def _check_times(iat: object, nbf: object, exp: object, now: float, leeway: float) -> None:
    """A token's `iat` and `nbf` (if present) not in the future, its `exp` not past, each with `leeway`."""
    for value in (iat, nbf):
        if value is not _ABSENT and _whole_seconds(value) > now + leeway:
            raise _Refused("token not yet valid")
    if _whole_seconds(exp) <= now - leeway:
        raise _Refused("token expired")


def _number(value: object) -> float:
    assert isinstance(value, (int, float))  # `authenticate` accepted no other
    return float(value)


def _check_lifetime(expires_at: float, issued_at: float | None, now: float, rules: TokenRules) -> None:
    if expires_at - min(now, now if issued_at is None else issued_at) > rules.max_lifetime + rules.leeway:
        raise Unauthenticated("token lifetime exceeds the server's maximum (TOKEN_MAX_LIFETIME)")


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
    digest = _digest(token, rules.key)
    known = _accepted_before(digest)
    if known is not None:
        return known.actor(rules)
    try:
        claims = _verified_claims(token, rules.key, rules.leeway)
    except _Refused as refused:
        raise Unauthenticated(str(refused)) from None
    times: dict[str, float] = {}
    for name in ("exp", "iat", "nbf"):
        if name in claims:
            value = claims[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Unauthenticated("invalid token: exp, iat and nbf must be numbers")
            times[name] = float(value)
    _check_lifetime(times["exp"], times.get("iat"), time.time(), rules)
    users = {name: claims[name] for name in ("user_id", "sub") if claims.get(name) is not None}
    if claims.get("role") == "service":
        if users:
            raise Unauthenticated("invalid token: a service token carries no user")
        actor = Actor.service(expires_at=times["exp"])
    else:
        try:
            ids = {uuid.UUID(str(value)) for value in users.values()}
        except ValueError:
            raise Unauthenticated("invalid token") from None
        if len(ids) != 1:
            raise Unauthenticated("invalid token: user_id and sub disagree" if ids else "invalid token")
        actor = Actor(user_id=ids.pop(), expires_at=times["exp"])
    _remember(digest, _Accepted(actor, claims["exp"], claims.get("iat", _ABSENT), claims.get("nbf", _ABSENT)))
    return actor


@dataclass(frozen=True, slots=True)
class _Accepted:
    """A token `authenticate` accepted: who it stands for, and its times as signed (to check them again)."""

    who: Actor
    exp: object  # numbers, as signed; `iat` and `nbf` may be _ABSENT
    iat: object
    nbf: object

    def actor(self, rules: TokenRules) -> Actor:
        """The actor again, if the token's times still hold (the checks `authenticate` makes, in its order)."""
        now = time.time()
        try:
            _check_times(self.iat, self.nbf, self.exp, now, rules.leeway)
        except _Refused as refused:
            raise Unauthenticated(str(refused)) from None
        _check_lifetime(_number(self.exp), None if self.iat is _ABSENT else _number(self.iat), now, rules)
        return self.who


# Tokens `authenticate` accepted, by a digest of the key and the token: a client reconnecting presents the token
# its last socket opened with, and after a deploy every client does at once; the signature and the form of a token
# never change, so only its times are checked again. At most this many (~0.4 KiB each), least recently used out.
ACCEPTED_TOKENS_MAX = 16_384
_accepted: OrderedDict[bytes, _Accepted] = OrderedDict()


def _digest(token: str, key: str) -> bytes:
    return hashlib.sha256(f"{len(key)}:{key}:{token}".encode()).digest()


def _accepted_before(digest: bytes) -> _Accepted | None:
    known = _accepted.get(digest)
    if known is not None:
        _accepted.move_to_end(digest)
    return known


def _remember(digest: bytes, accepted: _Accepted) -> None:
    _accepted[digest] = accepted
    if len(_accepted) > ACCEPTED_TOKENS_MAX:
        _accepted.popitem(last=False)


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
