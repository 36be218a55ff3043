/*
 * producer.c - pgrelay-producer: reads A's change table and sends every
 * change to the CDC topic, in order, without ever skipping one.
 *
 * NOTES
 *
 * Position.  The producer's position is a PostgreSQL snapshot, kept in A
 * (pgrelay_producer_state.snap): every change whose writing transaction is
 * visible in it has been acknowledged by Kafka.  Each round takes the
 * current snapshot hi and sends, in change_id order, the changes whose
 * transaction is visible in hi but not in the position lo; once Kafka has
 * acknowledged all of them the position becomes hi.  A transaction that
 * wrote a low change_id but commits after a higher one was read is
 * invisible in lo and visible in a later hi, so it is sent then: nothing
 * is skipped however transactions interleave (PgQ's method).  A
 * long-running transaction delays only its own changes; it is reported.
 *
 * Duplicates.  A crash after Kafka acknowledged part of a round and before
 * the position moved sends that part again.  Every message carries its
 * change_id as the row's version and the consumer applies a change only if
 * it is newer than the row's version in B, so B never sees it twice.
 *
 * Order.  The key is the emp_id, so all changes of a row go to one
 * partition; within a round they are sent in change_id order, and a later
 * change of a row is never in an earlier round (its transaction waited for
 * the row lock of the earlier one, so it commits later).  The idempotent
 * producer keeps that order through retries.
 *
 * TRUNCATE.  A TRUNCATE of employees is one change (action 't', emp_id
 * NULL; sql/source/002_truncate.sql) whose change_id T is a clean cut:
 * TRUNCATE holds the table's ACCESS EXCLUSIVE lock when its trigger takes
 * T, so every other transaction's change below T committed before it and
 * every one above T commits after it.  The rounds therefore send every
 * change below T before T (in T's round or earlier, in change_id order)
 * and every change above T after it.  It is about no row, so it goes to
 * every partition (common/cdc.c), without a key, as Debezium's op "t":
 * each partition's stream then holds its rows' changes below T, T, and
 * their changes above T, in that order, and B applies T on the first
 * partition it arrives by and takes it as a horizon for the others'
 * backlogs (sql/target/004_truncate.sql).  Its change rows are never
 * pruned: the snapshot reads the newest one it can see (snapshot.c).
 *
 * One at a time.  The producer holds a session advisory lock on A; a
 * second producer (another host) waits on standby until the lock frees.
 * It starts only once the snapshot worker has recorded its cut.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
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

#define PRODUCER_LOCK_KEY "1885828466, 1"	/* 'pgrl', 1: one producer per A */
#define RETENTION_EVERY_S 10
#define RETENTION_CHUNK "10000"

struct producer {
	struct cfg *cfg;
	PGconn *db;
	rd_kafka_t *rk;
	int locked;			/* holds the producer advisory lock */
	int64_t epoch;
	struct kfk_acks acks;		/* of the current round */
	time_t last_retention;
	time_t last_long_txn_warn;
	int64_t total_sent;
};

static void
disconnect(struct producer *p)
{
	if (p->db != NULL)
		PQfinish(p->db);
	p->db = NULL;
	p->locked = 0;
}

/* Connects to A, checks the schema, LISTENs, and tries the lock. */
static int
connect_source(struct producer *p, char *err, size_t errlen)
{
	p->db = db_connect(p->cfg->source_dsn, "pgrelay-producer", err, errlen);
	if (p->db == NULL)
		return -1;
	if (db_require_schema(p->db, "source", CDC_SOURCE_SCHEMA_VERSION, err,
	    errlen) < 0) {
		snprintf(err + strlen(err), errlen - strlen(err),
		    "; apply sql/source/*.sql to the source database");
		disconnect(p);
		return -1;
	}
	if (db_exec(p->db, "LISTEN pgrelay_cdc", 0, NULL, err, errlen) < 0) {
		disconnect(p);
		return -1;
	}
	return 0;
}

static int
try_lock(struct producer *p, char *err, size_t errlen)
{
	PGresult *res = db_query(p->db, "SELECT pg_try_advisory_lock("
	    PRODUCER_LOCK_KEY ")", 0, NULL, err, errlen);

	if (res == NULL)
		return -1;
	p->locked = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return 0;
}

/* 1 if the snapshot worker has finished, 0 if not yet, -1 on error. */
static int
snapshot_done(struct producer *p, char *err, size_t errlen)
{
	PGresult *res = db_query(p->db, "SELECT done FROM pgrelay_snapshot_state "
	    "WHERE id = 1", 0, NULL, err, errlen);
	int done;

	if (res == NULL)
		return -1;
	done = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return done;
}

/* Fills c from row i of a change query result (columns as in ROUND_SQL).
 * Returns NULL, or why the change event cannot carry the row (a dob A
 * holds but the event cannot: 'infinity', or beyond 0001..9999), written
 * into why. */
static const char *
change_from_row(PGresult *res, int i, struct change *c, char *why, size_t whylen)
{
	struct emp_row *r;

	memset(c, 0, sizeof(*c));
	c->change_id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
	c->txid = strtoll(PQgetvalue(res, i, 1), NULL, 10);
	c->ts_ms = strtoll(PQgetvalue(res, i, 2), NULL, 10);
	c->op = PQgetvalue(res, i, 3)[0];
	if (c->op == 't')
		return NULL;		/* a TRUNCATE: no row (emp_id NULL) */
	if (c->op == 'd') {
		c->has_before = 1;
		r = &c->before;
	} else {
		c->has_after = 1;
		r = &c->after;
	}
	/* The strings stay owned by res: c is only encoded, never freed. */
	r->emp_id = (int32_t)strtol(PQgetvalue(res, i, 4), NULL, 10);
	r->first_name = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5);
	r->last_name = PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6);
	r->has_dob = !PQgetisnull(res, i, 7);
	r->dob_days = r->has_dob ? (int32_t)strtol(PQgetvalue(res, i, 7), NULL, 10) : 0;
	r->city = PQgetisnull(res, i, 8) ? NULL : PQgetvalue(res, i, 8);
	r->has_salary = !PQgetisnull(res, i, 9);
	r->salary = r->has_salary ? (int32_t)strtol(PQgetvalue(res, i, 9), NULL, 10) : 0;
	if (!r->has_dob && !PQgetisnull(res, i, 10)) {
		snprintf(why, whylen, "dob '%s' is outside 0001-01-01 to "
		    "9999-12-31, what the change event carries",
		    PQgetvalue(res, i, 10));
		return why;
	}
	return NULL;
}

#define ROUND_SQL \
    "SELECT change_id, txid::text::bigint, " \
    "       (extract(epoch FROM changed_at) * 1000)::bigint, action, emp_id, " \
    "       first_name, last_name, " CDC_DOB_DAYS_SQL("dob") ", city, salary, " \
    "       dob::text " \
    "  FROM emp_cdc " \
    " WHERE txid >= pg_snapshot_xmin($1::pg_snapshot) " \
    "   AND txid < pg_snapshot_xmax($2::pg_snapshot) " \
    "   AND pg_visible_in_snapshot(txid, $2::pg_snapshot) " \
    "   AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot) " \
    " ORDER BY change_id"

/* Reports a transaction that has been open long enough to hold changes back. */
static void
report_long_transactions(struct producer *p)
{
	char err[512], secs[16];
	time_t now = time(NULL);
	const char *params[1] = { secs };
	PGresult *res;

	if (now - p->last_long_txn_warn < p->cfg->producer_long_txn_warn_s)
		return;
	snprintf(secs, sizeof(secs), "%d", p->cfg->producer_long_txn_warn_s);
	res = db_query(p->db,
	    "SELECT pid, extract(epoch FROM now() - xact_start)::bigint, "
	    "       coalesce(application_name, '') "
	    "  FROM pg_stat_activity "
	    " WHERE backend_xid IS NOT NULL AND datname = current_database() "
	    "   AND now() - xact_start > make_interval(secs => $1::int) "
	    " ORDER BY xact_start LIMIT 1", 1, params, err, sizeof(err));
	if (res == NULL) {
		log_warn("checking for long transactions: %s", err);
		return;
	}
	if (PQntuples(res) == 1) {
		log_warn("transaction of backend pid %s (%s) has been open for %ss; "
		    "its changes are delivered when it commits, the others are not "
		    "held back; end it if it is stuck",
		    PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 2), PQgetvalue(res, 0, 1));
		p->last_long_txn_warn = now;
	}
	PQclear(res);
}

/* Deletes acknowledged changes older than producer.retention_s, but no
 * TRUNCATE (one row each; the snapshot reads the newest it can see). */
static void
prune_changes(struct producer *p, const char *lo)
{
	char err[512], secs[16];
	const char *params[3] = { secs, lo, RETENTION_CHUNK };
	PGresult *res;
	time_t now = time(NULL);

	if (now - p->last_retention < RETENTION_EVERY_S)
		return;
	p->last_retention = now;
	snprintf(secs, sizeof(secs), "%d", p->cfg->producer_retention_s);
	res = db_query(p->db,
	    "DELETE FROM emp_cdc WHERE change_id IN ("
	    "  SELECT change_id FROM emp_cdc "
	    "   WHERE changed_at < now() - make_interval(secs => $1::int) "
	    "     AND pg_visible_in_snapshot(txid, $2::pg_snapshot) "
	    "     AND action <> 't' "
	    "   ORDER BY change_id LIMIT $3::int)", 3, params, err, sizeof(err));
	if (res == NULL) {
		log_warn("pruning acknowledged changes: %s (will retry)", err);
		return;
	}
	if (strcmp(PQcmdTuples(res), "0") != 0)
		log_info("pruned %s acknowledged changes older than %ds",
		    PQcmdTuples(res), p->cfg->producer_retention_s);
	PQclear(res);
}

/* Waiting on A is not being hung (db_query_ticking). */
static void
report_alive(void)
{
	worker_notify_alive(NULL);
}

/* Sends every change visible in hi and not in the position lo, then moves
 * the position to hi (if epoch still holds).  Returns the number of changes
 * sent, or -1 with err (nothing moved; the round is redone). */
static long
send_window(struct producer *p, const char *lo, const char *hi, const char *epoch,
    char *err, size_t errlen)
{
	PGresult *res;
	char fetch[48], count[24], ignore[256];
	long n = 0;
	const char *window[2] = { lo, hi };

	if (strcmp(lo, hi) == 0)
		return 0;
	/* FETCH takes no parameter; the count is an integer from the config */
	snprintf(fetch, sizeof(fetch), "FETCH %d FROM round", p->cfg->producer_batch_size);

	/* One query per window, read through a cursor a batch at a time (a
	 * LIMIT per batch scanned and sorted the whole window again for each:
	 * a transaction that wrote 400,000 changes made 80 such scans).  WITH
	 * HOLD: the result is kept by A's backend and no transaction stays
	 * open, holding back A's vacuum, while Kafka acknowledges. */
	/* A's backend runs the whole query here (WITH HOLD): for a backlog of
	 * millions of changes that can outlast supervisor.watchdog_s, so the
	 * wait reports that the producer is alive */
	res = db_query_ticking(p->db, "DECLARE round NO SCROLL CURSOR WITH HOLD FOR "
	    ROUND_SQL, 2, window, report_alive, err, errlen);
	if (res == NULL)
		goto fail;
	PQclear(res);
	p->acks = (struct kfk_acks){ 0 };
	for (;;) {
		int rows;

		res = db_query(p->db, fetch, 0, NULL, err, errlen);
		if (res == NULL)
			goto fail;
		rows = PQntuples(res);
		for (int i = 0; i < rows; i++) {
			struct change c;
			char why[160];
			const char *bad = change_from_row(res, i, &c, why, sizeof(why));

			if (cdc_send(p->rk, p->cfg, &c, PQdb(p->db), bad, &p->acks,
			    err, errlen) < 0) {
				PQclear(res);
				goto fail;
			}
			n++;
		}
		PQclear(res);
		rd_kafka_poll(p->rk, 0);
		if (rows < p->cfg->producer_batch_size)
			break;
		/* one batch in flight at a time keeps the producer's memory small */
		if (kfk_acks_wait(p->rk, &p->acks, &worker_stop, err, errlen) < 0)
			goto fail;
	}
	if (db_exec(p->db, "CLOSE round", 0, NULL, err, errlen) < 0)
		goto fail;
	if (kfk_acks_wait(p->rk, &p->acks, &worker_stop, err, errlen) < 0)
		return -1;

	snprintf(count, sizeof(count), "%ld", n);
	const char *params[3] = { hi, epoch, count };
	res = db_query(p->db, "UPDATE pgrelay_producer_state "
	    "SET snap = $1::pg_snapshot, changes = changes + $3::bigint, "
	    "    updated_at = now() "
	    "WHERE id = 1 AND epoch = $2::bigint", 3, params, err, errlen);
	if (res == NULL)
		return -1;
	if (strcmp(PQcmdTuples(res), "1") != 0) {
		PQclear(res);
		snprintf(err, errlen, "the position was reset by a new snapshot; "
		    "starting again from its cut");
		return -1;
	}
	PQclear(res);
	p->total_sent += n;
	if (n > 0)
		log_debug("sent %ld changes, position %s", n, hi);
	if (strrchr(hi, ':')[1] != '\0')	/* "xmin:xmax:xip,...": some in progress */
		report_long_transactions(p);
	prune_changes(p, hi);
	return n;
fail:
	if (!db_broken(p->db))
		db_exec(p->db, "CLOSE ALL", 0, NULL, ignore, sizeof(ignore));
	return -1;
}

/* One round: the position lo, the current snapshot hi, then send_window().
 * The snapshots stay in the result, however many transactions they list. */
static long
run_round(struct producer *p, char *err, size_t errlen)
{
	PGresult *st = db_query(p->db, "SELECT snap::text, epoch, "
	    "pg_current_snapshot()::text FROM pgrelay_producer_state WHERE id = 1",
	    0, NULL, err, errlen);
	long n;

	if (st == NULL)
		return -1;
	if (PQntuples(st) != 1) {
		PQclear(st);
		snprintf(err, errlen, "no producer position in pgrelay_producer_state; "
		    "run the snapshot worker first");
		return -1;
	}
	n = send_window(p, PQgetvalue(st, 0, 0), PQgetvalue(st, 0, 2),
	    PQgetvalue(st, 0, 1), err, errlen);
	PQclear(st);
	return n;
}

/* Waits for a NOTIFY from the trigger, the poll interval, or a stop. */
static void
wait_for_changes(struct producer *p)
{
	struct pollfd pfd = { .fd = PQsocket(p->db), .events = POLLIN };
	PGnotify *nf;
	int left = p->cfg->producer_poll_interval_ms, pending = 0;

	/* A NOTIFY that came in with the last round's results waits in libpq,
	 * not on the socket: poll() would not see it. */
	if (PQconsumeInput(p->db) == 0)
		return;
	while ((nf = PQnotifies(p->db)) != NULL) {
		PQfreemem(nf);
		pending = 1;
	}
	if (pending)
		return;
	while (left > 0 && !worker_stop) {
		int step = left < 100 ? left : 100;
		int r = poll(&pfd, 1, step);

		rd_kafka_poll(p->rk, 0);
		left -= step;
		if (r > 0)
			break;
		if (r < 0 && errno != EINTR)
			break;
	}
	if (PQconsumeInput(p->db) == 0)
		return;		/* the next query sees the broken connection */
	while ((nf = PQnotifies(p->db)) != NULL)
		PQfreemem(nf);
}

static int
producer_main(struct cfg *cfg)
{
	struct producer p = { .cfg = cfg };
	char err[1024];
	int attempt = 0, standby_logged = 0, waiting_logged = 0;
	char status[128];

	p.rk = kfk_producer_new(cfg, "pgrelay-producer", kfk_acks_report, &p.acks,
	    err, sizeof(err));
	if (p.rk == NULL) {	/* librdkafka refuses the configuration */
		log_error("%s", err);
		return CFG_EXIT_CONFIG;
	}
	if (kfk_cdc_topics_wait(p.rk, cfg) == PGR_CONFIG) {
		rd_kafka_destroy(p.rk);
		return CFG_EXIT_CONFIG;
	}
	worker_notify_ready("producer starting");

	while (!worker_stop && !kfk_fatal()) {
		if (db_broken(p.db)) {
			disconnect(&p);
			if (connect_source(&p, err, sizeof(err)) < 0) {
				log_error("source database: %s; retrying in %d ms", err,
				    worker_backoff_ms(attempt));
				worker_sleep_ms(worker_backoff_ms(attempt++));
				continue;
			}
			char where[256];
			log_info("connected to source %s",
			    db_dsn_redact(cfg->source_dsn, where, sizeof(where)));
			attempt = 0;
		}
		if (!p.locked) {
			if (try_lock(&p, err, sizeof(err)) < 0) {
				log_error("source database: %s", err);
				continue;
			}
			if (!p.locked) {
				if (!standby_logged++)
					log_info("another producer holds the lock on the "
					    "source; standing by");
				worker_notify_alive("state=standby");
				worker_sleep_ms(1000);
				continue;
			}
			log_info("holding the producer lock; this producer is active");
			standby_logged = 0;
		}
		int done = snapshot_done(&p, err, sizeof(err));
		if (done < 0) {
			log_error("source database: %s", err);
			continue;
		}
		if (!done) {
			if (!waiting_logged++)
				log_info("waiting for the snapshot to finish before streaming");
			worker_notify_alive("state=waiting-for-snapshot");
			worker_sleep_ms(500);
			continue;
		}
		waiting_logged = 0;

		long n = run_round(&p, err, sizeof(err));
		if (n < 0) {
			if (worker_stop)
				break;
			log_error("round failed: %s; nothing was marked sent, retrying", err);
			worker_sleep_ms(worker_backoff_ms(attempt++));
			continue;
		}
		attempt = 0;
		snprintf(status, sizeof(status), "state=active sent=%" PRId64, p.total_sent);
		worker_notify_alive(status);
		if (n < cfg->producer_batch_size)
			wait_for_changes(&p);
	}

	log_info("stopping: %" PRId64 " changes sent", p.total_sent);
	rd_kafka_flush(p.rk, 10000);
	rd_kafka_destroy(p.rk);
	disconnect(&p);
	return kfk_fatal() ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct cfg *cfg = worker_start(argc, argv, "producer",
	    "usage: pgrelay-producer -c CONFIG\n"
	    "Sends the changes recorded in the source's emp_cdc table to Kafka.", NULL);
	int rc = producer_main(cfg);

	cfg_free(cfg);
	return rc;
}
