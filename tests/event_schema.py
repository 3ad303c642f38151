"""Check a protocol's output for one event against the event's schema (`realtime.codec.payload_schema`).

Shared by the GraphQL tests (`camel=True`: field names in camelCase) and the legacy JSON protocol tests
(`camel=False`: snake_case, as the schema spells them). A schema maps a field name to a JSON type name —
"string", "integer", "boolean", "array", "object", with a trailing "?" when null is allowed — or to a nested
schema (a dict), which `{"?": nested}` makes nullable, or to `[nested]`: an array of such objects.
"""

from __future__ import annotations

from typing import Any

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def camel_case(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def graphql_selection(schema: dict[str, Any]) -> str:
    """The GraphQL selection set that asks for every field of `schema` (camelCase, nested objects expanded)."""
    fields = []
    for name, kind in schema.items():
        if isinstance(kind, list):
            fields.append(f"{camel_case(name)} {{ {graphql_selection(kind[0])} }}")
        elif isinstance(kind, dict):
            fields.append(f"{camel_case(name)} {{ {graphql_selection(_unwrap(kind))} }}")
        else:
            fields.append(camel_case(name))
    return " ".join(fields)


def assert_matches(schema: dict[str, Any], payload: dict[str, Any], *, camel: bool) -> None:
    """Assert `payload` has exactly the fields of `schema`, each of its JSON type."""
    _match(schema, payload, camel=camel, path="$")


def _unwrap(kind: dict[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = kind["?"] if set(kind) == {"?"} else kind
    return nested


def _match(schema: dict[str, Any], payload: Any, *, camel: bool, path: str) -> None:
    assert isinstance(payload, dict), f"{path}: expected an object, got {payload!r}"
    expected = {(camel_case(name) if camel else name): kind for name, kind in schema.items()}
    missing = sorted(set(expected) - set(payload))
    extra = sorted(set(payload) - set(expected))
    assert not missing and not extra, f"{path}: missing fields {missing}, unexpected fields {extra} in {payload!r}"
    for name, kind in expected.items():
        _check(kind, payload[name], camel=camel, path=f"{path}.{name}")


def _check(kind: Any, value: Any, *, camel: bool, path: str) -> None:
    if isinstance(kind, list):
        assert isinstance(value, list), f"{path}: expected an array, got {value!r}"
        for i, item in enumerate(value):
            _match(kind[0], item, camel=camel, path=f"{path}[{i}]")
        return
    if isinstance(kind, dict):
        if set(kind) == {"?"}:
            if value is None:
                return
            kind = kind["?"]
        _match(kind, value, camel=camel, path=path)
        return
    assert isinstance(kind, str), f"{path}: expected a JSON type name or a nested schema, got {kind!r}"
    name, nullable = kind.removesuffix("?"), kind.endswith("?")
    assert name in _JSON_TYPES, f"{path}: unknown JSON type {kind!r} in the schema"
    if value is None:
        assert nullable, f"{path}: expected {name}, got null"
        return
    ok = isinstance(value, _JSON_TYPES[name])
    if name in ("integer", "object", "array", "string") and isinstance(value, bool):
        ok = False  # JSON true/false is never a number
    assert ok, f"{path}: expected {kind}, got {type(value).__name__} {value!r}"
