/*
 * snapshot.c - pgrelay-snapshot: copies the rows that already exist in A's
 * employees table to the CDC topic (op "r"), once, before streaming starts.
 *
 * NOTES
 *
 * Cut.  The first run opens a REPEATABLE READ transaction and records its
 * snapshot as the cut (pgrelay_snapshot_state.cut) before sending a row.
 * The rows are read from that one snapshot in emp_id order; when all are
 * acknowledged by Kafka, the producer's position is set to the cut in the
 * same transaction that marks the snapshot done.  Streaming then sends
 * exactly the changes the cut could not see: nothing missed, nothing
 * twice.  The producer does not stream before that.
 *
 * Resume.  Progress (last emp_id acknowledged) is written after every
 * batch.  A run killed half-way resumes after that emp_id from a new
 * snapshot: the rows it sends are newer than the cut, and the changes
 * between the cut and the new snapshot are streamed later anyway.  Each
 * snapshot row carries as its version the newest change_id of that row the
 * snapshot saw, so the consumer skips a streamed change the row already
 * contains and never writes an older state over a newer one.
 *
 * TRUNCATE.  A row that exists at the snapshot was written after every
 * TRUNCATE the snapshot sees, so its newest change is above them, and
 * so is its version.  A row without a change of its own (its changes
 * pruned, or written before the triggers) carries the newest TRUNCATE the
 * snapshot sees instead of 0: B may hold that TRUNCATE as its horizon
 * (a snapshot run again with -f), below which a row would be stale, and
 * B keeps a row whose version is a TRUNCATE's own when it applies that
 * TRUNCATE (common/target.c, NOTES).  The producer never prunes a
 * TRUNCATE's change row.
 *
 * Exit 0 when the snapshot is done (or was done before): the supervisor
 * does not restart it and starts the producer.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cdc.h"
#include "codec.h"
#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "worker.h"

#define SNAPSHOT_LOCK_KEY "1885828466, 2"	/* 'pgrl', 2: one snapshot per A */

struct snapshot {
	struct cfg *cfg;
	PGconn *state;		/* autocommit: progress */
	PGconn *read;		/* the REPEATABLE READ transaction */
	rd_kafka_t *rk;
	struct kfk_acks acks;	/* of the current batch */
	struct cdc_table *tables;	/* the configured tables, as A has them */
	int ntables;
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Opens the REPEATABLE READ transaction a copy reads from, and in it
 * pgrelay_newest: each row's newest change that its snapshot sees (one
 * pass over A's change table, which has no index on key: each would cost
 * A's writers), the version a copied row carries.  0, or -1 with err. */
static int
begin_copy(struct snapshot *s, char *err, size_t errlen)
{
	if (db_exec(s->read, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL,
	    err, errlen) < 0)
		return -1;
	/* key is NULL for a TRUNCATE: (rel, NULL) is the table's newest */
	return db_exec(s->read, "CREATE TEMP TABLE pgrelay_newest ON COMMIT DROP AS "
	    "SELECT rel, key, max(change_id) AS v FROM pgrelay_changes "
	    "GROUP BY rel, key", 0, NULL, err, errlen) < 0 ||
	    db_exec(s->read, "CREATE INDEX ON pg_temp.pgrelay_newest (rel, key)",
	    0, NULL, err, errlen) < 0 ||
	    db_exec(s->read, "ANALYZE pg_temp.pgrelay_newest", 0, NULL, err, errlen) < 0 ?
	    -1 : 0;
}

/* Writes r's key columns to f, each quoted between pre and post, with
 * ", " between them.  0 when out of memory. */
static int
put_keys(FILE *f, PGconn *db, const struct rel *r, const char *pre,
    const char *post)
{
	for (int k = 0; k < r->nkeys; k++) {
		char *q = db_quote(db, r->cols[r->keys[k]].name, 1);

		if (q == NULL)
			return 0;
		fprintf(f, "%s%s%s%s", k ? ", " : "", pre, q, post);
		free(q);
	}
	return 1;
}

/* The query reading table t's rows after the key $1 (text[], NULL: from
 * the start), $2 at a time, each as its key, its event (op r, whose
 * version is the row's newest change the snapshot sees, or the newest
 * TRUNCATE of the table, or 0), why it cannot be carried, its version and
 * its key as text[] (to resume after it). */
static char *
page_query(PGconn *db, const struct cdc_table *t)
{
	char *out = NULL, *key = cdc_key_sql(db, t, "x"), *bad = cdc_bad_sql(db, t, "x");
	char *ev = cdc_event_sql(db, t, "x", "'r'", "pgrelay_ver.v", "0::bigint",
	    "(extract(epoch FROM clock_timestamp()) * 1000)::bigint");
	char *ck = relmap_sql_change_key(db, t->rel, "x");
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int ok = f != NULL && key != NULL && bad != NULL && ev != NULL && ck != NULL;

	if (ok) {
		fprintf(f, "SELECT %s, %s, %s, pgrelay_ver.v, ARRAY[", key, ev, bad);
		ok = put_keys(f, db, t->rel, "(x.", ")::text");
		fprintf(f, "] FROM %s x CROSS JOIN LATERAL (SELECT coalesce(greatest("
		    "(SELECT n.v FROM pg_temp.pgrelay_newest n WHERE n.rel = %d "
		    "AND n.key = %s), "
		    "(SELECT n.v FROM pg_temp.pgrelay_newest n WHERE n.rel = %d "
		    "AND n.key IS NULL)), 0) AS v) pgrelay_ver WHERE $1::text[] IS NULL OR (",
		    t->rel->qname, t->id, ck, t->id);
		ok = ok && put_keys(f, db, t->rel, "x.", "");
		fprintf(f, ") > (");
		for (int k = 0; k < t->rel->nkeys; k++)
			fprintf(f, "%s($1::text[])[%d]::%s", k ? ", " : "", k + 1,
			    t->rel->cols[t->rel->keys[k]].cast);
		fprintf(f, ") ORDER BY ");
		ok = ok && put_keys(f, db, t->rel, "x.", "");
		fprintf(f, " LIMIT $2::int");
	}
	if (f == NULL || fclose(f) != 0)
		ok = 0;
	free(key);
	free(bad);
	free(ev);
	free(ck);
	if (!ok) {
		free(out);
		return NULL;
	}
	return out;
}

/* Marks the snapshot done and points the producer at the cut, atomically. */
static int
finish(struct snapshot *s, const char *cut, char *err, size_t errlen)
{
	const char *params[1] = { cut };

	if (db_exec(s->state, "BEGIN", 0, NULL, err, errlen) < 0)
		return -1;
	if (db_exec(s->state, "UPDATE pgrelay_snapshot_state SET done = true, "
	    "finished_at = now() WHERE id = 1", 0, NULL, err, errlen) < 0 ||
	    db_exec(s->state, "UPDATE pgrelay_tables SET snapshot_done = true",
	    0, NULL, err, errlen) < 0 ||
	    db_exec(s->state, "INSERT INTO pgrelay_producer_state (id, snap) "
	    "VALUES (1, $1::pg_snapshot) ON CONFLICT (id) DO UPDATE "
	    "SET snap = EXCLUDED.snap, epoch = pgrelay_producer_state.epoch + 1, "
	    "updated_at = now()", 1, params, err, errlen) < 0 ||
	    db_exec(s->state, "COMMIT", 0, NULL, err, errlen) < 0) {
		char ignore[128];
		db_exec(s->state, "ROLLBACK", 0, NULL, ignore, sizeof(ignore));
		return -1;
	}
	return 0;
}

/* Sends one page of table t (the rows after *lastp) and records the
 * progress.  The number of rows, or -1 with err. */
static int
copy_page(struct snapshot *s, const struct cdc_table *t, const char *sql,
    char **lastp, int record, char *err, size_t errlen)
{
	char limit[16], id[16];
	const char *params[2] = { *lastp, limit };
	PGresult *res;
	int rows;

	snprintf(limit, sizeof(limit), "%d", s->cfg->snapshot_batch_size);
	res = db_query(s->read, sql, 2, params, err, errlen);
	if (res == NULL)
		return -1;
	rows = PQntuples(res);
	s->acks = (struct kfk_acks){ 0 };
	for (int i = 0; i < rows; i++) {
		if (cdc_send(s->rk, s->cfg, t, 'r', strtoll(PQgetvalue(res, i, 3), NULL, 10),
		    PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0),
		    PQgetvalue(res, i, 1), (size_t)PQgetlength(res, i, 1),
		    PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2), &s->acks,
		    err, errlen) < 0) {
			PQclear(res);
			return -1;
		}
	}
	if (rows > 0) {
		free(*lastp);
		if ((*lastp = strdup(PQgetvalue(res, rows - 1, 4))) == NULL) {
			PQclear(res);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
	}
	PQclear(res);
	if (rows == 0)
		return 0;
	if (kfk_acks_wait(s->rk, &s->acks, &worker_stop, err, errlen) < 0)
		return -1;
	if (!record)
		return rows;

	char n[16];
	snprintf(n, sizeof(n), "%d", rows);
	snprintf(id, sizeof(id), "%d", t->id);
	const char *up[3] = { id, *lastp, n };
	if (db_exec(s->state, "UPDATE pgrelay_snapshot_state SET last_rel = $1::int, "
	    "last_key = $2::text[], rows_done = rows_done + $3::bigint WHERE id = 1",
	    3, up, err, errlen) < 0)
		return -1;
	return rows;
}

/* The tables added to the config after the first snapshot (their
 * pgrelay_tables.snapshot_done is false): each is copied alone, from a
 * snapshot of its own, while the producer streams the others and its own
 * changes.  No position moves: the capture was installed before this
 * snapshot began (cdc_tables_open), so every change of a row that the
 * snapshot does not see has a change_id above the version the row is
 * sent with, and B applies a row and its changes in either order.  A run
 * stopped half-way copies the table again from the start.  0, or -1 with
 * err. */
static int
copy_added(struct snapshot *s, char *err, size_t errlen)
{
	int copied = 0;

	for (int i = 0; i < s->ntables; i++) {
		const struct cdc_table *t = &s->tables[i];
		char id[16], *sql, *last = NULL;
		const char *params[1] = { id };
		PGresult *res;
		int64_t rows = 0;
		int done, n;

		snprintf(id, sizeof(id), "%d", t->id);
		res = db_query(s->state, "SELECT snapshot_done FROM pgrelay_tables "
		    "WHERE id = $1::int", 1, params, err, errlen);
		if (res == NULL)
			return -1;
		done = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
		if (done)
			continue;
		log_info("copying %s.%s, added to the config after the first snapshot, "
		    "while the other tables stream", t->rel->schema, t->rel->table);
		if (begin_copy(s, err, errlen) < 0)
			return -1;
		if ((sql = page_query(s->read, t)) == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		do {
			if (worker_stop) {
				snprintf(err, errlen, "stopped while copying %s.%s; the next "
				    "run copies it again", t->rel->schema, t->rel->table);
				n = -1;
				break;
			}
			if ((n = copy_page(s, t, sql, &last, 0, err, errlen)) > 0)
				rows += n;
			worker_notify_alive(NULL);
		} while (n == s->cfg->snapshot_batch_size);
		free(sql);
		free(last);
		if (n < 0)
			return -1;
		if (db_exec(s->read, "COMMIT", 0, NULL, err, errlen) < 0 ||
		    db_exec(s->state, "UPDATE pgrelay_tables SET snapshot_done = true "
		    "WHERE id = $1::int", 1, params, err, errlen) < 0)
			return -1;
		log_info("copied %s.%s: %" PRId64 " rows", t->rel->schema,
		    t->rel->table, rows);
		copied++;
	}
	if (copied == 0)
		log_info("snapshot already done; nothing to copy (use -f to copy again)");
	return 0;
}

/* Runs or resumes the snapshot of every table.  0 when done, -1 with err.
 * *cutp gets the cut (malloc'd: a snapshot lists every transaction in
 * progress). */
static int
copy_snapshot(struct snapshot *s, int force, char **cutp, char *err, size_t errlen)
{
	PGresult *res;
	char *cut = NULL, *last = NULL;
	int from = 0, last_rel = -1;
	int64_t done_rows = 0, total_rows = 0, sent_this_run = 0;
	double t0 = now_s(), last_log = t0;

	if (force && db_exec(s->state, "DELETE FROM pgrelay_snapshot_state",
	    0, NULL, err, errlen) < 0)
		return -1;
	res = db_query(s->state, "SELECT cut::text, last_rel, last_key::text, "
	    "rows_done, rows_total, done FROM pgrelay_snapshot_state WHERE id = 1",
	    0, NULL, err, errlen);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 5), "t") == 0) {
		PQclear(res);
		return copy_added(s, err, errlen);
	}
	if (db_exec(s->read, RELMAP_SESSION_SQL, 0, NULL, err, errlen) < 0 ||
	    begin_copy(s, err, errlen) < 0) {
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1) {
		cut = *cutp = strdup(PQgetvalue(res, 0, 0));
		if (!PQgetisnull(res, 0, 1) && !PQgetisnull(res, 0, 2)) {
			last_rel = atoi(PQgetvalue(res, 0, 1));
			last = strdup(PQgetvalue(res, 0, 2));
		}
		done_rows = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		total_rows = strtoll(PQgetvalue(res, 0, 4), NULL, 10);
		PQclear(res);
		if (cut == NULL || (last_rel >= 0 && last == NULL)) {
			snprintf(err, errlen, "out of memory");
			free(last);
			return -1;
		}
		for (from = 0; last_rel >= 0 && from < s->ntables; from++)
			if (s->tables[from].id == last_rel)
				break;
		if (from == s->ntables) {	/* that table left the config */
			from = 0;
			free(last);
			last = NULL;
		}
		log_info("resuming the snapshot at %s.%s after key %s (%" PRId64
		    " of %" PRId64 " rows done)", s->tables[from].rel->schema,
		    s->tables[from].rel->table, last ? last : "(none)", done_rows,
		    total_rows);
	} else {
		PQclear(res);
		res = db_query(s->read, "SELECT pg_current_snapshot()::text", 0, NULL,
		    err, errlen);
		if (res == NULL)
			return -1;
		cut = *cutp = strdup(PQgetvalue(res, 0, 0));
		PQclear(res);
		if (cut == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (int i = 0; i < s->ntables; i++) {
			char q[600];

			snprintf(q, sizeof(q), "SELECT count(*) FROM %s", s->tables[i].rel->qname);
			if ((res = db_query(s->read, q, 0, NULL, err, errlen)) == NULL)
				return -1;
			total_rows += strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			PQclear(res);
		}
		char total[24];
		snprintf(total, sizeof(total), "%" PRId64, total_rows);
		const char *params[2] = { cut, total };
		if (db_exec(s->state, "INSERT INTO pgrelay_snapshot_state "
		    "(id, cut, rows_total) VALUES (1, $1::pg_snapshot, $2::bigint)",
		    2, params, err, errlen) < 0)
			return -1;
		log_info("snapshot started: %d tables, %" PRId64 " rows, cut %s",
		    s->ntables, total_rows, cut);
	}

	for (int i = from; i < s->ntables; i++) {
		const struct cdc_table *t = &s->tables[i];
		char *sql = page_query(s->read, t);

		if (sql == NULL) {
			snprintf(err, errlen, "out of memory");
			free(last);
			return -1;
		}
		for (;;) {
			int rows;

			if (worker_stop) {
				snprintf(err, errlen, "stopped in %s.%s after key %s; the "
				    "next run resumes there", t->rel->schema, t->rel->table,
				    last ? last : "(start)");
				free(sql);
				free(last);
				return -1;
			}
			if ((rows = copy_page(s, t, sql, &last, 1, err, errlen)) < 0) {
				free(sql);
				free(last);
				return -1;
			}
			done_rows += rows;
			sent_this_run += rows;

			double now = now_s();
			char status[160];
			snprintf(status, sizeof(status), "rows=%" PRId64 " total=%" PRId64,
			    done_rows, total_rows);
			worker_notify_alive(status);
			if (now - last_log >= 5.0) {
				log_info("snapshot progress: %" PRId64 " of %" PRId64 " rows, "
				    "%.0f rows/s", done_rows, total_rows,
				    (double)sent_this_run / (now - t0));
				last_log = now;
			}
			if (rows < s->cfg->snapshot_batch_size)
				break;
		}
		free(sql);
		free(last);
		last = NULL;
	}
	if (db_exec(s->read, "COMMIT", 0, NULL, err, errlen) < 0)
		return -1;
	if (finish(s, cut, err, errlen) < 0)
		return -1;
	double secs = now_s() - t0;
	log_info("snapshot done: %" PRId64 " rows in %.1fs (%.0f rows/s); streaming "
	    "starts at the cut", done_rows, secs,
	    secs > 0 ? (double)sent_this_run / secs : 0.0);
	return 0;
}

/* Describes the tables and makes sure they are captured (before the cut
 * is taken: every change after it is captured), then copies them.  0,
 * PGR_RETRY or PGR_CONFIG with err. */
static int
run_snapshot(struct snapshot *s, int force, char *err, size_t errlen)
{
	char *cut = NULL;
	int rc;

	if (db_exec(s->state, RELMAP_SESSION_SQL, 0, NULL, err, errlen) < 0)
		return PGR_RETRY;
	rc = cdc_tables_open(s->state, s->cfg, &s->tables, &s->ntables, err, errlen);
	if (rc < 0)
		return rc;
	rc = copy_snapshot(s, force, &cut, err, errlen) < 0 ? PGR_RETRY : 0;
	free(cut);
	cdc_tables_free(s->tables, s->ntables);
	s->tables = NULL;
	s->ntables = 0;
	return rc;
}

static int
snapshot_main(struct cfg *cfg, int force)
{
	struct snapshot s = { .cfg = cfg };
	char err[1024];
	int attempt = 0, rc = 1;

	s.rk = kfk_producer_new(cfg, "pgrelay-snapshot", kfk_acks_report, &s.acks,
	    err, sizeof(err));
	if (s.rk == NULL) {	/* librdkafka refuses the configuration */
		log_error("%s", err);
		return CFG_EXIT_CONFIG;
	}
	if (kfk_cdc_topics_wait(s.rk, cfg) == PGR_CONFIG) {
		rd_kafka_destroy(s.rk);
		return CFG_EXIT_CONFIG;
	}
	worker_notify_ready("snapshot starting");

	while (!worker_stop && !kfk_fatal()) {
		PGresult *res;

		s.state = db_connect(cfg->source_dsn, "pgrelay-snapshot", err, sizeof(err));
		s.read = s.state ? db_connect(cfg->source_dsn, "pgrelay-snapshot",
		    err, sizeof(err)) : NULL;
		if (s.read != NULL && db_require_schema(s.state, "source",
		    CDC_SOURCE_SCHEMA_VERSION, err, sizeof(err)) < 0) {
			snprintf(err + strlen(err), sizeof(err) - strlen(err),
			    "; apply sql/source/*.sql to the source database");
			PQfinish(s.read);
			s.read = NULL;
		}
		res = s.read ? db_query(s.state, "SELECT pg_try_advisory_lock("
		    SNAPSHOT_LOCK_KEY ")", 0, NULL, err, sizeof(err)) : NULL;
		if (res != NULL && strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
			snprintf(err, sizeof(err), "another snapshot worker holds the lock");
			PQclear(res);
			res = NULL;
		}
		if (res != NULL) {
			PQclear(res);
			int r = run_snapshot(&s, force, err, sizeof(err));
			if (r == 0) {
				rc = 0;
				break;
			}
			if (r == PGR_CONFIG) {
				log_error("%s; fix the table or cdc.tables in the config, "
				    "then restart pgrelayd", err);
				rc = CFG_EXIT_CONFIG;
				break;
			}
			force = 0;	/* the state was reset once; resume from now on */
		}
		if (s.read) PQfinish(s.read);
		if (s.state) PQfinish(s.state);
		s.read = s.state = NULL;
		if (worker_stop)
			break;
		log_error("snapshot: %s; retrying in %d ms", err, worker_backoff_ms(attempt));
		worker_notify_waiting(err);
		worker_sleep_ms(worker_backoff_ms(attempt++));
	}
	if (worker_stop && rc != 0)
		log_info("stopping before the snapshot finished; the next run resumes");
	if (s.read) PQfinish(s.read);
	if (s.state) PQfinish(s.state);
	rd_kafka_flush(s.rk, 10000);
	rd_kafka_destroy(s.rk);
	/* Asked to stop: exit 0 only if done, so a supervisor runs it again. */
	return rc == 0 ? 0 : rc == CFG_EXIT_CONFIG ? rc : worker_stop ? 75 : 1;
}

int
main(int argc, char **argv)
{
	int force = 0;
	struct cfg *cfg = worker_start(argc, argv, "snapshot",
	    "usage: pgrelay-snapshot -c CONFIG [-f]\n"
	    "Copies the rows of the source's configured tables to Kafka once, then\n"
	    "lets the producer stream from that cut.  -f copies again.", &force);
	int rc = snapshot_main(cfg, force);

	cfg_free(cfg);
	return rc;
}
