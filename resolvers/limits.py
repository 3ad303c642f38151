"""GraphQL request checks that Strawberry leaves to the application.

- `depth_limit(max_depth)`: a validation rule like Strawberry's QueryDepthLimiter (the root field is depth 0,
  introspection fields are not counted), except that a spread of an undefined fragment is left to the standard
  "unknown fragment" rule instead of raising KeyError (found by tests/test_fuzz.py).
- `request_shape_error(data)`: what is wrong with a request body / subscribe payload before Strawberry reads it
  (`query` a non-empty string, `variables` and `extensions` objects, `operationName` a string), or None.
"""

from __future__ import annotations

from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
)


def depth_limit(max_depth: int) -> type[ValidationRule]:
    class DepthLimit(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            fragments = {d.name.value: d for d in node.definitions if isinstance(d, FragmentDefinitionNode)}
            for definition in node.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                if _depth(definition.selection_set, fragments, 0, frozenset()) > max_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    self.report_error(
                        GraphQLError(f"'{name}' exceeds maximum operation depth of {max_depth}", [definition])
                    )

    return DepthLimit


def _depth(
    selection_set: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], level: int, seen: frozenset[str]
) -> int:
    deepest = level
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            if selection.name.value.startswith("__"):
                continue
            if selection.selection_set is not None:
                deepest = max(deepest, _depth(selection.selection_set, fragments, level + 1, seen))
        elif isinstance(selection, InlineFragmentNode):
            deepest = max(deepest, _depth(selection.selection_set, fragments, level, seen))
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is not None and name not in seen:
                deepest = max(deepest, _depth(fragment.selection_set, fragments, level, seen | {name}))
    return deepest


def request_shape_error(data: Any) -> str | None:
    if not isinstance(data, dict):
        return "expected a JSON object"
    query = data.get("query")
    if not isinstance(query, str) or not query.strip():
        return "query: expected a non-empty string"
    for name in ("variables", "extensions"):
        if data.get(name) is not None and not isinstance(data[name], dict):
            return f"{name}: expected an object"
    if data.get("operationName") is not None and not isinstance(data["operationName"], str):
        return "operationName: expected a string"
    return None
