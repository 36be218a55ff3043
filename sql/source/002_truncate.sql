-- Source database A, component 'source' version 2: a TRUNCATE of
-- employees is captured (issue 14, item 8).  Idempotent: safe on every
-- start, on a new database and on one at version 1.  Needs 001_cdc.sql.
SET client_min_messages = warning;
BEGIN;

-- A TRUNCATE is one row of emp_cdc: action 't', emp_id NULL, no columns.
-- Its change_id T is a clean cut: TRUNCATE holds employees' ACCESS
-- EXCLUSIVE lock when its trigger takes T, so every transaction that
-- wrote a change of a row before it (holding the table's ROW EXCLUSIVE
-- lock from its first write to its end) has ended, with a lower
-- change_id, and every one after it starts after the TRUNCATE's
-- transaction ends, with a higher one.  Changes of that transaction
-- itself are lower before the TRUNCATE, higher after it.
--
-- At version 1 emp_id is NOT NULL and action is one of c, u, d: each
-- change below runs once (adding a CHECK reads emp_cdc once, under its
-- ACCESS EXCLUSIVE lock; a rerun takes no lock).
-- Only before version 4, which replaces emp_cdc (004_any_table.sql).
DO $legacy$
BEGIN
IF coalesce((SELECT version FROM pgrelay_schema_version WHERE component = 'source'), 0) >= 4 THEN
    RETURN;
END IF;
EXECUTE $ddl$
DO $body$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_attribute
                WHERE attrelid = 'emp_cdc'::regclass AND attname = 'emp_id'
                  AND attnotnull) THEN
        ALTER TABLE emp_cdc ALTER COLUMN emp_id DROP NOT NULL;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'emp_cdc'::regclass
                      AND conname = 'emp_cdc_action_check'
                      AND pg_get_constraintdef(oid) LIKE '%''t''%') THEN
        ALTER TABLE emp_cdc DROP CONSTRAINT IF EXISTS emp_cdc_action_check;
        ALTER TABLE emp_cdc ADD CONSTRAINT emp_cdc_action_check
            CHECK (action IN ('c', 'u', 'd', 't'));
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                    WHERE conrelid = 'emp_cdc'::regclass
                      AND conname = 'emp_cdc_emp_id_check') THEN
        ALTER TABLE emp_cdc ADD CONSTRAINT emp_cdc_emp_id_check
            CHECK ((emp_id IS NULL) = (action = 't'));
    END IF;
END
$body$;

-- The snapshot reads the newest TRUNCATE it can see (workers/snapshot.c).
CREATE INDEX IF NOT EXISTS emp_cdc_truncates ON emp_cdc (change_id)
    WHERE action = 't';

CREATE OR REPLACE FUNCTION pgrelay_emp_cdc_truncate() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO emp_cdc (action) VALUES ('t');
    PERFORM pg_notify('pgrelay_cdc', '');
    RETURN NULL;
END
$body$;

-- Statement level: a TRUNCATE fires no row trigger.
CREATE OR REPLACE TRIGGER employees_cdc_truncate
    AFTER TRUNCATE ON employees
    FOR EACH STATEMENT EXECUTE FUNCTION pgrelay_emp_cdc_truncate();
$ddl$;
END
$legacy$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('source', 2)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 2);

COMMIT;
