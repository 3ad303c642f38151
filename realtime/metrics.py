"""Process metrics in the Prometheus text format (`/metrics`), read straight off the running parts.

Counters are the hub's, the bus's and the runtime's own running totals; nothing is sampled. The one histogram,
send → deliver, is observed once per message per process: from the message's commit timestamp to the moment
the hub hands it to this process's sockets.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

# Seconds: from "well under a millisecond" (same process) to "a broker outage" (catch-up from the log).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Histogram:
    def __init__(self, buckets: Iterable[float] = LATENCY_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            label = "+Inf" if bound == float("inf") else repr(bound)
            out.append(f'{name}_bucket{{le="{label}"}} {running}')
        out += [f"{name}_sum {self.total}", f"{name}_count {running}"]
        return out


Family = tuple[str, str, str, list[tuple[str, float]]]  # name, type, help, [(labels, value)]


def render(families: list[Family], *, send_latency: Histogram) -> str:
    lines: list[str] = []
    for name, kind, text, samples in families:
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{labels} {value}" for labels, value in samples]
    name = "tailtrail_send_to_deliver_seconds"
    lines += [
        f"# HELP {name} Seconds from a message's commit to its hand-over to this process's sockets.",
        f"# TYPE {name} histogram",
        *send_latency.lines(name),
    ]
    return "\n".join(lines) + "\n"
