"""Domain errors: a code from docs/protocols.md and a message that is safe to show to the client.

Each protocol adapter maps them in one place; anything else that escapes a service is a bug and is
reported to clients only as INTERNAL.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    code: ClassVar[str] = "INTERNAL"
    default_message: ClassVar[str] = "internal error"

    def __init__(self, message: str | None = None, *, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.default_message
        self.details = details
        super().__init__(self.message)


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    default_message = "a valid token is required"


class Forbidden(DomainError):
    code = "FORBIDDEN"
    # Deliberately the same text whether the chat exists or not: a refusal reveals nothing about it.
    default_message = "not allowed"


class NotFound(DomainError):
    code = "NOT_FOUND"
    default_message = "not found"


class BadRequest(DomainError):
    code = "BAD_REQUEST"
    default_message = "bad request"


class PayloadTooLarge(DomainError):
    code = "PAYLOAD_TOO_LARGE"
    default_message = "payload too large"


class RateLimited(DomainError):
    code = "RATE_LIMITED"
    default_message = "too many requests"
