"""One place where errors become GraphQL errors with `extensions.code` (SPEC §8).

Domain errors keep their safe message and code. GraphQL's own errors (syntax, validation, variables) are
BAD_REQUEST. Anything else is a bug: it is logged with its traceback and the client sees only INTERNAL.
"""

from __future__ import annotations

import logging

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from services.errors import DomainError

log = logging.getLogger(__name__)


class CodedErrors(MaskErrors):
    def __init__(self) -> None:
        super().__init__(error_message="internal error")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        return [self._code(error) for error in errors]

    def _code(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, DomainError):
            return self._with(
                error,
                original.message,
                {"code": original.code, **({"details": original.details} if original.details else {})},
            )
        if isinstance(original, GraphQLError) or original is None:
            extensions = dict(error.extensions or {})
            if "code" in extensions:
                return error
            extensions["code"] = "BAD_REQUEST"
            return self._with(error, error.message, extensions)
        if _from_strawberry(original):
            # Strawberry's own request errors (no query, unknown operationName, …) are the client's mistake.
            return self._with(error, error.message, {"code": "BAD_REQUEST"})
        log.error("unexpected error in a resolver", exc_info=original)
        return self._with(error, "internal error", {"code": "INTERNAL"})

    @staticmethod
    def _with(error: GraphQLError, message: str, extensions: dict[str, object]) -> GraphQLError:
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=None,
            extensions=extensions,
        )


def _from_strawberry(error: BaseException) -> bool:
    """Raised by Strawberry about the request itself (no query, an operationName the document lacks, …)."""
    for candidate in (error, error.__cause__):
        module = type(candidate).__module__ if candidate is not None else ""
        if module.startswith("strawberry.exceptions") or module == "strawberry.schema.exceptions":
            return True
    return False
