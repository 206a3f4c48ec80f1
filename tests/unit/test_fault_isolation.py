"""tests/fault_isolation.py without a running system: fault tests are ordered last, and the
recovery check names what has not come back after a fault."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import fault_isolation as fi


class Item:
    def __init__(self, name: str, *marks: str):
        self.name, self.marks = name, marks

    def get_closest_marker(self, name: str):
        return SimpleNamespace(name=name) if name in self.marks else None

    def __repr__(self) -> str:
        return self.name


def test_fault_tests_go_last_and_each_group_keeps_its_order():
    items = [
        Item("unit"),
        Item("kill_broker", "fault", "e2e"),
        Item("api", "e2e"),
        Item("kill_db", "fault"),
        Item("integration", "integration"),
    ]
    fi.pytest_collection_modifyitems(items)
    assert [i.name for i in items] == ["unit", "api", "integration", "kill_broker", "kill_db"]


def test_a_session_without_fault_tests_is_left_alone():
    items = [Item("b"), Item("a")]
    fi.pytest_collection_modifyitems(items)
    assert [i.name for i in items] == ["b", "a"]


@pytest.mark.parametrize(
    "url, vhost",
    [
        ("amqp://u:p@127.0.0.1:5672/t0a1b2c3d", "t0a1b2c3d"),
        ("amqp://u:p@127.0.0.1:5672/", "/"),
        ("amqp://u:p@127.0.0.1:5672", "/"),
        ("amqp://u:p@127.0.0.1:5672/%2F", "/"),
    ],
)
def test_vhost_of(url, vhost):
    assert fi.vhost_of(url) == vhost


SHARED, EXCLUSIVE = False, True


def test_missing_consumers_names_shared_queues_with_fewer_and_the_total():
    before = {"identity.events": (2, SHARED), "privacy.events": (1, SHARED), "gw.1": (1, EXCLUSIVE)}
    now = {"identity.events": (1, SHARED), "privacy.events": (1, SHARED), "gw.2": (0, EXCLUSIVE)}
    assert fi.missing_consumers(before, now) == [
        "identity.events: 1 of 2 consumers",
        "2 of 4 consumers in all",
    ]


def test_exclusive_queues_may_come_back_under_new_names():
    before = {"identity.events": (2, SHARED), "gw.a1": (1, EXCLUSIVE), "gw.b1": (1, EXCLUSIVE)}
    now = {"identity.events": (2, SHARED), "gw.a2": (1, EXCLUSIVE), "gw.b2": (1, EXCLUSIVE)}
    assert fi.missing_consumers(before, now) == []


def test_an_exclusive_queue_that_does_not_come_back_is_missed_in_the_total():
    before = {"gw.a1": (1, EXCLUSIVE), "gw.b1": (1, EXCLUSIVE)}
    now = {"gw.a2": (1, EXCLUSIVE)}
    assert fi.missing_consumers(before, now) == ["1 of 2 consumers in all"]


def test_a_shared_queue_gone_altogether_counts_as_zero_consumers():
    assert fi.missing_consumers({"inventory.events": (1, SHARED)}, {}) == [
        "inventory.events: 0 of 1 consumers",
        "0 of 1 consumers in all",
    ]


class Proc:
    def __init__(self, returncode=None):
        self.returncode = returncode

    def poll(self):
        return self.returncode


def fake_system(procs, ready):
    return SimpleNamespace(procs=procs, ready=lambda name: name in ready, amqp_url="amqp://h/v")


def test_whole_when_every_process_runs_and_is_ready():
    system = fake_system({"identity-api": Proc(), "gateway": Proc()}, {"identity-api", "gateway"})
    fi.assert_whole(system, None)


def test_a_process_not_ready_is_named():
    system = fake_system({"identity-api": Proc(), "gateway": Proc()}, {"identity-api"})
    with pytest.raises(AssertionError, match="not ready: gateway"):
        fi.assert_whole(system, None)


def test_an_exited_process_fails_at_once_rather_than_being_waited_for():
    system = fake_system({"inventory-worker": Proc(returncode=-9)}, set())
    with pytest.raises(pytest.fail.Exception, match=r"exited.*'inventory-worker': -9"):
        fi.assert_whole(system, None)
