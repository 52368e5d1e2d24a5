"""Reconnect back-off (common.backoff): grows, is capped, is jittered within its bounds."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.backoff import Backoff


@given(
    st.floats(0.001, 10),
    st.floats(1, 100),
    st.floats(1, 4),
    st.floats(0, 1),
    st.integers(0, 10_000),
    st.integers(0, 2**32),
)
def test_every_delay_is_within_its_bounds(
    initial: float, ratio: float, multiplier: float, jitter: float, attempt: int, seed: int
) -> None:
    backoff = Backoff(initial, initial * ratio, multiplier, jitter)
    base = min(backoff.maximum, initial * multiplier ** min(attempt, 64))
    delay = backoff.delay(attempt, random.Random(seed))
    assert base * (1 - jitter) <= delay <= base <= backoff.maximum


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(initial=0.1, maximum=1.0, multiplier=2.0, jitter=0.5)
    rng = random.Random(1)
    delays = [backoff.delay(n, rng) for n in range(10)]
    for n, d in enumerate(delays):
        base = min(1.0, 0.1 * 2**n)
        assert base * 0.5 <= d <= base
    assert len(set(delays[5:])) == 5  # jittered, not in step
    again = random.Random(1)
    assert delays == [backoff.delay(n, again) for n in range(10)]  # the same for a seed
    assert Backoff(jitter=0).delay(1000, rng) == Backoff().maximum


@pytest.mark.parametrize(
    "kw",
    [{"initial": 2, "maximum": 1}, {"initial": 0}, {"multiplier": 0.5}, {"jitter": 1.5}],
)
def test_a_backoff_that_cannot_work_is_refused(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="invalid back-off"):
        Backoff(**kw)
