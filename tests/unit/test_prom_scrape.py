"""tests/prom.py's Scrape: a series that exists is found whatever its value (0 included),
and one that does not is never read as 0."""

from __future__ import annotations

import pytest

from tests.prom import Scrape

TEXT = """# TYPE ontrack_dlq_messages gauge
ontrack_dlq_messages 0.0
# TYPE ontrack_relay_pending_batches gauge
ontrack_relay_pending_batches{role="api",service="identity"} 0.0
"""


def test_a_series_at_zero_exists():
    scrape = Scrape.parse(TEXT)
    assert scrape.has("ontrack_dlq_messages")
    assert scrape.has("ontrack_relay_pending_batches", role="api", service="identity")
    assert scrape.value("ontrack_dlq_messages") == 0.0


def test_a_missing_series_is_missing_not_zero():
    scrape = Scrape.parse(TEXT)
    assert not scrape.has("ontrack_relay_pending_batches", role="worker")
    with pytest.raises(AssertionError, match="no series"):
        scrape.value("ontrack_nothing_total")
