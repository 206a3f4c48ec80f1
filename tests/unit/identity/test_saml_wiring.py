"""SAML's wiring: the SP private key column is the one identity's contract declares
encrypted (so key rotation re-encrypts it), and only the gateway makes the browser's calls."""

from __future__ import annotations

from ontrackio.core import trust
from ontrackio.identity.api import CALLERS
from ontrackio.identity.contract import CONTRACT
from ontrackio.identity.sso.saml import store
from ontrackio.identity.v1 import saml_pb2


def test_the_sp_private_key_is_a_declared_encrypted_column():
    assert store.SP_PRIVATE_KEY in CONTRACT.encrypted


def test_every_saml_method_names_its_callers_and_the_browser_calls_are_the_edges():
    rules = CALLERS["ontrackio.identity.v1.SamlService"]
    methods = saml_pb2.DESCRIPTOR.services_by_name["SamlService"].methods_by_name
    assert set(rules) == set(methods)
    for m in ("GetSpMetadata", "StartLogin", "ConsumeResponse"):
        assert rules[m] == trust.EDGE
    for m in ("GetSamlConfig", "SetSamlConfig", "ImportSamlMetadata"):
        assert rules[m] == trust.CREDENTIALS
