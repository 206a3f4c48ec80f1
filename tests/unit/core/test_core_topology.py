"""The declared broker topology matches the handlers the worker classes really have.

Importing a worker module monkey-patches the interpreter with eventlet, so the handlers
are listed by a separate Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ontrackio.core import events, topology

LIST_HANDLERS = textwrap.dedent(
    """
    import importlib, inspect, json
    modules = [importlib.import_module(f"ontrackio.{s}.worker")
               for s in ("identity", "inventory", "privacy", "evidence")]
    from nameko.events import EventHandler  # after the workers' greening

    found = []
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            for attr in dir(cls):
                for ep in getattr(getattr(cls, attr), "nameko_entrypoints", set()):
                    if isinstance(ep, EventHandler):
                        found.append([cls.name, attr, ep.source_service, ep.event_type])
    print(json.dumps(found))
    """
)


@pytest.fixture(scope="module")
def declared_handlers() -> set[tuple[str, str, str, str]]:
    done = subprocess.run(
        [sys.executable, "-c", LIST_HANDLERS],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    return {tuple(row) for row in rows}


def test_workers_declare_event_handlers(declared_handlers):
    assert {consumer for consumer, *_ in declared_handlers} == {
        "identity",
        "inventory",
        "privacy",
        "evidence",
    }


def test_subscriptions_are_exactly_the_declared_handlers(declared_handlers):
    table = set(topology.SUBSCRIPTIONS)
    assert table - declared_handlers == set(), "in SUBSCRIPTIONS but no worker handles it"
    assert declared_handlers - table == set(), "handled by a worker but missing in SUBSCRIPTIONS"


def test_subscriptions_have_no_duplicates():
    assert len(set(topology.SUBSCRIPTIONS)) == len(topology.SUBSCRIPTIONS)


@pytest.mark.parametrize("sub", topology.SUBSCRIPTIONS, ids=lambda s: topology.queue_name(*s))
def test_subscribed_event_type_is_registered(sub):
    _, _, source, event = sub
    assert f"{source}.{event}" in events.REGISTRY


def test_queue_names_are_unique_and_follow_nameko():
    names = [topology.queue_name(*sub) for sub in topology.SUBSCRIPTIONS]
    assert len(set(names)) == len(names)
    assert topology.queue_name("privacy", "handle_user_created", "identity", "user_created") == (
        "evt-identity-user_created--privacy.handle_user_created"
    )


def test_queues_bind_to_the_source_exchange_with_the_event_name():
    for sub, queue in zip(topology.SUBSCRIPTIONS, topology.queues(), strict=True):
        assert queue.exchange.name == f"{sub[2]}.events"
        assert queue.routing_key == sub[3]
        assert queue.durable and not queue.auto_delete
