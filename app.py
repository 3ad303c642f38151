"""The composition root: `create_app(settings)` builds the Starlette app; `uvicorn app:app` serves it all."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from legacy_ws import legacy_endpoint
from resolvers import graphql_app
from server import logging_setup
from server.config import ConfigError, Settings
from server.demo import demo_users
from server.http_guard import RequestBodyLimit
from server.logging_setup import fields
from server.websocket_guard import WebSocketGuard
from services.auth import token_from
from services.runtime import Runtime
from websocket_manager import websocket_manager

log = logging.getLogger("tailtrail")

# A readiness probe answers within this, database or not.
READINESS_TIMEOUT = 2.0
# The demo web client (plain HTML and JS, served as files).
WEB = Path(__file__).parent / "web"


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()
    logging_setup.install(settings.log_format, settings.log_level)
    rt = Runtime(settings, manage_gc=True)
    graphql = graphql_app(rt)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rt.start()
        websocket_manager.bind(rt)
        metrics_access = "token" if settings.metrics_token else ("open" if settings.dev_mode else "off")
        log.info(
            "exposure",
            extra=fields(
                introspection=settings.introspection,
                suggestions=settings.suggestions,
                graphiql=settings.graphiql_enabled,
                metrics=metrics_access,
            ),
        )
        try:
            yield
        finally:
            websocket_manager.bind(None)
            await rt.stop()

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> JSONResponse:
        """200 when both the database and the event bus are reachable, 503 otherwise (docs/operations.md)."""
        try:
            await asyncio.wait_for(rt.db.ping(), READINESS_TIMEOUT)
            database = True
        except Exception:
            log.warning("readiness: database unreachable", exc_info=True)
            database = False
        broker = rt.ready
        ready = database and broker
        return JSONResponse({"ready": ready, "database": database, "broker": broker}, status_code=200 if ready else 503)

    async def metrics(request: Request) -> PlainTextResponse:
        """Open in development mode; in production only with `Authorization: Bearer <METRICS_TOKEN>`, and off
        (404) while no METRICS_TOKEN is set: the counters describe the service's traffic to anyone."""
        if settings.metrics_token is not None:
            given = token_from(authorization=request.headers.get("authorization")) or ""
            if not hmac.compare_digest(given.encode(), settings.metrics_token.encode()):
                return PlainTextResponse(
                    "metrics need Authorization: Bearer <METRICS_TOKEN>\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        elif not settings.dev_mode:
            return PlainTextResponse("metrics are off: set METRICS_TOKEN to serve them\n", status_code=404)
        return PlainTextResponse(rt.metrics(), media_type="text/plain; version=0.0.4")

    async def index(request: Request) -> FileResponse:
        return FileResponse(WEB / "index.html")

    async def demo_tokens(request: Request) -> JSONResponse:
        """The demo users and their tokens, for the web client's picker. Development mode only: its signing key
        is public anyway, so this reveals nothing a visitor could not make; with SECRET_KEY set it is a 404."""
        if not settings.dev_mode:
            return JSONResponse({"error": "demo users are offered in development mode only"}, status_code=404)
        return JSONResponse({"users": await demo_users(rt)})

    app = Starlette(
        middleware=[
            # Browser pages on the ALLOWED_ORIGINS may call the API over HTTP too (WebSockets check the same list
            # themselves: CORS does not apply to them). Tokens travel in headers, never cookies: no credentials.
            Middleware(
                CORSMiddleware,
                allow_origins=settings.allowed_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Accept"],
                max_age=600,
            ),
            Middleware(RequestBodyLimit, max_bytes=settings.max_request_bytes),
            Middleware(WebSocketGuard, settings=settings),
        ],
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            WebSocketRoute("/websocket/ws/{user_id}", legacy_endpoint),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/", index),
            Route("/demo/users", demo_tokens),
            Mount("/web", StaticFiles(directory=WEB), name="web"),
        ],
        lifespan=lifespan,
    )
    app.state.runtime = rt
    return app


try:
    app = create_app()
except ConfigError as error:  # a setting the server cannot run with: say which, without a traceback
    sys.exit(f"Error: {error}")
