"""Envelopes from the wire that parsed or counted badly (found in an attacker's review): each
is refused alone as InvalidEvent, never an error that takes its batch with it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ontrackio.core.events import InvalidEvent
from ontrackio.core.worker import apply_batch
from tests.unit.core.test_core_events import REGISTRY, wire


@pytest.mark.parametrize(
    "occurred_at",
    ["9999-12-31T23:59:59-23:59", "0001-01-01T00:00:00+23:59"],  # UTC past year 9999 / before 1
)
def test_an_occurred_at_outside_the_utc_range_is_an_invalid_event(occurred_at):
    with pytest.raises(InvalidEvent, match="malformed envelope: OverflowError"):
        REGISTRY.from_wire(wire(occurred_at=occurred_at))


@pytest.mark.parametrize("bad_type", [["identity.tenant_created"], {"a": 1}])
def test_an_unhashable_type_is_refused_alone_and_counted_as_unknown(bad_type):
    # Every body is refused before any database work, so no committer or directory is needed.
    process = SimpleNamespace(
        rt=SimpleNamespace(events=REGISTRY, service="privacy", directory=None), committer=None
    )
    outcomes = apply_batch(process, [wire(type=bad_type), wire(id="not-a-uuid")], effect=None)
    assert [type(o) for o in outcomes] == [InvalidEvent, InvalidEvent]
