"""The shared waiting helper: it returns what the condition gave, and when the condition
never comes it fails naming what it waited for and what it saw last."""

from __future__ import annotations

import pytest

from tests.helpers import eventually, eventually_blocking


async def test_eventually_returns_the_first_truthy_value_of_a_plain_or_async_check():
    seen: list[int] = []

    def plain() -> list[int]:
        seen.append(1)
        return seen if len(seen) >= 3 else []

    async def awaited() -> str | None:
        return "there" if len(seen) >= 3 else None

    assert await eventually(plain, 5, interval=0) == [1, 1, 1]
    assert await eventually(awaited, 5) == "there"


async def test_eventually_that_times_out_names_what_it_waited_for_and_the_last_value():
    opened: list[str] = []
    with pytest.raises(AssertionError, match=r"^waited 0.05 s for the door to open; last saw \[\]$"):
        await eventually(lambda: opened, 0.05, what="the door to open")


async def test_an_exception_in_the_check_is_not_yet_and_is_shown_if_it_lasts():
    def missing() -> str:
        raise FileNotFoundError("no such file: status.json")

    with pytest.raises(AssertionError, match=r"for the status file; last saw FileNotFoundError\('no such file"):
        await eventually(missing, 0.05, what="the status file")


def test_eventually_blocking_is_the_same_for_synchronous_tests():
    calls: list[int] = []
    assert eventually_blocking(lambda: calls.append(1) or len(calls) >= 2, 5, interval=0) is True
    with pytest.raises(AssertionError, match=r"waited 0.05 s for nothing; last saw 0"):
        eventually_blocking(lambda: 0, 0.05, what="nothing")
