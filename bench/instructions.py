"""`python -m bench.instructions`: instructions per message through a real server, counted by callgrind.

CPU time on a shared machine moves by tens of percent from one run to the next; an instruction count does not. Each
server runs under `valgrind --tool=callgrind` with instrumentation off while it starts; the client opens one chat's
members (a connection each) and a sender (one more connection of the first member, as in the bench's (b)), sends
warm-up messages, then turns instrumentation on (`callgrind_control -i on`), sends `--messages` messages, each once
the one before has reached every connection, turns it off and has the counts dumped. What the server's threads
executed in user space in between, divided by the messages, is a message's cost in instructions: repeatable to a
few percent (timers, garbage collection), blind to the kernel (a frame's `write`, which costs every server the
same) and to caches. It is the tool for an A/B of the product's own code (run it in each checkout); the CPU ratios
of `python -m bench` stay the measure of record.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.dialects import DIALECTS, Dialect
from bench.plan import FULL
from bench.seed import seed_database, user_tokens
from bench.servers import PRODUCT, SECRET, ServerProcess
from bench.wsclient import WebSocket

SERVERS = ("baseline", "legacy", "graphql")
WARMUP = 30
STARTUP = 600.0  # a server starts several times slower under valgrind
DELIVERY_TIMEOUT = 120.0
PROOF_WAIT = 5.0  # for one proof message to reach a connection
PROOF_ATTEMPTS = 10


class Counted(ServerProcess):
    """A bench server started under callgrind, its instrumentation off until `on`."""

    def __init__(self, kind: str, *, work: Path) -> None:
        database_url = f"sqlite+aiosqlite:///{work / f'{kind}.db'}" if kind in PRODUCT else None
        super().__init__(kind, cpu=0, log_path=work / f"{kind}.log", database_url=database_url)
        self.counts = work / f"{kind}.callgrind"

    def command(self) -> list[str]:
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.counts}"]
        return valgrind + super().command()

    def control(self, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(self.pid)], check=True, capture_output=True)

    def total(self) -> int:
        """The instructions counted between `-i on` and the dump (`totals:` of the dump's file)."""
        dump = self.counts.with_name(self.counts.name + ".1")
        for line in dump.read_text().splitlines():
            if line.startswith("totals:"):
                return int(line.split()[1])
        raise RuntimeError(f"no totals in {dump}")


def send_mark(dialect: Dialect, sender: WebSocket, chat: str, i: int) -> bytes:
    """Send message `i` to `chat`; the mark its deliveries carry."""
    mark = f"instructions-{i}-mark"
    sender.send(dialect.send_frame(chat, mark, f"instructions-{i}"))
    return mark.encode()


async def until_mark(dialect: Dialect, ws: WebSocket, mark: bytes, within: float) -> None:
    """Read `ws` (answering keep-alives) until a frame carries `mark`; `TimeoutError` if none comes `within`
    seconds of the last frame."""
    while True:
        frame = await ws.recv(within)
        if not dialect.keep_alive(ws, frame, 0, len(frame)) and mark in frame:
            return


async def one_message(dialect: Dialect, sender: WebSocket, connections: list[WebSocket], chat: str, i: int) -> None:
    """Send message `i` and wait until it has reached every connection."""
    mark = send_mark(dialect, sender, chat, i)
    for ws in connections:
        await until_mark(dialect, ws, mark, DELIVERY_TIMEOUT)


async def prove_live(
    dialect: Dialect, sender: WebSocket, connections: list[WebSocket], chat: str, first: int = 2
) -> None:
    """Send messages to `chat` until each connection has received one: a server may set a subscription up after
    it has read a send that came later, so one message is not proof. Messages are numbered from `first` (a
    product acknowledges a repeated client id without sending the message again)."""
    pending = list(connections)
    for i in range(first, first + PROOF_ATTEMPTS):
        mark = send_mark(dialect, sender, chat, i)
        waiting = []
        for ws in pending:
            try:
                await until_mark(dialect, ws, mark, PROOF_WAIT)
            except TimeoutError:
                waiting.append(ws)
        if not (pending := waiting):
            return
    raise TimeoutError(f"{len(pending)} connections never received a message")


async def counted_total(server: Counted, connections: list[WebSocket]) -> int:
    """Instrumentation off, the counts dumped, the connections closed: what was counted since `-i on`."""
    server.control("-i", "off")
    server.control("-d")
    for ws in connections:
        await ws.close()
    return server.total()


async def drive(server: Counted, tokens: list[str], members: int, messages: int) -> int:
    dialect = DIALECTS[server.kind]("127.0.0.1", server.port, tokens)
    chat = FULL.small_chat(0)
    receivers = [await dialect.open_receiver(FULL.small_member(0, j), [chat]) for j in range(members)]
    sender = await dialect.open_sender(FULL.small_member(0, 0), chat)
    connections = [*receivers, sender]
    for i in range(WARMUP):
        await one_message(dialect, sender, connections, chat, i)
    server.control("-i", "on")
    for i in range(WARMUP, WARMUP + messages):
        await one_message(dialect, sender, connections, chat, i)
    return await counted_total(server, connections)


async def drive_openings(server: Counted, tokens: list[str], openings: int) -> int:
    """`openings` members of one lobby (at most a lobby's, `FULL.batch`) open a connection each, counted."""
    dialect = DIALECTS[server.kind]("127.0.0.1", server.port, tokens)
    warm, counted = FULL.idle_groups()[0], range(FULL.idle_warmup, FULL.idle_warmup + openings)
    lobby, warm_lobby = FULL.lobby(1), FULL.lobby(0)
    warm_connections = [await dialect.open_receiver(i, [warm_lobby]) for i in warm]
    warm_sender = await dialect.open_sender(warm[0], warm_lobby)
    await one_message(dialect, warm_sender, [*warm_connections, warm_sender], warm_lobby, 0)
    sender = await dialect.open_sender(counted[0], lobby)
    await one_message(dialect, sender, [sender], lobby, 1)
    server.control("-i", "on")
    connections = [await dialect.open_receiver(i, [lobby]) for i in counted]
    await prove_live(dialect, sender, connections, lobby)
    return await counted_total(server, [*warm_connections, warm_sender, *connections, sender])


def measure(kind: str, *, work: Path, members: int, messages: int, openings: int = 0) -> dict[str, float]:
    server = Counted(kind, work=work)
    tokens: list[str] = []
    if kind in PRODUCT:
        assert server.database_url is not None
        asyncio.run(seed_database(server.database_url, FULL))
        tokens = user_tokens(FULL, SECRET)
    server.start(within=STARTUP)
    try:
        if openings:
            total = asyncio.run(drive_openings(server, tokens, openings))
        else:
            total = asyncio.run(drive(server, tokens, members, messages))
    finally:
        server.stop()
    if openings:
        return {"per_opening": total / openings}
    per_message = total / messages
    return {"per_message": per_message, "per_delivery": per_message / (members + 1)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated, from: " + ", ".join(SERVERS))
    parser.add_argument("--members", type=int, default=10, help="the chat's members (default 10: the bench's (b))")
    parser.add_argument("--messages", type=int, default=300, help="messages counted (default 300)")
    parser.add_argument(
        "--openings", type=int, default=0, help=f"count N connections opening instead (N <= {FULL.batch})"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    kinds = args.servers.split(",")
    if not 0 <= args.openings <= FULL.batch:
        parser.error(f"--openings: at most {FULL.batch} (one lobby's members)")
    unknown = set(kinds) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as scratch:
        for kind in kinds:
            started = time.monotonic()
            results[kind] = figures = measure(
                kind, work=Path(scratch), members=args.members, messages=args.messages, openings=args.openings
            )
            took = f"({time.monotonic() - started:.0f} s)"
            if args.openings:
                print(f"{kind}: {figures['per_opening']:,.0f} instructions per opening {took}", flush=True)
            else:
                print(
                    f"{kind}: {figures['per_message']:,.0f} instructions per message, "
                    f"{figures['per_delivery']:,.0f} per delivery {took}",
                    flush=True,
                )
    key = "per_opening" if args.openings else "per_message"
    if "baseline" in results:
        for kind in kinds:
            if kind != "baseline":
                print(f"{kind} / baseline: {results[kind][key] / results['baseline'][key]:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
