"""The compiled renderer (resolvers.render) against graphql-core's executor: for every event type of `ChatEvent`,
with every optional field set and unset, and a table of documents (the clients' own among them), the compiled
`{"data": ...}` text is byte for byte the executor's; documents outside the compiled subset, and events it cannot
be sure of, go through the executor (resolvers.fanout.SharedRenderer)."""

from __future__ import annotations

import dataclasses
import json
import re
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, get_type_hints

import pytest
import strawberry
from graphql import DocumentNode, ExecutionResult, OperationDefinitionNode, parse, validate
from graphql.execution import Executor
from graphql.language import DirectiveLocation, FragmentDefinitionNode

from realtime import events
from realtime.hub import Delivery
from resolvers import fanout
from resolvers.app import build_schema
from resolvers.render import Unsupported, Unsure, compile_plan
from schema import types

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = build_schema()._schema
ONLINE = uuid.UUID(int=7)  # the one sender `is_online` says is online


# -- sample events: every registered type, each optional field both set and None ----------------------------


def _value(hint: Any, variant: int) -> Any:
    """A value of an event field's type; `variant` 0: every optional part set, 1: every optional part None."""
    if hint == uuid.UUID:
        return uuid.UUID(int=variant + 7)  # variant 0 is the online user
    if hint == uuid.UUID | None:
        return uuid.uuid4() if variant == 0 else None
    if hint == tuple[uuid.UUID, ...]:
        return (uuid.UUID(int=1), uuid.UUID(int=2)) if variant == 0 else ()
    if hint is str:
        return 'héllo "wörld" \\ \u2028 😀' if variant == 0 else ""
    if hint == str | None:
        return "client-1" if variant == 0 else None
    if hint is int:
        return 2**31 - 1 if variant == 0 else 0
    if hint is bool:
        return variant == 0
    if hint == datetime:
        if variant == 0:
            return datetime(2026, 12, 3, 5, 6, 7, 891011, tzinfo=UTC)
        return datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5, minutes=-30)))
    if hint == dict[str, Any]:
        if variant == 0:
            return {"text": "ünïcode 😀", "n": 1.5, "big": 2**40, "list": [1, None, True], "nested": {"a": {}}}
        return {}
    if hint == tuple[events.ReactionCount, ...]:
        return (events.ReactionCount("👍", 3), events.ReactionCount("❤️", 1)) if variant == 0 else ()
    if hint == events.MessageData:
        stamp = datetime(2026, 12, 3, 5, 6, 7, 123, tzinfo=UTC)
        return events.MessageData(
            id=uuid.UUID(int=11),
            chat_id=uuid.UUID(int=12),
            seq=42,
            content=_value(str, variant),
            created_at=stamp,
            updated_at=stamp + timedelta(seconds=1),
            sender=events.UserRef(
                id=ONLINE if variant == 0 else uuid.UUID(int=99),
                email="a@example.com",
                image_url="https://example.com/a.png" if variant == 0 else None,
            ),
            client_id=_value(str | None, variant),
            edited_at=stamp if variant == 0 else None,
            deleted_at=stamp if variant == 0 else None,
        )
    raise AssertionError(f"no sample value for {hint!r}: add one")


def _samples() -> list[events.Event]:
    samples: list[events.Event] = []
    for cls in events.EVENT_TYPES.values():
        hints = get_type_hints(cls)
        for variant in (0, 1):
            values = {
                f.name: _value(hints[f.name], variant)
                for f in dataclasses.fields(cls)
                if f.name not in events.ENVELOPE_FIELDS and f.init and f.metadata.get("graphql", True)
            }
            samples.append(cls(**values))
    return samples


EVENTS = _samples()


def _source(event: events.Event, cursor: str | None = "c0ffee") -> Any:
    return types.event(event, cursor=cursor, is_online=lambda user_id: user_id == ONLINE)


# -- documents --------------------------------------------------------------------------------------------

ALL_FIELDS = """
subscription {
  chatEvents {
    __typename
    ... on NewMessage { chatId cursor message { ...AllMessage } }
    ... on MessagesRead { chatId userId lastReadSeq cursor }
    ... on UserTyping { chatId userId }
    ... on UserStoppedTyping { chatId userId }
    ... on UserOnline { chatId userId }
    ... on UserOffline { chatId userId lastSeen }
    ... on UserJoined { chatId userId cursor }
    ... on UserLeft { chatId userId cursor }
    ... on ChatCreated { chatId name isGroup createdBy memberIds cursor }
    ... on ChatMemberAdded { chatId userId addedBy cursor }
    ... on ChatMemberRemoved { chatId userId removedBy cursor }
    ... on GlobalNotification { payload cursor }
    ... on MessageEdited { chatId messageId messageSeq userId content editedAt clientId cursor }
    ... on MessageDeleted { chatId messageId messageSeq deletedBy deletedAt cursor }
    ... on ReactionChanged { chatId messageId messageSeq userId emoji added counts { emoji count __typename } cursor }
    ... on BlockChanged { userId blockedUserId blocked cursor }
    ... on ResyncRequired { reason }
  }
}
fragment AllMessage on Message {
  __typename id chatId seq content createdAt updatedAt clientId editedAt deletedAt
  sender { __typename id email imageUrl isOnline lastSeen }
  reactions { emoji count reactedByMe }
}
"""

# (name, document, variables): what the compiled text must equal the executor's for, on every sample event.
DOCUMENTS: list[tuple[str, str, dict[str, Any] | None]] = [
    ("all fields", ALL_FIELDS, None),
    ("typename only", "subscription { chatEvents { __typename } }", None),
    (
        "aliases everywhere",
        """subscription { e: chatEvents { t: __typename, ... on NewMessage { c: cursor, m: message { s: seq,
        who: sender { mail: email, t2: __typename }, body: content } } ... on UserTyping { u: userId, u2: userId } } }""",
        None,
    ),
    (
        "merged fields and field order",
        """subscription { chatEvents { ... on NewMessage { message { content } cursor } ... on NewMessage {
        message { seq content sender { id } } chatId } __typename ... on NewMessage { message { sender { email } } } } }""",
        None,
    ),
    (
        "named fragments, nested, matching and not",
        """subscription { chatEvents { ...Any ...OnMessage ...OnRead } }
        fragment Any on ChatEvent { __typename ...OnMessage }
        fragment OnMessage on NewMessage { cursor message { ...Body } }
        fragment OnRead on MessagesRead { lastReadSeq ... on MessagesRead { userId } ... on ChatEvent { __typename } }
        fragment Body on Message { id ... on Message { content ...Sender } }
        fragment Sender on Message { sender { ... { email } } }""",
        None,
    ),
    (
        "inline fragments without type condition, and on the union",
        """subscription { chatEvents { ... { __typename } ... on ChatEvent { ... on UserOnline { userId } } } }""",
        None,
    ),
    (
        "skip and include with literals",
        """subscription { chatEvents { __typename @skip(if: false) ... on NewMessage @include(if: false) { cursor }
        ... on NewMessage { chatId @skip(if: true) message @include(if: true) { seq content @skip(if: true) } }
        ... Gone @skip(if: true) } } fragment Gone on ChatEvent { __typename }""",
        None,
    ),
]
VARIABLE_DOCUMENT = """
subscription Events($after: String, $skip: Boolean!, $include: Boolean = true) {
  chatEvents(after: $after) {
    __typename @skip(if: $skip)
    ... on NewMessage @include(if: $include) { cursor message { seq content @skip(if: $skip) } }
    ... Read @skip(if: $skip)
  }
}
fragment Read on MessagesRead { lastReadSeq userId @include(if: $include) }
"""
for skip in (True, False):
    for include in (True, False, None):
        variables: dict[str, Any] = {"after": "x", "skip": skip}
        if include is not None:
            variables["include"] = include
        DOCUMENTS.append((f"variables skip={skip} include={include}", VARIABLE_DOCUMENT, variables))


def _client_documents() -> list[tuple[str, str, dict[str, Any] | None]]:
    """The chatEvents documents the web client, the examples, the bench and the JS test clients send."""
    found: list[tuple[str, str, dict[str, Any] | None]] = []
    web = (ROOT / "web" / "app.js").read_text()
    message = re.search(r"const MESSAGE = `(.*?)`;", web, re.S)
    events_doc = re.search(r"const EVENTS = `(.*?)`;", web, re.S)
    assert message and events_doc
    found.append(("web/app.js", events_doc.group(1).replace("${MESSAGE}", message.group(1)), {"after": None}))
    demo = (ROOT / "examples" / "resume_demo.py").read_text()
    subscription = re.search(r'SUBSCRIPTION = """(.*?)"""', demo, re.S)
    assert subscription
    found.append(("examples/resume_demo.py", subscription.group(1), {"after": "c"}))
    from bench.dialects import CHAT_EVENTS

    found.append(("bench/dialects.py", CHAT_EVENTS, None))
    for name in ("http_stream_client.js", "transport_ws_client.js"):
        script = (ROOT / "tests" / "js" / name).read_text()
        for text in re.findall(r"[`'](subscription[^`']*chatEvents[^`']*)[`']", script):
            found.append((f"tests/js/{name}", text, {"after": None}))
    from tests import test_graphql_fanout

    found.append(("tests/test_graphql_fanout.py", test_graphql_fanout.DOCUMENT, {"after": None, "full": True}))
    found.append(("tests/test_graphql_fanout.py", test_graphql_fanout.DOCUMENT, {"after": None, "full": False}))
    assert len(found) >= 7
    return found


ALL_DOCUMENTS = DOCUMENTS + _client_documents()


def _executor(document: str, variables: dict[str, Any] | None, schema: Any = SCHEMA) -> Executor[Any]:
    parsed = parse(document)
    assert validate(schema, parsed) == [], document
    executor = Executor.build(schema, parsed, raw_variable_values=variables)
    assert isinstance(executor, Executor)
    return executor


def _executed(executor: Executor[Any], source: Any) -> str:
    result = executor.build_per_event_executor(source).execute_operation(False)
    assert isinstance(result, ExecutionResult)
    assert result.errors is None, result.errors
    return json.dumps({"data": result.data}, separators=(",", ":"))


@pytest.mark.parametrize(("name", "document", "variables"), ALL_DOCUMENTS, ids=[d[0] for d in ALL_DOCUMENTS])
def test_compiled_text_is_graphql_cores(name: str, document: str, variables: dict[str, Any] | None) -> None:
    executor = _executor(document, variables)
    plan = compile_plan(executor)
    for event in EVENTS:
        for cursor in ("c0ffee", None):
            source = _source(event, cursor)
            assert plan.render(source) == _executed(executor, source), (name, event)


def test_every_event_type_and_field_is_covered() -> None:
    """The samples reach every member of ChatEvent, and ALL_FIELDS selects every field of every one of them."""
    union = SCHEMA.get_type("ChatEvent")
    members = {t.name for t in union.types}  # type: ignore[union-attr]
    assert {types.EVENT_TYPENAMES[e.type] for e in EVENTS} == members
    executor = _executor(ALL_FIELDS, None)
    for member in union.types:  # type: ignore[union-attr]
        selected = re.search(r"\.\.\. on " + member.name + r" \{(.*)\}\n", ALL_FIELDS)
        assert selected, member.name
        for field in member.fields:
            assert re.search(r"\b" + field + r"\b", selected.group(1)), (member.name, field)
    assert compile_plan(executor)


def test_shared_renderer_frames_by_the_plan() -> None:
    renderer = _renderer(ALL_FIELDS, None, "op-1")
    assert renderer.plan is not None
    executor = _executor(ALL_FIELDS, None)
    for event in EVENTS:
        delivery = Delivery(event, raw="")
        frame = renderer.frame_now(delivery)
        source = delivery.encoded("graphql", _convert)
        assert frame == '{"id":"op-1","type":"next","payload":' + _executed(executor, source) + "}"


# -- the fallbacks ------------------------------------------------------------------------------------------


def test_an_event_the_plan_is_unsure_of_goes_through_the_executor() -> None:
    """A null in a non-null field: graphql-core's answer is an error, and the renderer sends exactly that."""
    broken = events.NewMessage(
        chat_id=uuid.UUID(int=1),
        message=dataclasses.replace(_value(events.MessageData, 0), content=None),
    )
    document = "subscription { chatEvents { ... on NewMessage { message { seq content } } } }"
    executor = _executor(document, None)
    with pytest.raises(Unsure):
        compile_plan(executor).render(_source(broken))
    renderer = _renderer(document, None, "op-2")
    assert renderer.plan is not None
    frame = renderer.frame_now(Delivery(broken, raw=""))
    assert frame is not None
    payload = json.loads(frame)["payload"]
    assert payload["data"] is None  # chatEvents is non-null: the error nulls the whole response
    # graphql-core's error ("Cannot return null for non-nullable field Message.content"), as CodedErrors shows it.
    assert [(error["message"], error["path"]) for error in payload["errors"]] == [
        ("internal error", ["chatEvents", "message", "content"])
    ]
    # The next (plain) event is the plan's again.
    assert renderer.frame_now(Delivery(EVENTS[0], raw="")) is not None


@strawberry.type
class Thing:
    plain: str

    @strawberry.field
    def computed(self, info: strawberry.Info) -> str:
        return "computed"


@strawberry.type
class Plain:
    x: int


Either = Annotated[Thing | Plain, strawberry.union("Either")]


@strawberry.interface
class Shape:
    name: str


@strawberry.type
class Square(Shape):
    side: int


@strawberry.directive(locations=[DirectiveLocation.FIELD])
def shout(value: str) -> str:
    return value.upper()


@strawberry.type
class Query:
    hello: str = "hi"


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def things(self) -> AsyncGenerator[Thing, None]:
        yield Thing(plain="p")

    @strawberry.subscription
    async def either(self) -> AsyncGenerator[Either, None]:
        yield Plain(x=1)

    @strawberry.subscription
    async def shapes(self) -> AsyncGenerator[Shape, None]:
        yield Square(name="s", side=1)


OTHER = strawberry.Schema(query=Query, subscription=Subscription, types=[Square], directives=[shout])._schema


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("subscription { things { computed } }", "has a resolver"),
        ('subscription { things { plain @shout(value: "x") } }', "directive @shout"),
        ("subscription { shapes { name } }", "is_type_of|type resolver"),
    ],
)
def test_documents_outside_the_subset_keep_the_executor(document: str, reason: str) -> None:
    with pytest.raises(Unsupported, match=reason):
        compile_plan(_executor(document, None, OTHER))


def test_documents_inside_a_foreign_schema_compile() -> None:
    executor = _executor("subscription { things { plain __typename } }", None, OTHER)
    source = Thing(plain="p")
    assert compile_plan(executor).render(source) == _executed(executor, source)


def test_a_union_member_outside_the_subset_goes_through_the_executor() -> None:
    """A member's plan is compiled on its first value; one with a resolver field stays the executor's."""
    document = "subscription { either { __typename ... on Thing { computed plain } ... on Plain { x } } }"
    executor = _executor(document, None, OTHER)
    plan = compile_plan(executor)
    assert (
        plan.render(Plain(x=1)) == _executed(executor, Plain(x=1)) == '{"data":{"either":{"__typename":"Plain","x":1}}}'
    )
    with pytest.raises(Unsure):
        plan.render(Thing(plain="p"))
    with pytest.raises(Unsure):  # and again: the member's verdict is kept
        plan.render(Thing(plain="p"))
    renderer = _renderer(document, None, "op-4", OTHER)
    delivery = Delivery(EVENTS[0], raw="")
    delivery.store("graphql", Thing(plain="p"))
    assert renderer.frame_now(delivery) == (
        '{"id":"op-4","type":"next","payload":{"data":{"either":{"__typename":"Thing","computed":"computed","plain":"p"}}}}'
    )


def test_the_renderer_of_a_document_outside_the_subset_uses_the_executor() -> None:
    renderer = _renderer("subscription { things { computed plain } }", None, "op-3", OTHER)
    assert renderer.plan is None
    delivery = Delivery(EVENTS[0], raw="")
    delivery.store("graphql", Thing(plain="p"))  # the converted object, as `encoded` would have made it
    assert renderer.frame_now(delivery) == (
        '{"id":"op-3","type":"next","payload":{"data":{"things":{"computed":"computed","plain":"p"}}}}'
    )


# -- helpers ---------------------------------------------------------------------------------------------------


def _convert(event: events.Event, cursor: str | None) -> Any:
    return _source(event, cursor)


def _renderer(document: str, variables: dict[str, Any] | None, op_id: str, schema: Any = SCHEMA) -> Any:
    """A SharedRenderer as chatEvents makes one, from the resolve info's validated operation and fragments."""
    parsed: DocumentNode = parse(document)
    operation = next(d for d in parsed.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {d.name.value: d for d in parsed.definitions if isinstance(d, FragmentDefinitionNode)}
    info = SimpleNamespace(_raw_info=SimpleNamespace(schema=schema, operation=operation, fragments=fragments))
    lane = fanout.Lane(op_id, document, variables, None)
    return fanout.SharedRenderer(lane, info, _convert)
