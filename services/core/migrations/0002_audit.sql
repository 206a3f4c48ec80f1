-- The audit trail, present in every service database (tenant databases, templates, the
-- control database): append-only by privileges and hash-chained.
--
-- Everything here belongs to the deployment's NOLOGIN role `<deployment>_audit`, not to the
-- database's owner (the tenant role), so the tenant role cannot UPDATE, DELETE, TRUNCATE,
-- ALTER or DROP it: it may INSERT entries (not their id, time or transaction) and SELECT.
-- The chain is sealed apart from the appends: audit.seal (SECURITY DEFINER) gives the
-- entries committed since the last seal their chain position and hash, in one total order.
-- (Chaining inside each append serialises the appending transactions until they commit:
-- measured, 16 concurrent writers fell from ~4,200 to ~680 appends/s; docs/architecture.md.)
-- The admin connection running migrations names the deployment in `ontrack.deployment`.

RESET ROLE;  -- the migration runner set the owner role; the audit role is not the owner's

DO $$
DECLARE
    r text := current_setting('ontrack.deployment') || '_audit';
BEGIN
    BEGIN
        EXECUTE format('CREATE ROLE %I NOLOGIN', r);
    EXCEPTION WHEN duplicate_object OR unique_violation THEN
        NULL;  -- created for another database of the deployment (or concurrently)
    END;
    EXECUTE format('CREATE SCHEMA audit AUTHORIZATION %I', r);
    EXECUTE format('SET LOCAL ROLE %I', r);
END
$$;

-- One row per audited act or refused attempt, as appended: `id` is the insertion order,
-- `xid` the appending transaction (the sealer's horizon). Actors and targets are opaque
-- ids; a personal value lives in audit.personal and is referenced as `pv:<uuid>`.
-- old_value / new_value are canonical JSON text (the hash covers these exact bytes).
CREATE TABLE audit.entries (
    id             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid            xid8        NOT NULL DEFAULT pg_current_xact_id(),
    at             timestamptz NOT NULL DEFAULT now(),
    actor          text        NOT NULL,
    action         text        NOT NULL,
    outcome        text        NOT NULL CHECK (outcome IN ('done', 'refused')),
    target         text        NOT NULL DEFAULT '',
    old_value      text,
    new_value      text,
    request_id     text        NOT NULL DEFAULT '',
    client_address text        NOT NULL DEFAULT '',
    trace_id       text        NOT NULL DEFAULT ''
);
CREATE INDEX entries_xid ON audit.entries (xid);
CREATE INDEX entries_at ON audit.entries (at);
CREATE INDEX entries_actor ON audit.entries (actor, id);
CREATE INDEX entries_action ON audit.entries (action, id);

-- The chain: entry `entry_id` is at position `seq` (1, 2, 3, … without gaps) with
-- hash = sha256(hash of seq - 1 || encoding). `horizon`: every transaction below it had
-- finished when this row was sealed and all its entries are sealed at or before this row.
CREATE TABLE audit.seals (
    seq      bigint PRIMARY KEY CHECK (seq > 0),
    entry_id bigint NOT NULL UNIQUE,
    hash     bytea  NOT NULL CHECK (octet_length(hash) = 32),
    horizon  xid8   NOT NULL
);

-- Personal values entries need (an email, a person's name), outside the hashed entry so an
-- erasure can pseudonymise them without breaking the chain.
CREATE TABLE audit.personal (
    id               uuid        PRIMARY KEY,
    kind             text        NOT NULL,
    value            text        NOT NULL,
    pseudonymised_at timestamptz
);

-- The canonical encoding of an entry (version 1): every field as `<byte length>:<bytes>`,
-- NULL as `~`, in a fixed order; the time as whole microseconds since the epoch; the
-- previous hash of seq 1 is 32 zero bytes. ontrackio.core.audit.chain is the same in
-- Python, and the verifier recomputes every hash with it (it never trusts this function).
-- (No SET clause on these two, so they are inlined into audit.seal, which fixes the search
-- path; PUBLIC may not execute them.)
CREATE FUNCTION audit.field(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT CASE WHEN t IS NULL THEN '~' ELSE octet_length(t)::text || ':' || t END $$;

CREATE FUNCTION audit.encode(seq bigint, e audit.entries) RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
SELECT convert_to(
    'v1' || audit.field(seq::text) || audit.field(e.id::text)
    || audit.field(((extract(epoch FROM e.at) * 1000000)::bigint)::text)
    || audit.field(e.actor) || audit.field(e.action) || audit.field(e.outcome)
    || audit.field(e.target) || audit.field(e.old_value) || audit.field(e.new_value)
    || audit.field(e.request_id) || audit.field(e.client_address) || audit.field(e.trace_id),
    'UTF8')
$$;

-- Seal at most `p_max` entries committed since the last seal, ordered by (xid, id); returns
-- how many. One sealer at a time per database (a transaction-level advisory lock; a second
-- caller returns 0 at once). Entries of a transaction still running anywhere on the server
-- wait for a later call (the horizon is the oldest running transaction).
CREATE FUNCTION audit.seal(p_max integer) RETURNS integer
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog
AS $$
DECLARE
    scan_to     xid8;
    new_horizon xid8;
    last_seq    bigint;
    last_hash   bytea;
    last_horizon xid8;
    e           audit.entries;
    n           integer := 0;
    total       integer;
    seqs        bigint[] := '{}';
    ids         bigint[] := '{}';
    hashes      bytea[] := '{}';
BEGIN
    IF NOT pg_try_advisory_xact_lock(7368211, 1) THEN  -- 'audit' sealer of this database
        RETURN 0;
    END IF;
    scan_to := pg_snapshot_xmin(pg_current_snapshot());
    SELECT s.seq, s.hash, s.horizon INTO last_seq, last_hash, last_horizon
      FROM audit.seals s ORDER BY s.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := decode(repeat('00', 32), 'hex');
        last_horizon := '0'::xid8;
    END IF;
    SELECT count(*) INTO total FROM audit.entries x
     WHERE x.xid >= last_horizon AND x.xid < scan_to
       AND NOT EXISTS (SELECT 1 FROM audit.seals s WHERE s.entry_id = x.id);
    -- partial: the horizon stays, and the next call goes on from there
    new_horizon := CASE WHEN total > p_max THEN last_horizon ELSE scan_to END;
    FOR e IN
        SELECT x.* FROM audit.entries x
         WHERE x.xid >= last_horizon AND x.xid < scan_to
           AND NOT EXISTS (SELECT 1 FROM audit.seals s WHERE s.entry_id = x.id)
         ORDER BY x.xid, x.id
         LIMIT least(total, p_max)
    LOOP
        last_seq := last_seq + 1;
        last_hash := sha256(last_hash || audit.encode(last_seq, e));
        n := n + 1;
        seqs[n] := last_seq;
        ids[n] := e.id;
        hashes[n] := last_hash;
    END LOOP;
    INSERT INTO audit.seals (seq, entry_id, hash, horizon)
    SELECT s, i, h, new_horizon FROM unnest(seqs, ids, hashes) AS u (s, i, h);
    RETURN n;
END
$$;

-- Erasure: replace a personal value by a pseudonym derived from its id; entries keep
-- referencing the id, so the chain is untouched. Returns false for an unknown id.
CREATE FUNCTION audit.pseudonymise(p_id uuid) RETURNS boolean
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog
AS $$
BEGIN
    UPDATE audit.personal
       SET value = 'pseudonym-' || left(encode(sha256(convert_to(id::text, 'UTF8')), 'hex'), 16),
           pseudonymised_at = coalesce(pseudonymised_at, now())
     WHERE id = p_id;
    RETURN FOUND;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA audit FROM PUBLIC;
-- PUBLIC here is whoever may connect to this database: its owner role only (CONNECT is
-- revoked from PUBLIC at creation), and it stays right in a clone of a template.
GRANT USAGE ON SCHEMA audit TO PUBLIC;
GRANT SELECT ON audit.entries, audit.seals, audit.personal TO PUBLIC;
GRANT INSERT (actor, action, outcome, target, old_value, new_value, request_id,
              client_address, trace_id)
    ON audit.entries TO PUBLIC;
GRANT INSERT ON audit.personal TO PUBLIC;
GRANT EXECUTE ON FUNCTION audit.seal(integer), audit.pseudonymise(uuid) TO PUBLIC;

RESET ROLE;  -- back to the migration runner's session role, which records the migration
