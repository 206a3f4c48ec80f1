"""The declared broker topology matches the handlers the worker classes really have,
once bound to their contracts (core/binding.py) as run_worker binds them.

Importing a worker module monkey-patches the interpreter with eventlet, so the handlers
are listed by a separate Python process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from ontrackio.catalogue import DEPLOYMENT
from ontrackio.core import topology

LIST_HANDLERS = textwrap.dedent(
    """
    import importlib, inspect, json
    modules = [importlib.import_module(f"ontrackio.{s}.worker")
               for s in ("identity", "inventory", "privacy", "evidence")]
    from nameko.events import EventHandler  # after the workers' greening
    from ontrackio.catalogue import DEPLOYMENT
    from ontrackio.core.binding import bind

    found = []
    for module in modules:
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != module.__name__:
                continue
            cls = bind(cls, DEPLOYMENT)
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


SUBSCRIPTIONS = [(s.consumer, s.handler, s.source, s.event) for s in DEPLOYMENT.subscriptions]


def test_subscriptions_are_exactly_the_declared_handlers(declared_handlers):
    table = set(SUBSCRIPTIONS)
    assert table - declared_handlers == set(), "in a contract but no worker handles it"
    assert declared_handlers - table == set(), "handled by a worker but in no contract"


def test_subscriptions_have_no_duplicates():
    assert len(set(SUBSCRIPTIONS)) == len(SUBSCRIPTIONS)


def test_the_queues_are_those_of_the_last_central_table():
    """The queue names the contracts give are the ones deployed brokers already have."""
    services = ("identity", "inventory", "privacy", "evidence")
    before = {
        *[(s, "handle_tenant_created", "identity", "tenant_created") for s in services],
        *[(s, "handle_tenant_deleted", "identity", "tenant_deleted") for s in services],
        *[(s, "handle_data_keys_rotated", "identity", "data_keys_rotated") for s in services],
        *[
            ("identity", f"handle_{s}_{e}", s, e)
            for s in services
            for e in ("tenant_ready", "tenant_provisioning_failed", "tenant_dropped")
        ],
        ("inventory", "handle_user_created", "identity", "user_created"),
        ("inventory", "handle_user_deactivated", "identity", "user_deactivated"),
        ("privacy", "handle_user_created", "identity", "user_created"),
        ("evidence", "handle_asset_created", "inventory", "asset_created"),
        # local sign-in: identity's worker woken to send a mail of the outbox (a new queue)
        ("identity", "handle_mail_queued", "identity", "mail_queued"),
    }
    assert set(SUBSCRIPTIONS) == before


@pytest.mark.parametrize("sub", SUBSCRIPTIONS, ids=lambda s: topology.queue_name(*s))
def test_subscribed_event_type_is_registered(sub):
    _, _, source, event = sub
    assert f"{source}.{event}" in DEPLOYMENT.events


def test_queue_names_are_unique_and_follow_nameko():
    names = [topology.queue_name(*sub) for sub in SUBSCRIPTIONS]
    assert len(set(names)) == len(names)
    assert topology.queue_name("privacy", "handle_user_created", "identity", "user_created") == (
        "evt-identity-user_created--privacy.handle_user_created"
    )


def test_queues_bind_to_the_source_exchange_with_the_event_name():
    for sub, queue in zip(SUBSCRIPTIONS, topology.queues(DEPLOYMENT), strict=True):
        assert queue.exchange.name == f"{sub[2]}.events"
        assert queue.routing_key == sub[3]
        assert queue.durable and not queue.auto_delete
