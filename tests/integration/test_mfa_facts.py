"""The MFA facts evidence reports (identity/mfa/facts.py) on a real identity tenant
database: exact figures as of two dates, with rows on both sides of every boundary (users
created, roles granted, TOTPs confirmed, passkeys created and flagged, sessions in and out
of the 30-day window and at stages other than ``full``)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.runtime import service_dir
from ontrackio.identity.mfa import facts
from tests.conftest import unique

pytestmark = pytest.mark.integration

T = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # the first as_of
LATER = T + timedelta(days=20)  # the second
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


@pytest.fixture(scope="module")
def conninfo(settings):
    """A fresh identity tenant database (every migration), dropped at the end."""
    slug = unique("mf")
    prov = Provisioner(
        "identity",
        Clusters(settings),
        mig.for_service(service_dir("identity")),
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
        use_template=False,
    )
    prov.provision(slug, "main")
    try:
        yield Clusters(settings).tenant_conninfo("identity", slug, "main")
    finally:
        prov.drop(slug, "main")


def _user(conn, created_at: datetime, *roles: tuple[str, datetime], active: bool = True):
    user_id = uuid.uuid4()
    conn.execute(
        "INSERT INTO users (id, email, active, created_at) VALUES (%s, %s, %s, %s)",
        (user_id, f"{user_id.hex[:12]}@facts.example", active, created_at),
    )
    for role, granted_at in roles:
        conn.execute(
            "INSERT INTO user_roles (user_id, role, granted_at) VALUES (%s, %s, %s)",
            (user_id, role, granted_at),
        )
    return user_id


def _totp(conn, user_id, created_at: datetime, confirmed_at: datetime | None) -> None:
    conn.execute(
        "INSERT INTO mfa_totp (user_id, secret, confirmed_at, created_at)"
        " VALUES (%s, '\\x00'::bytea, %s, %s)",
        (user_id, confirmed_at, created_at),
    )


def _passkey(conn, user_id, created_at: datetime, flagged_at: datetime | None = None) -> None:
    conn.execute(
        "INSERT INTO mfa_passkeys (id, user_id, credential_id, public_key, name, flagged_at,"
        " created_at) VALUES (%s, %s, %s, '\\x01'::bytea, 'key', %s, %s)",
        (uuid.uuid4(), user_id, uuid.uuid4().bytes, flagged_at, created_at),
    )


def _session(conn, user_id, created_at: datetime, source: str, stage: str = "full") -> None:
    conn.execute(
        "INSERT INTO sessions (id, secret_hash, user_id, method, mfa_source, stage, created_at,"
        " last_seen_at, idle_expires_at, expires_at)"
        " VALUES (%s, '\\x02'::bytea, %s, 'password', %s, %s, %s, %s, %s, %s)",
        (
            uuid.uuid4().hex,
            user_id,
            source,
            stage,
            created_at,
            created_at,
            created_at + DAY,
            created_at + DAY,
        ),
    )


@pytest.fixture(scope="module")
def tenant(conninfo):
    """Users, roles, factors and sessions on both sides of T and LATER."""
    old = T - 100 * DAY
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("UPDATE signin_policy SET mfa_policy = 'admins'")
        owner = _user(conn, old, ("owner", old))
        _totp(conn, owner, T - 51 * DAY, T - 50 * DAY)
        admin = _user(conn, old, ("admin", old), ("member", old))
        _passkey(conn, admin, T - 40 * DAY)
        _passkey(conn, admin, LATER)  # a second passkey, made exactly at LATER: counts then
        pending = _user(conn, T - 90 * DAY, ("member", old))
        _totp(conn, pending, T - 80 * DAY, None)  # never confirmed: no factor
        flagged_early = _user(conn, T - 90 * DAY, ("member", old))
        _passkey(conn, flagged_early, T - 60 * DAY, flagged_at=T - 10 * DAY)
        flagged_later = _user(conn, T - 90 * DAY, ("member", old))
        _passkey(conn, flagged_later, T - 60 * DAY, flagged_at=LATER)  # not at LATER itself
        inactive = _user(conn, old, ("admin", old), active=False)
        _totp(conn, inactive, T - 51 * DAY, T - 50 * DAY)
        _passkey(conn, inactive, T - 40 * DAY)
        late = _user(conn, T + 10 * DAY, ("admin", T + 10 * DAY))
        _totp(conn, late, T + 10 * DAY, T + 12 * DAY)
        promoted = _user(conn, old, ("member", old), ("admin", T + 3 * DAY))
        _totp(conn, promoted, T + DAY, T + DAY)
        boundary = _user(conn, T, ("member", T))  # created, and its TOTP confirmed, at T
        _totp(conn, boundary, T, T)
        _passkey(conn, boundary, T + SECOND)

        for at, source, stage, user in [
            (T - 40 * DAY, "idp", "full", owner),  # older than 30 days
            (T - 30 * DAY, "local", "full", owner),  # exactly 30 days: out
            (T - 29 * DAY, "idp", "full", owner),
            (T - 10 * DAY, "none", "full", pending),  # in at T, exactly 30 days at LATER
            (T - 5 * DAY, "idp", "full", admin),
            (T - 5 * DAY, "none", "step_up", owner),  # a step-up stage: no sign-in
            (T - 5 * DAY + SECOND, "local", "full", owner),  # ...its replacement is
            (T - DAY, "idp", "full", inactive),  # sign-ins count whoever made them
            (T, "none", "full", boundary),  # exactly at T: in
            (T + SECOND, "local", "full", admin),
            (T + 2 * DAY, "none", "enrol", late),  # enrolment stage: no sign-in
            (T + 15 * DAY, "local", "full", late),
            (LATER, "idp", "full", promoted),
            (LATER + SECOND, "idp", "full", promoted),  # after both
        ]:
            _session(conn, user, at, source, stage)
    return conninfo


def _facts(conninfo, as_of: datetime) -> dict:
    with psycopg.connect(conninfo) as conn:
        return facts.facts(UnitOfWork(conn, "t"), as_of)


def test_facts_as_of_the_first_date(tenant):
    assert _facts(tenant, T) == {
        "policy": "admins",
        # owner, admin, pending, flagged_early, flagged_later, promoted, boundary
        "active_users": 7,
        # owner (TOTP), admin (passkey), flagged_later (flagged after T), boundary (TOTP at T)
        "users_enrolled": 4,
        "admins": 2,  # owner, admin: promoted only after T, the inactive admin never
        "admins_enrolled": 2,
        "users_with_passkey": 2,  # admin, flagged_later
        "factors": 4,
        "passkey_factors": 2,
        "sign_ins_by_mfa_source": {"idp": 3, "local": 1, "none": 2},
        "sign_ins": 6,
    }


def test_facts_as_of_the_second_date(tenant):
    assert _facts(tenant, LATER) == {
        "policy": "admins",  # the current policy, whatever the date
        "active_users": 8,  # late joins
        # owner, admin, late, promoted, boundary; flagged_later's passkey was flagged at LATER
        "users_enrolled": 5,
        "admins": 4,  # owner, admin, late, promoted
        "admins_enrolled": 4,
        "users_with_passkey": 2,  # admin, boundary
        "factors": 7,  # TOTPs of owner, late, promoted, boundary; admin's two, boundary's
        "passkey_factors": 3,
        "sign_ins_by_mfa_source": {"idp": 3, "local": 3, "none": 1},
        "sign_ins": 7,
    }


def test_before_anything_every_source_is_there_at_zero(tenant):
    assert _facts(tenant, T - 200 * DAY) == {
        "policy": "admins",
        "active_users": 0,
        "users_enrolled": 0,
        "admins": 0,
        "admins_enrolled": 0,
        "users_with_passkey": 0,
        "factors": 0,
        "passkey_factors": 0,
        "sign_ins_by_mfa_source": {"idp": 0, "local": 0, "none": 0},
        "sign_ins": 0,
    }


def test_a_removed_factor_no_longer_counts_for_earlier_dates(tenant):
    """The documented limit: factors are deleted rows, so history does not keep them."""
    with psycopg.connect(tenant) as conn:
        u = UnitOfWork(conn, "t")
        before = facts.facts(u, T)
        conn.execute(
            "DELETE FROM mfa_passkeys WHERE user_id IN"
            " (SELECT user_id FROM user_roles WHERE role = 'admin' AND granted_at < %s)",
            (T,),
        )  # the admin's passkeys (the inactive admin's too: it never counted)
        after = facts.facts(u, T)
        conn.rollback()
    assert (before["users_enrolled"], before["admins_enrolled"]) == (4, 2)
    assert (after["users_enrolled"], after["admins_enrolled"]) == (3, 1)
    assert after["passkey_factors"] == before["passkey_factors"] - 1


def test_a_naive_as_of_is_refused(tenant):
    with pytest.raises(ValueError):
        _facts(tenant, datetime(2025, 3, 1, 12, 0))
