-- Target database B, component 'target' version 5: any keyed table (issue
-- 16).  Idempotent: safe on every start, on a fresh database and on one
-- that version 4 made.  Needs 001..004.
--
-- Each replicated table on B is registered in pgrelay_targets with its own
-- version table (the version, A's change_id, of the last change applied to
-- each row, kept after a delete) and its own truncate horizon.  The apply
-- functions are made by the consumer from the table's catalog entry
-- (common/target.c, whose NOTES say why they are right): one per table and
-- shape, named by a hash of its text.
--
-- Upgrade.  A version-4 install kept employees' versions in
-- pgrelay_row_version (emp_id, change_id, deleted) and its horizon in
-- pgrelay_truncate_horizon: employees is registered with that version table
-- and that horizon, so no version and no TRUNCATE is lost.  The version-4
-- tables stay (001..004 make them again on every run); its employees-only
-- apply functions, which nothing of pgrelay's calls any more, are dropped.
SET client_min_messages = warning;
BEGIN;

-- One row per target table.  horizon: the change_id of the newest TRUNCATE
-- applied to the table (0: none); a change below it is stale, and every
-- version kept in version_table is at or above it.  The truncate lock of
-- the table is the transaction-scoped advisory lock (1885828466, id): an
-- apply of changes takes it shared, an apply of a TRUNCATE exclusively.
CREATE TABLE IF NOT EXISTS pgrelay_targets (
    id            serial PRIMARY KEY,
    target        regclass NOT NULL UNIQUE,
    version_table regclass NOT NULL UNIQUE,
    horizon       bigint NOT NULL DEFAULT 0,
    truncated_at  timestamptz,
    apply_fn      text,		-- the consumer's apply function, for operators
    registered_at timestamptz NOT NULL DEFAULT now()
);

-- The upgrade: employees and its version-4 state, once.  Holds the setup
-- lock so that it does not race a consumer registering employees.
DO $$ BEGIN PERFORM pg_advisory_xact_lock(1885828466, 0); END $$;
INSERT INTO pgrelay_targets (target, version_table, horizon)
SELECT 'public.employees'::regclass, 'public.pgrelay_row_version'::regclass,
       coalesce((SELECT max(h.change_id) FROM pgrelay_truncate_horizon h), 0)
 WHERE to_regclass('public.employees') IS NOT NULL
   AND to_regclass('public.pgrelay_row_version') IS NOT NULL
   AND NOT EXISTS (SELECT 1 FROM pgrelay_targets t
                    WHERE t.target = 'public.employees'::regclass);

-- Registers p_target, whose key is the columns p_keys (in key order), if
-- it is not yet: creates its version table pgrelay_version_<id> (the key
-- columns with their names and types, change_id, deleted; the key as
-- primary key) in the schema of pgrelay_targets.  Returns the table's
-- registry row.  Under the setup lock (1885828466, 0), so that two
-- consumers starting at once register a table once.  A registered table
-- whose version table lacks a key column of p_keys (the target's key
-- changed), or a key column the target lacks, is a problem (a text; the
-- consumer exits as for a configuration error), not an exception.
-- version_table is its qualified and quoted name, for generated SQL.
CREATE OR REPLACE FUNCTION pgrelay_register_target(p_target regclass, p_keys text[])
RETURNS TABLE (id integer, version_table text, horizon bigint, problem text)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    reg_id integer;
    vt regclass;
    cols text;
    vname text;
BEGIN
    PERFORM pg_advisory_xact_lock(1885828466, 0);
    SELECT t.id, t.version_table INTO reg_id, vt FROM pgrelay_targets t
     WHERE t.target = p_target;
    IF reg_id IS NULL THEN
        SELECT string_agg(format('%I %s NOT NULL', a.attname,
                                 format_type(a.atttypid, a.atttypmod)), ', '
                          ORDER BY k.ord)
          INTO cols
          FROM unnest(p_keys) WITH ORDINALITY AS k(name, ord)
          JOIN pg_attribute a ON a.attrelid = p_target AND a.attname = k.name
                             AND a.attnum > 0 AND NOT a.attisdropped;
        IF cols IS NULL OR (SELECT count(*) FROM pg_attribute a
                             WHERE a.attrelid = p_target AND a.attnum > 0
                               AND NOT a.attisdropped
                               AND a.attname = ANY (p_keys)) <> cardinality(p_keys) THEN
            RETURN QUERY SELECT NULL::integer, NULL::text, NULL::bigint,
                format('table %s lacks a column of its key %s', p_target, p_keys);
            RETURN;
        END IF;
        reg_id := nextval(pg_get_serial_sequence('pgrelay_targets', 'id'));
        vname := format('%I.%I',
                        (SELECT n.nspname FROM pg_class c
                           JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE c.oid = 'pgrelay_targets'::regclass),
                        'pgrelay_version_' || reg_id);
        EXECUTE format('CREATE TABLE %s (%s, change_id bigint NOT NULL, '
                       'deleted boolean NOT NULL DEFAULT false, PRIMARY KEY (%s))',
                       vname, cols,
                       (SELECT string_agg(format('%I', k), ', ') FROM unnest(p_keys) AS k));
        INSERT INTO pgrelay_targets (id, target, version_table)
        VALUES (reg_id, p_target, vname::regclass);
        vt := vname::regclass;
    ELSIF (SELECT count(*) FROM pg_attribute a
            WHERE a.attrelid = vt AND a.attname = ANY (p_keys)
              AND a.attnum > 0 AND NOT a.attisdropped) <> cardinality(p_keys) THEN
        RETURN QUERY SELECT NULL::integer, NULL::text, NULL::bigint,
            format('the version table %s of %s does not have the key columns %s: '
                   'the table''s key changed since it was registered; drop the '
                   'version table and its row in pgrelay_targets and re-snapshot '
                   'the table', vt, p_target, p_keys);
        RETURN;
    END IF;
    RETURN QUERY SELECT t.id, format('%I.%I', n.nspname, c.relname), t.horizon,
                        NULL::text
                   FROM pgrelay_targets t
                   JOIN pg_class c ON c.oid = t.version_table
                   JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE t.id = reg_id;
END
$$;

-- Creates function p_name(p_args) RETURNS p_returns in plpgsql with body
-- p_body, unless p_name(p_types) exists (p_types: p_args' types alone; the
-- name is a hash of the body: same name, same function).  Under the setup lock, so two
-- consumers never race a CREATE.  Returns whether it created it.
CREATE OR REPLACE FUNCTION pgrelay_ensure_function(p_name text, p_args text,
    p_types text, p_returns text, p_body text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1885828466, 0);
    IF to_regprocedure(format('%I(%s)', p_name, p_types)) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE FUNCTION %I(%s) RETURNS %s LANGUAGE plpgsql AS %L',
                   p_name, p_args, p_returns, p_body);
    RETURN true;
END
$$;

-- Version 4's employees-only apply functions (001_employees.sql,
-- 003_apply_batch.sql and 004_truncate.sql made them before version 5).  A
-- consumer of before version 5, which would still call them, now fails at
-- its first apply instead of applying beside version 5's consumers under
-- another truncate lock and horizon.
DROP FUNCTION IF EXISTS pgrelay_apply_employee(text, integer, bigint, text, text,
                                               integer, text, integer);
DROP FUNCTION IF EXISTS pgrelay_apply_employees(json);
DROP FUNCTION IF EXISTS pgrelay_truncate_employees(bigint);

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 5)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 5);

COMMIT;
