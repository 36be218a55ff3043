-- Target database B, component 'target' version 4: a TRUNCATE on A (op
-- 't', issue 14, item 8) applied in order with the other changes, by
-- version.  Idempotent.  Needs 001_employees.sql and 003_apply_batch.sql.
SET client_min_messages = warning;
BEGIN;

-- B's truncate horizon: the change_id of the newest TRUNCATE applied (no
-- row: none yet, horizon 0).  A TRUNCATE of version T deletes every row
-- of B whose version is below T, with its version; from then on a change
-- below the horizon is stale, for a row B never had too.  The producer
-- sends a TRUNCATE to every partition, each partition's stream carries it
-- in order, and a change below T still in another partition's backlog
-- meets the horizon.  So every row version B keeps is at or above the
-- horizon, and a version below it carries nothing the horizon does not
-- (hence deleted rather than kept as a tombstone at T).
CREATE TABLE IF NOT EXISTS pgrelay_truncate_horizon (
    id         integer PRIMARY KEY CHECK (id = 1),
    change_id  bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- The truncate lock, transaction-scoped advisory lock (1885828466, 3)
-- ('pgrl', 3; on A, 1 is the producer's and 2 the snapshot's): an apply
-- of changes takes it shared, before any row's version lock; an apply of
-- a TRUNCATE takes it exclusively, so it runs alone on B, after every
-- apply that began before it has committed and before any that begins
-- after it reads the horizon.  The lock comes first in both, so the two
-- kinds cannot deadlock on it.

-- Applies the TRUNCATE of version p_cut.  The caller holds the truncate
-- lock exclusively and has found p_cut above the horizon.  A row whose
-- version is p_cut or newer stays: a snapshot row that carries p_cut (it
-- has no change of its own since) or a row A wrote after the TRUNCATE.
CREATE OR REPLACE FUNCTION pgrelay_truncate_employees(p_cut bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM employees e
     WHERE NOT EXISTS (SELECT 1 FROM pgrelay_row_version v
                        WHERE v.emp_id = e.emp_id AND v.change_id >= p_cut);
    DELETE FROM pgrelay_row_version v WHERE v.change_id < p_cut;
    INSERT INTO pgrelay_truncate_horizon AS h (id, change_id) VALUES (1, p_cut)
    ON CONFLICT (id) DO UPDATE SET change_id = EXCLUDED.change_id, applied_at = now();
END
$$;

-- As in 001_employees.sql (version 3), under the truncate lock and the
-- horizon: a change below the horizon is 'stale'; p_op 't' (p_emp_id
-- NULL) applies the TRUNCATE of version p_version if it is above the
-- horizon ('applied'), else it was applied already ('stale').
CREATE OR REPLACE FUNCTION pgrelay_apply_employee(
    p_op text, p_emp_id integer, p_version bigint,
    p_first_name text, p_last_name text, p_dob_days integer,
    p_city text, p_salary integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    have bigint;
    horizon bigint;
BEGIN
    IF p_op = 't' THEN
        PERFORM pg_advisory_xact_lock(1885828466, 3);
    ELSE
        PERFORM pg_advisory_xact_lock_shared(1885828466, 3);
    END IF;
    SELECT coalesce(max(h.change_id), 0) INTO horizon FROM pgrelay_truncate_horizon h;
    IF p_op = 't' THEN
        IF p_version <= horizon THEN
            RETURN 'stale';
        END IF;
        PERFORM pgrelay_truncate_employees(p_version);
        RETURN 'applied';
    END IF;
    IF p_version < horizon THEN
        RETURN 'stale';
    END IF;

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

-- As in 003_apply_batch.sql (version 3), with TRUNCATEs: p_rows may also
-- hold elements {op: 't', version: T} (no row; the consumer sends the
-- batch's newest).  Returns, as before, for every row B already had a
-- version of, that version before the batch, and also, when B had a
-- truncate horizon before the batch, one row (NULL, horizon): from these
-- the caller replays the batch in its order and counts each change,
-- TRUNCATEs included, applied or stale.
--
-- Same result as applying the batch's messages one at a time, in their
-- order.  Call a row's effective version its version in
-- pgrelay_row_version, or the horizon when it has none or an older one
-- (a TRUNCATE deleted it).  One at a time, a change applies exactly when
-- it is newer than the row's effective version (a snapshot row also when
-- equal), and sets it; a TRUNCATE of version T raises every effective
-- version below T to T, deleting those rows.  Each step only raises
-- effective versions, to a maximum: a row ends as the newest event that
-- reached it (its state before the batch, the batch's changes of it,
-- the batch's TRUNCATEs), whatever their order.  This function reaches
-- the same maxima in one pass: first the batch's newest TRUNCATE if it is
-- above the horizon (T), then each row's newest change if it is at or
-- above the horizon (now T) and newer than the row's version.  A change
-- below T is not written at all: one at a time, it would have been
-- written and then deleted by T, or found stale.  Changes of one row
-- keep the rule of version 3 (only the newest is written).
--
-- Statements.  The first takes the truncate lock: exclusive with a
-- TRUNCATE in the batch, shared without; the next reads the horizon
-- under it, in a new snapshot (plpgsql takes one per statement in READ
-- COMMITTED).  With a TRUNCATE above the horizon, this transaction is
-- alone on B: it reads the versions B had for the caller, then deletes
-- the rows and versions below T and raises the horizon to T.  Then, as
-- in version 3, the claim of every row's version lock in emp_id order,
-- and the writes, for the changes at or above the horizon only: a
-- change below it claims nothing (a new row's version would be below the
-- horizon) and is stale.
CREATE OR REPLACE FUNCTION pgrelay_apply_employees(p_rows json)
RETURNS TABLE (emp_id integer, had bigint)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    cut bigint;		-- the batch's newest TRUNCATE, NULL if none
    horizon bigint;	-- B's, before the batch; 0 if none
    low bigint;		-- changes below it are stale: the horizon after cut
    truncating boolean;	-- cut is above the horizon: this batch applies it
    fresh integer[];	-- rows B had no version of; they have the batch's now
    had_ids integer[];	-- the versions B had, read before cut deleted some
    had_vers bigint[];
    old_ids integer[];	-- the versions B had, read under the row locks
    old_vers bigint[];
BEGIN
    SELECT max(c.version) INTO cut
      FROM json_to_recordset(p_rows) AS c(op text, version bigint)
     WHERE c.op = 't';
    IF cut IS NULL THEN
        PERFORM pg_advisory_xact_lock_shared(1885828466, 3);
    ELSE
        PERFORM pg_advisory_xact_lock(1885828466, 3);
    END IF;
    SELECT coalesce(max(h.change_id), 0) INTO horizon FROM pgrelay_truncate_horizon h;
    low := horizon;
    truncating := coalesce(cut > horizon, false);
    IF truncating THEN
        SELECT array_agg(v.emp_id), array_agg(v.change_id) INTO had_ids, had_vers
          FROM pgrelay_row_version v
         WHERE v.emp_id = ANY (ARRAY(
               SELECT c.emp_id FROM json_to_recordset(p_rows) AS c(op text, emp_id integer)
                WHERE c.op <> 't'));
        PERFORM pgrelay_truncate_employees(cut);
        low := cut;
    END IF;

    -- plpgsql, not sql: the statements' plans are cached per session
    WITH c AS (
        SELECT * FROM json_to_recordset(p_rows) AS c(op text, emp_id integer,
            version bigint)
         WHERE c.op <> 't' AND c.version >= low
    ), claim AS (
        INSERT INTO pgrelay_row_version AS v (emp_id, change_id, deleted)
        SELECT c.emp_id, c.version, c.op = 'd' FROM c ORDER BY c.emp_id
        ON CONFLICT ON CONSTRAINT pgrelay_row_version_pkey DO UPDATE
           SET change_id = v.change_id WHERE false	-- lock only
        RETURNING v.emp_id
    )
    SELECT coalesce(array_agg(claim.emp_id), '{}') INTO fresh FROM claim;

    WITH c AS (
        SELECT * FROM json_to_recordset(p_rows) AS c(op text, emp_id integer,
            version bigint, first_name text, last_name text, dob integer,
            city text, salary integer)
         WHERE c.op <> 't' AND c.version >= low
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
        -- a new row's version is in since the claim
        INSERT INTO pgrelay_row_version AS v (emp_id, change_id, deleted)
        SELECT win.emp_id, win.version, win.op = 'd' FROM win WHERE win.known
        ON CONFLICT ON CONSTRAINT pgrelay_row_version_pkey DO UPDATE
           SET change_id = EXCLUDED.change_id, deleted = EXCLUDED.deleted
    )
    SELECT array_agg(o.emp_id), array_agg(o.change_id) INTO old_ids, old_vers
      FROM old o;

    IF truncating THEN
        RETURN QUERY SELECT * FROM unnest(had_ids, had_vers);
    ELSE
        RETURN QUERY SELECT * FROM unnest(old_ids, old_vers);
    END IF;
    IF horizon > 0 THEN
        RETURN QUERY SELECT NULL::integer, horizon;
    END IF;
END
$$;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 4)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 4);

COMMIT;
