/*
 * producer.c - pgrelay-producer: reads A's change table and sends every
 * change to the CDC topic, in order, without ever skipping one.
 *
 * NOTES
 *
 * Position.  The producer's position is a PostgreSQL snapshot, kept in A
 * (pgrelay_producer_state.snap): every change whose writing transaction is
 * visible in it has been committed to Kafka.  Each round takes the current
 * snapshot hi and sends, in change_id order, the changes whose transaction
 * is visible in hi but not in the position lo (a window); once Kafka has
 * committed all of them the position becomes hi.  A transaction that wrote
 * a low change_id but commits after a higher one was read is invisible in
 * lo and visible in a later hi, so it is sent then: nothing is skipped
 * however transactions interleave (PgQ's method).  A long-running
 * transaction delays only its own changes; it is reported.
 *
 * Transactions.  The producer is a Kafka transactional producer
 * (transactional.id "pgrelay-producer-" + the CDC topic: one per
 * pipeline, the same on every host).  A window is read in batches of
 * producer.batch_size; each batch is one Kafka transaction, committed
 * before the next batch is read, and the position moves after the last.
 * Consumers read with isolation.level=read_committed: an aborted batch is
 * never seen.  (Not one transaction per window: readers see nothing of an
 * open transaction, and a window after downtime can hold millions of
 * changes; a batch keeps B's latency as before and each transaction short
 * beside transaction.timeout.ms.)
 *
 * Duplicates.  A crash or a takeover after Kafka committed part of a
 * window and before the position moved sends that part again, then the
 * rest: a replay in order.  Every message carries its change_id as the
 * row's version and the consumer applies a change only if it is newer
 * than the row's version in B, so B never sees it twice.
 *
 * Order.  The key is the emp_id, so all changes of a row go to one
 * partition; within a window they are sent in change_id order, and a later
 * change of a row is never in an earlier window (its transaction waited for
 * the row lock of the earlier one, so it commits later).  The idempotent
 * producer keeps that order through retries; fencing (below) keeps it
 * through a change of producer.
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
 * backlogs (common/target.c, NOTES).  Its change rows are never
 * pruned: the snapshot reads the newest one it can see (snapshot.c).
 *
 * One at a time.  The producer holds a session advisory lock on A; a
 * second producer (another host) waits on standby until the lock frees:
 * at once when the holder's session ends.  A holder that is frozen
 * (SIGSTOP, a paused VM, a hung host) or cut off from the network keeps
 * its session, and the lock, until A notices the dead connection: hours
 * with default keep-alives.  So the holder also holds a lease
 * (pgrelay_producer_lease): it renews it every second from a second
 * connection, while it waits for A, for Kafka, and between rounds.  A
 * standby that sees the lease not renewed for producer.lease_s (by A's
 * clock) ends the holder's session with pg_terminate_backend, which frees
 * the lock, takes the lock, then the lease with lease_epoch + 1, then
 * calls init_transactions.  The takeover takes lease_s plus up to about a
 * second (the standby looks once a second).  A holder that has not renewed
 * for lease_s by its own clock, or finds its lease taken, stops sending
 * and stands by.
 *
 * Fencing.  A holder that wakes up after a takeover may hold a window in
 * memory.  It cannot put it on the topic: the new holder's
 * init_transactions aborted its open transaction, and every produce or
 * commit of its transactional.id's old epoch fails (fenced, a fatal
 * error); it then destroys that handle and stands by, and a later tenure
 * starts with a new handle and init_transactions (never another id).  Nor
 * can it move the position: its session on A was ended, and the position
 * moves only from the session the lease names, under the lease_epoch it
 * took.  The new holder resumes from the last position: duplicates
 * (above), never a loss.  The snapshot worker stays idempotent, not
 * transactional: it runs before streaming starts (the producer waits for
 * its cut) and each of its rows carries its version.
 *
 * It starts streaming only once the snapshot worker has recorded its cut.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cdc.h"
#include "codec.h"
#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "worker.h"

/* 'pgrl', 1: one producer per A.  pg_locks shows a two-key advisory lock
 * as classid = key 1, objid = key 2, objsubid = 2. */
#define PRODUCER_LOCK_KEY1 "1885828466"
#define PRODUCER_LOCK_KEY2 "1"
#define PRODUCER_LOCK_KEY PRODUCER_LOCK_KEY1 ", " PRODUCER_LOCK_KEY2
#define RETENTION_EVERY_S 10
#define RETENTION_CHUNK "10000"
#define TERMINATE_WAIT_MS 5000	/* for the lock of a session we ended */

struct producer {
	struct cfg *cfg;
	PGconn *db;			/* rounds, position; holds the advisory lock */
	PGconn *lease_db;		/* renews the lease while db is busy */
	rd_kafka_t *rk;			/* transactional; NULL between tenures */
	char txn_id[300];		/* "pgrelay-producer-" + CDC topic */
	char holder[160];		/* "host H pid N": the lease says who */
	int locked;			/* holds the producer advisory lock */
	int active;			/* lock, lease and Kafka transactions: sends */
	int in_txn;			/* a Kafka transaction is open */
	char lease_epoch[24];		/* of this tenure */
	double renewed;			/* monotonic: the last renewal A confirmed */
	double renew_tried;
	const char *lost;		/* why the lease is lost, or NULL */
	char lost_why[600];
	int seen_pid;			/* standby: a holder without its lease ... */
	double seen_since;		/* ... seen since (monotonic) */
	double stop_seen;		/* monotonic: when worker_stop was seen */
	struct kfk_acks acks;		/* of the current batch */
	struct cdc_table *tables;	/* the configured tables, as A has them */
	int ntables;
	char *round_sql;		/* the window query over them (round_query) */
	char *oids;			/* "{oid,...}" of the tables, for the shape */
	char *shape;			/* md5 of their columns when last described */
	char *idle_snap;		/* the snapshot whose window was last sent
					 * whole (malloc'd), or NULL */
	double moved_at;		/* monotonic: the position's last move */
	char unknown_warned[64];	/* rels seen without a table, warned once */
	time_t last_retention;
	time_t last_long_txn_warn;
	int64_t total_sent;
};

static double
mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
disconnect(struct producer *p)
{
	cdc_tables_free(p->tables, p->ntables);
	p->tables = NULL;
	p->ntables = 0;
	free(p->round_sql);
	p->round_sql = NULL;
	free(p->oids);
	p->oids = NULL;
	free(p->shape);
	p->shape = NULL;
	free(p->idle_snap);
	p->idle_snap = NULL;
	if (p->db != NULL)
		PQfinish(p->db);
	if (p->lease_db != NULL)
		PQfinish(p->lease_db);
	p->db = p->lease_db = NULL;
	p->locked = 0;
	p->active = 0;
}

/* The window query over the configured tables: each change with its
 * event made by A (cdc_event_sql), from the row as the capture wrote it
 * read back as the table's type (json_populate_record: a column added
 * since is NULL, one dropped is ignored).  A change of a rel no table of
 * the config has gets no event (val NULL): it is skipped.  $1 is the
 * position lo, $2 the snapshot hi. */
static char *
round_query(PGconn *db, const struct cdc_table *tables, int ntables)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	int ok = f != NULL;

	if (!ok)
		return NULL;
	fprintf(f, "SELECT c.change_id, c.action, c.rel, e.key, e.val, e.bad "
	    "  FROM pgrelay_changes c LEFT JOIN LATERAL (");
	for (int i = 0; i < ntables && ok; i++) {
		const struct cdc_table *t = &tables[i];
		char *val = cdc_event_sql(db, t, "x", "c.action",
		    "c.change_id", "c.txid::text::bigint",
		    "(extract(epoch FROM c.changed_at) * 1000)::bigint");
		char *key = cdc_key_sql(db, t, "x");
		char *bad = cdc_bad_sql(db, t, "x");

		/* a column added since the change was captured reads as a row
		 * written before it does: its missing value (relmap.h), else NULL */
		char *miss = t->rel->missing ? db_quote(db, t->rel->missing, 0) : NULL;

		ok = val != NULL && key != NULL && bad != NULL &&
		    (t->rel->missing == NULL || miss != NULL);
		if (ok && miss == NULL)
			fprintf(f, "%sSELECT %s AS key, %s AS val, %s AS bad "
			    "FROM json_populate_record(NULL::%s, c.row) x WHERE c.rel = %d",
			    i ? " UNION ALL " : "", key, val, bad, t->rel->qname, t->id);
		else if (ok)
			fprintf(f, "%sSELECT %s AS key, %s AS val, %s AS bad "
			    "FROM json_populate_record(json_populate_record(NULL::%s, "
			    "%s::json), c.row) x WHERE c.rel = %d",
			    i ? " UNION ALL " : "", key, val, bad, t->rel->qname, miss,
			    t->id);
		free(val);
		free(key);
		free(bad);
		free(miss);
	}
	fprintf(f, ") e ON true "
	    " WHERE c.txid >= pg_snapshot_xmin($1::pg_snapshot) "
	    "   AND c.txid < pg_snapshot_xmax($2::pg_snapshot) "
	    "   AND pg_visible_in_snapshot(c.txid, $2::pg_snapshot) "
	    "   AND NOT pg_visible_in_snapshot(c.txid, $1::pg_snapshot) "
	    " ORDER BY c.change_id");
	if (fclose(f) != 0)
		ok = 0;
	if (!ok) {
		free(out);
		return NULL;
	}
	return out;
}

/* "{oid,oid,...}" of the tables (malloc'd), for the shape query. */
static char *
table_oids(const struct cdc_table *t, int n)
{
	size_t len = 3 + (size_t)n * 12;
	char *s = malloc(len), *w = s;

	if (s == NULL)
		return NULL;
	*w++ = '{';
	for (int i = 0; i < n; i++)
		w += snprintf(w, len - (size_t)(w - s), "%s%u", i ? "," : "", t[i].rel->oid);
	snprintf(w, len - (size_t)(w - s), "}");
	return s;
}

/* Logs how table b's description differs from a's (the same table). */
static void
describe_change(const struct cdc_table *a, const struct cdc_table *b)
{
	char cols[1024];
	size_t off = 0;
	int same = a->rel->ncols == b->rel->ncols;

	for (int i = 0; i < b->rel->ncols; i++) {
		const struct rel_col *c = &b->rel->cols[i];
		const struct rel_col *o = relmap_col(a->rel, c->name);

		if (o == NULL || strcmp(o->type, c->type) != 0)
			same = 0;
		if (off < sizeof(cols))
			off += (size_t)snprintf(cols + off, sizeof(cols) - off, "%s%s %s",
			    i ? ", " : "", c->name, c->type);
	}
	if (!same)
		log_info("table %s.%s changed on the source: its events carry the "
		    "columns (%s) from now on (a change captured before a column "
		    "was added carries the value older rows read as: its DEFAULT, "
		    "or null)",
		    b->rel->schema, b->rel->table, cols);
}

/* Describes the tables from A's catalog and makes sure they are captured
 * (cdc_tables_open), with their window query and oids: at connection,
 * and again after an ALTER TABLE changed them (logged).  The old ones are
 * replaced only when every new piece was made.  0, PGR_RETRY or
 * PGR_CONFIG (a table cannot be replicated) with err. */
static int
describe_tables(struct producer *p, char *err, size_t errlen)
{
	struct cdc_table *t;
	char *sql, *oids;
	int n, rc;

	if ((rc = cdc_tables_open(p->db, p->cfg, &t, &n, err, errlen)) < 0)
		return rc;
	sql = round_query(p->db, t, n);
	oids = table_oids(t, n);
	if (sql == NULL || oids == NULL) {
		free(sql);
		free(oids);
		cdc_tables_free(t, n);
		snprintf(err, errlen, "out of memory making the window query");
		return PGR_RETRY;
	}
	for (int i = 0; i < n && i < p->ntables; i++)	/* the config's order */
		describe_change(&p->tables[i], &t[i]);
	cdc_tables_free(p->tables, p->ntables);
	free(p->round_sql);
	free(p->oids);
	p->tables = t;
	p->ntables = n;
	p->round_sql = sql;
	p->oids = oids;
	return 0;
}

/* Connects to A, checks the schema, describes the tables and makes sure
 * they are captured.  0, PGR_RETRY, or PGR_CONFIG (a table cannot be
 * replicated: err says why). */
static int
connect_source(struct producer *p, char *err, size_t errlen)
{
	int rc;

	p->db = db_connect(p->cfg->source_dsn, "pgrelay-producer", err, errlen);
	if (p->db == NULL)
		return PGR_RETRY;
	if (db_require_schema(p->db, "source", CDC_SOURCE_SCHEMA_VERSION, err,
	    errlen) < 0) {
		snprintf(err + strlen(err), errlen - strlen(err),
		    "; apply sql/source/*.sql to the source database");
		disconnect(p);
		return PGR_RETRY;
	}
	if (db_exec(p->db, RELMAP_SESSION_SQL, 0, NULL, err, errlen) < 0) {
		disconnect(p);
		return PGR_RETRY;
	}
	if ((rc = describe_tables(p, err, errlen)) < 0)
		disconnect(p);
	return rc;
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

/* ---- the lease ----------------------------------------------------------- */

/* Marks the lease lost (why: one line); the loop stands down. */
static void
lease_lost(struct producer *p, const char *why)
{
	if (p->lost != NULL)
		return;
	snprintf(p->lost_why, sizeof(p->lost_why), "%s", why);
	p->lost = p->lost_why;
}

/* Renews the lease from lease_db, at most once a second.  The lease is
 * lost when A says another producer took it (its epoch moved), or when no
 * renewal got through for lease_s: a standby may have taken over by now
 * (this process was frozen, or A did not answer). */
static void
renew_lease(struct producer *p)
{
	double now = mono_s();
	const char *params[1] = { p->lease_epoch };
	char err[512];
	PGresult *res;

	if (!p->active || p->lost != NULL || now - p->renew_tried < 1.0)
		return;
	if (now - p->renewed >= p->cfg->producer_lease_s) {
		snprintf(err, sizeof(err), "the producer lease was not renewed for "
		    "%.1fs (this process was stopped, or the source did not "
		    "answer): a standby producer may have taken over",
		    now - p->renewed);
		lease_lost(p, err);
		return;
	}
	p->renew_tried = now;
	if (db_broken(p->lease_db)) {
		if (p->lease_db != NULL)
			PQfinish(p->lease_db);
		p->lease_db = db_connect(p->cfg->source_dsn, "pgrelay-producer",
		    err, sizeof(err));
		if (p->lease_db == NULL) {
			log_warn("renewing the producer lease: %s; retrying (the "
			    "lease is lost %.0fs from now)", err,
			    p->cfg->producer_lease_s - (now - p->renewed));
			return;
		}
	}
	res = db_query(p->lease_db, "UPDATE pgrelay_producer_lease "
	    "SET renewed_at = now() WHERE id = 1 AND lease_epoch = $1::bigint",
	    1, params, err, sizeof(err));
	if (res == NULL) {
		log_warn("renewing the producer lease: %s; retrying (the lease is "
		    "lost %.0fs from now)", err,
		    p->cfg->producer_lease_s - (now - p->renewed));
		return;
	}
	if (strcmp(PQcmdTuples(res), "1") == 0)
		p->renewed = now;	/* sent before A stamped it: errs early */
	else
		lease_lost(p, "another producer took the producer lease (its "
		    "epoch on the source moved on)");
	PQclear(res);
}

/* What the producer does while it waits (for A, for Kafka, between
 * rounds): reports that it is alive and renews its lease.  -1 once the
 * lease is lost (stop sending), or 5 s after a stop was asked (stop
 * waiting for Kafka: what was not committed is sent again by the next
 * producer). */
static int
producer_tick(void *arg)
{
	struct producer *p = arg;

	worker_notify_alive(NULL);
	renew_lease(p);
	if (worker_stop && p->stop_seen == 0)
		p->stop_seen = mono_s();
	if (worker_stop && mono_s() - p->stop_seen > 5.0)
		return -1;
	return p->lost != NULL ? -1 : 0;
}

static void
producer_tick_db(void *arg)
{
	(void)producer_tick(arg);
}

static int
give_up(void *arg)
{
	(void)arg;
	return -1;
}

/* Sleeps up to ms, renewing the lease; returns early on a stop or a lost
 * lease. */
static void
producer_sleep_ms(struct producer *p, int ms)
{
	while (ms > 0 && !worker_stop && p->lost == NULL) {
		int step = ms < 100 ? ms : 100;

		worker_sleep_ms(step);
		ms -= step;
		producer_tick(p);
	}
}

/* Takes the lease for this tenure (the lock is held): a new lease_epoch,
 * this session as lock_pid, and a connection to renew it. */
static int
take_lease(struct producer *p, char *err, size_t errlen)
{
	const char *params[1] = { p->holder };
	PGresult *res;

	res = db_query(p->db, "INSERT INTO pgrelay_producer_lease AS l "
	    "(id, holder, lock_pid, lease_epoch, renewed_at, taken_at) "
	    "VALUES (1, $1, pg_backend_pid(), 1, now(), now()) "
	    "ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, "
	    "    lock_pid = EXCLUDED.lock_pid, lease_epoch = l.lease_epoch + 1, "
	    "    renewed_at = now(), taken_at = now() "
	    "RETURNING lease_epoch", 1, params, err, errlen);
	if (res == NULL)
		return -1;
	snprintf(p->lease_epoch, sizeof(p->lease_epoch), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	p->renewed = p->renew_tried = mono_s();
	p->lost = NULL;
	if (db_broken(p->lease_db)) {
		if (p->lease_db != NULL)
			PQfinish(p->lease_db);
		p->lease_db = db_connect(p->cfg->source_dsn, "pgrelay-producer",
		    err, errlen);
		if (p->lease_db == NULL)
			return -1;
	}
	return 0;
}

/* A standby's look at the holder.  When its lease has not been renewed
 * for lease_s (by A's clock; a holder that took the lock and never wrote
 * its lease: by this process's clock since it was first seen so), ends
 * the holder's session and waits for the lock.  1 when this producer now
 * holds the lock, 0 when not (the holder is alive, or did not go), -1 with
 * err. */
static int
check_holder(struct producer *p, char *err, size_t errlen)
{
	PGresult *res;
	char pid[16];
	const char *params[1] = { pid };
	double age, now = mono_s();
	int holder_pid, leased;

	res = db_query(p->db,
	    "SELECT l.pid, s.lock_pid = l.pid, s.holder, "
	    "       extract(epoch FROM now() - s.renewed_at)::float8 "
	    "  FROM pg_locks l LEFT JOIN pgrelay_producer_lease s ON s.id = 1 "
	    " WHERE l.locktype = 'advisory' AND l.granted "
	    "   AND l.database = (SELECT oid FROM pg_database "
	    "                      WHERE datname = current_database()) "
	    "   AND l.classid = " PRODUCER_LOCK_KEY1 "::oid "
	    "   AND l.objid = " PRODUCER_LOCK_KEY2 "::oid AND l.objsubid = 2",
	    0, NULL, err, errlen);
	if (res == NULL)
		return -1;
	if (PQntuples(res) != 1) {	/* the lock is free now */
		PQclear(res);
		p->seen_pid = 0;
		if (try_lock(p, err, errlen) < 0)
			return -1;
		return p->locked;
	}
	holder_pid = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	leased = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
	if (leased) {
		age = strtod(PQgetvalue(res, 0, 3), NULL);
		p->seen_pid = 0;
	} else {
		if (p->seen_pid != holder_pid) {
			p->seen_pid = holder_pid;
			p->seen_since = now;
		}
		age = now - p->seen_since;
	}
	if (age <= p->cfg->producer_lease_s) {
		PQclear(res);
		return 0;
	}
	log_warn("the active producer (%s, session pid %d on the source) has "
	    "not renewed its lease for %.1fs (producer.lease_s %d): it is "
	    "frozen, cut off or hung; ending its session on the source to take "
	    "over (what it may still send is fenced)",
	    leased ? PQgetvalue(res, 0, 2) : "it took the lock and never wrote "
	    "its lease", holder_pid, age, p->cfg->producer_lease_s);
	PQclear(res);
	snprintf(pid, sizeof(pid), "%d", holder_pid);
	res = db_query(p->db, "SELECT pg_terminate_backend($1::int)", 1, params,
	    err, errlen);
	if (res == NULL) {
		snprintf(err + strlen(err), errlen - strlen(err), "; cannot end the "
		    "holder's session: run every host's producer as the same "
		    "database role, or grant pg_signal_backend to this one");
		return -1;
	}
	PQclear(res);
	p->seen_pid = 0;
	/* pg_terminate_backend only signals (its wait argument needs
	 * PostgreSQL 14): the lock frees when the session has ended */
	for (int waited = 0; waited < TERMINATE_WAIT_MS && !worker_stop; waited += 50) {
		if (try_lock(p, err, errlen) < 0)
			return -1;
		if (p->locked)
			return 1;
		worker_sleep_ms(50);
	}
	log_warn("the holder's session (pid %d) was asked to end but still "
	    "held the lock %d ms later; looking again", holder_pid,
	    TERMINATE_WAIT_MS);
	return 0;
}

/* ---- tenure: lock, lease, Kafka transactions ----------------------------- */

/* The lock is held: takes the lease, then a transactional producer whose
 * init_transactions fences every earlier holder.  0 when active; PGR_RETRY
 * (stand down and try again); PGR_FATAL (exit). */
static int
start_tenure(struct producer *p, char *err, size_t errlen)
{
	int rc;

	if (take_lease(p, err, errlen) < 0)
		return PGR_RETRY;
	if (p->rk == NULL) {
		p->rk = kfk_txn_producer_new(p->cfg, "pgrelay-producer", p->txn_id,
		    kfk_acks_report, &p->acks, err, errlen);
		if (p->rk == NULL)
			return PGR_FATAL;
	}
	p->active = 1;			/* renews the lease while init waits */
	rc = kfk_txn_init(p->rk, producer_tick, p, err, errlen);
	if (rc < 0) {
		p->active = 0;
		if (p->lost != NULL)
			snprintf(err, errlen, "%s", p->lost);
		return rc;
	}
	return 0;
}

/* Ends this producer's tenure: aborts an open transaction if it still
 * can, drops the Kafka handle (a later tenure makes a new one: one that
 * was fenced is dead) and both sessions on A, which frees the lock. */
static void
end_tenure(struct producer *p)
{
	char err[512];

	if (p->rk != NULL) {
		if (p->in_txn && !rd_kafka_fatal_error(p->rk, NULL, 0)) {
			if (kfk_txn_abort(p->rk, give_up, NULL, err, sizeof(err)) == 0)
				log_info("aborted this producer's open Kafka "
				    "transaction: the active producer sends its "
				    "changes again");
			else
				log_info("%s; the broker aborts it (at a takeover's "
				    "init_transactions, or after transaction.timeout.ms)",
				    err);
		}
		rd_kafka_resp_err_t e = rd_kafka_purge(p->rk,
		    RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_warn("dropping the Kafka producer's queue: %s",
			    rd_kafka_err2str(e));
		/* serves the purged messages' delivery reports (they fail), or
		 * rd_kafka_destroy() would warn that they were still queued */
		e = rd_kafka_flush(p->rk, 1000);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_debug("dropping the Kafka producer: %d messages still "
			    "unreported (%s)", rd_kafka_outq_len(p->rk),
			    rd_kafka_err2str(e));
		rd_kafka_destroy(p->rk);
		p->rk = NULL;
		kfk_fatal_clear();	/* that handle's fatal error went with it */
	}
	p->in_txn = 0;
	p->lost = NULL;
	disconnect(p);
}

/* The producer found it may no longer send (why): says so, ends its
 * tenure, and goes back to standing by. */
static void
stand_down(struct producer *p, const char *why)
{
	log_warn("%s; this producer stops sending and stands by (the position "
	    "on the source was not moved past what Kafka committed; the active "
	    "producer sends the rest)", why);
	end_tenure(p);
	worker_notify_now("state=standby");
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

/* The configured table whose changes are rel, or NULL. */
static const struct cdc_table *
table_of(const struct producer *p, int rel)
{
	for (int i = 0; i < p->ntables; i++)
		if (p->tables[i].id == rel)
			return &p->tables[i];
	return NULL;
}

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
	    /* the snapshot's copy holds an xid (its temporary table) but
	     * writes no change */
	    "   AND application_name IS DISTINCT FROM 'pgrelay-snapshot' "
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
	    "DELETE FROM pgrelay_changes WHERE change_id IN ("
	    "  SELECT change_id FROM pgrelay_changes "
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

/* One Kafka transaction: the rows of res, committed.  0, PGR_RETRY (aborted
 * or given up: send them again), PGR_FATAL (the handle is dead). */
static int
send_batch(struct producer *p, PGresult *res, long *n, char *err, size_t errlen)
{
	int rows = PQntuples(res), rc;
	char why[512];

	if ((rc = kfk_txn_begin(p->rk, err, errlen)) < 0)
		return rc;
	p->in_txn = 1;
	p->acks = (struct kfk_acks){ 0 };
	for (int i = 0; i < rows; i++) {
		int64_t id = strtoll(PQgetvalue(res, i, 0), NULL, 10);
		char op = PQgetvalue(res, i, 1)[0];
		int rel = atoi(PQgetvalue(res, i, 2));
		const struct cdc_table *t = table_of(p, rel);

		if (t == NULL || PQgetisnull(res, i, 4)) {
			/* captured, but no table of the config: left behind by a
			 * table removed from it */
			int w = rel >= 0 && rel < (int)sizeof(p->unknown_warned) ?
			    p->unknown_warned[rel]++ : 1;
			if (!w)
				log_warn("changes of rel %d (pgrelay_tables.id) on the "
				    "source belong to no table of the config; they are "
				    "skipped (drop the capture of a table no longer "
				    "replicated: pgrelayctl capture-sql)", rel);
			continue;
		}
		if (cdc_send(p->rk, p->cfg, t, op, id, PQgetvalue(res, i, 3),
		    (size_t)PQgetlength(res, i, 3), PQgetvalue(res, i, 4),
		    (size_t)PQgetlength(res, i, 4),
		    PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5),
		    &p->acks, err, errlen) < 0) {
			/* refused: the transaction failed (fenced, or an abortable
			 * error), or out of memory */
			if (rd_kafka_fatal_error(p->rk, NULL, 0))
				return PGR_FATAL;
			if (kfk_txn_abort(p->rk, producer_tick, p, why,
			    sizeof(why)) == PGR_FATAL)
				return PGR_FATAL;
			p->in_txn = 0;
			return PGR_RETRY;
		}
	}
	rc = kfk_txn_commit(p->rk, producer_tick, p, err, errlen);
	if (rc != PGR_FATAL)
		p->in_txn = 0;		/* committed, or aborted */
	if (rc == 0)
		*n += rows;
	return rc;
}

/* Moves the position to hi, if the snapshot epoch still holds and this
 * session still holds the lease it took.  0, or -1 with err (and
 * p->lost set when the lease is gone). */
static int
move_position(struct producer *p, const char *hi, const char *epoch, long n,
    char *err, size_t errlen)
{
	char count[24];
	const char *params[4] = { hi, epoch, count, p->lease_epoch };
	PGresult *res;
	int moved;

	snprintf(count, sizeof(count), "%ld", n);
	/* FOR SHARE: a takeover's lease update waits for this statement */
	res = db_query(p->db, "UPDATE pgrelay_producer_state "
	    "SET snap = $1::pg_snapshot, changes = changes + $3::bigint, "
	    "    updated_at = now() "
	    "WHERE id = 1 AND epoch = $2::bigint "
	    "  AND EXISTS (SELECT 1 FROM pgrelay_producer_lease "
	    "               WHERE id = 1 AND lease_epoch = $4::bigint "
	    "                 AND lock_pid = pg_backend_pid() FOR SHARE)",
	    4, params, err, errlen);
	if (res == NULL)
		return -1;
	moved = strcmp(PQcmdTuples(res), "1") == 0;
	PQclear(res);
	if (moved)
		return 0;
	res = db_query(p->db, "SELECT 1 FROM pgrelay_producer_lease WHERE id = 1 "
	    "AND lease_epoch = $1::bigint AND lock_pid = pg_backend_pid()",
	    1, &params[3], err, errlen);
	if (res == NULL)
		return -1;
	if (PQntuples(res) == 0) {
		lease_lost(p, "another producer took the producer lease (found "
		    "when moving the position, which stays)");
		snprintf(err, errlen, "%s", p->lost);
	} else {
		snprintf(err, errlen, "the position was reset by a new snapshot; "
		    "starting again from its cut");
	}
	PQclear(res);
	return -1;
}

/* Sends every change visible in hi and not in the position lo, then moves
 * the position to hi (if epoch still holds).  Returns the number of changes
 * sent, or PGR_RETRY / PGR_FATAL with err (nothing moved; the round is
 * redone). */
static long
send_window(struct producer *p, const char *lo, const char *hi, const char *epoch,
    char *err, size_t errlen)
{
	PGresult *res;
	char fetch[48], ignore[256];
	long n = 0;
	int rc = PGR_RETRY;
	const char *window[2] = { lo, hi };

	if (strcmp(lo, hi) == 0)
		return 0;
	/* FETCH takes no parameter; the count is an integer from the config */
	snprintf(fetch, sizeof(fetch), "FETCH %d FROM round", p->cfg->producer_batch_size);

	/* One query per window, read through a cursor a batch at a time (a
	 * LIMIT per batch scanned and sorted the whole window again for each:
	 * a transaction that wrote 400,000 changes made 80 such scans).  WITH
	 * HOLD: the result is kept by A's backend and no transaction stays
	 * open, holding back A's vacuum, while Kafka commits. */
	/* A's backend runs the whole query here (WITH HOLD): for a backlog of
	 * millions of changes that can outlast supervisor.watchdog_s, so the
	 * wait reports that the producer is alive, and renews its lease */
	{
		size_t ql = strlen(p->round_sql) + 64;
		char *q = malloc(ql);

		if (q == NULL) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		snprintf(q, ql, "DECLARE round NO SCROLL CURSOR WITH HOLD FOR %s",
		    p->round_sql);
		res = db_query_ticking(p->db, q, 2, window, producer_tick_db, p,
		    err, errlen);
		free(q);
	}
	if (res == NULL)
		goto fail;
	PQclear(res);
	for (;;) {
		int rows;

		producer_tick(p);
		if (p->lost != NULL) {
			snprintf(err, errlen, "%s", p->lost);
			goto fail;
		}
		if (worker_stop) {
			snprintf(err, errlen, "stopping in the middle of a window; "
			    "the next producer sends it again from the position");
			goto fail;
		}
		res = db_query(p->db, fetch, 0, NULL, err, errlen);
		if (res == NULL)
			goto fail;
		rows = PQntuples(res);
		/* one batch in flight at a time keeps the producer's memory small */
		if (rows > 0 && (rc = send_batch(p, res, &n, err, errlen)) < 0) {
			PQclear(res);
			goto fail;
		}
		PQclear(res);
		if (rows < p->cfg->producer_batch_size)
			break;
	}
	rc = PGR_RETRY;
	if (db_exec(p->db, "CLOSE round", 0, NULL, err, errlen) < 0)
		goto fail;
	/* An empty window moves the position at most once a second: each
	 * move is a write on A, and the rounds of an idle A come every
	 * poll_interval_ms while a transaction is open */
	if (n == 0 && mono_s() - p->moved_at < 1.0)
		return 0;
	if (move_position(p, hi, epoch, n, err, errlen) < 0)
		return PGR_RETRY;
	p->moved_at = mono_s();
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
	return rc;
}

/* One round: the position lo, the current snapshot hi, then send_window().
 * The snapshots stay in the result, however many transactions they list.
 *
 * Idle rounds.  The capture sends no NOTIFY (common/cdc.c), so the
 * producer polls.  A snapshot changes whenever a transaction ends (its
 * xmax is the newest ended transaction + 1, its xip those below it still
 * running): while hi is the very snapshot whose window was last sent
 * whole, no transaction has ended since, no change has become visible,
 * and the round ends after this one small query. */
static long
run_round(struct producer *p, char *err, size_t errlen)
{
	/* The tables' columns are read in the statement that takes the
	 * snapshot hi: a change visible in hi was written after every ALTER
	 * TABLE before it committed, so the window is made with a description
	 * at least as new as any of its changes.  An idle round (hi is the
	 * snapshot the last window was sent to) sends nothing and reads no
	 * catalog (0.05 ms a round, 0.2 with the columns). */
	const char *params[2] = { p->oids, p->idle_snap };
	PGresult *st = db_query(p->db, "SELECT snap::text, epoch, "
	    "pg_current_snapshot()::text, CASE WHEN pg_current_snapshot()::text "
	    "IS DISTINCT FROM $2 THEN (SELECT md5(string_agg(concat_ws(' ', "
	    "attrelid, attnum, attname, atttypid, atttypmod, attnotnull, "
	    "attmissingval), ',' ORDER BY attrelid, attnum)) FROM pg_attribute "
	    "WHERE attrelid = ANY ($1::oid[]) AND attnum > 0 AND NOT attisdropped) END "
	    "FROM pgrelay_producer_state WHERE id = 1", 2, params, err, errlen);
	long n;

	if (st == NULL)
		return PGR_RETRY;
	if (PQntuples(st) != 1) {
		PQclear(st);
		snprintf(err, errlen, "no producer position in pgrelay_producer_state; "
		    "run the snapshot worker first");
		return PGR_RETRY;
	}
	if (p->idle_snap != NULL && strcmp(p->idle_snap, PQgetvalue(st, 0, 2)) == 0) {
		PQclear(st);
		return 0;
	}
	/* the first round describes the tables again after reading the
	 * shape, so an ALTER between connect_source() and it is not missed */
	if (p->shape == NULL || strcmp(p->shape, PQgetvalue(st, 0, 3)) != 0) {
		int rc = describe_tables(p, err, errlen);

		if (rc < 0) {
			if (rc == PGR_CONFIG)
				snprintf(err + strlen(err), errlen - strlen(err),
				    "; a table changed on the source so that pgrelay "
				    "cannot carry it: no change is sent until the table "
				    "or the config is mended (exclude the column, then "
				    "reload)");
			PQclear(st);
			return PGR_RETRY;
		}
		free(p->shape);
		p->shape = strdup(PQgetvalue(st, 0, 3));
	}
	free(p->idle_snap);
	p->idle_snap = NULL;
	n = send_window(p, PQgetvalue(st, 0, 0), PQgetvalue(st, 0, 2),
	    PQgetvalue(st, 0, 1), err, errlen);
	if (n >= 0)
		p->idle_snap = strdup(PQgetvalue(st, 0, 2));	/* NULL: no skip */
	PQclear(st);
	return n;
}

/* Waits producer.poll_interval_ms (a stop or a lost lease ends it),
 * serving Kafka and renewing the lease meanwhile. */
static void
wait_for_changes(struct producer *p)
{
	int left = p->cfg->producer_poll_interval_ms;

	while (left > 0 && !worker_stop) {
		int step = left < 100 ? left : 100;

		rd_kafka_poll(p->rk, step);
		if (producer_tick(p) < 0)
			return;
		left -= step;
	}
}

/* Standby until this producer holds the lock: takes over a holder whose
 * lease ran out.  1 when the lock is held, 0 when standing by, -1 on an
 * error (logged). */
static int
acquire_lock(struct producer *p, int *standby_logged)
{
	char err[1024];
	int got;

	if (try_lock(p, err, sizeof(err)) < 0) {
		log_error("source database: %s", err);
		return -1;
	}
	if (p->locked)
		return 1;
	got = check_holder(p, err, sizeof(err));
	if (got < 0) {
		log_error("source database: %s", err);
		return -1;
	}
	if (got)
		return 1;
	if (!(*standby_logged)++)
		log_info("another producer holds the lock on the source; standing "
		    "by (taking over if its lease is not renewed for %ds)",
		    p->cfg->producer_lease_s);
	return 0;
}

static int
producer_main(struct cfg *cfg)
{
	struct producer p = { .cfg = cfg };
	char err[1024], host[64] = "?";
	int attempt = 0, standby_logged = 0, waiting_logged = 0, rc = 0;
	char status[160];

	if (gethostname(host, sizeof(host) - 1) < 0)
		snprintf(host, sizeof(host), "?");
	snprintf(p.holder, sizeof(p.holder), "host %s pid %ld", host, (long)getpid());
	snprintf(p.txn_id, sizeof(p.txn_id), "pgrelay-producer-%s", cfg->cdc_topic);
	p.rk = kfk_txn_producer_new(cfg, "pgrelay-producer", p.txn_id,
	    kfk_acks_report, &p.acks, err, sizeof(err));
	if (p.rk == NULL) {
		log_error("%s", err);
		return CFG_EXIT_CONFIG;
	}
	if (kfk_cdc_topics_wait(p.rk, cfg) == PGR_CONFIG) {
		rd_kafka_destroy(p.rk);
		return CFG_EXIT_CONFIG;
	}
	worker_notify_ready("producer starting");

	while (!worker_stop) {
		if (db_broken(p.db)) {
			if (p.active)
				stand_down(&p, "lost the connection to the source, and "
				    "with it the producer lock");
			disconnect(&p);
			int crc = connect_source(&p, err, sizeof(err));
			if (crc == PGR_CONFIG) {
				log_error("%s; fix the table or cdc.tables in the "
				    "config, then restart or reload pgrelayd", err);
				rc = CFG_EXIT_CONFIG;
				break;
			}
			if (crc < 0) {
				log_error("source database: %s; retrying in %d ms", err,
				    worker_backoff_ms(attempt));
				worker_notify_waiting(err);
				worker_sleep_ms(worker_backoff_ms(attempt++));
				continue;
			}
			char where[256];
			log_info("connected to source %s",
			    db_dsn_redact(cfg->source_dsn, where, sizeof(where)));
			attempt = 0;
		}
		if (!p.locked) {
			int got = acquire_lock(&p, &standby_logged);

			if (got < 0)
				continue;
			if (got == 0) {
				worker_notify_alive("state=standby");
				worker_sleep_ms(1000);
				continue;
			}
		}
		if (!p.active) {
			int r = start_tenure(&p, err, sizeof(err));

			if (r == PGR_FATAL) {
				log_error("%s; exiting", err);
				rc = 1;
				break;
			}
			if (r < 0) {
				if (!worker_stop)
					stand_down(&p, err);
				continue;
			}
			log_info("holding the producer lock; this producer is active "
			    "(lease epoch %s; Kafka transactional.id %s, whose earlier "
			    "holders are fenced)", p.lease_epoch, p.txn_id);
			snprintf(status, sizeof(status), "state=active sent=%" PRId64
			    " lease_epoch=%s", p.total_sent, p.lease_epoch);
			worker_notify_now(status);
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
			producer_sleep_ms(&p, 500);
			if (p.lost != NULL)
				stand_down(&p, p.lost);
			continue;
		}
		waiting_logged = 0;

		long n = run_round(&p, err, sizeof(err));
		if (n < 0) {
			if (worker_stop)
				break;
			if (p.lost != NULL) {
				stand_down(&p, p.lost);
				continue;
			}
			if (n == PGR_FATAL) {
				if (p.rk != NULL && kfk_fenced(p.rk)) {
					stand_down(&p, "a newer producer fenced this one "
					    "(Kafka refused its transaction: it took over)");
					continue;
				}
				log_error("%s; exiting (restarted by the supervisor)", err);
				rc = 1;
				break;
			}
			log_error("round failed: %s; nothing was marked sent, retrying", err);
			producer_sleep_ms(&p, worker_backoff_ms(attempt++));
			if (p.lost != NULL)
				stand_down(&p, p.lost);
			continue;
		}
		attempt = 0;
		snprintf(status, sizeof(status), "state=active sent=%" PRId64
		    " lease_epoch=%s", p.total_sent, p.lease_epoch);
		worker_notify_alive(status);
		if (n < cfg->producer_batch_size)
			wait_for_changes(&p);
		if (p.lost != NULL)
			stand_down(&p, p.lost);
	}

	log_info("stopping: %" PRId64 " changes sent", p.total_sent);
	end_tenure(&p);
	return rc;
}

int
main(int argc, char **argv)
{
	struct cfg *cfg = worker_start(argc, argv, "producer",
	    "usage: pgrelay-producer -c CONFIG\n"
	    "Sends the changes recorded in the source's pgrelay_changes table to Kafka.", NULL);
	int rc = producer_main(cfg);

	cfg_free(cfg);
	return rc;
}
