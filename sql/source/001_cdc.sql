-- Source database A: the employees table, its change table emp_cdc, the
-- triggers that fill it, and pgrelay's own state.  Idempotent: safe to run
-- on every start and on an existing database (upgrades add to it).
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

-- Before version 4 (004_any_table.sql) the changes of employees went to
-- emp_cdc, filled by the trigger below; version 4 moves them to
-- pgrelay_changes and drops both, so they are made only before it.
DO $legacy$
BEGIN
IF coalesce((SELECT version FROM pgrelay_schema_version WHERE component = 'source'), 0) >= 4 THEN
    RETURN;
END IF;
EXECUTE $ddl$
-- One row per insert, update or delete of employees.  change_id orders the
-- changes; txid (the writing transaction, as xid8) lets the producer tell
-- which changes a snapshot of the database can see, so that a transaction
-- that commits late is never skipped.  The employee columns hold the new
-- row (c, u) or the old one (d).  From version 2 a TRUNCATE is one row
-- too (t, emp_id NULL): 002_truncate.sql.
CREATE TABLE IF NOT EXISTS emp_cdc (
    change_id  bigserial PRIMARY KEY,
    txid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    changed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    action     char(1) NOT NULL CHECK (action IN ('c', 'u', 'd')),
    emp_id     integer NOT NULL,
    first_name VARCHAR(100),
    last_name  VARCHAR(100),
    dob        DATE,
    city       VARCHAR(100),
    salary     INT
);
CREATE INDEX IF NOT EXISTS emp_cdc_txid ON emp_cdc (txid);
CREATE INDEX IF NOT EXISTS emp_cdc_emp ON emp_cdc (emp_id, change_id);

CREATE OR REPLACE FUNCTION pgrelay_emp_cdc_capture() RETURNS trigger
LANGUAGE plpgsql AS $body$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO emp_cdc (action, emp_id, first_name, last_name, dob, city, salary)
        VALUES ('c', NEW.emp_id, NEW.first_name, NEW.last_name, NEW.dob, NEW.city, NEW.salary);
    ELSIF TG_OP = 'UPDATE' THEN
        IF NEW.emp_id IS DISTINCT FROM OLD.emp_id THEN
            -- A key change is a delete of the old key and a create of the new.
            INSERT INTO emp_cdc (action, emp_id, first_name, last_name, dob, city, salary)
            VALUES ('d', OLD.emp_id, OLD.first_name, OLD.last_name, OLD.dob, OLD.city, OLD.salary);
            INSERT INTO emp_cdc (action, emp_id, first_name, last_name, dob, city, salary)
            VALUES ('c', NEW.emp_id, NEW.first_name, NEW.last_name, NEW.dob, NEW.city, NEW.salary);
        ELSE
            INSERT INTO emp_cdc (action, emp_id, first_name, last_name, dob, city, salary)
            VALUES ('u', NEW.emp_id, NEW.first_name, NEW.last_name, NEW.dob, NEW.city, NEW.salary);
        END IF;
    ELSE
        INSERT INTO emp_cdc (action, emp_id, first_name, last_name, dob, city, salary)
        VALUES ('d', OLD.emp_id, OLD.first_name, OLD.last_name, OLD.dob, OLD.city, OLD.salary);
    END IF;
    -- Wakes the producer at commit; identical notifications of one
    -- transaction are folded into one by the server.
    PERFORM pg_notify('pgrelay_cdc', '');
    RETURN NULL;
END
$body$;

CREATE OR REPLACE TRIGGER employees_cdc
    AFTER INSERT OR UPDATE OR DELETE ON employees
    FOR EACH ROW EXECUTE FUNCTION pgrelay_emp_cdc_capture();
$ddl$;
END
$legacy$;

-- The producer's durable position: every change whose transaction is
-- visible in snap has been acknowledged by Kafka.  epoch changes when a
-- snapshot resets the position, so a producer holding an older epoch
-- cannot write an old position over the new one.
CREATE TABLE IF NOT EXISTS pgrelay_producer_state (
    id         integer PRIMARY KEY CHECK (id = 1),
    snap       pg_snapshot NOT NULL,
    epoch      bigint NOT NULL DEFAULT 1,
    changes    bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The snapshot's progress.  cut is the snapshot the copy started from:
-- streaming begins with the changes cut cannot see.
CREATE TABLE IF NOT EXISTS pgrelay_snapshot_state (
    id          integer PRIMARY KEY CHECK (id = 1),
    cut         pg_snapshot NOT NULL,
    last_emp_id integer,
    rows_done   bigint NOT NULL DEFAULT 0,
    rows_total  bigint NOT NULL DEFAULT 0,
    done        boolean NOT NULL DEFAULT false,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);

INSERT INTO pgrelay_schema_version (component, version) VALUES ('source', 1)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 1);

COMMIT;
