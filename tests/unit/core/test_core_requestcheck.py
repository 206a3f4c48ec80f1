"""Hostile request bytes: invalid UTF-8 and NUL in any string field (top-level, repeated,
nested, map) become a BadRequest naming the field; the wrapped deserializer never raises."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ontrackio.core.requestcheck import BadRequest, checked
from ontrackio.core.v1 import core_pb2
from ontrackio.identity.v1 import identity_pb2 as ipb


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(number: int, payload: bytes) -> bytes:
    """A length-delimited field on the wire."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def parse(cls, data: bytes):
    return checked(cls.FromString, cls.DESCRIPTOR)(data)


def test_a_good_request_passes_unchanged():
    req = ipb.CreateTenantRequest(
        slug="acme", name="Äcme ＧｍｂＨ %00 %2500", domains=["a.example"]
    )
    assert parse(ipb.CreateTenantRequest, req.SerializeToString()) == req


def test_invalid_utf8_names_the_field():
    data = ld(1, b"acme") + ld(2, b"bad \xff name")
    assert parse(ipb.CreateTenantRequest, data) == BadRequest("name: not valid UTF-8")


def test_an_encoded_surrogate_is_not_utf8():
    data = ld(1, b"acme") + ld(4, b"ok.example") + ld(4, b"\xed\xa0\x80.example")
    assert parse(ipb.CreateTenantRequest, data) == BadRequest("domains[1]: not valid UTF-8")


def test_nul_names_the_repeated_field_and_index():
    req = ipb.CreateTenantRequest(slug="acme", domains=["a.example", "b\0.example"])
    got = parse(ipb.CreateTenantRequest, req.SerializeToString())
    assert got == BadRequest("domains[1]: NUL characters are not allowed")


def test_nul_and_bad_utf8_in_nested_messages_are_found():
    t = ipb.Tenant(slug="x", services=[ipb.ServiceState(state="ok"), ipb.ServiceState(state="a\0")])
    assert parse(ipb.Tenant, t.SerializeToString()) == BadRequest(
        "services[1].state: NUL characters are not allowed"
    )
    data = ld(2, b"x") + ld(11, ld(1, b"identity")) + ld(11, ld(2, b"\xc3"))
    assert parse(ipb.Tenant, data) == BadRequest("services[1].state: not valid UTF-8")


def test_nul_in_a_map_is_found():
    env = core_pb2.EventEnvelope(id="1", trace={"traceparent": "x\0y"})
    assert parse(core_pb2.EventEnvelope, env.SerializeToString()) == BadRequest(
        "trace (a value): NUL characters are not allowed"
    )
    env = core_pb2.EventEnvelope(id="1", trace={"k\0": "v"})
    assert isinstance(parse(core_pb2.EventEnvelope, env.SerializeToString()), BadRequest)


def test_nul_in_a_bytes_field_is_data():
    req = core_pb2.PingRequest(payload=b"\0\0\xff")
    assert parse(core_pb2.PingRequest, req.SerializeToString()) == req


def test_garbage_is_refused_without_naming_a_field():
    assert parse(ipb.CreateTenantRequest, b"\x0a\xff\xff\xff") == BadRequest(
        "request is not a valid CreateTenantRequest"
    )


def test_a_huge_string_passes_and_a_huge_bad_one_is_named():
    big = "ü" * 500_000
    req = ipb.CreateTenantRequest(name=big)
    assert parse(ipb.CreateTenantRequest, req.SerializeToString()).name == big
    assert parse(ipb.CreateTenantRequest, ld(2, big.encode() + b"\0")) == BadRequest(
        "name: NUL characters are not allowed"
    )


@given(st.binary(max_size=64), st.binary(max_size=64))
def test_any_bytes_in_string_fields_either_pass_clean_or_are_named(slug: bytes, domain: bytes):
    got = parse(ipb.CreateTenantRequest, ld(1, slug) + ld(4, domain))
    bad = []
    for name, raw in (("slug", slug), ("domains[0]", domain)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(f"{name}: not valid UTF-8")
            continue
        if "\0" in text:
            bad.append(f"{name}: NUL characters are not allowed")
    if not bad:
        assert isinstance(got, ipb.CreateTenantRequest)
        assert got.slug == slug.decode() and list(got.domains) == [domain.decode()]
    elif any("UTF-8" in b for b in bad):
        assert got == BadRequest(next(b for b in bad if "UTF-8" in b))
    else:
        assert got == BadRequest(bad[0])


@given(st.text(max_size=40))
def test_any_text_round_trips_unless_it_holds_nul(text: str):
    try:
        data = ipb.CreateTenantRequest(name=text).SerializeToString()
    except (ValueError, UnicodeEncodeError):  # lone surrogates cannot even be sent
        return
    got = parse(ipb.CreateTenantRequest, data)
    if "\0" in text:
        assert got == BadRequest("name: NUL characters are not allowed")
    else:
        assert got.name == text


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes):
    got = parse(ipb.Tenant, data)
    assert isinstance(got, ipb.Tenant | BadRequest)
