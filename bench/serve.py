"""What the Python comparison servers share: their health route and how they are run (the product's uvicorn
options: per-message deflate off, its accept queue; no access log)."""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from server.config import LISTEN_BACKLOG


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def run(app: Any, description: str) -> None:
    """`--host`/`--port` from the command line, then serve `app` until stopped."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        ws_per_message_deflate=False,
        backlog=LISTEN_BACKLOG,
        access_log=False,
        log_level="warning",
    )
