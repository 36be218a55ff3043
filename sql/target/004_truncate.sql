-- Target database B, component 'target' version 4: a TRUNCATE on A (op
-- 't', issue 14, item 8) applied in order with the other changes, by
-- version.  Idempotent.  Needs 001_employees.sql.
--
-- Version 4's employees functions are gone (005_any_table.sql drops them);
-- the TRUNCATE's semantics, per table, and why they are right are in
-- common/target.c's NOTES.
SET client_min_messages = warning;
BEGIN;

-- employees' truncate horizon before version 5: the change_id of the
-- newest TRUNCATE applied (no row: none yet, horizon 0).  Since version 5
-- a table's horizon is pgrelay_targets.horizon; 005_any_table.sql copies
-- this one there when it registers employees.
CREATE TABLE IF NOT EXISTS pgrelay_truncate_horizon (
    id         integer PRIMARY KEY CHECK (id = 1),
    change_id  bigint NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 4)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 4);

COMMIT;
