-- Source database A, component 'source' version 3: the active producer's lease (#14 item 10). Needs 001_cdc.sql and 002_truncate.sql.
-- Idempotent: safe to run on every start and on an existing database.
SET client_min_messages = warning;
BEGIN;

-- One row: who holds the producer's advisory lock, and when it last said
-- it is alive.  The active producer renews renewed_at (the server's clock)
-- every second from a connection of its own, so that a busy window query
-- cannot delay it.  A standby producer that sees the row not renewed for
-- producer.lease_s ends the session lock_pid (pg_terminate_backend), which
-- frees the advisory lock, and takes lock and lease with lease_epoch + 1.
-- A frozen or cut-off holder keeps its session, and so the lock, until A
-- notices the dead connection (hours with default keep-alives): the lease
-- bounds that.  The position (pgrelay_producer_state) moves only from the
-- session the lease names, under the lease_epoch its producer took.
CREATE TABLE IF NOT EXISTS pgrelay_producer_lease (
    id          integer PRIMARY KEY CHECK (id = 1),
    holder      text NOT NULL,          -- "host pid N", for people
    lock_pid    integer NOT NULL,       -- A's backend holding the lock
    lease_epoch bigint NOT NULL,
    renewed_at  timestamptz NOT NULL,
    taken_at    timestamptz NOT NULL DEFAULT now()
);

INSERT INTO pgrelay_schema_version (component, version) VALUES ('source', 3)
ON CONFLICT (component) DO UPDATE SET version = GREATEST(pgrelay_schema_version.version, 3);

COMMIT;
