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
-- back to an older state.  employees' version table: 005_any_table.sql
-- registers it as such (the apply and its argument: common/target.c).
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

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 1)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 1);

COMMIT;
