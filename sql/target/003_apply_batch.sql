-- Target database B, component 'target': the set-based apply (version 2);
-- a row's version locked before it is read, a new row's too (version 3).
-- Idempotent.  Needs 001_employees.sql.
SET client_min_messages = warning;
BEGIN;

-- Applies a batch of changes, set-based, with the same rule as
-- pgrelay_apply_employee(): a change applies only if its version is newer
-- than the row's (a snapshot row 'r' also if equal).
--
-- p_rows is a JSON array of objects {op, emp_id, version, first_name,
-- last_name, dob (days since 1970-01-01, as in a change event), city,
-- salary}, at most one per emp_id (the consumer keeps the newest change
-- of each row in the batch).  Returns, for every row B already had a
-- version of, that version before the batch, so the caller can tell
-- applied changes from stale ones.
--
-- Two statements.  The first takes every row's version lock in emp_id
-- order: a row B has no version of gets the change's (the row is new: the
-- change applies), a version B holds is locked (ON CONFLICT DO UPDATE
-- locks the row even where its WHERE is false), after any transaction
-- that is inserting or changing it ends.  So two members that briefly
-- share a partition, or a stopped member that wakes up, apply one row one
-- after the other, new rows included, and wait for each other instead of
-- deadlocking.  The second reads the versions B had and writes the rows,
-- under those locks and under a snapshot taken after them (plpgsql takes
-- one per statement in READ COMMITTED): it sees what the transactions it
-- waited for wrote, a row one of them created included.  Its
-- data-modifying CTEs run to completion whether or not the final SELECT
-- reads them.
CREATE OR REPLACE FUNCTION pgrelay_apply_employees(p_rows json)
RETURNS TABLE (emp_id integer, had bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    fresh integer[];	-- rows B had no version of; they have the batch's now
BEGIN
    -- plpgsql, not sql: the statements' plans are cached per session
    WITH c AS (
        SELECT * FROM json_to_recordset(p_rows) AS c(op text, emp_id integer,
            version bigint)
    ), claim AS (
        INSERT INTO pgrelay_row_version AS v (emp_id, change_id, deleted)
        SELECT c.emp_id, c.version, c.op = 'd' FROM c ORDER BY c.emp_id
        ON CONFLICT ON CONSTRAINT pgrelay_row_version_pkey DO UPDATE
           SET change_id = v.change_id WHERE false	-- lock only
        RETURNING v.emp_id
    )
    SELECT coalesce(array_agg(claim.emp_id), '{}') INTO fresh FROM claim;

    RETURN QUERY
    WITH c AS (
        SELECT * FROM json_to_recordset(p_rows) AS c(op text, emp_id integer,
            version bigint, first_name text, last_name text, dob integer,
            city text, salary integer)
    ), old AS (
        SELECT v.emp_id, v.change_id
          FROM pgrelay_row_version v
         WHERE v.emp_id = ANY (ARRAY(SELECT c.emp_id FROM c
                                     EXCEPT SELECT unnest(fresh)))	-- by index
    ), win AS (
        SELECT c.*, o.emp_id IS NOT NULL AS known
          FROM c LEFT JOIN old o ON o.emp_id = c.emp_id
         WHERE o.change_id IS NULL OR c.version > o.change_id
            OR (c.version = o.change_id AND c.op = 'r')
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
        -- a new row's version is in since the first statement
        INSERT INTO pgrelay_row_version AS v (emp_id, change_id, deleted)
        SELECT win.emp_id, win.version, win.op = 'd' FROM win WHERE win.known
        ON CONFLICT ON CONSTRAINT pgrelay_row_version_pkey DO UPDATE
           SET change_id = EXCLUDED.change_id, deleted = EXCLUDED.deleted
    )
    SELECT o.emp_id, o.change_id FROM old o;
END
$$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 3)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 3);

COMMIT;
