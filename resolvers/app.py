"""The Strawberry schema and the ASGI GraphQL app (HTTP, both WebSocket subprotocols, GraphiQL)."""

import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import strawberry
from cross_web import AsyncHTTPRequestAdapter
from graphql import GraphQLError, NoSchemaIntrospectionCustomRule, ValidationRule
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import AddValidationRules, MaxTokensLimiter
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.unset import UnsetType

from realtime import close_codes
from realtime.hub import new_connection_id
from resolvers import fanout, http
from resolvers.context import Context
from resolvers.documents import SharedDocuments
from resolvers.errors import CodedErrors
from resolvers.limits import document_limits
from resolvers.mutation import Mutation
from resolvers.query import Query
from resolvers.sockets import CONNECTION_INIT_TIMEOUT, SCOPE_SOCKET, GraphQLSocket, LegacyWSHandler, socket_of
from resolvers.subscription import Subscription
from server.config import Settings
from server.logging_setup import bind_connection, fields, peer
from server.sends import direct_send
from services.auth import TokenRules, authenticate, token_from, token_from_connection_params
from services.errors import RateLimited, Unauthenticated
from services.runtime import Runtime

log = logging.getLogger(__name__)

# Strawberry's own init timeout (graphql-transport-ws only): required by its constructor, but never started
# (fanout.TransportWSHandler): resolvers.sockets times out every socket first, on both subprotocols.
STRAWBERRY_INIT_TIMEOUT = CONNECTION_INIT_TIMEOUT + timedelta(seconds=5)
# GraphiQL's page; it loads its scripts from the same directory, served at /web/graphiql/ (app.py).
GRAPHIQL_PAGE = Path(__file__).resolve().parent.parent / "web" / "graphiql" / "index.html"


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Client mistakes are not server errors: log only the unexpected ones (CodedErrors logs those)."""


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """The schema, with the document limits and the exposure of `settings` (defaults and reasons in config.py):
    introspection refused and "Did you mean …?" suggestions left out where they are off."""
    limits = settings or Settings()
    # One tuple of classes, not one per operation (classes are reference cycles; the validation cache keys on it).
    rules: tuple[type[ValidationRule], ...] = (
        document_limits(max_depth=limits.graphql_max_depth, max_aliases=limits.graphql_max_aliases),
    )
    if not limits.introspection:
        rules += (NoSchemaIntrospectionCustomRule,)
    hide_suggestions = not limits.suggestions
    return Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            lambda: CodedErrors(hide_suggestions=hide_suggestions),
            lambda: AddValidationRules(list(rules)),
            lambda: MaxTokensLimiter(max_token_count=limits.graphql_max_tokens),
            lambda: SharedDocuments(hide_suggestions=hide_suggestions),
        ],
    )


def schema_sdl() -> str:
    """The schema in SDL, as committed in schema.graphql (`python cli.py export-schema` rewrites that file)."""
    return build_schema().as_str() + "\n"


class GraphQLApp(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = fanout.TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    def __init__(self, rt: Runtime, schema: strawberry.Schema) -> None:
        super().__init__(
            schema,
            graphql_ide="graphiql" if rt.settings.graphiql_enabled else None,
            # The legacy graphql-ws protocol keeps idle connections alive through proxies with "ka" frames.
            keep_alive=True,
            keep_alive_interval=15,
            # WebSockets first (the order a client offering both gets), then the two HTTP streams (resolvers.http).
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                GRAPHQL_WS_PROTOCOL,
                MULTIPART_SUBSCRIPTION_PROTOCOL,
                GRAPHQL_SSE_PROTOCOL,
            ),
            connection_init_wait_timeout=STRAWBERRY_INIT_TIMEOUT,
            max_subscriptions_per_connection=rt.settings.max_subscriptions_per_connection,
            allowed_origins=rt.settings.allowed_origins,
        )
        self.rt = rt
        http.quiet_cut_offs()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            return await self._serve_http(scope, receive, send)
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)
        # The socket's id, for every record logged while serving it (logging_setup) and for its streams' names.
        bind_connection(new_connection_id("graphql"), scope)
        client = peer(scope)
        address = scope["client"][0] if scope.get("client") else None
        if not self.rt.admission.admit_pending(address):
            # Refused at the handshake (the client sees HTTP 403): this address holds as many sockets waiting for
            # their connection_init as it may.
            log.info("graphql socket refused: too many sockets awaiting connection_init", extra=fields(client=client))
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": close_codes.POLICY})
            return
        socket = scope[SCOPE_SOCKET] = GraphQLSocket(self.rt.admission, address, send, direct_send(scope, send))
        log.info("graphql socket opened", extra=fields(client=client, subprotocols=scope.get("subprotocols")))
        try:
            await super().__call__(scope, receive, socket.send)
        finally:
            socket.end()
            # The scope is the server protocol's, which the socket's sends lead back to: left there, a cycle.
            scope.pop(SCOPE_SOCKET, None)
            log.info("graphql socket closed", extra=fields(client=client))

    async def _serve_http(self, scope: Scope, receive: Receive, send: Send) -> None:
        stream = scope[http.SCOPE_HTTP_STREAM] = http.HttpStream(receive)
        await super().__call__(scope, stream.receive, send)
        stream.ended()

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """The response's headers and status before it is made: its media type follows `Accept` (resolvers.http)."""
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = http.response_media_type(request.headers.get("accept"))
        return sub_response

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        if http.is_request_error(result):
            return http.without_data(response)
        return response

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        media_type = sub_response.media_type or http.JSON
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        request_error = isinstance(response_data, dict) and "data" not in response_data
        if request_error and media_type == http.GRAPHQL_RESPONSE_JSON and not sub_response.status_code:
            response.status_code = 400
        return response

    async def execute_operation(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: Context,
        root_value: Any,
        sub_response: Response,
    ) -> Any:
        """A subscription sent without asking for a stream gets BAD_REQUEST (resolvers.http), not an execution."""
        if (
            isinstance(request_data, GraphQLRequestData)
            and request_data.protocol == "http"
            and http.is_subscription(
                request_data.query, request_data.operation_name, max_tokens=self.rt.settings.graphql_max_tokens
            )
        ):
            return http.stream_needed()
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    async def render_graphql_ide(self, request: Request) -> Response:
        """GraphiQL from the server's own files (web/graphiql/), not Strawberry's page on a CDN: works offline."""
        return FileResponse(GRAPHIQL_PAGE, media_type="text/html")

    async def parse_http_body(
        self, request_adapter: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """Refuse a body that is not a GraphQL request with 400, before Strawberry trips over it."""
        try:
            return await super().parse_http_body(request_adapter)
        except (AttributeError, TypeError, RecursionError):  # a JSON string, number or list; too deep to parse
            raise HTTPException(400, "expected a JSON object") from None

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket | None = None) -> Context:
        return Context(rt=self.rt, request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """Authenticate the socket once, for both subprotocols: connection_init payload, ?token= or header."""
        token = token_from_connection_params(context.connection_params) or token_from(
            authorization=context.request.headers.get("authorization"),
            query_token=context.request.query_params.get("token"),
        )
        socket = socket_of(context.request.scope)
        if socket is not None:
            socket.initialised()
        try:
            actor = authenticate(token, TokenRules.of(self.rt.settings))
            if actor.user_id is not None and socket is not None and not socket.admit(actor.user_id):
                raise RateLimited(f"at most {self.rt.admission.per_user} connections per user")
        except (Unauthenticated, RateLimited) as exc:
            log.info("graphql connection refused: %s", exc.message)
            raise ConnectionRejectionError({"message": exc.message, "code": exc.code}) from None
        context.set_actor(actor)
        if socket is not None:
            socket.watch_expiry(actor.expires_at, leeway=self.rt.settings.token_leeway)
        return await super().on_ws_connect(context)


def graphql_app(rt: Runtime) -> GraphQLApp:
    return GraphQLApp(rt, build_schema(rt.settings))
