-- Target database B, version 2 of component 'target': the set-based apply.
-- Idempotent.  Needs 001_employees.sql.
SET client_min_messages = warning;
BEGIN;

-- Applies a batch of changes in one statement, with the same rule as
-- pgrelay_apply_employee(): a change applies only if its version is newer
-- than the row's (a snapshot row 'r' also if equal).
--
-- p_rows is a JSON array of objects {op, emp_id, version, first_name,
-- last_name, dob (days since 1970-01-01, as in a change event), city, salary}, at most one per emp_id (the consumer
-- keeps the newest change of each row in the batch).  Returns, for every
-- row B already had a version of, that version before the batch, so the
-- caller can tell applied changes from stale ones.
--
-- Version rows are locked in emp_id order, so two members that briefly
-- share a partition in a rebalance wait for each other instead of
-- deadlocking.  The data-modifying CTEs run to completion whether or not
-- the final SELECT reads them.
CREATE OR REPLACE FUNCTION pgrelay_apply_employees(p_rows json)
RETURNS TABLE (emp_id integer, had bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    -- plpgsql, not sql: the statement's plan is cached per session
    RETURN QUERY
    WITH c AS (
        SELECT * FROM json_to_recordset(p_rows) AS c(op text, emp_id integer,
            version bigint, first_name text, last_name text, dob integer,
            city text, salary integer)
    ), locked AS (
        SELECT v.emp_id, v.change_id
          FROM pgrelay_row_version v
         WHERE v.emp_id = ANY (ARRAY(SELECT c.emp_id FROM c))	-- by index
         ORDER BY v.emp_id
           FOR UPDATE
    ), win AS (
        SELECT c.*
          FROM c LEFT JOIN locked l ON l.emp_id = c.emp_id
         WHERE l.change_id IS NULL OR c.version > l.change_id
            OR (c.version = l.change_id AND c.op = 'r')
    ), del AS (
        DELETE FROM employees e USING win
         WHERE win.op = 'd' AND e.emp_id = win.emp_id
    ), ups AS (
        INSERT INTO employees AS e (emp_id, first_name, last_name, dob, city, salary)
        SELECT win.emp_id, win.first_name, win.last_name,
               DATE '1970-01-01' + win.dob, win.city, win.salary
          FROM win WHERE win.op <> 'd'
        ON CONFLICT ON CONSTRAINT employees_pkey DO UPDATE
           SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
               dob = EXCLUDED.dob, city = EXCLUDED.city, salary = EXCLUDED.salary
    ), ver AS (
        INSERT INTO pgrelay_row_version AS v (emp_id, change_id, deleted)
        SELECT win.emp_id, win.version, win.op = 'd' FROM win
        ON CONFLICT ON CONSTRAINT pgrelay_row_version_pkey DO UPDATE
           SET change_id = EXCLUDED.change_id, deleted = EXCLUDED.deleted
    )
    SELECT l.emp_id, l.change_id FROM locked l;
END
$$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 2)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 2);

COMMIT;
