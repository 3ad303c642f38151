"""The benchmark harness works end to end: `python -m bench --smoke` starts every server (the floor, the three
peers, the product's two protocols), runs every workload against each and writes a complete report in which
every message was delivered, and every message missed during the reconnect storm was delivered once.

Nothing here checks a timing or a ratio: a smoke run's figures are too small to mean anything, and the
machine's other load would make such checks flaky. The figures are `make bench`'s job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT

SERVERS = {"baseline", "socketio", "strawberry", "graphqlws", "legacy", "graphql"}
# Six servers with a few seconds of load each: the smoke run takes one to two minutes (more on a machine busy
# with other work), so it gets more than the suite's 120 s per test.
SMOKE_TIMEOUT = 200
RUN_TIMEOUT = 110  # the cluster smoke run: under the suite's 120 s per test


def assert_all_delivered(window: dict[str, Any], where: str) -> None:
    assert window["delivered"] > 0, where
    assert window["delivered"] == window["expected"], where
    assert window["missing"] == 0 and window["duplicates"] == 0, where
    assert window["closed_early"] == 0, where
    assert window["window_deliveries"] > 0, where


@pytest.mark.timeout(SMOKE_TIMEOUT + 10)
def test_smoke_run_reports_every_server_and_workload(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    for name in ("report.md", "report.json", "latency.png"):
        assert (tmp_path / name).stat().st_size > 0, name

    report = json.loads((tmp_path / "report.json").read_text())
    plan = report["plan"]
    assert set(report["servers"]) == SERVERS
    for kind, server in report["servers"].items():
        assert "error" not in server, server
        assert server["unexpected_frames"] == 0, server["unexpected_sample"]
        idle = server["idle"]
        assert idle["connections"] == plan["idle"] + idle["proof_senders"] and idle["closed_early"] == 0, kind
        steps = server["fanout"]["steps"]
        assert [s["rate"] for s in steps] == plan["ramp"], kind
        for step in steps:
            assert_all_delivered(step, f"{kind} fan-out at {step['rate']}")
        assert_all_delivered(server["small"], f"{kind} small chats")
        assert_all_delivered(server["mid"], f"{kind} hundred-member chats")
        assert server["mid"]["chats"] == plan["mid_chats"] and server["mid"]["members"] == plan["mid_members"]

    storm = report["servers"]["graphql"]["storm"]
    assert storm["clients"] == 2 * plan["storm_clients"] == 2 * storm["graphql_clients"], storm
    assert storm["caught_up"] and storm["missing"] == 0 and storm["duplicates"] == 0, storm
    assert storm["closed_early"] == 0 and storm["streaming_seconds"] >= storm["reconnect_seconds"] > 0, storm
    sockets = report["servers"]["baseline"]["socket_storm"]
    assert sockets["sockets"] == 2 * plan["storm_clients"] and sockets["failed"] == 0, sockets
    assert sockets["open_seconds"] > 0, sockets

    write = report["servers"]["legacy"]["write"]
    closed = write["closed_loop"]
    assert closed["acked"] > 0 and closed["refused"] == 0 and closed["timed_out"] == 0, closed
    assert_all_delivered(write["open_loop"], "write path, open loop")

    markdown = (tmp_path / "report.md").read_text()
    for label in ("baseline", "socket.io", "strawberry", "graphql-ws (node)", "legacy", "graphql"):
        assert label in markdown
    for workload in ("(a)", "(b)", "(b2)", "(c)", "(d)", "(e) Reconnect storm"):
        assert workload in markdown
    checks = {row["check"] for row in report["acceptance"]}
    assert any(c.startswith("reconnect storm") for c in checks) and any("each peer" in c for c in checks), checks
    fixed = [row for row in report["acceptance"] if "fixed server CPU per message" in row["check"]]
    assert len(fixed) == 2 and all(row["value"] is not None for row in fixed), fixed


def test_cluster_smoke_run_reports_every_configuration(tmp_path: Path) -> None:
    """`python -m bench.cluster --smoke`: SQLite and PostgreSQL + Redis with two processes, every workload, every
    message acknowledged or delivered."""
    run = subprocess.run(
        [sys.executable, "-m", "bench.cluster", "--smoke", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    report = json.loads((tmp_path / "cluster.json").read_text())
    assert [(r["database"], r["processes"]) for r in report["results"]] == [("sqlite", 1), ("postgresql", 2)]
    for result in report["results"]:
        closed = result["write_closed"]
        assert closed["acked_per_second"] > 0 and closed["timeouts"] == 0, result
        assert result["write_open"]["acked"] == result["write_open"]["sent"], result
        fanout = result["fanout"]
        assert fanout["deliveries"] == fanout["expected"] > 0, result
        assert all(v >= 0 for v in closed["cpu_ms_per_send"].values()), result
    assert (tmp_path / "cluster.md").read_text().startswith("# Cluster benchmark")
    assert (tmp_path / "cluster.png").read_bytes().startswith(b"\x89PNG")


# The instruction counter runs its servers under valgrind: the floor's start-up alone takes ~10 s there.
INSTRUCTIONS_TIMEOUT = 110
needs_valgrind = pytest.mark.skipif(
    shutil.which("valgrind") is None and os.environ.get("CI") != "true", reason="valgrind is not installed"
)


def count_instructions(tmp_path: Path, *args: str) -> dict[str, float]:
    """`python -m bench.instructions --servers baseline ARGS`: the floor's figures."""
    out = tmp_path / "instructions.json"
    run = subprocess.run(
        [sys.executable, "-m", "bench.instructions", "--servers", "baseline", *args, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=INSTRUCTIONS_TIMEOUT,
    )
    assert run.returncode == 0, run.stderr[-6000:]
    figures: dict[str, float] = json.loads(out.read_text())["baseline"]
    return figures


@needs_valgrind
def test_instruction_counter_counts_a_servers_messages(tmp_path: Path) -> None:
    """`python -m bench.instructions` on the floor, a small chat, a few messages: a count per message that is
    neither zero nor the server's whole life (its start-up alone runs hundreds of millions of instructions)."""
    figures = count_instructions(tmp_path, "--members", "2", "--messages", "5")
    assert 10_000 < figures["per_message"] < 10_000_000, figures
    assert figures["per_delivery"] == pytest.approx(figures["per_message"] / 3)


@needs_valgrind
def test_instruction_counter_counts_a_servers_openings(tmp_path: Path) -> None:
    """`python -m bench.instructions --openings 3` on the floor: a count per opening that is neither zero nor the
    server's whole life, with every opened connection proven live by a message."""
    figures = count_instructions(tmp_path, "--openings", "3")
    assert 50_000 < figures["per_opening"] < 50_000_000, figures
