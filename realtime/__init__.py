"""The real-time core: the event registry, positions, the bus, the sequencer, the hub and its outboxes, presence.

It knows no protocol and no database (docs/architecture.md)."""
