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
 * TRUNCATE (sql/target/004_truncate.sql).  The producer never prunes a
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
};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int64_t
wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int
send_row(struct snapshot *s, PGresult *res, int i, char *err, size_t errlen)
{
	struct change c;
	struct emp_row *r = &c.after;
	char why[160];
	const char *bad = NULL;

	memset(&c, 0, sizeof(c));
	c.op = 'r';
	c.has_after = 1;
	c.ts_ms = wall_ms();
	r->emp_id = (int32_t)strtol(PQgetvalue(res, i, 0), NULL, 10);
	r->first_name = PQgetisnull(res, i, 1) ? NULL : PQgetvalue(res, i, 1);
	r->last_name = PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2);
	r->has_dob = !PQgetisnull(res, i, 3);
	r->dob_days = r->has_dob ? (int32_t)strtol(PQgetvalue(res, i, 3), NULL, 10) : 0;
	r->city = PQgetisnull(res, i, 4) ? NULL : PQgetvalue(res, i, 4);
	r->has_salary = !PQgetisnull(res, i, 5);
	r->salary = r->has_salary ? (int32_t)strtol(PQgetvalue(res, i, 5), NULL, 10) : 0;
	c.change_id = strtoll(PQgetvalue(res, i, 6), NULL, 10);
	if (!r->has_dob && !PQgetisnull(res, i, 7))
		bad = cdc_dob_unrepresentable(PQgetvalue(res, i, 7), why, sizeof(why));
	return cdc_send(s->rk, s->cfg, &c, PQdb(s->read), bad, &s->acks, err,
	    errlen);
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

/* Runs or resumes the snapshot.  0 when done, -1 with err.  *cutp gets
 * the cut (malloc'd: a snapshot lists every transaction in progress). */
static int
copy_snapshot(struct snapshot *s, int force, char **cutp, char *err, size_t errlen)
{
	PGresult *res;
	char *cut = NULL, last[24] = "", limit[16], total[24];
	const char *lastp = NULL;
	int64_t done_rows = 0, total_rows = 0, sent_this_run = 0;
	double t0 = now_s(), last_log = t0;

	if (force && db_exec(s->state, "DELETE FROM pgrelay_snapshot_state",
	    0, NULL, err, errlen) < 0)
		return -1;
	res = db_query(s->state, "SELECT cut::text, last_emp_id, rows_done, "
	    "rows_total, done FROM pgrelay_snapshot_state WHERE id = 1",
	    0, NULL, err, errlen);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 4), "t") == 0) {
		log_info("snapshot already done; nothing to copy (use -f to copy again)");
		PQclear(res);
		return 0;
	}
	if (db_exec(s->read, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	    0, NULL, err, errlen) < 0) {
		PQclear(res);
		return -1;
	}
	if (PQntuples(res) == 1) {
		cut = *cutp = strdup(PQgetvalue(res, 0, 0));
		if (cut == NULL) {
			PQclear(res);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (!PQgetisnull(res, 0, 1)) {
			snprintf(last, sizeof(last), "%s", PQgetvalue(res, 0, 1));
			lastp = last;
		}
		done_rows = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		total_rows = strtoll(PQgetvalue(res, 0, 3), NULL, 10);
		PQclear(res);
		log_info("resuming the snapshot after emp_id %s (%" PRId64 " of %"
		    PRId64 " rows done)", lastp ? lastp : "(none)", done_rows, total_rows);
	} else {
		PQclear(res);
		res = db_query(s->read, "SELECT pg_current_snapshot()::text, "
		    "(SELECT count(*) FROM employees)", 0, NULL, err, errlen);
		if (res == NULL)
			return -1;
		cut = *cutp = strdup(PQgetvalue(res, 0, 0));
		if (cut == NULL) {
			PQclear(res);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		snprintf(total, sizeof(total), "%s", PQgetvalue(res, 0, 1));
		total_rows = strtoll(total, NULL, 10);
		PQclear(res);
		const char *params[2] = { cut, total };
		if (db_exec(s->state, "INSERT INTO pgrelay_snapshot_state "
		    "(id, cut, rows_total) VALUES (1, $1::pg_snapshot, $2::bigint)",
		    2, params, err, errlen) < 0)
			return -1;
		log_info("snapshot started: %" PRId64 " rows, cut %s", total_rows, cut);
	}

	snprintf(limit, sizeof(limit), "%d", s->cfg->snapshot_batch_size);
	for (;;) {
		const char *params[2] = { lastp, limit };
		int rows;

		if (worker_stop) {
			snprintf(err, errlen, "stopped at emp_id %s; the next run resumes "
			    "there", lastp ? lastp : "(start)");
			return -1;
		}
		res = db_query(s->read,
		    "SELECT e.emp_id, e.first_name, e.last_name, "
		    "       " CDC_DOB_DAYS_SQL("e.dob") ", e.city, e.salary, "
		    "       coalesce(greatest((SELECT max(c.change_id) FROM emp_cdc c "
		    "                           WHERE c.emp_id = e.emp_id), "
		    "                         (SELECT max(t.change_id) FROM emp_cdc t "
		    "                           WHERE t.action = 't')), 0), "
		    "       e.dob::text "
		    "  FROM employees e "
		    " WHERE $1::int IS NULL OR e.emp_id > $1::int "
		    " ORDER BY e.emp_id LIMIT $2::int", 2, params, err, errlen);
		if (res == NULL)
			return -1;
		rows = PQntuples(res);
		s->acks = (struct kfk_acks){ 0 };
		for (int i = 0; i < rows; i++) {
			if (send_row(s, res, i, err, errlen) < 0) {
				PQclear(res);
				return -1;
			}
		}
		if (rows > 0) {
			snprintf(last, sizeof(last), "%s", PQgetvalue(res, rows - 1, 0));
			lastp = last;
		}
		PQclear(res);
		if (rows == 0)
			break;
		if (kfk_acks_wait(s->rk, &s->acks, &worker_stop, err, errlen) < 0)
			return -1;

		char n[16];
		snprintf(n, sizeof(n), "%d", rows);
		const char *up[2] = { last, n };
		if (db_exec(s->state, "UPDATE pgrelay_snapshot_state SET last_emp_id = "
		    "$1::int, rows_done = rows_done + $2::bigint WHERE id = 1",
		    2, up, err, errlen) < 0)
			return -1;
		done_rows += rows;
		sent_this_run += rows;

		double t = now_s();
		char status[160];
		snprintf(status, sizeof(status), "rows=%" PRId64 " total=%" PRId64,
		    done_rows, total_rows);
		worker_notify_alive(status);
		if (t - last_log >= 5.0) {
			log_info("snapshot progress: %" PRId64 " of %" PRId64 " rows, "
			    "%.0f rows/s", done_rows, total_rows,
			    (double)sent_this_run / (t - t0));
			last_log = t;
		}
		if (rows < s->cfg->snapshot_batch_size)
			break;
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

static int
run_snapshot(struct snapshot *s, int force, char *err, size_t errlen)
{
	char *cut = NULL;
	int rc = copy_snapshot(s, force, &cut, err, errlen);

	free(cut);
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
			if (run_snapshot(&s, force, err, sizeof(err)) == 0) {
				rc = 0;
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
		worker_sleep_ms(worker_backoff_ms(attempt++));
	}
	if (worker_stop && rc != 0)
		log_info("stopping before the snapshot finished; the next run resumes");
	if (s.read) PQfinish(s.read);
	if (s.state) PQfinish(s.state);
	rd_kafka_flush(s.rk, 10000);
	rd_kafka_destroy(s.rk);
	/* Asked to stop: exit 0 only if done, so a supervisor runs it again. */
	return rc == 0 ? 0 : worker_stop ? 75 : 1;
}

int
main(int argc, char **argv)
{
	int force = 0;
	struct cfg *cfg = worker_start(argc, argv, "snapshot",
	    "usage: pgrelay-snapshot -c CONFIG [-f]\n"
	    "Copies the rows of the source's employees table to Kafka once, then\n"
	    "lets the producer stream from that cut.  -f copies again.", &force);
	int rc = snapshot_main(cfg, force);

	cfg_free(cfg);
	return rc;
}
