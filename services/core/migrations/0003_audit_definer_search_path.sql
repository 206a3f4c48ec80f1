-- The audit trail's SECURITY DEFINER functions run as the audit role; with a search_path of
-- only pg_catalog, PostgreSQL still looks up table and type names in the caller's temporary
-- schema first, so a tenant role could shadow a type (a domain whose check runs its own
-- function) and have it run with the audit role's rights. Naming pg_temp last makes the
-- temporary schema the last place looked (and never for functions or operators).

RESET ROLE;  -- the audit role owns these functions, not the database's owner

ALTER FUNCTION audit.seal(integer) SET search_path = pg_catalog, pg_temp;
ALTER FUNCTION audit.pseudonymise(uuid) SET search_path = pg_catalog, pg_temp;
