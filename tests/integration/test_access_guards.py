"""Identity's AccessService guards, on the running api: a token mints only narrower tokens,
and an allowlist change from an unknown address needs confirming."""

from __future__ import annotations

import grpc
import pytest

from ontrackio.identity.v1 import access_pb2 as apb
from ontrackio.identity.v1 import access_pb2_grpc as agrpc
from tests.conftest import unique
from tests.helpers import create_tenant, md


@pytest.fixture(scope="module")
def tenant(channels):
    slug = unique("ac")
    create_tenant(channels, slug)
    return slug


def stub(channels):
    return agrpc.AccessServiceStub(channels["identity"])


def as_actor(slug: str, actor: str):
    return (*md(slug), ("x-ontrack-actor", actor))


def mint(channels, slug, actor=None, *, scopes, cidrs=(), expires_in=0):
    metadata = as_actor(slug, actor) if actor else md(slug)
    return stub(channels).CreateToken(
        apb.CreateTokenRequest(
            name="t", scopes=list(scopes), cidrs=list(cidrs), expires_in_seconds=expires_in
        ),
        metadata=metadata,
        timeout=10,
    )


def refusal(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


@pytest.fixture(scope="module")
def minter(channels, tenant):
    """An admin token limited to one network and one day (made by an operator)."""
    r = mint(
        channels,
        tenant,
        scopes=["api:read", "admin"],
        cidrs=["10.20.0.0/16", "2001:db8:1::/48"],
        expires_in=86400,
    )
    return f"token:{r.token.id}"


@pytest.mark.parametrize(
    ("scopes", "cidrs", "expires_in", "named"),
    [
        (["api:read", "api:write"], ["10.20.1.0/24"], 3600, "'api:write'"),
        (["api:read"], ["10.20.1.0/24"], 0, "lifetime"),
        (["api:read"], ["10.20.1.0/24"], 2 * 86400, "lifetime"),
        (["api:read"], [], 3600, "networks"),
        (["api:read"], ["10.0.0.0/8"], 3600, "networks"),
        (["api:read"], ["::/0"], 3600, "networks"),
    ],
)
def test_a_token_cannot_mint_a_wider_token(
    channels, tenant, minter, scopes, cidrs, expires_in, named
):
    err = refusal(
        lambda: mint(channels, tenant, minter, scopes=scopes, cidrs=cidrs, expires_in=expires_in)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert named in err.details()


def test_a_token_mints_a_narrower_token(channels, tenant, minter):
    r = mint(
        channels,
        tenant,
        minter,
        scopes=["api:read"],
        cidrs=["::ffff:10.20.3.0/120", "2001:db8:1:2::/64"],
        expires_in=3600,
    )
    assert list(r.token.scopes) == ["api:read"]
    assert list(r.token.cidrs) == ["10.20.3.0/24", "2001:db8:1:2::/64"]
    assert r.token.created_by == minter


def test_a_revoked_or_unknown_token_mints_nothing(channels, tenant):
    made = mint(channels, tenant, scopes=["admin"])
    # Positive control: before its revocation the same token, asking the same, mints.
    assert mint(
        channels, tenant, f"token:{made.token.id}", scopes=["admin"], expires_in=60
    ).token.id
    stub(channels).RevokeToken(apb.RevokeTokenRequest(id=made.token.id), metadata=md(tenant))
    for actor in (f"token:{made.token.id}", "token:" + "0" * 24, "token:", "token:x'; --"):
        err = refusal(lambda a=actor: mint(channels, tenant, a, scopes=["admin"], expires_in=60))
        assert err.code() == grpc.StatusCode.PERMISSION_DENIED, actor


def test_operators_are_not_limited(channels, tenant, minter):
    r = mint(channels, tenant, "cli:ops", scopes=["api:read", "api:write", "admin", "scim"])
    assert not r.token.cidrs and not r.token.HasField("expires_at")


@pytest.mark.parametrize("caller", ["", "not-an-address", "１０.０.０.１"])
def test_an_unknown_caller_address_counts_as_locked_out(channels, caller):
    slug = unique("al")
    create_tenant(channels, slug)

    def set_list(cidrs, confirm=False):
        return stub(channels).SetAllowlist(
            apb.SetAllowlistRequest(cidrs=cidrs, caller_address=caller, confirm_lockout=confirm),
            metadata=md(slug),
            timeout=10,
        )

    err = refusal(lambda: set_list(["192.0.2.0/24"]))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "confirm_lockout" in err.details()
    kept = stub(channels).GetAllowlist(apb.GetAllowlistRequest(), metadata=md(slug))
    assert list(kept.cidrs) == []
    assert list(set_list(["192.0.2.0/24"], confirm=True).cidrs) == ["192.0.2.0/24"]
    assert list(set_list([]).cidrs) == []  # an empty list refuses nobody: nothing to confirm


def test_a_caller_address_with_nul_is_refused_before_the_service(channels, tenant):
    """NUL never reaches the lock-out guard: every API refuses it as INVALID_ARGUMENT, where
    the same request without the NUL is the guard's to answer."""

    def set_list(caller_address):
        return stub(channels).SetAllowlist(
            apb.SetAllowlistRequest(cidrs=["192.0.2.0/24"], caller_address=caller_address),
            metadata=md(tenant),
            timeout=10,
        )

    err = refusal(lambda: set_list("10.0.0.1\x00"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "caller_address: NUL characters are not allowed"
    # Positive control: without the NUL the request reaches the guard, which refuses to lock
    # 10.0.0.1 out unconfirmed.
    guarded = refusal(lambda: set_list("10.0.0.1"))
    assert guarded.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "confirm_lockout" in guarded.details()
    kept = stub(channels).GetAllowlist(apb.GetAllowlistRequest(), metadata=md(tenant))
    assert "192.0.2.0/24" not in kept.cidrs


def test_a_token_name_with_nul_is_invalid_not_internal(channels, tenant):
    err = refusal(
        lambda: stub(channels).CreateToken(
            apb.CreateTokenRequest(name="a\x00b", scopes=["api:read"]),
            metadata=md(tenant),
            timeout=10,
        )
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
