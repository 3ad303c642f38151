"""The benchmark report's arithmetic: how a message's fixed cost is told apart from its cost per delivery."""

import pytest

from bench.report import fixed_cost, storm_section


def test_the_fixed_cost_of_a_message_is_the_intercept_of_its_excess_over_chat_sizes() -> None:
    # 500 µs per message plus 9 µs per delivery, seen in chats of 11, 101 and 1,001 connections.
    points = [(n, 500 + 9 * n) for n in (11.0, 101.0, 1001.0)]
    fit = fixed_cost(points)
    assert fit is not None
    assert fit[0] == pytest.approx(500) and fit[1] == pytest.approx(9)


def test_one_chat_size_cannot_split_the_cost() -> None:
    assert fixed_cost([(11.0, 850.0)]) is None
    assert fixed_cost([(11.0, 850.0), (11.0, 900.0)]) is None


def test_the_storm_table_shows_the_retried_connections_of_each_storm() -> None:
    storm = {
        "clients": 10_000,
        "reconnect_seconds": 6.0,
        "streaming_seconds": 9.0,
        "caught_up": True,
        "server_cpu_seconds": 8.0,
        "cpu_ms_per_client": 0.8,
        "missed_per_client": 10,
        "missing": 0,
        "duplicates": 0,
        "retried_reconnections": 417,
    }
    floor = {"sockets": 10_000, "failed": 0, "retried": 0, "open_seconds": 7.0, "server_cpu_seconds": 7.0}
    floor["cpu_ms_per_socket"] = 0.7
    data = {
        "plan": {"storm_clients": 5_000, "storm_missed": 10},
        "servers": {"graphql": {"storm": storm}, "baseline": {"socket_storm": floor}},
    }
    rows = [line for line in storm_section(data) if line.startswith("| product") or line.startswith("| baseline")]
    assert "10,000 (417 retried)" in rows[0] and "retried" not in rows[1], rows
