"""Every WebSocket close code this server sends, on both protocols (docs/protocols.md lists them for clients)."""

NORMAL = 1000
PROTOCOL_ERROR = 1002  # a frame the WebSocket protocol forbids (uvicorn_protocols)
INVALID_TEXT = 1007  # a text frame that is not UTF-8
POLICY = 1008  # refused: token, origin, too many connections, too many refused commands
TOO_BIG = 1009  # a frame over MAX_FRAME_BYTES
TRY_AGAIN_LATER = 1013  # too slow to keep up: resume from your cursor
BAD_MESSAGE = 4400  # graphql-transport-ws: an invalid message
FORBIDDEN = 4403  # a GraphQL socket refused at connection_init: bad token, too many connections (both subprotocols)
TOKEN_EXPIRED = 4401  # the socket's token expired (graphql-transport-ws's "Unauthorized" code, on both protocols)
INIT_TIMEOUT = 4408  # graphql-transport-ws: no connection_init in time (both GraphQL subprotocols)
