-- Source database A, component 'source' version 4: capture of any keyed
-- table (issue 16).  One change table, pgrelay_changes, for every table
-- pgrelay replicates (pgrelay_tables); each table's row trigger is made
-- by pgrelay from the catalog (common/relmap.c, capture_sql in
-- workers/snapshot.c; `pgrelayctl capture-sql` prints it).
--
-- Upgrade from version 3 (employees and emp_cdc): emp_cdc's rows, sent or
-- not, move to pgrelay_changes with their change_id and txid, so the
-- producer's position (a snapshot of transactions) holds as it was;
-- employees' capture moves to the new table in the same transaction, so
-- no write of employees is captured twice or missed.  emp_cdc goes.
--
-- Idempotent: safe on every start, on a new database and on one at
-- version 1 to 3.  Needs 001 to 003.
SET client_min_messages = warning;
BEGIN;

-- The tables pgrelay captures.  id is the rel of their changes.
-- snapshot_done: its rows have been copied (the first snapshot copies
-- every table of the config; a table added later is copied alone).
CREATE TABLE IF NOT EXISTS pgrelay_tables (
    id            serial PRIMARY KEY,
    relid         regclass NOT NULL UNIQUE,
    capture_md5   text,            -- of the capture SQL installed, NULL: older
    snapshot_done boolean NOT NULL DEFAULT false,
    installed_at  timestamptz NOT NULL DEFAULT now()
);

-- One row per insert, update or delete of a captured table, and per
-- TRUNCATE.  change_id orders the changes (a row's are ordered by its row
-- lock); txid (the writing transaction) tells the producer which changes
-- a snapshot of the database can see (producer.c, Position).  key is the
-- row's key as text (common/relmap.c, relmap_sql_change_key: a text
-- independent of the writer's settings), row the new row (c, u) or the
-- old one (d) as to_json() writes it; both NULL for a TRUNCATE (t).
CREATE SEQUENCE IF NOT EXISTS pgrelay_changes_change_id_seq;
CREATE TABLE IF NOT EXISTS pgrelay_changes (
    change_id  bigint PRIMARY KEY DEFAULT nextval('pgrelay_changes_change_id_seq'),
    txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    rel        integer NOT NULL,
    action     "char" NOT NULL,         -- c, u, d or t
    key        text,                    -- NULL for t
    row        json
);
-- No CHECK constraints and no index but these two: the generated triggers
-- are the only writers, and each check or index costs every captured
-- write (two CHECKs on action made a bulk insert take 1.45x as long;
-- bench/README.md, Capture cost on A).
ALTER TABLE pgrelay_changes DROP CONSTRAINT IF EXISTS pgrelay_changes_action_check;
ALTER TABLE pgrelay_changes DROP CONSTRAINT IF EXISTS pgrelay_changes_check;
ALTER SEQUENCE pgrelay_changes_change_id_seq OWNED BY pgrelay_changes.change_id;
CREATE INDEX IF NOT EXISTS pgrelay_changes_txid ON pgrelay_changes (txid);
-- No index on key (bulk inserts took 2.2x as long with one) nor on the
-- TRUNCATEs: the snapshot reads each row's newest change and each table's
-- newest TRUNCATE in one pass instead (workers/snapshot.c).
DROP INDEX IF EXISTS pgrelay_changes_key;
DROP INDEX IF EXISTS pgrelay_changes_truncates;

-- A TRUNCATE of any captured table: TG_ARGV[0] is its id.  Made here only
-- where it is missing (the upgrade below needs it); 005_definer.sql makes
-- the one that runs, as pgrelay's role (each start replacing it here
-- would leave it running as the writer until 005 commits).
DO $$
BEGIN
    IF to_regprocedure('pgrelay_capture_truncate()') IS NULL THEN
        CREATE FUNCTION pgrelay_capture_truncate() RETURNS trigger
        LANGUAGE plpgsql AS $f$
        BEGIN
            INSERT INTO pgrelay_changes (rel, action) VALUES (TG_ARGV[0]::integer, 't');
            RETURN NULL;
        END
        $f$;
    END IF;
END
$$;

-- The snapshot's progress through several tables: the table (rel) and
-- the last key (its columns as text, in the key's order) acknowledged.
ALTER TABLE pgrelay_snapshot_state ADD COLUMN IF NOT EXISTS last_rel integer;
ALTER TABLE pgrelay_snapshot_state ADD COLUMN IF NOT EXISTS last_key text[];

DO $$
DECLARE
    n bigint;
BEGIN
    IF to_regclass('emp_cdc') IS NULL OR to_regclass('employees') IS NULL THEN
        RETURN;
    END IF;
    -- Writers of employees wait from here to COMMIT: no change falls
    -- between the old trigger and the new one.
    LOCK TABLE employees IN SHARE ROW EXCLUSIVE MODE;
    LOCK TABLE emp_cdc IN EXCLUSIVE MODE;
    INSERT INTO pgrelay_tables (relid, snapshot_done)
    SELECT 'employees'::regclass,
           coalesce((SELECT done FROM pgrelay_snapshot_state WHERE id = 1), false)
    ON CONFLICT (relid) DO NOTHING;

    INSERT INTO pgrelay_changes (change_id, txid, changed_at, rel, action, key, row)
    SELECT c.change_id, c.txid, c.changed_at,
           (SELECT id FROM pgrelay_tables WHERE relid = 'employees'::regclass),
           c.action, c.emp_id::text,
           CASE WHEN c.action <> 't' THEN json_build_object(
               'emp_id', c.emp_id, 'first_name', c.first_name,
               'last_name', c.last_name, 'dob', c.dob, 'city', c.city,
               'salary', c.salary) END
      FROM emp_cdc c
    ON CONFLICT (change_id) DO NOTHING;
    SELECT coalesce(max(change_id), 0) INTO n FROM pgrelay_changes;
    PERFORM setval('pgrelay_changes_change_id_seq',
                   greatest(n, (SELECT last_value FROM emp_cdc_change_id_seq)) + 1, false);

    UPDATE pgrelay_snapshot_state
       SET last_rel = (SELECT id FROM pgrelay_tables WHERE relid = 'employees'::regclass),
           last_key = ARRAY[last_emp_id::text]
     WHERE last_emp_id IS NOT NULL AND last_key IS NULL;

    DROP TRIGGER IF EXISTS employees_cdc ON employees;
    DROP TRIGGER IF EXISTS employees_cdc_truncate ON employees;
    -- employees' capture, as relmap.c makes it for a table keyed by one
    -- integer (pgrelay writes it again, the same, at its first start)
    EXECUTE format($f$
        CREATE OR REPLACE FUNCTION pgrelay_capture_%1$s() RETURNS trigger
        LANGUAGE plpgsql AS $body$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                INSERT INTO %2$s.pgrelay_changes (rel, action, key, row)
                VALUES (%1$s, 'c', (NEW.emp_id)::text, to_json(NEW));
            ELSIF TG_OP = 'UPDATE' THEN
                IF NEW.emp_id IS DISTINCT FROM OLD.emp_id THEN
                    INSERT INTO %2$s.pgrelay_changes (rel, action, key, row)
                    VALUES (%1$s, 'd', (OLD.emp_id)::text, to_json(OLD)),
                           (%1$s, 'c', (NEW.emp_id)::text, to_json(NEW));
                ELSE
                    INSERT INTO %2$s.pgrelay_changes (rel, action, key, row)
                    VALUES (%1$s, 'u', (NEW.emp_id)::text, to_json(NEW));
                END IF;
            ELSE
                INSERT INTO %2$s.pgrelay_changes (rel, action, key, row)
                VALUES (%1$s, 'd', (OLD.emp_id)::text, to_json(OLD));
            END IF;
            RETURN NULL;
        END
        $body$;
        CREATE OR REPLACE TRIGGER pgrelay_capture
            AFTER INSERT OR UPDATE OR DELETE ON employees
            FOR EACH ROW EXECUTE FUNCTION pgrelay_capture_%1$s();
        CREATE OR REPLACE TRIGGER pgrelay_capture_truncate
            AFTER TRUNCATE ON employees
            FOR EACH STATEMENT EXECUTE FUNCTION pgrelay_capture_truncate(%1$s);
        $f$, (SELECT id FROM pgrelay_tables WHERE relid = 'employees'::regclass),
        quote_ident((SELECT nspname FROM pg_namespace n JOIN pg_class c
                      ON c.relnamespace = n.oid
                     WHERE c.oid = 'pgrelay_changes'::regclass)));
    DROP TABLE emp_cdc;
    DROP FUNCTION IF EXISTS pgrelay_emp_cdc_capture();
    DROP FUNCTION IF EXISTS pgrelay_emp_cdc_truncate();
END
$$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('source', 4)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 4);

COMMIT;
