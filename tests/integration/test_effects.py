"""The domain effects take a batch of events' payloads in one statement, on a real tenant
database: one listed twice in a batch is applied as if one after the other (an upsert that
touched a row twice would fail the whole batch)."""

from __future__ import annotations

import uuid

import pytest

from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.tenantdb import UnitOfWork
from ontrackio.core.tenancy import Names
from ontrackio.evidence import metrics
from ontrackio.inventory import assets
from ontrackio.privacy import subjects
from tests.conftest import unique
from tests.helpers import create_tenant


@pytest.fixture(scope="module")
def slug(system, channels):
    s = unique("fx")
    create_tenant(channels, s)
    return s


def unit(settings, service: str, slug: str):
    db = Names(settings.deployment, service).tenant_database(slug)
    return Clusters(settings).admin_connect("main", db)


def test_privacy_records_subjects_the_later_email_wins(settings, slug):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    with unit(settings, "privacy", slug) as conn:
        subjects.record(UnitOfWork(conn, slug), [(a, "old@x.example"), (b, "b@x.example")])
        subjects.record(UnitOfWork(conn, slug), [(a, "mid@x.example"), (a, "new@x.example")])
        rows = dict(
            conn.execute(
                "SELECT user_id::text, email FROM data_subjects WHERE user_id = ANY(%s::uuid[])",
                ([a, b],),
            ).fetchall()
        )
    assert rows == {a: "new@x.example", b: "b@x.example"}


def test_inventory_records_owners_and_leavers(settings, slug):
    a, b, gone = (str(uuid.uuid4()) for _ in range(3))
    with unit(settings, "inventory", slug) as conn:
        u = UnitOfWork(conn, slug)
        assets.record_owners(u, [(a, "a1@x.example"), (b, "b@x.example"), (a, "a2@x.example")])
        assets.record_leavers(u, [a, gone, a])  # a leaver not seen joining is kept, inactive
        rows = {
            r[0]: r[1:]
            for r in conn.execute(
                "SELECT user_id::text, email, active FROM owners WHERE user_id = ANY(%s::uuid[])",
                ([a, b, gone],),
            )
        }
    assert rows == {a: ("a2@x.example", False), b: ("b@x.example", True), gone: ("", False)}


def test_evidence_keeps_the_first_facts_of_an_asset(settings, slug):
    """An asset listed twice in a batch, and again in a later one, keeps the facts it was
    first recorded with."""
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    with unit(settings, "evidence", slug) as conn:
        u = UnitOfWork(conn, slug)
        metrics.record_assets(u, [(a, "laptop", True), (b, "phone", False), (a, "server", False)])
        metrics.record_assets(u, [(b, "server", True)])
        rows = dict(
            (r[0], r[1:])
            for r in conn.execute(
                "SELECT asset_id::text, kind, has_owner FROM asset_facts"
                " WHERE asset_id = ANY(%s::uuid[])",
                ([a, b],),
            )
        )
    assert rows == {a: ("laptop", True), b: ("phone", False)}
