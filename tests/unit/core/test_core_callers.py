"""Every gRPC method of every service names who may call it (the api refuses to start
otherwise, core/grpcserver.py); checked here so a new method without a rule fails fast."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from unittest import mock

import pytest

from ontrackio.catalogue import SERVICES
from ontrackio.core import config, grpcserver
from ontrackio.devtools import pki


@pytest.fixture(scope="module")
def dev_settings(tmp_path_factory):
    """Development-mode settings whose TLS files are a fresh development PKI."""
    pki_dir = pki.ensure(tmp_path_factory.mktemp("pki"), "callers")
    return config.load(
        deployment="callers",
        development=True,
        tls_ca_file=str(pki_dir / "ca.pem"),
        tls_cert_file=str(pki_dir / "{identity}.pem"),
        tls_key_file=str(pki_dir / "{identity}-key.pem"),
    )


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_builds_its_server_with_the_callers_it_declares(service, dev_settings):
    """The registrations the service's api really serves (its servicers built on a stand-in
    runtime, which they only keep) pass build_server's check, and no method is left to
    nobody."""
    api = importlib.import_module(f"ontrackio.{service}.api")
    regs = api.registrations(mock.Mock(settings=dev_settings))
    server, port = grpcserver.build_server(
        service, regs, None, dev_settings, address="127.0.0.1:0", workers=1
    )
    server.stop(None)
    assert port > 0
    assert {r.name for r in regs} == set(api.CALLERS)
    assert all(who for callers in api.CALLERS.values() for who in callers.values())


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
