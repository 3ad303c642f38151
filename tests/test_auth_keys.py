"""Token verification in process: each signing key is prepared once (services.auth), and that never lets a
token signed with one key pass under another, nor a key PyJWT refuses pass on a second try."""

from __future__ import annotations

import uuid

import pytest

from services import auth
from services.auth import TokenRules, authenticate, issue_user_token
from services.errors import Unauthenticated

KEY_A = "a-signing-key-of-thirty-two-bytes-or-more-0001"
KEY_B = "a-signing-key-of-thirty-two-bytes-or-more-0002"


def test_a_key_is_prepared_once_for_every_token_it_checks() -> None:
    user_id = uuid.uuid4()
    token = issue_user_token(user_id, key=KEY_A)
    authenticate(token, TokenRules(key=KEY_A))
    before = auth._prepared_key.cache_info()
    for _ in range(3):
        assert authenticate(token, TokenRules(key=KEY_A)).user_id == user_id
    after = auth._prepared_key.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 3


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
