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

LABELS = {"baseline": "baseline", "socketio": "socket.io", "legacy": "legacy", "graphql": "graphql"}
COLORS = {"baseline": "tab:gray", "socketio": "tab:orange", "legacy": "tab:blue", "graphql": "tab:green"}
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


def acceptance(data: dict[str, Any]) -> list[dict[str, Any]]:
    plan, servers = data["plan"], data["servers"]
    heads = {k: headline(servers.get(k), plan) or {} for k in LABELS}
    cpu = {k: h.get("cpu_us_per_delivery") for k, h in heads.items()}
    p99 = {k: (h.get("latency_ms") or {}).get("p99") for k, h in heads.items()}
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
            f"legacy ÷ socket.io, CPU per delivery ({at})",
            "< 1",
            ratio(cpu["legacy"], cpu["socketio"]),
            lambda v: v < 1,
            "{:.2f}",
        ),
        _check(
            f"graphql ÷ socket.io, CPU per delivery ({at})",
            "< 1",
            ratio(cpu["graphql"], cpu["socketio"]),
            lambda v: v < 1,
            "{:.2f}",
        ),
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
        behind = [s for s in server["fanout"]["steps"] if s["fell_behind"]]
        if behind:
            s = behind[0]
            lines.append(
                f"- {name} fell behind at {s['rate']:g} msg/s ({s['fell_behind_because']}, server core "
                f"{s['server_cpu']:.0%} busy); its ramp stopped there."
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
        f"- Date: {m['date']}; the run took {data['duration_seconds']:.0f} s",
        f"- Command: `{m['command']}`",
        "",
        "Servers: **baseline** = bare Starlette WebSocket broadcast (`bench/baseline_server.py`, the floor); **socket.io** = "
        "python-socketio `AsyncServer` (`bench/socketio_server.py`); **legacy** = this product's legacy JSON protocol; "
        "**graphql** = this product's `chatEvents` subscriptions (sends through legacy `send_message`). All on uvicorn, "
        "per-message deflate off; the product on SQLite with `BROADCAST_URL=memory://`.",
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
