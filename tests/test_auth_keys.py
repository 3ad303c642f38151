"""Token verification in process: each signing key is prepared once (services.auth), and that never lets a
token signed with one key pass under another, nor a key PyJWT refuses pass on a second try; the written-out HS256
check answers as PyJWT's decoder does."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import time
import uuid
from datetime import timedelta

import jwt
import pytest

from services import auth
from services.auth import TokenRules, authenticate, issue_user_token
from services.errors import Unauthenticated

KEY_A = "a-signing-key-of-thirty-two-bytes-or-more-0001"
KEY_B = "a-signing-key-of-thirty-two-bytes-or-more-0002"


def test_a_key_is_prepared_once_for_every_token_it_checks() -> None:
    authenticate(issue_user_token(uuid.uuid4(), key=KEY_A), TokenRules(key=KEY_A))
    before = auth._prepared_key.cache_info()
    for _ in range(3):
        user_id = uuid.uuid4()
        assert authenticate(issue_user_token(user_id, key=KEY_A), TokenRules(key=KEY_A)).user_id == user_id
    after = auth._prepared_key.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 3


def test_a_token_presented_again_is_not_verified_again_but_its_times_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reconnecting client presents the token it had: its signature was checked once; its times, every time."""
    user_id = uuid.uuid4()
    token = issue_user_token(user_id, key=KEY_A, ttl=timedelta(seconds=60))
    first = authenticate(token, TokenRules(key=KEY_A, leeway=0))
    assert first.user_id == user_id
    before = auth._prepared_key.cache_info()
    assert authenticate(token, TokenRules(key=KEY_A, leeway=0)) == first
    assert auth._prepared_key.cache_info() == before, "verified again"
    # Its times against the rules of the call: a shorter TOKEN_MAX_LIFETIME, then the clock past its exp.
    with pytest.raises(Unauthenticated, match="lifetime exceeds"):
        authenticate(token, TokenRules(key=KEY_A, leeway=0, max_lifetime=30))
    later = time.time() + 120
    monkeypatch.setattr(auth.time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="token expired"):
        authenticate(token, TokenRules(key=KEY_A, leeway=0))
    assert authenticate(token, TokenRules(key=KEY_A, leeway=600)) == first  # within the clock-skew leeway
    monkeypatch.undo()
    with pytest.raises(Unauthenticated, match="invalid token"):
        authenticate(token, TokenRules(key=KEY_B))  # accepted under the key that signed it only


def test_a_token_accepted_before_its_nbf_is_refused_the_same_way_again(monkeypatch: pytest.MonkeyPatch) -> None:
    now = int(time.time())
    token = jwt.encode({"user_id": str(uuid.uuid4()), "nbf": now + 20, "exp": now + 60}, KEY_A, algorithm="HS256")
    authenticate(token, TokenRules(key=KEY_A, leeway=30))  # within the leeway
    with pytest.raises(Unauthenticated, match="not yet valid"):
        authenticate(token, TokenRules(key=KEY_A, leeway=0))


def test_the_tokens_remembered_are_bounded() -> None:
    for _ in range(auth.ACCEPTED_TOKENS_MAX + 10):
        authenticate(issue_user_token(uuid.uuid4(), key=KEY_A), TokenRules(key=KEY_A))
    assert len(auth._accepted) == auth.ACCEPTED_TOKENS_MAX


def test_a_prepared_key_does_not_verify_tokens_of_another_key() -> None:
    token_a = issue_user_token(uuid.uuid4(), key=KEY_A)
    token_b = issue_user_token(uuid.uuid4(), key=KEY_B)
    authenticate(token_a, TokenRules(key=KEY_A))
    authenticate(token_b, TokenRules(key=KEY_B))  # both keys prepared now
    with pytest.raises(Unauthenticated, match="invalid token"):
        authenticate(token_a, TokenRules(key=KEY_B))
    with pytest.raises(Unauthenticated, match="invalid token"):
        authenticate(token_b, TokenRules(key=KEY_A))


def test_a_key_shaped_like_an_asymmetric_one_is_refused_every_time() -> None:
    pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"
    token = issue_user_token(uuid.uuid4(), key=KEY_A)
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="invalid token"):
            authenticate(token, TokenRules(key=pem))


def _pyjwt_answer(token: str, key: str, leeway: float) -> str:
    """What `authenticate` answered while PyJWT's decoder checked tokens: the claims, or the refusal's reason."""
    try:
        claims = jwt.PyJWT().decode(token, key, algorithms=["HS256"], options={"require": ["exp"]}, leeway=leeway)
    except jwt.ExpiredSignatureError:
        return "token expired"
    except jwt.ImmatureSignatureError:
        return "token not yet valid"
    except jwt.PyJWTError:
        return "invalid token"
    return repr(claims)


def _lean_answer(token: str, key: str, leeway: float) -> str:
    try:
        return repr(auth._verified_claims(token, key, leeway))
    except auth._Refused as refused:
        return str(refused)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signed(header: object, claims: object, key: str = KEY_A, *, raw_claims: bytes | None = None) -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(raw_claims if raw_claims is not None else json.dumps(claims).encode())
    signature = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def _corpus() -> list[str]:
    now = int(time.time())
    user = str(uuid.uuid4())
    hs = {"alg": "HS256", "typ": "JWT"}
    good = {"user_id": user, "iat": now, "exp": now + 3600}
    valid = _signed(hs, good)
    head, body, signature = valid.split(".")
    tokens = [
        valid,
        issue_user_token(user, key=KEY_A),
        issue_user_token(user, key=KEY_B),
        jwt.encode({"role": "service", "exp": now + 60}, KEY_A, algorithm="HS256"),
        jwt.encode({**good, "exp": now + 3600.5, "nbf": now - 1.5}, KEY_A, algorithm="HS256"),
        # time claims either side of the leeway (30 s), two seconds clear of it (`now` is whole seconds, and the
        # answers are compared a moment later), and of the wrong kinds
        *(_signed(hs, {**good, "exp": exp}) for exp in (now - 28, now - 32, now - 10_000, now + 10**12)),
        *(_signed(hs, {**good, name: now + 3600}) for name in ("iat", "nbf")),
        *(_signed(hs, {**good, name: now + ahead}) for name in ("iat", "nbf") for ahead in (28, 32, 34)),
        *(_signed(hs, {**good, name: value}) for name in ("exp", "iat", "nbf") for value in BAD_TIMES),
        _signed(hs, {"user_id": user}),
        _signed(hs, {**good, "exp": None}),
        # claims PyJWT checks by default
        *(_signed(hs, {**good, "aud": aud}) for aud in ("x", ["x"], "", [], None)),
        *(_signed(hs, {**good, name: value}) for name in ("sub", "jti", "iss") for value in ("x", 1, None, ["x"])),
        # headers
        *(_signed({**hs, "alg": alg}, good) for alg in ("none", "HS384", "hs256", "", None, ["HS256"], 256)),
        _signed({"typ": "JWT"}, good),
        *(_signed({**hs, "kid": kid}, good) for kid in ("k1", 1, None)),
        *(_signed({**hs, "crit": crit}, good) for crit in (["b64"], ["exp"], [], "b64", [1])),
        _signed({**hs, "crit": ["b64"], "b64": True}, good),
        _signed({**hs, "crit": ["b64"], "b64": False}, good),
        _signed({**hs, "b64": False}, good),
        _signed(["HS256"], good),
        _signed(hs, [good]),
        _signed(hs, None, raw_claims=b"not json"),
        _signed(hs, None, raw_claims=b"[" * 100_000 + b"]" * 100_000),
        _signed(hs, None, raw_claims=json.dumps(good).encode() + b" "),
        # the compact form itself
        f"{head}.{body}",
        f"{head}.{body}.{signature}.{signature}",
        f"{head}.{body}x.{signature}",
        f"{head}.{body}.{signature[:-1]}",
        f"{head}.{body}.{signature}=",
        f"{head}=.{body}.{signature}",
        f"{head}.{body}.{signature}A",
        f"{head}.{body}.{signature}AA==",
        f"{head}.{body}.{signature}A===",
        f"{head}.{body}.{signature.replace('-', '+')}",
        f"{head}.{body}.!!!!",
        f"{head}.{body}.",
        f"{head}..{signature}",
        f".{body}.{signature}",
        f"{head}.{body}.{signature} ",
        f"{head}.{body}.é{signature}",
        "",
        ".",
        "..",
        "not a token",
    ]
    # the first tokens with the last character of each segment changed to every other one of the alphabet: some
    # spell the same bytes (bits past the last byte set), which PyJWT refuses too
    for token in list(tokens[:3]):
        parts = token.split(".")
        for i, part in enumerate(parts):
            for replacement in string.ascii_letters + string.digits + "-_":
                changed = [*parts]
                changed[i] = part[:-1] + replacement
                tokens.append(".".join(changed))
    return tokens


BAD_TIMES: tuple[object, ...] = ("123", "soon", 1.5, True, None, [1], {"a": 1}, 10**400, -(10**30))


def test_tokens_are_checked_as_pyjwt_checks_them() -> None:
    """The written-out HS256 check (services.auth._verified_claims) gives PyJWT's answer on every token of the corpus:
    valid ones, the edges of each time claim, the claims and headers PyJWT checks, tampered and malformed forms."""
    corpus = _corpus()
    answers = {"invalid token": 0, "token expired": 0, "token not yet valid": 0, "claims": 0}
    for token in corpus:
        for key in (KEY_A, KEY_B):
            expected = _pyjwt_answer(token, key, 30.0)
            assert _lean_answer(token, key, 30.0) == expected, (token, key)
            answers[expected if expected in answers else "claims"] += 1
    assert all(answers.values()), answers  # the corpus reaches every kind of answer
