"""Trust inside the system, against the running servers: mutual TLS (no certificate, another
CA, another deployment), each method's caller rules for every identity, the actor rule,
streaming calls under the same interceptor, and hostile bytes on the wire in every API."""

from __future__ import annotations

import urllib.request

import grpc
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import FieldDescriptor
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ontrackio.core import config, grpcclient, grpcserver, tls, trust
from ontrackio.core.directory import TenantDirectory, TenantInfo
from ontrackio.core.v1 import core_pb2, core_pb2_grpc
from ontrackio.devtools import pki
from ontrackio.devtools.stack import free_port
from ontrackio.evidence.api import CALLERS as EVIDENCE
from ontrackio.identity.api import CALLERS as IDENTITY
from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.inventory.api import CALLERS as INVENTORY
from ontrackio.privacy.api import CALLERS as PRIVACY
from tests.conftest import unique
from tests.helpers import create_tenant, md

SERVICE_OF = {
    **dict.fromkeys(IDENTITY, "identity"),
    **dict.fromkeys(INVENTORY, "inventory"),
    **dict.fromkeys(PRIVACY, "privacy"),
    **dict.fromkeys(EVIDENCE, "evidence"),
}
RULES = [
    (full, method, who)
    for table in (IDENTITY, INVENTORY, PRIVACY, EVIDENCE)
    for full, methods in table.items()
    for method, who in methods.items()
]
PING = core_pb2.PingRequest(payload=b"p", count=3)


def code_of(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def raw(channel: grpc.Channel, path: str):
    """A generic unary caller sending and receiving bytes as they are on the wire."""
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


@pytest.fixture(scope="module")
def tenant(channels) -> str:
    slug = unique("tr")
    create_tenant(channels, slug)
    return slug


@pytest.fixture(scope="module")
def as_identity(system):
    """(service, identity) -> a mutual-TLS channel presenting that identity's certificate."""
    opened: dict[tuple[str, str], grpc.Channel] = {}

    def get(service: str, identity: str) -> grpc.Channel:
        if (service, identity) not in opened:
            opened[(service, identity)] = system.channel(service, identity)
        return opened[(service, identity)]

    yield get
    for c in opened.values():
        c.close()


def ping(channel, tenant, **kw):
    return core_pb2_grpc.DiagnosticsServiceStub(channel).Ping(PING, metadata=md(tenant), **kw)


# -- handshakes ---------------------------------------------------------------------------


def test_a_call_without_a_client_certificate_fails_the_handshake(system, tenant):
    ca = system.material("operator").ca
    no_cert = grpc.secure_channel(
        system.target("identity"),
        grpc.ssl_channel_credentials(ca),
        options=tls.server_name_options("identity"),
    )
    plaintext = grpc.insecure_channel(system.target("identity"))
    for channel in (no_cert, plaintext):
        with channel:
            assert code_of(lambda c=channel: ping(c, tenant, timeout=5)) == (
                grpc.StatusCode.UNAVAILABLE
            )


def test_a_certificate_of_another_ca_fails_the_handshake(system, as_identity):
    forger = pki.new_authority("not the deployment's CA")
    cert, key = pki.issue(forger, system.deployment, "cli")  # the right identity, wrong CA
    material = tls.Material(system.material("cli").ca, cert, key)
    slug = unique("forged")
    with grpcclient.secure_channel(system.target("identity"), "identity", material) as ch:
        create = igrpc.TenantServiceStub(ch).CreateTenant
        req = ipb.CreateTenantRequest(slug=slug, name="Forged", tier=ipb.TIER_BUSINESS)
        assert code_of(lambda: create(req, timeout=5)) == grpc.StatusCode.UNAVAILABLE
    get = igrpc.TenantServiceStub(as_identity("identity", "operator")).GetTenant
    assert code_of(lambda: get(ipb.GetTenantRequest(slug=slug), timeout=5)) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_the_client_accepts_only_the_service_it_means(system, tenant):
    """A channel meant for inventory refuses the identity api's certificate."""
    material = system.material("operator")
    with grpcclient.secure_channel(system.target("identity"), "inventory", material) as ch:
        assert code_of(lambda: ping(ch, tenant, timeout=5)) == grpc.StatusCode.UNAVAILABLE


def _signed_by_the_deployment_ca(system, uris: list[str]) -> tls.Material:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    d = system.pki_dir
    ca = pki.Authority(
        x509.load_pem_x509_certificate((d / "ca.pem").read_bytes()),
        serialization.load_pem_private_key((d / "ca-key.pem").read_bytes(), password=None),
    )
    cert, key = pki.issue(ca, system.deployment, "cli", uris=uris)
    return tls.Material(ca.pem, cert, key)


@pytest.mark.parametrize(
    "uris",
    [
        [],  # no identity at all
        ["spiffe://ontrackio/otherdep/cli"],  # another deployment's CLI
        ["spiffe://ontrackio/{dep}/cli", "spiffe://ontrackio/{dep}/gateway"],  # two
        ["spiffe://ontrackio/{dep}/root"],  # no such identity
    ],
)
def test_a_certificate_naming_no_identity_of_the_deployment_is_unauthenticated(
    system, tenant, uris
):
    material = _signed_by_the_deployment_ca(system, [u.format(dep=system.deployment) for u in uris])
    with grpcclient.secure_channel(system.target("identity"), "identity", material) as ch:
        assert code_of(lambda: ping(ch, tenant, timeout=5)) == grpc.StatusCode.UNAUTHENTICATED
        tenants = igrpc.TenantServiceStub(ch)
        assert code_of(lambda: tenants.ListTenants(ipb.ListTenantsRequest(), timeout=5)) == (
            grpc.StatusCode.UNAUTHENTICATED
        )


# -- caller rules -------------------------------------------------------------------------


@pytest.mark.parametrize(("full", "method", "allowed"), RULES, ids=[f"{r[1]}" for r in RULES])
def test_every_method_refuses_every_identity_it_does_not_allow(
    as_identity, tenant, full, method, allowed
):
    path = f"/{full}/{method}"
    service = SERVICE_OF[full]
    for identity in sorted(trust.IDENTITIES):
        call = raw(as_identity(service, identity), path)
        got = code_of(lambda c=call: c(b"", metadata=md(tenant), timeout=5))
        if identity in allowed:
            assert got != grpc.StatusCode.PERMISSION_DENIED, (identity, path)
        else:
            assert got == grpc.StatusCode.PERMISSION_DENIED, (identity, path)


def test_tenant_lifecycle_and_token_minting_are_refused_to_other_services(as_identity, tenant):
    slug = unique("deny")
    create = igrpc.TenantServiceStub(as_identity("identity", "inventory")).CreateTenant
    req = ipb.CreateTenantRequest(slug=slug, name="x", tier=ipb.TIER_BUSINESS)
    with pytest.raises(grpc.RpcError) as info:
        create(req, timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "inventory may not call CreateTenant"
    delete = igrpc.TenantServiceStub(as_identity("identity", "gateway")).DeleteTenant
    assert code_of(lambda: delete(ipb.GetTenantRequest(slug=tenant), timeout=5)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    get = igrpc.TenantServiceStub(as_identity("identity", "operator")).GetTenant
    assert get(ipb.GetTenantRequest(slug=tenant), timeout=5).status == ipb.TENANT_STATUS_ACTIVE


def test_an_actor_is_believed_only_from_the_gateway_and_the_cli(as_identity, tenant):
    forged = (trust.ACTOR_METADATA, "cli:alice")
    lookup = igrpc.TenantServiceStub(as_identity("identity", "inventory")).GetTenant
    with pytest.raises(grpc.RpcError) as info:
        lookup(ipb.GetTenantRequest(slug=tenant), metadata=(forged,), timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "x-ontrack-actor" in info.value.details()
    slug = unique("actor")
    req = ipb.CreateTenantRequest(slug=slug, name="x", tier=ipb.TIER_BUSINESS)
    operator = igrpc.TenantServiceStub(as_identity("identity", "operator"))
    assert code_of(lambda: operator.CreateTenant(req, metadata=(forged,), timeout=5)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    assert code_of(lambda: operator.GetTenant(ipb.GetTenantRequest(slug=slug), timeout=5)) == (
        grpc.StatusCode.NOT_FOUND
    )  # refused, not silently created without the actor
    cli = igrpc.TenantServiceStub(as_identity("identity", "cli"))
    assert cli.CreateTenant(req, metadata=(forged,), timeout=10).slug == slug


# -- streaming ----------------------------------------------------------------------------


def _streams(channel, metadata):
    stub = core_pb2_grpc.DiagnosticsServiceStub(channel)
    reqs = [core_pb2.PingRequest(payload=b"a"), core_pb2.PingRequest(payload=b"b")]
    return {
        "PingMany": lambda: [r.tenant for r in stub.PingMany(PING, metadata=metadata, timeout=5)],
        "PingAll": lambda: [stub.PingAll(iter(reqs), metadata=metadata, timeout=5).tenant],
        "PingEach": lambda: [r.tenant for r in stub.PingEach(iter(reqs), metadata=metadata)],
    }


def scrape(system, process: str) -> str:
    port = system.ports[f"{process}-metrics"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def count(text: str, method: str, code: str) -> float:
    prefix = f'ontrack_grpc_requests_total{{code="{code}",method="{method}",service="inventory"}}'
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(prefix))


def test_streaming_calls_get_the_tenant_and_are_counted(system, as_identity, tenant):
    before = scrape(system, "inventory-api")
    calls = _streams(as_identity("inventory", "gateway"), md(tenant))
    assert calls["PingMany"]() == [tenant] * 3
    assert calls["PingAll"]() == [tenant]
    assert calls["PingEach"]() == [tenant] * 2
    after = scrape(system, "inventory-api")
    for method in calls:
        assert count(after, method, "OK") == count(before, method, "OK") + 1, method
    missing = _streams(as_identity("inventory", "gateway"), ())
    for method, call in missing.items():
        assert code_of(call) == grpc.StatusCode.UNAUTHENTICATED, method
    assert count(scrape(system, "inventory-api"), "PingEach", "UNAUTHENTICATED") >= 1


@pytest.mark.parametrize(
    ("case", "code"),
    [
        ("unknown tenant", grpc.StatusCode.NOT_FOUND),
        ("malformed tenant", grpc.StatusCode.INVALID_ARGUMENT),
        ("forged actor", grpc.StatusCode.PERMISSION_DENIED),
        ("no identity", grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_streaming_calls_are_refused_like_unary_ones(system, as_identity, tenant, case, code):
    channel = as_identity("privacy", "operator")
    metadata = md(tenant)
    if case == "unknown tenant":
        metadata = md(unique("nobody"))
    elif case == "malformed tenant":
        metadata = (("x-ontrack-tenant", "Not A Slug"),)
    elif case == "forged actor":
        metadata = (*md(tenant), (trust.ACTOR_METADATA, "cli:alice"))
    else:
        material = _signed_by_the_deployment_ca(system, [])
        channel = grpcclient.secure_channel(system.target("privacy"), "privacy", material)
    for method, call in _streams(channel, metadata).items():
        assert code_of(call) == code, method


def test_hostile_bytes_in_a_request_stream_are_invalid_argument(as_identity, tenant):
    path = "/ontrackio.core.v1.DiagnosticsService/PingEach"
    channel = as_identity("evidence", "operator")
    each = channel.stream_stream(path, request_serializer=None, response_deserializer=None)
    good = core_pb2.PingRequest(payload=b"x").SerializeToString()
    for bad, detail in [
        (b"\x1a\x03a\x00b", "note: NUL characters are not allowed"),
        (b"\x1a\x02\xc3\x28", "note: not valid UTF-8"),
        (b"\x1a\x09\xef\xbc\xa1\xed\xa0\x80xyz", "note: not valid UTF-8"),  # Ａ + a surrogate
    ]:
        with pytest.raises(grpc.RpcError) as info:
            list(each(iter([good, bad, good]), metadata=md(tenant), timeout=5))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.details() == detail
    many = channel.unary_stream(
        "/ontrackio.core.v1.DiagnosticsService/PingMany",
        request_serializer=None,
        response_deserializer=None,
    )
    with pytest.raises(grpc.RpcError) as info:
        list(many(b"\x10\x02\x1a\x01\x00", metadata=md(tenant), timeout=5))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "note: NUL characters are not allowed"


# -- hostile bytes in every API -----------------------------------------------------------


def _first_string_field(descriptor, prefix=""):
    """(path, wire bytes builder) of the first string field, nested messages included."""
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            name = f"{prefix}{f.name}" + ("[0]" if f.is_repeated else "")
            return name, lambda v, n=f.number: _ld(n, v)
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE and not f.message_type.GetOptions().map_entry:
            inner = _first_string_field(f.message_type, f"{prefix}{f.name}.")
            if inner is not None:
                name, build = inner
                return name, lambda v, n=f.number, b=build: _ld(n, b(v))
    return None


def _ld(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


@pytest.mark.parametrize(("full", "method", "allowed"), RULES, ids=[f"{r[1]}" for r in RULES])
def test_nul_and_invalid_utf8_in_every_api_are_invalid_argument_naming_the_field(
    as_identity, tenant, full, method, allowed
):
    call = raw(as_identity(SERVICE_OF[full], sorted(allowed)[0]), f"/{full}/{method}")
    descriptor = descriptor_pool.Default().FindMethodByName(f"{full}.{method}").input_type

    def refused(data: bytes) -> str:
        with pytest.raises(grpc.RpcError) as info:
            call(data, metadata=md(tenant), timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, info.value.details()
        return info.value.details()

    assert refused(b"\x0a\xff\xff\xff") == f"request is not a valid {descriptor.name}"
    found = _first_string_field(descriptor)
    if found is None:
        return
    name, build = found
    assert refused(build(b"ok\x00")) == f"{name}: NUL characters are not allowed"
    assert refused(build(b"\xff\xfe")) == f"{name}: not valid UTF-8"
    assert refused(build(b"\xed\xb2\x80")) == f"{name}: not valid UTF-8"  # lone surrogate


def test_a_nul_deep_in_a_repeated_field_is_named(as_identity):
    create = raw(
        as_identity("identity", "operator"), "/ontrackio.identity.v1.TenantService/CreateTenant"
    )
    req = ipb.CreateTenantRequest(
        slug=unique("nul"), name="n", tier=ipb.TIER_BUSINESS, domains=["a.example", "b\0.example"]
    )
    with pytest.raises(grpc.RpcError) as info:
        create(req.SerializeToString(), timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "domains[1]: NUL characters are not allowed"


# -- reflection ---------------------------------------------------------------------------


def test_reflection_is_served_in_development_mode_only(system, settings):
    """The stack runs outside development mode (no reflection: test_grpc_contract.py); a
    server built in development mode, with the same certificates, serves it."""
    directory = TenantDirectory(lambda s: TenantInfo(s, "active", "main", "business"), 5)
    dev = config.load(development=True)
    port = free_port()
    server, _ = grpcserver.build_server(
        "inventory", [], directory, dev, address=f"127.0.0.1:{port}", workers=2
    )
    server.start()
    try:
        material = system.material("operator")
        with grpcclient.secure_channel(f"127.0.0.1:{port}", "inventory", material) as ch:
            replies = reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
            names = {s.name for r in replies for s in r.list_services_response.service}
    finally:
        server.stop(0)
    assert "ontrackio.core.v1.DiagnosticsService" in names and "grpc.health.v1.Health" in names


def test_a_registration_must_name_the_callers_of_every_method(settings):
    directory = TenantDirectory(lambda s: None, 5)
    incomplete = grpcserver.Registration(
        igrpc.add_TenantServiceServicer_to_server,
        igrpc.TenantServiceServicer(),
        "ontrackio.identity.v1.TenantService",
        tenant_scoped=False,
        callers={"GetTenant": trust.TENANT_READERS},
    )
    with pytest.raises(ValueError, match="missing"):
        grpcserver.build_server(
            "identity", [incomplete], directory, settings, address="127.0.0.1:0", workers=1
        )


@pytest.mark.parametrize("key", [trust.REQUEST_ID_METADATA, trust.CLIENT_ADDRESS_METADATA])
def test_an_origin_is_believed_only_from_the_gateway_and_the_cli(as_identity, tenant, key):
    """The audit trail's request id and client address are the edge's to say, like the actor."""
    said = ((key, "203.0.113.7"),)
    lookup = igrpc.TenantServiceStub(as_identity("identity", "inventory")).GetTenant
    with pytest.raises(grpc.RpcError) as info:
        lookup(ipb.GetTenantRequest(slug=tenant), metadata=said, timeout=5)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert key in info.value.details()
    edge = igrpc.TenantServiceStub(as_identity("identity", "gateway")).GetTenant
    assert edge(ipb.GetTenantRequest(slug=tenant), metadata=said, timeout=5).status == (
        ipb.TENANT_STATUS_ACTIVE
    )
