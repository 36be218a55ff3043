-- Source database A, component 'source' version 5: the capture runs as
-- pgrelay's role, whoever writes a captured table.
--
-- A trigger function runs with the rights of the role that fires it: up
-- to version 4, a writer of a captured table needed INSERT on
-- pgrelay_changes (a write by any other role than pgrelay's failed with
-- "permission denied for table pgrelay_changes"), and the TRUNCATE
-- capture found pgrelay_changes through the writer's search_path.  The
-- capture functions are now SECURITY DEFINER, owned by the role that owns
-- pgrelay_changes, and every function, operator, type and table they name
-- is qualified, so that a writer's search_path cannot lend them its own
-- (PostgreSQL's "Writing SECURITY DEFINER Functions Safely"; pinning
-- search_path with SET instead cost A's writers 15%: bench/README.md).
-- Each table's row function comes from pgrelay (common/cdc.c,
-- cdc_capture_sql), which replaces an older one at its next start, or
-- prints it (`pgrelayctl -c CONFIG capture-sql`) for an administrator;
-- this file makes the TRUNCATE one.
--
-- Idempotent: safe on every start.  Needs 001 to 004.  Run it as the role
-- that owns pgrelay_changes (or as a superuser: the function is given to
-- that role).
SET client_min_messages = warning;
BEGIN;

-- A TRUNCATE of any captured table: TG_ARGV[0] is its id.
DO $$
DECLARE
    sch name := (SELECT n.nspname FROM pg_class c
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = 'pgrelay_changes'::regclass);
BEGIN
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION %1$I.pgrelay_capture_truncate() RETURNS trigger
        LANGUAGE plpgsql SECURITY DEFINER AS $body$
        BEGIN
            INSERT INTO %1$I.pgrelay_changes (rel, action)
            VALUES (TG_ARGV[0]::pg_catalog.int4, 't');
            RETURN NULL;
        END
        $body$;
        ALTER FUNCTION %1$I.pgrelay_capture_truncate()
            OWNER TO %2$I;
    $f$, sch, (SELECT r.rolname FROM pg_class c
                 JOIN pg_roles r ON r.oid = c.relowner
                WHERE c.oid = 'pgrelay_changes'::regclass));
END
$$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('source', 5)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 5);

COMMIT;
