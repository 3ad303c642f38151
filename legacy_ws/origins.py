"""Which browser pages may open a legacy WebSocket: the same rule as the GraphQL endpoint's (Strawberry's).

Browsers do not apply CORS to WebSocket handshakes, and send the user's cookies along: checking `Origin`
is the defence against cross-site WebSocket hijacking. No `Origin` (not a browser) and same-origin pages are
always allowed; other origins only when listed in ALLOWED_ORIGINS (or "*").
"""

from __future__ import annotations

from collections.abc import Mapping

from strawberry.http.websocket_origin import is_same_origin, normalize_origin


def origin_allowed(headers: Mapping[str, str], allowed: tuple[str, ...]) -> bool:
    origin = headers.get("origin")
    if origin is None:
        return True
    if headers.get("sec-fetch-site") == "same-origin" or is_same_origin(origin, headers.get("host")):
        return True
    if "*" in allowed:
        return True
    normalized = normalize_origin(origin)
    return normalized is not None and normalized in {normalize_origin(a) for a in allowed}
