"""GraphQL request checks that Strawberry leaves to the application.

- `document_limits(max_depth, max_aliases)`: one validation rule for the depth and alias limits. The depth is
  counted like Strawberry's QueryDepthLimiter (the root field is depth 0, introspection fields are not counted)
  and the aliases like its MaxAliasesLimiter (every alias a field would have once the fragments are spread), but
  each fragment's body is walked **once per document**, whatever the number of spreads: those two re-walk a
  fragment at every spread, so a chain of fragments that each spread the previous one three times costs 3^n
  (a 571-byte document took a second). A spread of an undefined fragment is left to the standard "unknown
  fragment" rule, and a fragment cycle to "no fragment cycles".
- `request_shape_error(data)`: what is wrong with a request body / subscribe payload before Strawberry reads it
  (`query` a non-empty string, `variables` and `extensions` objects, `operationName` a string), or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True, slots=True)
class Shape:
    """What a selection set adds below the level it sits at: its deepest field, and its aliases."""

    depth: int = 0
    aliases: int = 0


@dataclass
class DocumentCost:
    """The depth and the alias count of each operation of a document, each fragment's body walked once.

    `walks` counts how many times each fragment's body was walked (always 1 for a used fragment): the tests
    hold the rule to it."""

    document: DocumentNode
    fragments: dict[str, FragmentDefinitionNode] = field(init=False)
    walks: dict[str, int] = field(default_factory=dict)
    _shapes: dict[str, Shape] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.fragments = {d.name.value: d for d in self.document.definitions if isinstance(d, FragmentDefinitionNode)}

    def operation(self, operation: OperationDefinitionNode) -> Shape:
        return self._selection_set(operation.selection_set)

    def _fragment(self, name: str) -> Shape:
        shape = self._shapes.get(name)
        if shape is not None:
            return shape
        fragment = self.fragments.get(name)
        if fragment is None:
            return Shape()  # unknown fragment: the standard rule reports it
        # A cycle leads back here while the fragment is being walked: it adds nothing (and the standard rule
        # refuses the document anyway).
        self._shapes[name] = Shape()
        self.walks[name] = self.walks.get(name, 0) + 1
        shape = self._shapes[name] = self._selection_set(fragment.selection_set)
        return shape

    def _selection_set(self, selection_set: SelectionSetNode) -> Shape:
        depth = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if selection.alias is not None:
                    aliases += 1
                if selection.selection_set is None:
                    continue
                below = self._selection_set(selection.selection_set)
                aliases += below.aliases
                if not selection.name.value.startswith("__"):  # introspection is not counted in the depth
                    depth = max(depth, below.depth + 1)
            else:
                if isinstance(selection, InlineFragmentNode):
                    below = self._selection_set(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    below = self._fragment(selection.name.value)
                else:  # pragma: no cover - graphql-core has no other selection kind
                    continue
                aliases += below.aliases
                depth = max(depth, below.depth)
        return Shape(depth=depth, aliases=aliases)


def document_limits(*, max_depth: int, max_aliases: int) -> type[ValidationRule]:
    class DocumentLimits(ValidationRule):
        def enter_document(self, node: DocumentNode, *_: Any) -> None:
            cost = DocumentCost(node)
            aliases = 0
            for definition in node.definitions:
                if not isinstance(definition, OperationDefinitionNode):
                    continue
                shape = cost.operation(definition)
                aliases += shape.aliases
                if shape.depth > max_depth:
                    name = definition.name.value if definition.name else "anonymous"
                    self.report_error(
                        GraphQLError(f"'{name}' exceeds maximum operation depth of {max_depth}", [definition])
                    )
            if aliases > max_aliases:
                self.report_error(GraphQLError(f"{aliases} aliases found. Allowed: {max_aliases}"))

    return DocumentLimits


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
