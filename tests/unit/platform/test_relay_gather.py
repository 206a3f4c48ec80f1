"""The relay's gather without a broker: units wait for others to share their batch, but a
unit whose caller awaits the publish (a revocation) ends the gather at once."""

from __future__ import annotations

import threading
from contextlib import contextmanager

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import events as ev
from ontrackio.core import relay as relay_mod
from ontrackio.core.relay import Relay
from ontrackio.identity.v1 import access_pb2


def revoked(token_id: str) -> ev.Event:
    return DEPLOYMENT.events.new(
        "identity.token_revoked", "acme", access_pb2.TokenRevoked(token_id=token_id)
    )


class FakePublisher:
    def __init__(self):
        self.batches: list[list] = []
        self.published = threading.Event()

    def publish(self, events):
        self.batches.append(list(events))
        self.published.set()

    def close(self):
        pass


class FakeConn:
    autocommit = False
    closed = broken = False

    def execute(self, *args):
        pass


class FakePools:
    @contextmanager
    def connection(self, key, conninfo):
        yield FakeConn()


class GatherWatch(threading.Event):
    """The relay's `_urgent` event, telling the test when the gather starts waiting on it."""

    def __init__(self):
        super().__init__()
        self.waiting = threading.Event()

    def wait(self, timeout=None):
        self.waiting.set()
        return super().wait(timeout)


def test_an_urgent_unit_ends_the_gather_and_takes_the_waiting_units_along(monkeypatch):
    monkeypatch.setattr(relay_mod, "GATHER_SECONDS", 30.0)  # a gather that would outlast the test
    publisher = FakePublisher()
    relay = Relay([publisher], FakePools())
    relay._urgent = watch = GatherWatch()
    e1, e2 = revoked("1"), revoked("2")
    first = relay.submit("db", "a", lambda: "", [e1])
    assert watch.waiting.wait(5), "the relay never gathered"
    assert not publisher.published.is_set()  # gathering: the first unit is held
    urgent = relay.submit("db", "a", lambda: "", [e2], urgent=True)
    assert urgent.wait(5) and first.is_set()  # within 5 s: long before the 30 s gather ends
    assert publisher.batches == [[e1, e2]]  # one batch: the waiting unit went along


def test_an_urgent_unit_alone_is_published_without_a_gather(monkeypatch):
    monkeypatch.setattr(relay_mod, "GATHER_SECONDS", 30.0)
    publisher = FakePublisher()
    relay = Relay([publisher], FakePools())
    e1 = revoked("1")
    assert relay.submit("db", "a", lambda: "", [e1], urgent=True).wait(5)
    assert publisher.batches == [[e1]]
