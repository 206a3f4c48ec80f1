"""Contracts fit together, and a worker class fits its contract (core/contract.py,
core/binding.py): a handler without a contract entry, or an entry without a handler, is
refused when the worker is bound, before it consumes anything."""

from __future__ import annotations

import pytest
from nameko.events import EventHandler
from nameko.extensions import ENTRYPOINT_EXTENSIONS_ATTR

from ontrackio.catalogue import DEPLOYMENT, SERVICES
from ontrackio.core.binding import bind, handles, mismatches
from ontrackio.core.contract import (
    LIFECYCLE_HANDLERS,
    LIFECYCLE_REPORTS,
    Contract,
    ContractError,
    Deployment,
)
from ontrackio.core.v1 import core_pb2

on = handles(EventHandler.decorator)


class Base:
    """Stands for core's ServiceWorker: the lifecycle handlers every worker inherits."""

    @on
    def handle_tenant_created(self, body): ...

    @on
    def handle_tenant_deleted(self, body): ...

    @on
    def handle_data_keys_rotated(self, body): ...


REGISTRY = Contract(  # any message class will do for these tests
    "registry",
    publishes={
        "tenant_created": (core_pb2.TenantReady, 1),
        "tenant_deleted": (core_pb2.TenantDropped, 1),
        "data_keys_rotated": (core_pb2.TenantDropped, 1),
        "thing_made": (core_pb2.TenantReady, 1),
    },
    tenants_from="registry",
    from_every_service={"tenant_ready": "handle_tenant_ready"},
)
FOLLOWER = Contract(
    "follower",
    subscribes={"handle_thing_made": ("registry", "thing_made")},
    tenants_from="registry",
)
WORLD = Deployment([REGISTRY, FOLLOWER])


class Follower(Base):
    name = "follower"

    @on
    def handle_thing_made(self, body): ...


class Registry(Base):
    name = "registry"

    @on
    def handle_tenant_ready(self, body): ...


def entrypoints(cls) -> set[tuple[str, str, str]]:
    return {
        (attr, ep.source_service, ep.event_type)
        for attr in dir(cls)
        for ep in getattr(getattr(cls, attr), ENTRYPOINT_EXTENSIONS_ATTR, ())
        if isinstance(ep, EventHandler)
    }


def test_a_follower_gets_the_lifecycle_and_its_own_subscriptions():
    assert entrypoints(bind(Follower, WORLD)) == {
        ("handle_thing_made", "registry", "thing_made"),
        ("handle_tenant_created", "registry", "tenant_created"),
        ("handle_tenant_deleted", "registry", "tenant_deleted"),
        ("handle_data_keys_rotated", "registry", "data_keys_rotated"),
    }


def test_the_registry_hears_every_services_reports_through_one_method():
    bound = bind(Registry, WORLD)
    assert {
        ("handle_registry_tenant_ready", "registry", "tenant_ready"),
        ("handle_follower_tenant_ready", "follower", "tenant_ready"),
    } <= entrypoints(bound)
    # each subscription has its own function: nameko keeps entrypoints on the function
    a, b = bound.handle_registry_tenant_ready, bound.handle_follower_tenant_ready
    assert a is not b and a.__code__ is b.__code__
    assert getattr(Registry.handle_tenant_ready, ENTRYPOINT_EXTENSIONS_ATTR, None) is None


def test_binding_leaves_the_worker_class_untouched():
    bind(Follower, WORLD)
    assert entrypoints(Follower) == set()
    assert bind(Follower, WORLD).__module__ == Follower.__module__


def test_a_handler_without_a_contract_entry_is_refused():
    class Extra(Follower):
        @on
        def handle_thing_lost(self, body): ...

    with pytest.raises(ContractError, match="handle_thing_lost handles no event"):
        bind(Extra, WORLD)


def test_a_contract_entry_without_a_handler_is_refused():
    class Missing(Base):
        name = "follower"

    problems = mismatches(Missing, WORLD.subscriptions_of("follower"))
    assert problems == [
        "the contract's handle_thing_made (registry.thing_made) has no handler"
        " handle_thing_made in Missing"
    ]
    with pytest.raises(ContractError, match="has no handler handle_thing_made"):
        bind(Missing, WORLD)


def test_a_handler_overridden_without_its_mark_is_refused():
    class Unmarked(Follower):
        def handle_tenant_deleted(self, body): ...

    with pytest.raises(ContractError, match="handle_tenant_deleted"):
        bind(Unmarked, WORLD)


def test_a_worker_of_no_service_of_the_deployment_is_refused():
    class Stranger(Base):
        name = "stranger"

    with pytest.raises(ContractError, match="no contract for service 'stranger'"):
        bind(Stranger, WORLD)


def test_a_subscription_to_an_event_nobody_publishes_is_refused():
    lost = Contract("lost", subscribes={"handle_x": ("registry", "thing_unmade")})
    with pytest.raises(ContractError, match=r"lost.handle_x subscribes to registry.thing_unmade"):
        Deployment([REGISTRY, lost])


def test_following_a_registry_the_deployment_lacks_is_refused():
    with pytest.raises(ContractError, match="registry.tenant_created, which no contract"):
        Deployment([FOLLOWER])


def test_two_contracts_of_one_service_are_refused():
    with pytest.raises(ContractError, match="service 'registry' has two contracts"):
        Deployment([REGISTRY, REGISTRY])


def test_one_handler_name_twice_is_refused():
    # its own subscription reuses the name generated for its own tenant_ready report
    twice = Contract(
        "registry",
        publishes=REGISTRY.publishes,
        subscribes={"handle_registry_tenant_ready": ("registry", "thing_made")},
        tenants_from="registry",
        from_every_service={"tenant_ready": "handle_tenant_ready"},
    )
    with pytest.raises(ContractError, match="registry.handle_registry_tenant_ready is declared"):
        Deployment([twice])


def test_lifecycle_followers_publish_their_reports():
    assert set(FOLLOWER.published()) == {f"follower.{e}" for e in LIFECYCLE_REPORTS}
    assert Contract("plain").published() == {}


# -- the real deployment -------------------------------------------------------------------


def test_every_service_follows_the_registry_and_reports():
    for service in SERVICES:
        handlers = {s.handler for s in DEPLOYMENT.subscriptions_of(service)}
        assert set(LIFECYCLE_HANDLERS) <= handlers, service
        for event in LIFECYCLE_REPORTS:
            assert f"{service}.{event}" in DEPLOYMENT.events


def test_the_deployment_knows_the_four_services():
    assert SERVICES == ("identity", "inventory", "privacy", "evidence")
