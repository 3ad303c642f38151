"""The benchmark report's arithmetic: how a message's fixed cost is told apart from its cost per delivery."""

import pytest

from bench.report import fixed_cost


def test_the_fixed_cost_of_a_message_is_the_intercept_of_its_excess_over_chat_sizes() -> None:
    # 500 µs per message plus 9 µs per delivery, seen in chats of 11, 101 and 1,001 connections.
    points = [(n, 500 + 9 * n) for n in (11.0, 101.0, 1001.0)]
    fit = fixed_cost(points)
    assert fit is not None
    assert fit[0] == pytest.approx(500) and fit[1] == pytest.approx(9)


def test_one_chat_size_cannot_split_the_cost() -> None:
    assert fixed_cost([(11.0, 850.0)]) is None
    assert fixed_cost([(11.0, 850.0), (11.0, 900.0)]) is None
