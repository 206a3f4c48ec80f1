"""The audit trail against the real PostgreSQL: privileges, the chain, sealing under
concurrency, pseudonymisation, legacy rows moved in order, anchors and tampering found.

Tenant databases are provisioned with the real Provisioner (template clones, as in
production); tampering is done as the superuser, the only role that can.
"""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from ontrackio.core.audit import anchor, chain, verify
from ontrackio.core.audit import log as audit_log
from ontrackio.core.db import migrations as mig
from ontrackio.core.db.clusters import Clusters
from ontrackio.core.db.provisioning import Provisioner
from ontrackio.core.runtime import service_dir
from tests.conftest import unique
from tests.helpers import eventually

TOKEN = "token:" + "ab" * 12


@pytest.fixture(scope="module")
def clusters(settings) -> Clusters:
    return Clusters(settings)


@pytest.fixture(scope="module")
def prov(settings, clusters) -> Provisioner:
    p = Provisioner(
        "inventory",
        clusters,
        mig.for_service(service_dir("inventory")),
        settings.deployment,
        settings.tenant_role_secret.get_secret_value(),
    )
    p.ensure_template("main")
    return p


@pytest.fixture()
def tenant(prov, clusters):
    """A fresh inventory tenant database; yields (slug, tenant-role conninfo, db name)."""
    slug = unique("au")
    done = prov.provision(slug, "main")
    yield slug, clusters.tenant_conninfo("inventory", slug, "main"), done.database
    prov.drop(slug, "main")


def as_tenant(conninfo: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(conninfo, autocommit=autocommit)


def entry(i: int = 0, **kw) -> audit_log.Entry:
    return audit_log.Entry(
        kw.pop("actor", TOKEN),
        kw.pop("action", "token.create"),
        kw.pop("target", f"token:{i}"),
        None,
        kw.pop("new", {"n": i}),
        origin=audit_log.Origin("req-1", "192.0.2.7", "0af7651916cd43dd8448eb211c80319c"),
        **kw,
    )


def seal_all(conn: psycopg.Connection) -> int:
    """Seal until the chain's check reports nothing left unsealed; returns how many entries
    were sealed. Waited for, since another session's transaction on the shared server may
    hold the horizon back for a moment."""
    sealed = 0

    def done() -> bool:
        nonlocal sealed
        sealed += audit_log.seal(conn)
        return verify.verify(conn, "sealing", None).unsealed == 0

    eventually(done, timeout=10, interval=0.05)
    return sealed


def check(conn, db, anchor_=None) -> verify.Result:
    return verify.verify(conn, db, anchor_)


# -- privileges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit.entries SET actor = 'someone'",
        "DELETE FROM audit.entries",
        "TRUNCATE audit.entries",
        "ALTER TABLE audit.entries ADD COLUMN x int",
        "DROP TABLE audit.entries",
        "UPDATE audit.seals SET hash = hash",
        "DELETE FROM audit.seals",
        "TRUNCATE audit.seals",
        "INSERT INTO audit.seals VALUES (99, 1, decode(repeat('00', 32), 'hex'), '1')",
        "UPDATE audit.personal SET value = 'x'",
        "DELETE FROM audit.personal",
        "DROP SCHEMA audit CASCADE",
        "ALTER FUNCTION audit.seal(integer) OWNER TO CURRENT_USER",
        # the tenant may insert entries, but not choose their time or transaction
        "INSERT INTO audit.entries (at, actor, action, outcome) VALUES (now(), 'a', 'b.c', 'done')",
        "INSERT INTO audit.entries (xid, actor, action, outcome) VALUES ('1', 'a', 'b.c', 'done')",
    ],
)
def test_tenant_role_cannot_change_the_trail(tenant, statement):
    _, conninfo, _ = tenant
    with as_tenant(conninfo) as conn:
        audit_log.append(conn, entry())
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_trail_belongs_to_the_audit_role_in_a_template_clone(settings, tenant):
    _, conninfo, db = tenant
    with as_tenant(conninfo) as conn:
        owners = conn.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'audit'"
        ).fetchall()
        me = conn.execute("SELECT current_user").fetchone()[0]
    assert owners == [(f"{settings.deployment}_audit",)] and me == db


# -- the chain ----------------------------------------------------------------------------------


def test_the_sealer_runs_none_of_the_tenants_temporary_objects(tenant):
    """audit.seal runs as the audit role: a type the tenant shadows in its temporary schema
    (a domain whose check deletes the trail) must not be what it resolves."""
    _, conninfo, _ = tenant
    with as_tenant(conninfo) as conn:
        for i in range(3):
            audit_log.append(conn, entry(i))
        conn.execute(
            "CREATE FUNCTION pg_temp.wipe(v pg_catalog.bytea) RETURNS boolean"
            " LANGUAGE plpgsql AS $$ BEGIN DELETE FROM audit.seals; DELETE FROM audit.entries;"
            " RETURN true; END $$"
        )
        for name in ("bytea", "text", "xid8"):
            conn.execute(
                f"CREATE DOMAIN pg_temp.{name} AS pg_catalog.{name}"
                + (" CHECK (pg_temp.wipe(VALUE))" if name == "bytea" else "")
            )
        conn.execute("SELECT audit.seal(10)")
        assert conn.execute("SELECT count(*) FROM audit.entries").fetchone()[0] == 3


def test_appended_entries_are_sealed_into_a_chain_that_verifies(tenant):
    _, conninfo, db = tenant
    with as_tenant(conninfo, autocommit=False) as conn:
        for i in range(5):
            audit_log.append(conn, entry(i))
        conn.commit()
        audit_log.append(conn, entry(99))  # rolled back: leaves nothing behind
        conn.rollback()
    with as_tenant(conninfo) as conn:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with conn.transaction():
                audit_log.append(conn, entry(100))
                conn.execute("SELECT 'x'::int")
        audit_log.append(conn, entry(6))
        assert seal_all(conn) == 6
        result = check(conn, db)
        rows = conn.execute(
            "SELECT s.seq, e.new_value FROM audit.seals s JOIN audit.entries e"
            " ON e.id = s.entry_id ORDER BY s.seq"
        ).fetchall()
    assert result.ok and result.sealed == 6 and result.unsealed == 0
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r[1] for r in rows] == [f'{{"n":{i}}}' for i in (0, 1, 2, 3, 4, 6)]


def test_every_entry_records_when_who_what_and_where(tenant):
    _, conninfo, _ = tenant
    with as_tenant(conninfo) as conn:
        audit_log.append(
            conn,
            audit_log.Entry(
                TOKEN,
                "allowlist.set",
                "allowlist",
                {"cidrs": []},
                {"cidrs": ["10.0.0.0/8"]},
                origin=audit_log.Origin("req-9", "198.51.100.4", "ab" * 16),
            ),
        )
        [row] = audit_log.list_entries(conn, audit_log.Filters(), 10, None)
    assert row["actor"] == TOKEN and row["action"] == "allowlist.set"
    assert row["target"] == "allowlist" and row["outcome"] == "done"
    assert row["old_value"] == {"cidrs": []} and row["new_value"] == {"cidrs": ["10.0.0.0/8"]}
    assert (row["request_id"], row["client_address"], row["trace_id"]) == (
        "req-9",
        "198.51.100.4",
        "ab" * 16,
    )
    assert row["at"] is not None and row["seq"] is None  # not sealed yet


TEXT = st.text(
    alphabet=st.characters(blacklist_categories=()),  # every code point, surrogates included
    max_size=60,
) | st.sampled_from(["\x00", "ＡＢＣ＠ｅｘａｍｐｌｅ", "%2525%00", "\ud800", "e\u0301", "🧾" * 20])


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(actor=TEXT, target=TEXT, value=TEXT, request_id=TEXT, address=TEXT)
def test_the_sealer_and_the_python_encoding_agree_on_hostile_text(
    tenant, actor, target, value, request_id, address
):
    _, conninfo, db = tenant
    with as_tenant(conninfo) as conn:
        audit_log.append(
            conn,
            audit_log.Entry(
                actor,
                "token.create",
                target,
                {value: value},
                [value, 10**30, None],
                origin=audit_log.Origin(request_id, address, value),
            ),
        )
        seal_all(conn)
        result = check(conn, db)
    assert result.ok, result.reason


def test_actors_that_are_not_opaque_ids_go_to_the_side_table(tenant):
    _, conninfo, _ = tenant
    with as_tenant(conninfo) as conn:
        audit_log.append(conn, entry(actor="cli:alice"))
        audit_log.append(conn, entry(new={"email": audit_log.Personal("email", "bob@x.eu")}))
        stored = conn.execute("SELECT actor, new_value FROM audit.entries ORDER BY id").fetchall()
        [by_value] = audit_log.list_entries(conn, audit_log.Filters(actor="cli:alice"), 10, None)
    assert stored[0][0].startswith("pv:") and "alice" not in stored[0][0]
    assert "bob@x.eu" not in stored[1][1] and '"email":"pv:' in stored[1][1]
    assert by_value["actor_value"] == "cli:alice"


def test_pseudonymising_a_personal_value_keeps_the_chain_valid(tenant):
    _, conninfo, db = tenant
    with as_tenant(conninfo) as conn:
        audit_log.append(conn, entry(actor=audit_log.Personal("email", "carol@x.eu")))
        audit_log.append(conn, entry(1))
        seal_all(conn)
        assert check(conn, db).ok
        ref = conn.execute("SELECT actor FROM audit.entries ORDER BY id LIMIT 1").fetchone()[0]
        assert audit_log.pseudonymise(conn, ref) is True
        assert audit_log.pseudonymise(conn, f"pv:{uuid.uuid4()}") is False
        value = conn.execute("SELECT value, pseudonymised_at FROM audit.personal").fetchone()
        result = check(conn, db)
    assert "carol" not in value[0] and value[0].startswith("pseudonym-") and value[1]
    assert result.ok and result.sealed == 2


# -- concurrency --------------------------------------------------------------------------------


def test_concurrent_appenders_and_sealers_keep_one_total_order(tenant):
    _, conninfo, db = tenant
    writers, per_writer = 8, 40
    errors: list[BaseException] = []
    stop = threading.Event()

    def write(w: int) -> None:
        try:
            with as_tenant(conninfo, autocommit=False) as conn:
                for i in range(per_writer):
                    audit_log.append(conn, entry(w * 1000 + i))
                    if i % 3 == 0:  # some transactions append two entries
                        audit_log.append(conn, entry(w * 1000 + i + 500))
                    conn.commit()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def seal() -> None:
        try:
            with as_tenant(conninfo) as conn:
                while not stop.is_set():
                    audit_log.seal(conn, 7)  # small batches: partial seals too
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    sealers = [threading.Thread(target=seal) for _ in range(3)]
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in sealers + threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    for t in sealers:
        t.join()
    assert not errors, errors
    with as_tenant(conninfo) as conn:
        seal_all(conn)
        result = check(conn, db)
        n_entries = conn.execute("SELECT count(*) FROM audit.entries").fetchone()[0]
        dupes = conn.execute(
            "SELECT count(*) - count(DISTINCT entry_id) FROM audit.seals"
        ).fetchone()[0]
    expected = writers * (per_writer + len(range(0, per_writer, 3)))
    assert n_entries == expected and dupes == 0
    assert result.ok and result.sealed == expected, result


# -- tampering (as the superuser) ---------------------------------------------------------------


def _sealed_chain(conninfo: str, n: int = 10) -> None:
    with as_tenant(conninfo) as conn:
        for i in range(n):
            audit_log.append(conn, entry(i))
        seal_all(conn)


def test_an_updated_entry_is_named(clusters, tenant):
    _, conninfo, db = tenant
    _sealed_chain(conninfo)
    with clusters.admin_connect("main", db) as su:
        su.execute(
            "UPDATE audit.entries SET new_value = '{\"n\":999}' WHERE id ="
            " (SELECT entry_id FROM audit.seals WHERE seq = 4)"
        )
        result = check(su, db)
    assert not result.ok and result.seq == 4 and "hash mismatch" in result.reason


def test_a_deleted_entry_is_named(clusters, tenant):
    _, conninfo, db = tenant
    _sealed_chain(conninfo)
    with clusters.admin_connect("main", db) as su:
        su.execute(
            "DELETE FROM audit.entries WHERE id = (SELECT entry_id FROM audit.seals WHERE seq = 6)"
        )
        missing_entry = check(su, db)
        su.execute("DELETE FROM audit.seals WHERE seq = 6")
        missing_seal = check(su, db)
    assert (missing_entry.seq, missing_seal.seq) == (6, 6)
    assert "missing" in missing_entry.reason and "seq 6 is missing" in missing_seal.reason


def test_truncation_and_rewrites_are_caught_by_the_anchor(clusters, tenant):
    _, conninfo, db = tenant
    _sealed_chain(conninfo)
    with as_tenant(conninfo) as conn:
        seq, digest = audit_log.head(conn)
    anchored = verify.Anchor(seq, digest)
    with clusters.admin_connect("main", db) as su:
        assert check(su, db, anchored).ok
        # Cut the last three entries: the chain alone still verifies, the anchor does not.
        su.execute(
            "DELETE FROM audit.entries WHERE id IN (SELECT entry_id FROM audit.seals WHERE seq > 7)"
        )
        su.execute("DELETE FROM audit.seals WHERE seq > 7")
        assert check(su, db).ok
        cut = check(su, db, anchored)
        # Rewrite consistently (recomputed hashes) and extend: diverges from the anchor.
        su.execute("UPDATE audit.entries SET actor = 'system'")
        rows = su.execute(verify.ROWS_SQL, (0, 1000)).fetchall()
        previous = chain.GENESIS
        for row in rows:
            previous = chain.link(previous, row[:12])
            su.execute("UPDATE audit.seals SET hash = %s WHERE seq = %s", (previous, row[0]))
        with as_tenant(conninfo) as conn:
            for i in range(5):
                audit_log.append(conn, entry(i))
            seal_all(conn)
        assert check(su, db).ok
        rewritten = check(su, db, anchored)
        su.execute("TRUNCATE audit.entries, audit.seals")
        truncated = check(su, db, anchored)
    assert cut.seq == 8 and "anchored at seq 10" in cut.reason
    assert rewritten.seq == 10 and "diverges" in rewritten.reason
    assert truncated.seq == 1 and "ends at seq 0" in truncated.reason


def test_check_head_sees_a_chain_cut_below_its_anchor(clusters, tenant):
    _, conninfo, db = tenant
    _sealed_chain(conninfo, 4)
    with as_tenant(conninfo) as conn:
        seq, digest = audit_log.head(conn)
        assert anchor.check_head(conn, verify.Anchor(seq, digest))[2] == ""
        assert "differs" in anchor.check_head(conn, verify.Anchor(seq, bytes(32)))[2]
    with clusters.admin_connect("main", db) as su:
        su.execute("TRUNCATE audit.seals")
    with as_tenant(conninfo) as conn:
        assert "ends at seq 0" in anchor.check_head(conn, verify.Anchor(seq, digest))[2]
