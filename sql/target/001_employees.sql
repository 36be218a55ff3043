-- Target database B: the replicated employees table and the consumer's
-- state.  Idempotent: safe to run on every start and on an existing database.
SET client_min_messages = warning;
BEGIN;

CREATE TABLE IF NOT EXISTS pgrelay_schema_version (
    component  text PRIMARY KEY,
    version    integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS employees (
    emp_id     SERIAL PRIMARY KEY,
    first_name VARCHAR(100),
    last_name  VARCHAR(100),
    dob        DATE,
    city       VARCHAR(100),
    salary     INT
);

-- The version (A's change_id) of the last change applied to each row, kept
-- after a delete as a tombstone.  A change is applied only if it is newer,
-- so a replayed or duplicated message can never apply twice or move a row
-- back to an older state.
CREATE TABLE IF NOT EXISTS pgrelay_row_version (
    emp_id    integer PRIMARY KEY,
    change_id bigint NOT NULL,
    deleted   boolean NOT NULL DEFAULT false
);

-- The consumer group's position, written in the same transaction as the
-- rows it covers: the next offset to read per partition.
CREATE TABLE IF NOT EXISTS pgrelay_offsets (
    group_id    text NOT NULL,
    topic       text NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

-- Applies one change if it is newer than what B holds for the row.
-- Returns 'applied' or 'stale'.  A snapshot row ('r') carries the newest
-- version its snapshot saw and applies when not older than B's.
--
-- The first statement takes the row's version lock, whether B holds a
-- version or not: it inserts the change's version if B has none (a new
-- row: the change applies), or else locks B's version row, after any
-- transaction that is inserting or changing it ends (ON CONFLICT DO
-- UPDATE locks the row even where its WHERE is false).  The rest runs
-- under that lock and, in READ COMMITTED, under a snapshot taken after it
-- (plpgsql takes one per statement), so two applies of one row, new or
-- not, run one after the other and the newer version wins in either
-- order.  pgrelay_apply_employees() takes the same lock.
CREATE OR REPLACE FUNCTION pgrelay_apply_employee(
    p_op text, p_emp_id integer, p_version bigint,
    p_first_name text, p_last_name text, p_dob_days integer,
    p_city text, p_salary integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    have bigint;
BEGIN
    INSERT INTO pgrelay_row_version AS v (emp_id, change_id, deleted)
    VALUES (p_emp_id, p_version, p_op = 'd')
    ON CONFLICT (emp_id) DO UPDATE SET change_id = v.change_id WHERE false;
    IF NOT FOUND THEN		-- B holds a version, locked now
        SELECT change_id INTO have FROM pgrelay_row_version
         WHERE emp_id = p_emp_id;
        IF p_version < have OR (p_version = have AND p_op <> 'r') THEN
            RETURN 'stale';
        END IF;
        UPDATE pgrelay_row_version
           SET change_id = p_version, deleted = p_op = 'd'
         WHERE emp_id = p_emp_id;
    END IF;
    IF p_op = 'd' THEN
        DELETE FROM employees WHERE emp_id = p_emp_id;
    ELSE
        INSERT INTO employees AS e (emp_id, first_name, last_name, dob, city, salary)
        VALUES (p_emp_id, p_first_name, p_last_name,
                DATE '1970-01-01' + p_dob_days, p_city, p_salary)
        ON CONFLICT (emp_id) DO UPDATE
           SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name,
               dob = EXCLUDED.dob, city = EXCLUDED.city, salary = EXCLUDED.salary;
    END IF;
    RETURN 'applied';
END
$$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 1)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 1);

COMMIT;
