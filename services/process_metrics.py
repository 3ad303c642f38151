"""This process's metrics page (`/metrics`, the Prometheus text format): the hub's, the bus's, the store's and the
runtime's own running totals, read when the page is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

from realtime import metrics

if TYPE_CHECKING:
    from services.runtime import Runtime


def render(rt: Runtime) -> str:
    hub, bus = rt.hub, rt.bus
    kinds = {"legacy": 0, "graphql": 0} | hub.open_by_kind
    return metrics.render(
        [
            (
                "tailtrail_connections",
                "gauge",
                "Open client streams by protocol.",
                [(f'{{protocol="{kind}"}}', count) for kind, count in sorted(kinds.items())],
            ),
            (
                "tailtrail_events_published_total",
                "counter",
                "Events this process published.",
                [("", rt.relay.events_published)],
            ),
            (
                "tailtrail_events_received_total",
                "counter",
                "Events this process received from the event bus (on Redis its own included, dropped as duplicates "
                "without being decoded): the share of the cluster's published events this process had to read.",
                [("", rt.relay.events_received)],
            ),
            (
                "tailtrail_events_skipped_total",
                "counter",
                "Durable events received for no connection of this process, taken in order without being decoded.",
                [("", rt.sequencer.skipped)],
            ),
            (
                "tailtrail_events_delivered_total",
                "counter",
                "Events handed to a local connection.",
                [("", hub.delivered)],
            ),
            (
                "tailtrail_events_dropped_total",
                "counter",
                "Events not handed to a connection: typing dropped from a full outbox, or a closing connection.",
                [("", hub.dropped)],
            ),
            (
                "tailtrail_outbox_overflows_total",
                "counter",
                "Slow consumers closed with 1013.",
                [("", hub.overflows)],
            ),
            (
                "tailtrail_sockets_awaiting_init",
                "gauge",
                "GraphQL WebSockets open but not yet past connection_init.",
                [("", rt.admission.pending)],
            ),
            (
                "tailtrail_sockets_refused_total",
                "counter",
                "WebSockets refused: over MAX_CONNECTIONS_PER_USER, or over MAX_PENDING_SOCKETS_PER_ADDRESS.",
                [(f'{{reason="{reason}"}}', count) for reason, count in sorted(rt.admission.refused.items())],
            ),
            (
                "tailtrail_store_transactions_total",
                "counter",
                "Transactions the writer committed.",
                [("", rt.store.transactions)],
            ),
            (
                "tailtrail_store_units_total",
                "counter",
                "Units of work (a send, a read marker, a membership change, …) those transactions held.",
                [("", rt.store.units)],
            ),
            ("tailtrail_broker_reconnects_total", "counter", "Event bus reconnections.", [("", bus.reconnects)]),
            (
                "tailtrail_broker_publish_failures_total",
                "counter",
                "Publishes the broker did not take (the events reach other processes from the log).",
                [("", bus.publish_failures)],
            ),
        ],
        send_latency=hub.send_latency,
    )
