-- access_audit moves into the core audit trail (schema audit, core migration 0002), in order.

RESET ROLE;  -- moving the old rows sets their original times (the admin may)

WITH old AS (
    SELECT a.*, gen_random_uuid() AS pid,
           a.actor !~ '^(system|operator|token:[0-9a-f]{24})$' AS personal
      FROM access_audit a
), people AS (
    INSERT INTO audit.personal (id, kind, value)
    SELECT pid, 'actor', actor FROM old WHERE personal
)
INSERT INTO audit.entries (at, actor, action, outcome, target, old_value, new_value,
                           client_address)
SELECT at, CASE WHEN personal THEN 'pv:' || pid ELSE actor END, action, 'done',
       coalesce(new_value ->> 'id', old_value ->> 'id', ''), old_value::text,
       new_value::text, address
  FROM old ORDER BY id;

DROP TABLE access_audit;
