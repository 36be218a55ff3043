-- Target database B, component 'target' version 3.  Version 2 applied
-- employees' changes set-based, version 3 locked a row's version before
-- reading it, a new row's too, in pgrelay_apply_employees().  Since version
-- 5 the consumer generates each table's apply function (common/target.c,
-- whose NOTES hold the argument for it) and 005_any_table.sql drops the
-- old one; this file only records the version, in its place in the order.
-- Idempotent.  Needs 001_employees.sql.
SET client_min_messages = warning;
BEGIN;

INSERT INTO pgrelay_schema_version (component, version) VALUES ('target', 3)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 3);

COMMIT;
