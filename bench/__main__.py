"""`python -m bench`: run every workload against every server, one server at a time, and write the report.

For each server: seed its database (product only), start it pinned to the server core, run the client process
(`bench.client`) pinned to the client core, stop the server. Progress goes to stderr; the report (report.md,
report.json, latency.png) to --out. Scratch files (databases, server logs, client specs) live in a temporary
directory, removed after a run that went well and kept (its path printed) after one that did not. The Node
peer's packages are installed first (`npm ci` in bench/js) when bench/js/node_modules is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import procstat, report
from bench.plan import FULL, SMOKE, Plan
from bench.seed import seed_database, user_tokens
from bench.servers import JS, PRODUCT, ROOT, SECRET, SERVERS, ServerProcess, install_node_peer, pinned

WORKLOADS = {
    "baseline": ["idle", "fanout", "small", "mid", "socket_storm"],
    "socketio": ["idle", "fanout", "small", "mid"],
    "strawberry": ["idle", "fanout", "small", "mid"],
    "graphqlws": ["idle", "fanout", "small", "mid"],
    # The write path is the product's alone, and one path for both protocols: measured once.
    "legacy": ["idle", "fanout", "small", "mid", "write"],
    "graphql": ["idle", "fanout", "small", "mid", "storm"],
}
CLIENT_TIMEOUT = 1800.0  # the product's GraphQL run ends with the reconnect storm, which may wait minutes
PACKAGES = (
    "uvicorn",
    "starlette",
    "websockets",
    "strawberry-graphql",
    "broadcaster",
    "sqlalchemy",
    "python-socketio",
    "python-engineio",
    "uvloop",
)


def cores() -> tuple[int, int]:
    """The server's core and the client's: the first two this process may run on."""
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        raise SystemExit("the bench needs two CPU cores: one for the server, one for the client")
    return available[0], available[1]


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run_server(
    kind: str, plan: Plan, tokens: list[str], work: Path, server_cpu: int, client_cpu: int
) -> dict[str, Any]:
    database_url = None
    if kind in PRODUCT:
        database = work / f"{kind}.db"
        database_url = f"sqlite+aiosqlite:///{database}"
        started = time.monotonic()
        asyncio.run(seed_database(database_url, plan))
        log(f"{kind}: seeded {plan.users:,} users in {time.monotonic() - started:.1f}s")
    server = ServerProcess(kind, cpu=server_cpu, log_path=work / f"{kind}.log", database_url=database_url).start()
    log(f"{kind}: server pid {server.pid} on CPU {server_cpu}, port {server.port}; client on CPU {client_cpu}")
    spec: dict[str, Any] = {
        "server": kind,
        "port": server.port,
        "pid": server.pid,
        "plan": plan.to_json(),
        "tokens": tokens if kind in PRODUCT else [],
        "workloads": WORKLOADS[kind],
        "result": str(work / f"{kind}.json"),
    }
    spec_path = work / f"{kind}.spec.json"
    spec_path.write_text(json.dumps(spec))
    try:
        client = subprocess.run(
            [sys.executable, "-m", "bench.client", str(spec_path)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            preexec_fn=pinned(client_cpu),
            timeout=CLIENT_TIMEOUT,
        )
        failed = None if client.returncode == 0 else f"client exited with {client.returncode}"
    except subprocess.TimeoutExpired:
        failed = f"client did not finish within {CLIENT_TIMEOUT:.0f}s"
    finally:
        server.stop()
    if failed is not None:
        log(f"{kind}: {failed}; server log:\n{server.log_tail()}")
        return {"server": kind, "error": failed}
    result: dict[str, Any] = json.loads(Path(spec["result"]).read_text())
    return result


def machine(command: str, server_cpu: int, client_cpu: int) -> dict[str, Any]:
    return {
        "cpu_model": procstat.cpu_model(),
        "cores": os.cpu_count(),
        "server_cpu": server_cpu,
        "client_cpu": client_cpu,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "packages": {name: metadata.version(name) for name in PACKAGES},
        "node": node_versions(),
    }


def node_versions() -> dict[str, str]:
    """Node's version and the Node peer's packages as installed (package-lock.json pins them)."""
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    lock = json.loads((JS / "package-lock.json").read_text())
    installed = {
        path.removeprefix("node_modules/"): entry["version"]
        for path, entry in lock["packages"].items()
        if path.startswith("node_modules/") and not entry.get("dev")
    }
    return {"node": node, **installed}


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the product (legacy and GraphQL streaming) against a bare Starlette broadcast, "
        "python-socketio, plain Strawberry subscriptions and Node's graphql-ws: CPU per delivery, latency, memory "
        "per idle connection, the write path, a reconnect storm.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a tiny run of every workload (seconds; figures meaningless)"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results", help="report directory (default: %(default)s)"
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help="comma-separated subset of %(default)s (the report's ratios need them all)",
    )
    args = parser.parse_args(args_list)
    kinds = [k for k in args.servers.split(",") if k]
    unknown = sorted(set(kinds) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)}")
    plan = SMOKE if args.smoke else FULL
    if "graphqlws" in kinds:
        install_node_peer()
    server_cpu, client_cpu = cores()
    python = os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(str(ROOT)) else sys.executable
    command = shlex.join([python, "-m", "bench", *args_list])

    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tailtrail-bench-"))
    tokens = user_tokens(plan, SECRET)
    results = {}
    for kind in kinds:
        results[kind] = run_server(kind, plan, tokens, work, server_cpu, client_cpu)
    data = {
        "plan": plan.to_json(),
        "machine": machine(command, server_cpu, client_cpu),
        "duration_seconds": round(time.monotonic() - started, 1),
        "servers": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report.write(args.out, data)
    log(f"report written to {args.out} in {data['duration_seconds']:.0f}s")
    if any("error" in r for r in results.values()):
        log(f"some servers failed; scratch files kept in {work}")
        return 1
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
