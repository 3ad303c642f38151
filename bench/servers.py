"""The servers under test, each started as a process of its own, pinned to the server core.

The product is started the production way (`python cli.py serve`) on a fresh SQLite database seeded by
`bench.seed`, with the in-process event bus and the command rate limit lifted (one bench sender sends more
commands a second than a person; the limit has tests of its own). Logs stay at the deployed default (INFO):
each WebSocket's opening and closing is logged, which costs CPU while thousands of connections open and close
but not during a measured window (no connection opens or closes then).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECRET = "tailtrail-bench-secret-key-0123456789abcdef"
SERVERS = ("baseline", "socketio", "strawberry", "graphqlws", "legacy", "graphql")
PRODUCT = ("legacy", "graphql")
JS = ROOT / "bench" / "js"
NPM_TIMEOUT = 300.0
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def install_node_peer() -> None:
    """The Node peer's packages, exactly as bench/js/package-lock.json pins them, unless already installed."""
    if (JS / "node_modules").is_dir():
        return
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=JS, stdin=subprocess.DEVNULL, check=True, timeout=NPM_TIMEOUT
    )


def pinned(cpu: int) -> Callable[[], None]:
    """A `preexec_fn` that pins the child (and every thread it starts) to `cpu` before it runs anything."""
    return lambda: os.sched_setaffinity(0, {cpu})


class ServerProcess:
    def __init__(self, kind: str, *, cpu: int, log_path: Path, database_url: str | None = None) -> None:
        self.kind = kind
        self.cpu = cpu
        self.port = free_port()
        self.log_path = log_path
        self.database_url = database_url
        self.proc: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        port = str(self.port)
        if self.kind == "baseline":
            return [sys.executable, "-m", "bench.baseline_server", "--port", port]
        if self.kind == "socketio":
            return [sys.executable, "-m", "bench.socketio_server", "--port", port]
        if self.kind == "strawberry":
            return [sys.executable, "-m", "bench.strawberry_server", "--port", port]
        if self.kind == "graphqlws":
            return ["node", str(JS / "graphql_ws_server.mjs"), "--port", port]
        return [sys.executable, "cli.py", "serve", "--host", "127.0.0.1", "--port", port]

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.kind in PRODUCT:
            assert self.database_url is not None
            env.update(
                DATABASE_URL=self.database_url,
                BROADCAST_URL="memory://",
                SECRET_KEY=SECRET,
                RATE_LIMIT_PER_SECOND="1000000",
                RATE_LIMIT_BURST="1000000",
                # Every bench client comes from one address and opens its sockets 500 at a time.
                MAX_CONNECTIONS_PER_ADDRESS="0",
                MAX_PENDING_SOCKETS_PER_ADDRESS="100000",
            )
        return env

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, within: float = STARTUP_TIMEOUT) -> ServerProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.environment(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=pinned(self.cpu),
            )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.kind} server did not answer /healthz within {within}s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
