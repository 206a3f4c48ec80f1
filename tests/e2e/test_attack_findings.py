"""Attacks on roles and local sign-in that once worked (issue 12's attack review), each
through identity's own API or the gateway's pages.

- An admin's API token made an owner (a token's actor was not held to "only an owner
  makes an owner"), so an admin could mint one and promote themselves.
- An admin deactivated an owner, and anyone the last active owner, by DeactivateUser
  (set_roles guarded the owner role; deactivation, which removes an owner too, did not).
- Under ``sso_required`` an invitation link still set a password and opened a password
  session for a user who is not break-glass.
"""

from __future__ import annotations

import grpc
import pytest

from ontrackio.identity.v1 import identity_pb2 as ipb
from ontrackio.identity.v1 import identity_pb2_grpc as igrpc
from ontrackio.identity.v1 import sessions_pb2 as spb
from tests.conftest import unique
from tests.e2e.sessions_kit import create_user, sessions_stub
from tests.e2e.signin_kit import PASSWORD, Browser, accept, cli, cli_md, invite, link_of, owner
from tests.e2e.test_gateway_kit import gateway_fixture  # noqa: F401 - fixture
from tests.helpers import create_tenant, md

pytestmark = pytest.mark.e2e


def _as(slug: str, actor: str):
    return [*md(slug), ("x-ontrack-actor", actor)]


def _code(call) -> grpc.StatusCode | None:
    try:
        call()
    except grpc.RpcError as err:
        return err.code()
    return None


def test_an_api_token_cannot_make_or_unmake_an_owner(channels):
    slug = unique("ak")
    create_tenant(channels, slug)
    owner = create_user(channels, slug, "owner")
    admin = create_user(channels, slug, "admin")
    stub = sessions_stub(channels)

    def set_roles(user_id, *roles):
        return lambda: stub.SetUserRoles(
            spb.SetUserRolesRequest(user_id=user_id, roles=list(roles)),
            metadata=_as(slug, "token:aaaaaaaaaaaaaaaaaaaaaaaa"),
            timeout=10,
        )

    assert _code(set_roles(admin, "owner")) is grpc.StatusCode.PERMISSION_DENIED
    assert _code(set_roles(owner, "member")) is grpc.StatusCode.PERMISSION_DENIED
    assert _code(set_roles(admin, "member")) is None  # what an admin may do, a token may
    got = stub.GetUserRoles(spb.GetUserRolesRequest(user_id=owner), metadata=md(slug), timeout=10)
    assert list(got.roles) == ["owner"]


def test_owners_are_deactivated_only_by_owners_and_never_the_last(system, channels):
    slug = unique("ak")
    create_tenant(channels, slug)
    owner = create_user(channels, slug, "owner")
    admin = create_user(channels, slug, "admin")
    users = igrpc.UserServiceStub(channels["identity"])
    edge = igrpc.UserServiceStub(system.channel("identity", "gateway"))  # carries actors

    def deactivate(user_id, actor):
        if actor == "operator":
            return lambda: users.DeactivateUser(
                ipb.GetUserRequest(id=user_id), metadata=md(slug), timeout=10
            )
        return lambda: edge.DeactivateUser(
            ipb.GetUserRequest(id=user_id), metadata=_as(slug, actor), timeout=10
        )

    assert _code(deactivate(owner, f"user:{admin}")) is grpc.StatusCode.PERMISSION_DENIED
    assert _code(deactivate(owner, "token:aaaaaaaaaaaaaaaaaaaaaaaa")) is (
        grpc.StatusCode.PERMISSION_DENIED
    )
    # The only owner, even by themselves or an operator.
    assert _code(deactivate(owner, f"user:{owner}")) is grpc.StatusCode.FAILED_PRECONDITION
    assert _code(deactivate(owner, "operator")) is grpc.StatusCode.FAILED_PRECONDITION
    second = create_user(channels, slug, "owner")
    assert _code(deactivate(owner, f"user:{second}")) is None
    assert not users.GetUser(ipb.GetUserRequest(id=owner), metadata=md(slug), timeout=10).active
    assert _code(deactivate(admin, f"user:{second}")) is None  # admins as before


def test_sso_required_also_closes_invitation_links_but_for_break_glass(
    system, channels, gateway, smtp
):
    slug = unique("ak")
    create_tenant(channels, slug)
    _, owner_id = owner(system, gateway, smtp, slug)
    member_email = f"member-{slug}@example.com"
    invite(system, gateway, slug, member_email, role="member")
    spare_email = f"spare-{slug}@example.com"
    spare_id = create_user(channels, slug, "owner", email=spare_email)  # no password yet
    invite(system, gateway, slug, spare_email)
    sessions_stub({"identity": cli(system)}).SetSignInPolicy(
        spb.SignInPolicy(sso_required=True, break_glass_users=[owner_id, spare_id]),
        metadata=cli_md(slug),
        timeout=10,
    )
    b = Browser(gateway, slug)
    target = link_of(smtp, member_email)[len(b.origin) :]
    assert b.get(target).status == 404  # the page no longer offers a password
    token = target.split("token=", 1)[1]
    r = b.post_form(
        "/invite", {"token": token, "password": PASSWORD, "confirm": PASSWORD, "form_token": "x"}
    )
    assert r.status in (403, 404) and not any("ontrack_session" in k for k in b.jar)
    # A break-glass owner's link still works.
    assert accept(Browser(gateway, slug), link_of(smtp, spare_email)).status == 303
