"""One place where errors become GraphQL errors with `extensions.code` (docs/protocols.md).

Domain errors keep their safe message and code. GraphQL's own errors (syntax, validation, variables) are
BAD_REQUEST. Anything else is a bug: it is logged with its traceback and the client sees only INTERNAL.
"""

from __future__ import annotations

import logging
import re

from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors

from services.errors import DomainError

log = logging.getLogger(__name__)


# graphql-core ends some messages with suggestions: "Cannot query field 'x' on type 'Query'. Did you mean 'me'?"
_SUGGESTION = re.compile(r"\s*Did you mean [^?]*\?\s*$")


class CodedErrors(MaskErrors):
    """`hide_suggestions`: strip "Did you mean …?" from every message (validation leaves them out already;
    coercing variables at execution adds them too)."""

    def __init__(self, *, hide_suggestions: bool = False) -> None:
        super().__init__(error_message="internal error")
        self.hide_suggestions = hide_suggestions

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        coded = [self._code(error) for error in errors]
        if self.hide_suggestions:
            coded = [self._without_suggestion(error) for error in coded]
        return coded

    def _without_suggestion(self, error: GraphQLError) -> GraphQLError:
        message = _SUGGESTION.sub("", error.message)
        return error if message == error.message else self._with(error, message, dict(error.extensions or {}))

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
