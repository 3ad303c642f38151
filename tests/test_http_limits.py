"""HTTP limits, attacked on a live server: request bodies over MAX_REQUEST_BYTES (announced and chunked),
slow request heads (slowloris) and connections per client address (`cli.py serve`)."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server.config import LISTEN_BACKLOG
from tests.support import EVENT_TIMEOUT, Server, sqlite_server

MIB = 1024 * 1024
UPLOAD = 100 * MIB
# What the server may grow by while refusing a 100 MB upload: one body at the limit (1 MiB), buffers, noise.
RSS_SLACK = 16 * MIB


def rss(server: Server) -> int:
    assert server.proc is not None
    with open(f"/proc/{server.proc.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with sqlite_server(tmp_path_factory.mktemp("http")) as server:
        yield server


def _upload(server: Server, *, chunked: bool) -> tuple[bytes, int]:
    """POST 100 MB to /graphql from a raw socket; returns the server's answer and the bytes it took."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=EVENT_TIMEOUT)
    head = "POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {UPLOAD}\r\n\r\n"
    sent = 0
    answer = bytearray()

    def send() -> None:
        nonlocal sent
        chunk = b"x" * MIB
        framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
        try:
            sock.sendall(head.encode())
            while sent < UPLOAD:
                sock.sendall(framed)
                sent += len(chunk)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the rest is never read

    sender = threading.Thread(target=send)
    sender.start()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    except OSError:
        pass
    finally:
        sender.join()
        sock.close()
    return bytes(answer), sent


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_100_mb_body_gets_413_without_being_read(plain: Server, chunked: bool) -> None:
    assert httpx.get(f"{plain.url}/healthz").status_code == 200
    before = rss(plain)
    answer, sent = _upload(plain, chunked=chunked)
    grown = rss(plain) - before
    print(
        f"{'chunked' if chunked else 'announced'}: sent {sent / MIB:.0f} MiB before the close; RSS +{grown / MIB:.1f} MiB"
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    body = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert body["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert sent < UPLOAD, "the server read the whole body"
    assert grown < RSS_SLACK, f"RSS grew by {grown / MIB:.1f} MiB"
    assert httpx.get(f"{plain.url}/healthz").status_code == 200
    assert "Traceback" not in plain.log()


def test_a_body_under_the_limit_is_served(plain: Server) -> None:
    padding = "x" * (MIB - 1000)
    response = httpx.post(
        f"{plain.url}/graphql", json={"query": "{ __typename }", "extensions": {"padding": padding}}, timeout=30
    )
    assert response.status_code == 200 and response.json()["data"] == {"__typename": "Query"}
    response = httpx.post(
        f"{plain.url}/graphql", json={"query": "{ __typename }", "extensions": {"padding": padding + "x" * 2000}}
    )
    assert response.status_code == 413


def test_the_limit_is_a_setting(tmp_path: Path) -> None:
    server = Server(
        {"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 's.db'}", "MAX_REQUEST_BYTES": "2048"}, tmp_path / "s.log"
    ).start()
    try:
        small = httpx.post(f"{server.url}/graphql", json={"query": "{ __typename }"})
        assert small.status_code == 200
        big = httpx.post(f"{server.url}/graphql", json={"query": "{ __typename }", "extensions": {"p": "x" * 3000}})
        assert big.status_code == 413
    finally:
        server.stop()


# -- slow request heads and connections per address (cli.py serve) ---------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`cli.py serve` with a 1 s header timeout and 20 connections per address. The tests' connections come from
    127.0.0.1, which uvicorn trusts as a proxy by default (FORWARDED_ALLOW_IPS); here it trusts no one."""
    env = {"HTTP_HEADER_TIMEOUT": "1", "MAX_CONNECTIONS_PER_ADDRESS": "20", "FORWARDED_ALLOW_IPS": "192.0.2.1"}
    with sqlite_server(tmp_path_factory.mktemp("served"), env, cli=True) as server:
        yield server


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading what it sends), or None if it is still open after."""
    started = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - started < seconds:
        try:
            if not sock.recv(65536):
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


@pytest.mark.parametrize("how", ["silent", "one-header-line-at-a-time"])
def test_a_slow_request_head_is_cut_off(served: Server, how: str) -> None:
    sock = socket.create_connection(("127.0.0.1", served.port), timeout=EVENT_TIMEOUT)
    try:
        if how == "silent":
            closed = _closed_within(sock, 5)
        else:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            closed = None
            for i in range(10):  # a header line every 0.4 s: the head never completes within the 1 s timeout
                time.sleep(0.4)
                try:
                    sock.sendall(f"X-Slow-{i}: yes\r\n".encode())
                except OSError:
                    closed = 0.4 * (i + 1)
                    break
                if (closed := _closed_within(sock, 0.01)) is not None:
                    closed += 0.4 * (i + 1)
                    break
        assert closed is not None, "the server kept a connection whose request head never completed"
        assert closed < 3
    finally:
        sock.close()
    # a normal client meanwhile, and after: served
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def test_a_request_head_in_time_is_served_and_the_connection_kept(served: Server) -> None:
    with httpx.Client(base_url=served.url) as client:
        for _ in range(3):
            assert client.get("/healthz").status_code == 200
            time.sleep(0.6)  # idle between requests: keep-alive, not a slow head (its own timeout applies)


def test_connections_per_address_are_capped(served: Server) -> None:
    held = [socket.create_connection(("127.0.0.1", served.port), timeout=EVENT_TIMEOUT) for _ in range(20)]
    try:
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        extra = socket.create_connection(("127.0.0.1", served.port), timeout=EVENT_TIMEOUT)
        try:
            assert _closed_within(extra, 5) is not None, "the 21st connection of one address was kept"
        finally:
            extra.close()
    finally:
        for sock in held:
            sock.close()
    # the slots come back once those connections are closed
    deadline = time.monotonic() + EVENT_TIMEOUT
    while True:
        try:
            assert httpx.get(f"{served.url}/healthz").status_code == 200
            break
        except httpx.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert "connection refused: too many connections from" in served.log()


def test_the_accept_queue_is_the_one_serve_asks_for_up_to_the_kernels_cap(served: Server) -> None:
    """uvicorn listens again on the socket it is given, with a backlog of its own (2,048 unless told): the queue of
    handshakes a reconnect storm fills is LISTEN_BACKLOG, as far as net.core.somaxconn allows (`ss` shows a
    listening socket's backlog as its Send-Q)."""
    listing = subprocess.run(
        ["ss", "--listening", "--tcp", "--numeric", "--no-header", f"sport = :{served.port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = listing.splitlines()
    backlog = int(line.split()[2])
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    assert backlog == min(LISTEN_BACKLOG, somaxconn)
