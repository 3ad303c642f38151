"""The legacy JSON protocol at /websocket/ws/{user_id} (docs/protocols.md): a translation layer onto the services."""

from legacy_ws.endpoint import legacy_endpoint

__all__ = ["legacy_endpoint"]
