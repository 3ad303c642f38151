"""The report of a run: report.json (every figure), report.md (tables ready for the README, the acceptance
checks, the machine and the command) and latency.png (latency against offered load on the big chat)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

LABELS = {
    "baseline": "baseline",
    "socketio": "socket.io",
    "strawberry": "strawberry",
    "graphqlws": "graphql-ws (node)",
    "legacy": "legacy",
    "graphql": "graphql",
}
COLORS = {
    "baseline": "tab:gray",
    "socketio": "tab:orange",
    "strawberry": "tab:red",
    "graphqlws": "tab:purple",
    "legacy": "tab:blue",
    "graphql": "tab:green",
}
PEERS = ("socketio", "strawberry", "graphqlws")
# Why socket.io costs what it costs (bench/socketio_server.py's docstring has the measurements).
SOCKETIO_FINDING = [
    "**About socket.io's figures.** An earlier run measured python-socketio at 106 µs per delivery with a 1.6 s p99 "
    "at 5 msg/s to 1,000 members, slow enough to suspect its configuration, so the configuration was checked "
    "against python-socketio's and python-engineio's documentation: `async_mode=\"asgi\"` is the mode for uvicorn; "
    "the clients open the WebSocket transport directly (`EIO=4&transport=websocket`, no polling upgrade) and the "
    'server now serves that transport only (`transports=["websocket"]`); per-message deflate is off (uvicorn) and '
    "engine.io's HTTP compression concerns polling only; an emit to a room encodes its packet once, so a faster JSON "
    "module would change one encoding per message, not per delivery; `always_connect` and the ping interval and "
    "timeout (25 s / 20 s: 40 pings a second over 1,000 sockets) are not on the delivery path. None is the cause. "
    "Profiles of the server (py-spy) show where the time goes: an emit to a room starts one asyncio task per "
    "recipient and waits for them all; each socket's engine.io writer wakes through `asyncio.wait_for(queue.get())`, "
    "one more task per packet; and thousands of tasks per message drive CPython's cyclic garbage collector, whose "
    "full collections walk every connection's objects (a third of the server's CPU in `gc_collect_main`). The idle "
    "workload (c), which runs first on every server, leaves it slower still: closing 10,000 connections kept its core "
    "busy for about 80 s (each disconnect scans every room), and at 5 msg/s to 1,000 members it then spent ~145 µs "
    "per delivery with a p50 near 2 s, against ~116 µs and p50 76 ms / p99 270 ms on a fresh server (short runs on "
    "this machine while other work loaded it: indicative only). Its figures are python-socketio's own cost; it is "
    "compared only where it kept up.",
]
PROTOCOLS = ("legacy", "graphql")
CLIENT_SATURATED = 0.85  # share of the client's core above which the client, not the server, may be the limit
SERVER_SATURATED = 0.95  # share of the server's core above which a window measured a server at its limit
DASH = "—"

Server = dict[str, Any]


# -- figures ----------------------------------------------------------------------------------------


def headline(server: Server | None, plan: dict[str, Any]) -> dict[str, Any] | None:
    """The big chat's step at the headline rate, if the server got that far."""
    if not server or "fanout" not in server:
        return None
    return next((s for s in server["fanout"]["steps"] if s["rate"] == plan["headline_rate"]), None)


def windows(server: Server) -> list[tuple[str, dict[str, Any]]]:
    """Every measured window of a server, named."""
    found = [(f"1 chat at {s['rate']:g} msg/s", s) for s in server.get("fanout", {}).get("steps", [])]
    if "small" in server:
        found.append(("small chats", server["small"]))
    if "mid" in server:
        found.append(("hundred-member chats", server["mid"]))
    if "write" in server:
        found += [
            ("write, closed loop", server["write"]["closed_loop"]),
            ("write, open loop", server["write"]["open_loop"]),
        ]
    return found


def checked_windows(server: Server, plan: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The windows whose every message must arrive: all but ramp steps above the headline rate, which exist
    to find where a server falls behind."""
    return [
        (n, w)
        for n, w in windows(server)
        if not ("rate" in w and n.startswith("1 chat") and w["rate"] > plan["headline_rate"])
    ]


def delivery_problems(server: Server, plan: dict[str, Any]) -> list[str]:
    problems = []
    for name, w in checked_windows(server, plan):
        for key in ("missing", "duplicates", "refused", "timed_out", "closed_early"):
            if w.get(key):
                problems.append(f"{name}: {w[key]} {key.replace('_', ' ')}")
    if server.get("idle", {}).get("closed_early"):
        problems.append(f"idle: {server['idle']['closed_early']} closed early")
    return problems


def client_peak(server: Server) -> float | None:
    loads = [w["client_cpu"] for _, w in windows(server)]
    return max(loads) if loads else None


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def _check(name: str, target: str, value: float | None, passes: Callable[[float], bool], shape: str) -> dict[str, Any]:
    return {
        "check": name,
        "target": target,
        "value": value,
        "measured": DASH if value is None else shape.format(value),
        "pass": None if value is None else bool(passes(value)),
    }


def kept_up(window: dict[str, Any] | None) -> bool:
    """A window whose server kept up: it did not fall behind and its core was not at its limit."""
    if not window:
        return False
    return not window["fell_behind"] and bool(window["server_cpu"] < SERVER_SATURATED)


def step_at(server: Server | None, rate: float) -> dict[str, Any] | None:
    if not server or "fanout" not in server:
        return None
    return next((s for s in server["fanout"]["steps"] if s["rate"] == rate), None)


def fanout_comparison_rate(peer: Server | None, plan: dict[str, Any]) -> float | None:
    """The big chat's rate at which a peer is compared: the headline rate, or the highest rate below it that
    the peer kept up with; None if it kept up with none."""
    rates = [r for r in plan["ramp"] if r <= plan["headline_rate"] and kept_up(step_at(peer, r))]
    return max(rates, default=None)


def per_message(window: dict[str, Any]) -> float:
    """Deliveries per message: the chat's connections (each message also reaches its sender)."""
    return float(window["expected"]) / float(window["messages"])


def excess_per_message(window: dict[str, Any] | None, floor: dict[str, Any] | None) -> tuple[float, float] | None:
    """(deliveries per message, server CPU per message beyond the floor's per-delivery cost in µs) of a window."""
    if not window or not floor or window.get("cpu_us_per_delivery") is None:
        return None
    if floor.get("cpu_us_per_delivery") is None or not window.get("messages"):
        return None
    n = per_message(window)
    return n, (float(window["cpu_us_per_delivery"]) - float(floor["cpu_us_per_delivery"])) * n


def fixed_cost(points: list[tuple[float, float]]) -> tuple[float, float] | None:
    """A message's excess cost over the floor, split by a least-squares line through the windows of different
    chat sizes: excess = fixed + per_delivery * deliveries. Returns (fixed µs per message, µs per delivery), or
    None below two sizes. One window alone cannot tell what a message costs once from what each delivery adds:
    (excess / deliveries) * members of a 1,000-member chat counts its per-delivery cost a thousand times."""
    if len({n for n, _ in points}) < 2:
        return None
    mean_n = sum(n for n, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((n - mean_n) * (y - mean_y) for n, y in points) / sum((n - mean_n) ** 2 for n, _ in points)
    return mean_y - slope * mean_n, slope


def fixed_cost_points(servers: dict[str, Server], kind: str, plan: dict[str, Any]) -> list[tuple[float, float]]:
    """The (deliveries per message, excess µs) of a protocol in (a) at the headline rate, (b) and (b2)."""
    floor = servers.get("baseline")
    pairs = [(headline(servers.get(kind), plan), headline(floor, plan))]
    pairs += [((servers.get(kind) or {}).get(w), (floor or {}).get(w)) for w in ("small", "mid")]
    return [p for p in (excess_per_message(w, f) for w, f in pairs) if p is not None]


def peer_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each protocol's CPU per delivery against every peer, in (a) and (b), wherever the peer kept up."""
    plan, servers = data["plan"], data["servers"]
    rows = []
    for kind in PROTOCOLS:
        for workload in ("(a)", "(b)"):
            compared, notes = [], []
            for peer in PEERS:
                if peer not in servers or "error" in servers[peer]:
                    notes.append(f"{LABELS[peer]}: not run")
                    continue
                if workload == "(a)":
                    rate = fanout_comparison_rate(servers[peer], plan)
                    if rate is None:
                        notes.append(f"{LABELS[peer]} kept up with no rate: not compared")
                        continue
                    ours, theirs, where = (
                        step_at(servers.get(kind), rate),
                        step_at(servers[peer], rate),
                        f"{rate:g} msg/s",
                    )
                else:
                    ours, theirs, where = servers.get(kind, {}).get("small"), servers[peer].get("small"), ""
                    if not kept_up(theirs):
                        notes.append(f"{LABELS[peer]} did not keep up: not compared")
                        continue
                value = ratio((ours or {}).get("cpu_us_per_delivery"), (theirs or {}).get("cpu_us_per_delivery"))
                if value is not None:
                    compared.append(value)
                    notes.append(f"{value:.2f} vs {LABELS[peer]}" + (f" at {where}" if where else ""))
            rows.append(
                {
                    "check": f"{kind} ÷ each peer, CPU per delivery, {workload}",
                    "target": "< 1 against every peer that kept up",
                    "value": max(compared, default=None),
                    "measured": "; ".join(notes) or DASH,
                    "pass": None if not compared else all(v < 1 for v in compared),
                }
            )
    return rows


def storm_row(data: dict[str, Any]) -> dict[str, Any]:
    servers = data["servers"]
    storm = servers.get("graphql", {}).get("storm")
    floor = servers.get("baseline", {}).get("socket_storm")
    clients = 2 * data["plan"]["storm_clients"]
    row: dict[str, Any] = {
        "check": f"reconnect storm of {clients:,} clients ÷ the floor's time to open {clients:,} sockets at once; "
        "every missed event once",
        "target": "≤ 2, all once",
        "value": None,
        "measured": DASH,
        "pass": None,
    }
    if storm and floor:
        value = ratio(storm["streaming_seconds"], floor["open_seconds"])
        once = storm["caught_up"] and not storm["missing"] and not storm["duplicates"]
        row["value"] = value if storm["caught_up"] else None
        time = _num(row["value"], "{:.2f}") if storm["caught_up"] else "not all caught up"
        row["measured"] = f"{time}; {storm['missing']} missing, {storm['duplicates']} duplicates"
        row["pass"] = value is not None and value <= 2 and once
    return row


def acceptance(data: dict[str, Any]) -> list[dict[str, Any]]:
    plan, servers = data["plan"], data["servers"]
    heads = {k: headline(servers.get(k), plan) or {} for k in LABELS}
    cpu = {k: h.get("cpu_us_per_delivery") for k, h in heads.items()}
    p99 = {k: (h.get("latency_ms") or {}).get("p99") for k, h in heads.items()}
    small = {k: servers.get(k, {}).get("small") or {} for k in LABELS}
    idle = {k: servers.get(k, {}).get("idle") or {} for k in LABELS}
    open_loop = servers.get("legacy", {}).get("write", {}).get("open_loop", {})
    at = f"1 chat, {plan['headline_rate']:g} msg/s"
    rows = [
        _check(
            f"legacy ÷ baseline, CPU per delivery ({at})",
            "≤ 1.5",
            ratio(cpu["legacy"], cpu["baseline"]),
            lambda v: v <= 1.5,
            "{:.2f}",
        ),
        _check(
            f"graphql ÷ baseline, CPU per delivery ({at})",
            "≤ 3",
            ratio(cpu["graphql"], cpu["baseline"]),
            lambda v: v <= 3,
            "{:.2f}",
        ),
        _check(
            "legacy ÷ baseline, CPU per delivery, (b) small chats",
            "≤ 1.5",
            ratio(small["legacy"].get("cpu_us_per_delivery"), small["baseline"].get("cpu_us_per_delivery")),
            lambda v: v <= 1.5,
            "{:.2f}",
        ),
        _check(
            "graphql ÷ baseline, CPU per delivery, (b) small chats",
            "≤ 2",
            ratio(small["graphql"].get("cpu_us_per_delivery"), small["baseline"].get("cpu_us_per_delivery")),
            lambda v: v <= 2,
            "{:.2f}",
        ),
    ]
    for kind in PROTOCOLS:
        points = fixed_cost_points(servers, kind, plan)
        fit = fixed_cost(points)
        sizes = " and ".join(f"{n:,.0f}" for n, _ in points)
        rows.append(
            _check(
                f"{kind}: fixed server CPU per message beyond the floor (fit of the excess per message over chats "
                f"of {sizes} deliveries: (a), (b), (b2))",
                "≤ 300 µs",
                None if fit is None else fit[0],
                lambda v: v <= 300,
                "{:.0f} µs" + ("" if fit is None else f" (+ {fit[1]:.1f} µs per delivery)"),
            )
        )
    rows += [
        _check(
            "graphql ÷ baseline, server CPU per opening, (c)",
            "≤ 2",
            ratio(
                idle["graphql"].get("connect_cpu_ms_per_connection"),
                idle["baseline"].get("connect_cpu_ms_per_connection"),
            ),
            lambda v: v <= 2,
            "{:.2f}",
        ),
        _check(
            "graphql: RSS per idle chatEvents subscription, (c)",
            "≤ 40 KiB",
            None if "rss_per_connection" not in idle["graphql"] else idle["graphql"]["rss_per_connection"] / 1024,
            lambda v: v <= 40,
            "{:.1f} KiB",
        ),
        storm_row(data),
        *peer_rows(data),
        _check(f"legacy p99 latency ({at})", "≤ 50 ms", p99["legacy"], lambda v: v <= 50, "{:.1f} ms"),
        _check(f"graphql p99 latency ({at})", "≤ 100 ms", p99["graphql"], lambda v: v <= 100, "{:.1f} ms"),
        _check(
            f"ack p99 at {plan['write_open_rate']:g} sends/s (open loop)",
            "≤ 25 ms",
            (open_loop.get("latency_ms") or {}).get("p99"),
            lambda v: v <= 25,
            "{:.1f} ms",
        ),
    ]
    problems = [f"{LABELS[k]}: {p}" for k, s in servers.items() for p in delivery_problems(s, plan)]
    rows.append(
        {
            "check": "every message delivered, once (all windows up to the headline rate)",
            "target": "all",
            "value": len(problems),
            "measured": "all" if not problems else "; ".join(problems),
            "pass": not problems,
        }
    )
    peaks = [p for s in servers.values() if (p := client_peak(s)) is not None]
    rows.append(
        _check(
            "client not saturated (peak share of its core in any window)",
            f"≤ {CLIENT_SATURATED:.0%}",
            max(peaks, default=None),
            lambda v: v <= CLIENT_SATURATED,
            "{:.0%}",
        )
    )
    return rows


# -- formatting -------------------------------------------------------------------------------------


def _num(value: float | None, shape: str) -> str:
    return DASH if value is None else shape.format(value)


def _latency(window: dict[str, Any] | None) -> str:
    if not window or not window.get("latency_ms") or window["latency_ms"].get("p50") is None:
        return DASH
    lat = window["latency_ms"]
    return f"{lat['p50']:.1f} / {lat['p99']:.1f} / {lat['p999']:.1f} ms"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def results_table(data: dict[str, Any]) -> list[str]:
    plan, servers = data["plan"], data["servers"]
    kinds = [k for k in LABELS if k in servers]
    big = f"(a) 1 chat × {plan['big_members']:,}, {plan['headline_rate']:g} msg/s"
    small = f"(b) {plan['small_chats']} chats × {plan['small_members']}, {plan['small_rate']:g} msg/s"
    mid = f"(b2) {plan['mid_chats']} chats × {plan['mid_members']}, {plan['mid_rate']:g} msg/s"
    senders = plan["write_senders"]

    def row(name: str, cell: Callable[[Server], str]) -> list[str]:
        return [name] + [DASH if "error" in servers[k] else cell(servers[k]) for k in kinds]

    def top_rate(s: Server) -> str:
        steps = s["fanout"]["steps"]
        kept = [st["rate"] for st in steps if not st["fell_behind"]]
        if not kept:
            return f"none (behind at {steps[0]['rate']:g})"
        suffix = "" if len(kept) < len(plan["ramp"]) else " (all)"
        return f"{max(kept):g} msg/s{suffix}"

    def write_cell(cell: Callable[[dict[str, Any]], str]) -> Callable[[Server], str]:
        return lambda s: cell(s["write"]) if "write" in s else ("same path" if s["server"] == "graphql" else DASH)

    def at_headline(key: str, shape: str) -> Callable[[Server], str]:
        return lambda s: _num((headline(s, plan) or {}).get(key), shape)

    idle = f"(c) {plan['idle']:,} idle connections"
    rows = [
        row(f"{big}: server CPU per delivery", at_headline("cpu_us_per_delivery", "{:.1f} µs")),
        row(f"{big}: deliveries/s", at_headline("deliveries_per_second", "{:,.0f}")),
        row(f"{big}: latency p50 / p99 / p99.9", lambda s: _latency(headline(s, plan))),
        row(f"{big}: server core busy", at_headline("server_cpu", "{:.0%}")),
        row("(a) highest ramp rate kept up with", top_rate),
        row(f"{small}: server CPU per delivery", lambda s: _num(s["small"]["cpu_us_per_delivery"], "{:.1f} µs")),
        row(f"{small}: latency p50 / p99 / p99.9", lambda s: _latency(s["small"])),
        row(f"{small}: server core busy", lambda s: f"{s['small']['server_cpu']:.0%}"),
        row(
            f"{mid}: server CPU per delivery", lambda s: _num(s.get("mid", {}).get("cpu_us_per_delivery"), "{:.1f} µs")
        ),
        row(f"{mid}: latency p50 / p99 / p99.9", lambda s: _latency(s.get("mid"))),
        row(f"{mid}: server core busy", lambda s: _num(s.get("mid", {}).get("server_cpu"), "{:.0%}")),
        row(f"{idle}: RSS per connection", lambda s: f"{s['idle']['rss_per_connection'] / 1024:.1f} KiB"),
        row(
            f"{idle}: time to open them (batches of {plan['batch']}) / server CPU per opening",
            lambda s: f"{s['idle']['connect_seconds']:.1f} s / {s['idle']['connect_cpu_ms_per_connection']:.2f} ms",
        ),
        row(
            f"(d) write path, {senders} closed-loop senders: acked sends/s",
            write_cell(lambda w: f"{w['closed_loop']['acked_per_second']:,.0f}"),
        ),
        row(
            "(d) closed loop: ack p50 / p99 / p99.9",
            write_cell(lambda w: _latency({"latency_ms": w["closed_loop"]["ack_latency_ms"]})),
        ),
        row(
            "(d) closed loop: server CPU per send",
            write_cell(lambda w: _num(w["closed_loop"]["cpu_us_per_delivery"], "{:,.0f} µs")),
        ),
        row(
            f"(d) open loop, {plan['write_open_rate']:g} sends/s: ack p50 / p99 / p99.9",
            write_cell(lambda w: _latency(w["open_loop"])),
        ),
        row("client core busy, peak over windows", lambda s: _num(client_peak(s), "{:.0%}")),
    ]
    return _table([""] + [LABELS[k] for k in kinds], rows)


def storm_failure(storm: dict[str, Any]) -> str:
    return (
        f"not all: gave up after {storm['streaming_seconds']:.0f} s ({storm['failed_reconnections']} reconnections "
        f"refused, {storm['error_frames']} error frames, {storm['closed_early']} closed by the server, "
        f"{storm['unacknowledged_sends']} sends not acknowledged)"
    )


def _retried(retries: int) -> str:
    return f" ({retries:,} retried)" if retries else ""


def storm_section(data: dict[str, Any]) -> list[str]:
    """The reconnect storm against the floor's socket storm, as a table and a sentence."""
    plan, servers = data["plan"], data["servers"]
    storm = servers.get("graphql", {}).get("storm")
    floor = servers.get("baseline", {}).get("socket_storm")
    clients = 2 * plan["storm_clients"]
    lines = [
        f"{plan['storm_clients']:,} legacy and {plan['storm_clients']:,} GraphQL clients of the product, each streaming "
        "its lobby chat and holding the cursor of the last event it received, drop at once (TCP aborted); "
        f"{plan['storm_missed']} messages go to each lobby while they are down; once the server has dealt with the "
        "drop, all reconnect at once with their cursors (legacy `&cursor=`, GraphQL `chatEvents(after:)`), and one "
        "live message goes to each lobby once every client is connected again. *All streaming* is the time from the "
        "first reconnection until every client has received every missed message and the live one. The floor opens "
        f"{clients:,} plain sockets on the baseline server at once. In both, a connection that fails to open (refused, "
        "or closed before its handshake completed) is opened again, as a real client does, after a second or two "
        "(twice at most); the retries are counted.",
        "",
    ]
    rows = []
    if storm:
        rows.append(
            [
                "product (legacy + graphql)",
                f"{storm['clients']:,}" + _retried(storm.get("retried_reconnections", 0)),
                f"{storm['reconnect_seconds']:.2f} s",
                f"{storm['streaming_seconds']:.2f} s" if storm["caught_up"] else storm_failure(storm),
                f"{storm['server_cpu_seconds']:.2f} s ({storm['cpu_ms_per_client']:.2f} ms per client)",
                f"{storm['missed_per_client']} each: {storm['missing']} missing, {storm['duplicates']} duplicates",
            ]
        )
    if floor:
        rows.append(
            [
                "baseline (plain sockets)",
                f"{floor['sockets']:,}"
                + (f" ({floor['failed']:,} failed to open)" if floor["failed"] else "")
                + _retried(floor.get("retried", 0)),
                f"{floor['open_seconds']:.2f} s",
                DASH,
                f"{floor['server_cpu_seconds']:.2f} s ({floor['cpu_ms_per_socket']:.2f} ms per socket)",
                DASH,
            ]
        )
    if not rows:
        return [*lines, "Not run."]
    header = ["", "connections", "all reconnected", "all streaming", "server CPU", "missed events"]
    return [*lines, *_table(header, rows)]


def ramp_table(data: dict[str, Any]) -> list[str]:
    rows = []
    for kind, server in data["servers"].items():
        for step in server.get("fanout", {}).get("steps", []):
            rows.append(
                [
                    LABELS[kind],
                    f"{step['rate']:g}",
                    f"{step['deliveries_per_second']:,.0f}",
                    _num(step["cpu_us_per_delivery"], "{:.1f} µs"),
                    f"{step['server_cpu']:.0%}",
                    _latency(step),
                    f"{step['delivered']:,} / {step['expected']:,}",
                    f"{step['client_cpu']:.0%}",
                    "fell behind" if step["fell_behind"] else "",
                ]
            )
    header = ["server", "msg/s", "deliveries/s", "CPU/delivery", "server busy", "p50 / p99 / p99.9"]
    return _table([*header, "delivered", "client busy", ""], rows)


def acceptance_table(rows: list[dict[str, Any]]) -> list[str]:
    verdict = {True: "pass", False: "**fail**", None: "not measured"}
    return _table(
        ["check", "target", "measured", "result"],
        [[r["check"], r["target"], r["measured"], verdict[r["pass"]]] for r in rows],
    )


def notes(data: dict[str, Any]) -> list[str]:
    lines = []
    for kind, server in data["servers"].items():
        name = LABELS[kind]
        if "error" in server:
            lines.append(f"- **{name} failed**: {server['error']}")
            continue
        peak = client_peak(server)
        if peak is not None and peak > CLIENT_SATURATED:
            busy = [f"{n} ({w['client_cpu']:.0%})" for n, w in windows(server) if w["client_cpu"] > CLIENT_SATURATED]
            lines.append(
                f"- **{name}: client saturated** in {', '.join(busy)}: those figures may understate the server."
            )
        small = server.get("small")
        if small and not kept_up(small):
            lines.append(
                f"- {name} did not keep up with (b) ({small['fell_behind_because'] or 'core at its limit'}, server core "
                f"{small['server_cpu']:.0%} busy): it is not compared there."
            )
        steps = server["fanout"]["steps"]
        behind = [s for s in steps if s["fell_behind"]]
        if behind:
            s = behind[0]
            stopped = "its ramp stopped there" if s is steps[-1] else "the ramp went on up to the headline rate"
            lines.append(
                f"- {name} fell behind at {s['rate']:g} msg/s ({s['fell_behind_because']}, server core "
                f"{s['server_cpu']:.0%} busy); {stopped}."
            )
        head = headline(server, data["plan"])
        if head is not None and (head["fell_behind"] or head["server_cpu"] > SERVER_SATURATED):
            lines.append(
                f"- {name} was at its limit in the headline window (core {head['server_cpu']:.0%} busy"
                f"{', fell behind' if head['fell_behind'] else ''}): its CPU per delivery is that of a saturated "
                "server, and ratios against it compare with a server at its limit."
            )
        if server.get("unexpected_frames"):
            lines.append(
                f"- {name}: {server['unexpected_frames']} unexpected frames, e.g. `{server['unexpected_sample'][:160]}`"
            )
    return lines or ["- nothing to flag."]


def markdown(data: dict[str, Any]) -> str:
    plan, m = data["plan"], data["machine"]
    out = [
        f"# Benchmark ({plan['name']} run)",
        "",
        f"- Machine: {m['cpu_model']}, {m['cores']} cores; server pinned to CPU {m['server_cpu']}, client to CPU {m['client_cpu']}",
        f"- {m['kernel']}, Python {m['python']}; " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        "- Node " + ", ".join(f"{k} {v}".removeprefix("node ") for k, v in m["node"].items()),
        f"- Date: {m['date']}; the run took {data['duration_seconds']:.0f} s",
        f"- Command: `{m['command']}`",
        "",
        "Servers: **baseline** = bare Starlette WebSocket broadcast (`bench/baseline_server.py`, the floor); **socket.io** = "
        "python-socketio `AsyncServer` (`bench/socketio_server.py`); **strawberry** = plain Strawberry subscriptions over "
        "broadcaster `memory://`, sends as a `sendMessage` mutation on the same socket (`bench/strawberry_server.py`: the "
        "product's stack without its fan-out work); **graphql-ws (node)** = Node's reference GraphQL subscription server, "
        "`graphql-ws` on `ws` with graphql-js and graphql-subscriptions' in-process PubSub, same operations "
        "(`bench/js/`, packages pinned by its package-lock.json); **legacy** = this product's legacy JSON protocol; "
        "**graphql** = this product's `chatEvents` subscriptions (sends through legacy `send_message`). The Python "
        "servers on uvicorn; per-message deflate off everywhere; the product on SQLite with `BROADCAST_URL=memory://`. "
        'A peer is compared only where it kept up (no "fell behind", server core under '
        f"{SERVER_SATURATED:.0%}).",
        "",
        *SOCKETIO_FINDING,
        "",
        "CPU per delivery = server utime + stime over a measured window ÷ messages received by all clients in it. "
        f"Every window follows {plan['warmup']:g} s of warm-up at the same load and lasts {plan['window']:g} s. "
        "Latency is send → receive (the sender's `time.time_ns()` in the text). Each message also reaches its sender "
        "(the product's acknowledgement of a send), which counts as a delivery on every server.",
        "",
        "## Results",
        "",
        *results_table(data),
        "",
        "## Acceptance",
        "",
        *acceptance_table(data["acceptance"]),
        "",
        f"## Ramp: 1 chat × {plan['big_members']:,} members",
        "",
        *ramp_table(data),
        "",
        "![p50 and p99 latency against offered load](latency.png)",
        "",
        f"## (e) Reconnect storm: {2 * plan['storm_clients']:,} clients",
        "",
        *storm_section(data),
        "",
        "## Notes",
        "",
        *notes(data),
        "",
    ]
    return "\n".join(out)


def plot(data: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, server in data["servers"].items():
        steps = [s for s in server.get("fanout", {}).get("steps", []) if s["latency_ms"]["p50"] is not None]
        if not steps:
            continue
        rates = [s["rate"] for s in steps]
        color, label = COLORS[kind], LABELS[kind]
        ax.plot(rates, [s["latency_ms"]["p50"] for s in steps], "o-", color=color, label=f"{label} p50")
        ax.plot(rates, [s["latency_ms"]["p99"] for s in steps], "s--", color=color, label=f"{label} p99")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(data["plan"]["ramp"], [f"{r:g}" for r in data["plan"]["ramp"]])
    ax.minorticks_off()
    ax.set_xlabel("offered load (messages/s to one chat)")
    ax.set_ylabel("send → receive latency (ms)")
    ax.set_title(f"1 chat × {data['plan']['big_members']:,} connected members")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(ncol=2, fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(out: Path, data: dict[str, Any]) -> None:
    data["acceptance"] = acceptance(data)
    (out / "report.json").write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown(data))
    plot(data, out / "latency.png")
