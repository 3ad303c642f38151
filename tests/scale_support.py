"""Scale-out test support: a private redis-server, a private PostgreSQL database, servers that share them."""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from pathlib import Path

import httpx

from tests.support import Server, free_port

REDIS_START_TIMEOUT = 10.0


class RedisServer:
    """A redis-server of the test's own on a free port, so a fault test can stop and restart it."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary is not None, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT
        while not self.ping():
            assert self.proc.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        return self

    def ping(self) -> bool:
        try:
            out = subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True, timeout=2, check=False
            )
        except subprocess.TimeoutExpired:
            return False
        return out.stdout.strip() == "PONG"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ready(server: Server, *, timeout: float = 20.0) -> None:
    """Wait until the server's /readyz says 200 (database and broker reachable)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{server.url} not ready within {timeout}s:\n{server.log()[-3000:]}"
        time.sleep(0.05)


def readyz(server: Server) -> int:
    return httpx.get(f"{server.url}/readyz", timeout=5).status_code


def fresh_pg_name() -> str:
    return f"tailtrail_scale_{uuid.uuid4().hex[:12]}"
