"""Retry delays of failed event handlers."""

from __future__ import annotations

import pytest

from ontrackio.core.bus import backoff_ms


@pytest.mark.parametrize("attempt, delay", [(1, 200), (2, 400), (3, 800), (4, 1600), (9, 51_200)])
def test_backoff_doubles_from_the_base(attempt, delay):
    assert backoff_ms(200, attempt) == delay


@pytest.mark.parametrize("attempt", [10, 11, 50, 1000])
def test_backoff_is_capped_at_one_minute(attempt):
    assert backoff_ms(200, attempt) == 60_000


def test_base_above_cap_is_capped():
    assert backoff_ms(120_000, 1) == 60_000
