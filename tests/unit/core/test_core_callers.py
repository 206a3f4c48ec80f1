"""Every gRPC method of every service names who may call it (the api refuses to start
otherwise, core/grpcserver.py); checked here so a new method without a rule fails fast."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from ontrackio.catalogue import SERVICES
from ontrackio.core import grpcserver


@pytest.mark.parametrize("service", SERVICES)
def test_every_method_of_every_registration_has_callers(service):
    api = importlib.import_module(f"ontrackio.{service}.api")
    regs = [
        grpcserver.Registration(lambda *_: None, None, name, callers=who)
        for name, who in api.CALLERS.items()
    ]
    table = grpcserver._method_callers(regs, [])
    assert table and all(who for who in table.values())


def test_a_server_with_a_method_without_callers_refuses_to_start():
    from ontrackio.identity import api

    callers = dict(api.CALLERS["ontrackio.identity.v1.TenantService"])
    callers.pop("GetTenant")
    reg = grpcserver.Registration(
        lambda *_: None, None, "ontrackio.identity.v1.TenantService", callers=callers
    )
    with pytest.raises(ValueError, match=r"missing \['GetTenant'\]"):
        grpcserver.build_server(
            "identity",
            [reg],
            directory=None,
            settings=SimpleNamespace(development=False),  # refused before anything reads more
            address="127.0.0.1:0",
            workers=1,
        )
