/*
 * sink.c - the engine of pgrelay's Kafka-to-PostgreSQL workers (the CDC
 * consumer and the ETL loader): one consumer-group member that applies
 * batches to the target database exactly once in effect.
 *
 * NOTES
 *
 * Batches.  A batch takes the messages already waiting in the client's
 * queue, up to batch_size or for batch_timeout_ms, and is applied as soon
 * as the queue runs dry: a quiet stream pays no waiting for a batch to
 * fill, a busy one (or a backlog) makes large batches by itself, since
 * messages queue up while a batch is applied.  It is applied in one
 * transaction on the target that
 * also writes the next offset of every partition in the batch
 * (pgrelay_offsets).  The rows and the position commit together or not at
 * all.  On assignment each partition starts at the offset the target
 * holds, not at Kafka's committed offset (stored after the target commits
 * and sent by librdkafka once a second, for lag monitoring only).
 *
 * Idempotence.  The worker's apply callback must make a replayed message
 * harmless (the CDC consumer keeps a version per row, the ETL loader a
 * unique source key per row), so a batch applied again after a crash in
 * COMMIT, or a partition two members briefly share in a rebalance, never
 * counts twice.
 *
 * Rejects.  A message the callback rejects (cannot be decoded, breaks a
 * rule) or that the target refuses as data (SQLSTATE class 22 or 23, found
 * by re-running the batch with a savepoint per message) goes to the DLQ
 * topic with its key and value and headers saying why and where it came
 * from; it is counted as consumed in the same transaction, so it never
 * blocks the partition.  DLQ messages are acknowledged by Kafka before the
 * target commits: a crash in between can repeat a DLQ entry, never lose one.
 *
 * Durability.  The target session commits with synchronous_commit = off:
 * a batch's COMMIT does not wait for B's WAL flush.  If B crashes, it may
 * lose its last few hundred milliseconds of batches, but their offsets in
 * pgrelay_offsets go with them (same transaction), so the member reads
 * them from Kafka again: nothing is lost end to end, and no fsync is paid
 * per batch.  (The offset committed to Kafka may then be ahead of B's; it
 * is for lag monitoring only.)
 *
 * Frozen members.  A member frozen in the middle of a batch (a paused VM,
 * SIGSTOP) keeps its B transaction open, and with it the version locks of
 * the batch's rows, while the group gives its partitions to another
 * member that must apply the same rows.  B's server does not notice a
 * frozen client.  So each member's session sets
 * idle_in_transaction_session_timeout (5 s: the server ends a transaction
 * whose client went quiet; a live member is never quiet that long inside
 * one, except while Kafka acknowledges its DLQ records, and then its
 * COMMIT fails and the batch is applied again) and lock_timeout (2 s: a
 * member waiting on such locks fails the attempt and retries, reporting
 * that it is alive, instead of waiting in a call until the supervisor's
 * watchdog kills it).  A woken member's batch fails and is read again;
 * versions make that harmless.
 *
 * Prefetch.  librdkafka fetches ahead while its queue holds less than
 * the limits in kafka.h (512 KB), kept small for the RSS.  Once a fetch
 * takes the queue past a limit, librdkafka 2.0.2 stops fetching, and its
 * broker thread looks again only when something wakes it, up to a second
 * later (2.2 added fetch.queue.backoff.ms for this).  Meanwhile a member
 * draining a backlog sits idle, and a change produced then waits: a
 * latency stall of up to a second.  So the member counts what it takes
 * from the queue; when the queue runs dry after at least a limit's worth
 * (bytes or messages) since the last wake, the fetcher may have stopped,
 * and the member asks its partitions' leaders for their end offsets: one
 * ListOffsets round trip per leader, which wakes those broker threads,
 * and they fetch at once.  The count is complete: the queue was empty at
 * the last wake, so whatever filled it past a limit was taken since.
 * (Whether messages wait beyond the position is no test: the fetch that
 * stopped the fetcher may have taken everything there was, and the next
 * change would wait.)
 *
 * Rebalance.  Works with eager and cooperative protocols.  Before
 * partitions are revoked the pending batch is applied and committed.
 *
 * Gaps.  A partition whose offset in the target is below the topic's log
 * start lost changes the target never applied (retention deleted them, or
 * the topic was deleted and created again).  librdkafka's
 * auto.offset.reset would skip the gap with a warning; pgrelay sets it to
 * "error" (kafka.c), so the fetch fails with __AUTO_OFFSET_RESET.  The
 * member then stops that partition (paused; the others go on), logs what
 * was lost and how to recover (a re-snapshot), and reports it in its
 * status ("gaps=N"), which pgrelayd shows in pgrelayctl status and
 * systemd's STATUS=.  The target's offset stays, so every member that is
 * given the partition stops it again until an operator recovers.
 */
#define _POSIX_C_SOURCE 200809L
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "sink.h"
#include "worker.h"

struct reject {
	int index;		/* in the batch */
	const char *stage;	/* decode, validate, apply */
	const char *rule;
	char reason[256];
};

struct consumer {
	const struct cfg *cfg;
	const struct sink_ops *ops;
	PGconn *db;
	rd_kafka_t *rk;		/* the group member */
	rd_kafka_t *dlq;	/* producer for the DLQ topic */
	rd_kafka_queue_t *queue;	/* rk's consumer queue */
	rd_kafka_message_t **batch;
	int nbatch;
	struct reject *rejects;
	int nrejects;
	struct sink_verdict *verdicts;	/* for ops->apply_batch */
	struct kfk_acks dlq_acks;	/* of the current batch's rejects */
	int db_attempt;
	int64_t applied, stale, rejected, wakeups;
	int64_t taken_bytes, taken_msgs;	/* from the queue since the last wake */
	int ever_assigned;	/* see leave_group() */
	char client_id[64];
	struct {
		const char *topic;	/* one of ops->topics */
		int32_t partition;
	} gaps[64];		/* partitions stopped below the log start */
	int ngaps;
};

#define MAX_GAPS ((int)(sizeof(((struct consumer *)0)->gaps) / \
    sizeof(((struct consumer *)0)->gaps[0])))

enum apply_rc { APPLY_OK = 0, APPLY_RETRY = -1, APPLY_DATA = -2 };

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Opens B if needed.  0 when connected; -1 after logging and backing off. */
static int
ensure_db(struct consumer *c)
{
	char err[1024], where[256];

	if (!db_broken(c->db))
		return 0;
	if (c->db != NULL)
		PQfinish(c->db);
	c->db = db_connect(c->cfg->target_dsn, c->ops->appname, err, sizeof(err));
	if (c->db == NULL) {
		int ms = worker_backoff_ms(c->db_attempt++);
		log_error("target database: %s; retrying in %d ms", err, ms);
		worker_sleep_ms(ms);
		return -1;
	}
	if (db_require_schema(c->db, c->ops->schema_component,
	    c->ops->schema_version, err, sizeof(err)) < 0) {
		log_error("target database: %s; apply sql/target/*.sql to it", err);
		goto fail;
	}
	/* See Frozen members in NOTES. */
	if (db_exec(c->db, "SET synchronous_commit = off", 0, NULL, err, sizeof(err)) < 0 ||
	    db_exec(c->db, "SET lock_timeout = '2s'", 0, NULL, err, sizeof(err)) < 0 ||
	    db_exec(c->db, "SET idle_in_transaction_session_timeout = '5s'", 0, NULL,
	    err, sizeof(err)) < 0) {
		log_error("target database: %s", err);
		goto fail;
	}
	if (c->ops->on_connect != NULL &&
	    c->ops->on_connect(c->db, c->ops->opaque, err, sizeof(err)) < 0) {
		log_error("target database: %s; retrying", err);
		goto fail;
	}
	c->db_attempt = 0;
	log_info("connected to target %s",
	    db_dsn_redact(c->cfg->target_dsn, where, sizeof(where)));
	return 0;
fail:
	PQfinish(c->db);
	c->db = NULL;
	worker_sleep_ms(worker_backoff_ms(c->db_attempt++));
	return -1;
}

/* Sets each partition's start offset from B (or the beginning). */
static int
load_offsets(struct consumer *c, rd_kafka_topic_partition_list_t *parts)
{
	char err[1024];
	PGresult *res;

	for (int i = 0; i < parts->cnt; i++)
		parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
	const char *params[1] = { c->ops->group_id };
	res = db_query(c->db, "SELECT topic, partition, next_offset FROM pgrelay_offsets "
	    "WHERE group_id = $1", 1, params, err, sizeof(err));
	if (res == NULL) {
		log_error("reading offsets from target: %s", err);
		return -1;
	}
	for (int r = 0; r < PQntuples(res); r++) {
		const char *topic = PQgetvalue(res, r, 0);
		int32_t part = (int32_t)strtol(PQgetvalue(res, r, 1), NULL, 10);

		for (int i = 0; i < parts->cnt; i++)
			if (parts->elems[i].partition == part &&
			    strcmp(parts->elems[i].topic, topic) == 0)
				parts->elems[i].offset = strtoll(PQgetvalue(res, r, 2), NULL, 10);
	}
	PQclear(res);
	return 0;
}

static void
add_reject(struct consumer *c, int index, const char *stage, const char *rule,
    const char *reason)
{
	struct reject *r = &c->rejects[c->nrejects++];

	r->index = index;
	r->stage = stage;
	r->rule = rule;
	snprintf(r->reason, sizeof(r->reason), "%.255s", reason);
	/* one line: PostgreSQL's messages carry DETAIL lines */
	for (char *p = r->reason; *p; p++)
		if (*p == '\n' || *p == '\r' || *p == '\t')
			*p = ' ';
}

/* Counts message index's outcome: applied, stale or rejected. */
static void
tally(struct consumer *c, int index, enum sink_result rc, const char *stage,
    const char *rule, const char *why)
{
	if (rc == SINK_APPLIED)
		c->applied++;
	else if (rc == SINK_STALE)
		c->stale++;
	else
		add_reject(c, index, stage, rule, why);
}

/* Sends the batch's rejects to the DLQ and waits for Kafka's acks. */
static int
send_rejects(struct consumer *c, char *err, size_t errlen)
{
	c->dlq_acks = (struct kfk_acks){ 0 };
	for (int i = 0; i < c->nrejects; i++) {
		const struct reject *r = &c->rejects[i];
		const rd_kafka_message_t *m = c->batch[r->index];
		char part[16], off[24];
		const char *origin[] = {
			"topic", rd_kafka_topic_name(m->rkt), "partition", part,
			"offset", off, "group", c->ops->group_id,
		};
		const struct kfk_dlq_why why = { r->stage, r->rule, r->reason,
		    origin, 4 };

		snprintf(part, sizeof(part), "%d", (int)m->partition);
		snprintf(off, sizeof(off), "%" PRId64, (int64_t)m->offset);
		if (kfk_produce_dlq(c->dlq, c->ops->dlq_topic, m->key, m->key_len,
		    m->payload, m->len, &why, err, errlen) < 0)
			return -1;
		c->dlq_acks.sent++;
	}
	return kfk_acks_wait(c->dlq, &c->dlq_acks, &worker_stop, err, errlen);
}

/* Records the next offset of every partition in the batch, in B. */
static int
store_offsets(struct consumer *c, rd_kafka_topic_partition_list_t *offs,
    char *err, size_t errlen)
{
	for (int i = 0; i < offs->cnt; i++) {
		char part[16], next[24];
		const char *params[4] = { c->ops->group_id, offs->elems[i].topic, part, next };

		snprintf(part, sizeof(part), "%d", (int)offs->elems[i].partition);
		snprintf(next, sizeof(next), "%" PRId64, (int64_t)offs->elems[i].offset);
		if (db_exec(c->db, "INSERT INTO pgrelay_offsets AS o "
		    "(group_id, topic, partition, next_offset) "
		    "VALUES ($1, $2, $3::int, $4::bigint) "
		    "ON CONFLICT (group_id, topic, partition) DO UPDATE "
		    "SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset), "
		    "    updated_at = now()", 4, params, err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* Applies the whole batch in one transaction.  careful: a savepoint per
 * message, so a message B refuses is rejected alone. */
static enum apply_rc
apply_batch(struct consumer *c, rd_kafka_topic_partition_list_t *offs, int careful)
{
	char err[1024], ignore[256];
	int64_t applied0 = c->applied, stale0 = c->stale;

	c->nrejects = 0;
	if (db_exec(c->db, "BEGIN", 0, NULL, err, sizeof(err)) < 0)
		goto retry;
	if (!careful && c->ops->apply_batch != NULL) {
		int rc = c->ops->apply_batch(c->db, c->batch, c->nbatch,
		    c->ops->opaque, c->verdicts, err, sizeof(err));
		if (rc < 0) {
			if (rc != PGR_DATA)
				goto retry;
			db_exec(c->db, "ROLLBACK", 0, NULL, ignore, sizeof(ignore));
			return APPLY_DATA;
		}
		for (int i = 0; i < c->nbatch; i++) {
			const struct sink_verdict *v = &c->verdicts[i];
			tally(c, i, v->rc, v->stage, v->rule, v->why);
		}
		goto commit;
	}
	for (int i = 0; i < c->nbatch; i++) {
		const rd_kafka_message_t *m = c->batch[i];
		const char *stage = NULL, *rule = NULL;
		char why[256];

		if (careful && db_exec(c->db, "SAVEPOINT m", 0, NULL, err, sizeof(err)) < 0)
			goto retry;
		enum sink_result rc = c->ops->apply(c->db, m, c->ops->opaque, &stage,
		    &rule, why, sizeof(why), err, sizeof(err));
		if (rc != SINK_ERROR && rc != SINK_REFUSED) {
			tally(c, i, rc, stage, rule, why);
		} else {
			if (rc != SINK_REFUSED)
				goto retry;
			if (!careful) {
				db_exec(c->db, "ROLLBACK", 0, NULL, ignore, sizeof(ignore));
				c->applied = applied0;
				c->stale = stale0;
				return APPLY_DATA;
			}
			if (db_exec(c->db, "ROLLBACK TO SAVEPOINT m", 0, NULL, ignore,
			    sizeof(ignore)) < 0)
				goto retry;
			add_reject(c, i, "apply", "target.refused", err);
			continue;
		}
		if (careful && db_exec(c->db, "RELEASE SAVEPOINT m", 0, NULL,
		    err, sizeof(err)) < 0)
			goto retry;
	}
commit:
	if (store_offsets(c, offs, err, sizeof(err)) < 0)
		goto retry;
	if (c->nrejects > 0 && send_rejects(c, err, sizeof(err)) < 0)
		goto retry;
	if (db_exec(c->db, "COMMIT", 0, NULL, err, sizeof(err)) < 0)
		goto retry;
	c->rejected += c->nrejects;
	return APPLY_OK;
retry:
	log_error("applying a batch of %d to the target: %s; it is retried",
	    c->nbatch, err);
	if (!db_broken(c->db))
		db_exec(c->db, "ROLLBACK", 0, NULL, ignore, sizeof(ignore));
	c->applied = applied0;
	c->stale = stale0;
	return APPLY_RETRY;
}

/* Next offset per partition of the batch. */
static rd_kafka_topic_partition_list_t *
batch_offsets(struct consumer *c)
{
	rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);

	for (int i = 0; i < c->nbatch; i++) {
		const rd_kafka_message_t *m = c->batch[i];
		const char *t = rd_kafka_topic_name(m->rkt);
		rd_kafka_topic_partition_t *p =
		    rd_kafka_topic_partition_list_find(offs, t, m->partition);

		if (p == NULL)
			p = rd_kafka_topic_partition_list_add(offs, t, m->partition);
		if (m->offset + 1 > p->offset)
			p->offset = m->offset + 1;
	}
	return offs;
}

/* Applies and commits the pending batch, retrying until it lands or a stop
 * is asked.  0 when the batch is gone (applied), -1 if it is still pending. */
static int
flush_batch(struct consumer *c)
{
	rd_kafka_topic_partition_list_t *offs;
	int careful = 0;

	if (c->nbatch == 0)
		return 0;
	offs = batch_offsets(c);
	int64_t t0 = mono_ms();
	for (;;) {
		if (ensure_db(c) < 0) {
			if (worker_stop)
				break;
			continue;
		}
		enum apply_rc rc = apply_batch(c, offs, careful);
		if (rc == APPLY_OK) {
			/* For lag monitoring only; B holds the real position.
			 * librdkafka commits what is stored once a second. */
			rd_kafka_resp_err_t e = rd_kafka_offsets_store(c->rk, offs);
			if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
				log_debug("kafka offset store: %s", rd_kafka_err2str(e));
			log_debug("batch of %d applied in %" PRId64 " ms", c->nbatch,
			    mono_ms() - t0);
			for (int i = 0; i < c->nbatch; i++)
				rd_kafka_message_destroy(c->batch[i]);
			c->nbatch = 0;
			rd_kafka_topic_partition_list_destroy(offs);
			return 0;
		}
		if (rc == APPLY_DATA) {
			careful = 1;
			continue;
		}
		if (worker_stop || kfk_fatal())
			break;
		worker_notify_alive(NULL);	/* waiting on B is not hung */
		worker_sleep_ms(worker_backoff_ms(c->db_attempt++));
	}
	rd_kafka_topic_partition_list_destroy(offs);
	return -1;
}

/* A fetch of m's partition found its offset out of the log's range (see
 * Gaps in NOTES): stops the partition and says what was lost. */
static void
stop_gap(struct consumer *c, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);
	int64_t lo = -1, hi = -1, at = m->offset;
	rd_kafka_topic_partition_list_t *one;
	rd_kafka_resp_err_t e;
	char what[256];

	for (int i = 0; i < c->ngaps; i++)
		if (c->gaps[i].partition == m->partition &&
		    strcmp(c->gaps[i].topic, topic) == 0)
			return;		/* reported already */
	e = rd_kafka_query_watermark_offsets(c->rk, topic, m->partition, &lo, &hi, 5000);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(what, sizeof(what), "its offset %" PRId64 " is out of the "
		    "log's range (the range itself is unknown: %s)", at,
		    rd_kafka_err2str(e));
	else if (at >= 0 && at < lo)
		/* offsets, not changes: a transactional producer's commit
		 * markers take offsets too */
		snprintf(what, sizeof(what), "the changes at offsets %" PRId64
		    "..%" PRId64 " (%" PRId64 " offsets) were deleted, by the "
		    "topic's retention or by hand, before the target applied them",
		    at, lo - 1, lo - at);
	else
		snprintf(what, sizeof(what), "its offset %" PRId64 " in the target "
		    "is beyond the partition's end %" PRId64 " (was the topic "
		    "deleted and created again?)", at, hi);
	log_error("partition %d of %s is STOPPED: %s; the target is missing "
	    "those changes and this partition is not read any further; recover "
	    "with a re-snapshot (README: Offsets below the log start)",
	    (int)m->partition, topic, what);
	one = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(one, topic, m->partition);
	e = rd_kafka_pause_partitions(c->rk, one);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("pausing partition %d: %s", (int)m->partition,
		    rd_kafka_err2str(e));
	rd_kafka_topic_partition_list_destroy(one);
	if (c->ngaps < MAX_GAPS) {
		/* the name as ops->topics holds it: m's is freed with m */
		for (int i = 0; i < c->ops->ntopics; i++)
			if (strcmp(c->ops->topics[i], topic) == 0)
				c->gaps[c->ngaps].topic = c->ops->topics[i];
		if (c->gaps[c->ngaps].topic != NULL)
			c->gaps[c->ngaps++].partition = m->partition;
	}
}

/* Forgets the stopped partitions among parts (revoked: their next owner
 * finds the gap again). */
static void
forget_gaps(struct consumer *c, const rd_kafka_topic_partition_list_t *parts)
{
	for (int i = 0; i < parts->cnt; i++)
		for (int g = 0; g < c->ngaps; g++)
			if (c->gaps[g].partition == parts->elems[i].partition &&
			    strcmp(c->gaps[g].topic, parts->elems[i].topic) == 0) {
				c->gaps[g] = c->gaps[--c->ngaps];
				c->gaps[c->ngaps].topic = NULL;
				g--;
			}
}

static void
rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct consumer *c = opaque;
	int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *error = NULL;
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		c->ever_assigned = 1;
		while (!worker_stop && (ensure_db(c) < 0 || load_offsets(c, parts) < 0))
			worker_sleep_ms(500);
		for (int i = 0; i < parts->cnt; i++)
			log_info("assigned %s [%d] from offset %" PRId64,
			    parts->elems[i].topic, (int)parts->elems[i].partition,
			    (int64_t)parts->elems[i].offset);
		if (coop)
			error = rd_kafka_incremental_assign(rk, parts);
		else
			e = rd_kafka_assign(rk, parts);
	} else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
		if (flush_batch(c) < 0)
			log_warn("revoked with a batch not yet applied; it is applied "
			    "when the target is back (versions keep it safe)");
		for (int i = 0; i < parts->cnt; i++)
			log_info("revoked %s [%d]", parts->elems[i].topic,
			    (int)parts->elems[i].partition);
		forget_gaps(c, parts);
		if (coop)
			error = rd_kafka_incremental_unassign(rk, parts);
		else
			e = rd_kafka_assign(rk, NULL);
	} else {
		log_error("rebalance failed: %s", rd_kafka_err2str(err));
		e = rd_kafka_assign(rk, NULL);
	}
	if (error != NULL) {
		log_error("rebalance: %s", rd_kafka_error_string(error));
		rd_kafka_error_destroy(error);
	} else if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("rebalance: %s", rd_kafka_err2str(e));
	}
}

/* Leaves the group.  librdkafka 2.0.2 (Debian 12) aborts in
 * rd_kafka_sticky_assignor_state_destroy() when a cooperative-sticky
 * consumer that never received an assignment is closed (librdkafka issue
 * #4312).  So a consumer asked to stop before its first assignment waits
 * for it (up to the session timeout); if none comes, it exits without
 * closing, and the broker drops the member after session.timeout.ms.
 * Returns 1 if the handle was closed and may be destroyed. */
static int
leave_group(struct consumer *c)
{
	rd_kafka_resp_err_t e;
	int64_t until = mono_ms() + 12000;

	while (!c->ever_assigned && mono_ms() < until && !kfk_fatal()) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, 100);
		if (m != NULL)		/* not applied: read again by the next owner */
			rd_kafka_message_destroy(m);
	}
	if (!c->ever_assigned) {
		log_warn("leaving before the group assigned anything; exiting without "
		    "a clean leave (librdkafka 2.0.2 would abort); the broker drops "
		    "this member after session.timeout.ms");
		return 0;
	}
	e = rd_kafka_consumer_close(c->rk);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		log_warn("closing the consumer: %s; the broker drops this member "
		    "after session.timeout.ms", rd_kafka_err2str(e));
	else
		log_info("left the group cleanly");
	return 1;
}

/* Messages behind the end of the assigned partitions (from the high
 * watermarks librdkafka learned with the last fetches). */
static int64_t
consumer_lag(rd_kafka_t *rk)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	int64_t lag = 0;

	if (rd_kafka_assignment(rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return 0;
	if (rd_kafka_position(rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		for (int i = 0; i < parts->cnt; i++) {
			int64_t lo, hi;
			rd_kafka_topic_partition_t *p = &parts->elems[i];
			if (p->offset < 0 || rd_kafka_get_watermark_offsets(rk, p->topic,
			    p->partition, &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
				continue;
			if (hi > p->offset)
				lag += hi - p->offset;
		}
	}
	rd_kafka_topic_partition_list_destroy(parts);
	return lag;
}

/* Wakes the fetchers of the assigned partitions if they may have stopped
 * (see Prefetch in NOTES).  Called when the queue ran dry. */
static void
wake_fetchers(struct consumer *c)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	rd_kafka_resp_err_t e;

	if (c->taken_bytes < (int64_t)KFK_PREFETCH_KBYTES * 1024 &&
	    c->taken_msgs < KFK_PREFETCH_MESSAGES)
		return;
	if (rd_kafka_queue_length(c->queue) > 0)
		return;		/* not dry after all: the fetcher is running */
	e = rd_kafka_assignment(c->rk, &parts);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_warn("waking the fetchers: assignment: %s", rd_kafka_err2str(e));
		return;
	}
	if (parts->cnt > 0) {
		for (int i = 0; i < parts->cnt; i++)
			parts->elems[i].offset = RD_KAFKA_OFFSET_END;
		/* the answer is not needed: asking is what wakes them.  A
		 * fetch waiting on the broker for new data delays the answer
		 * until the data comes (or fetch.wait.max.ms); the data is
		 * in the queue by then */
		e = rd_kafka_offsets_for_times(c->rk, parts, 1000);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR &&
		    e != RD_KAFKA_RESP_ERR__TIMED_OUT) {
			/* no request went out (no leader known): again at
			 * the next dry queue */
			log_debug("waking the fetchers: %s", rd_kafka_err2str(e));
			rd_kafka_topic_partition_list_destroy(parts);
			return;
		}
		c->wakeups++;
	}
	c->taken_bytes = c->taken_msgs = 0;
	rd_kafka_topic_partition_list_destroy(parts);
}

/* Waits until rk's brokers know every topic of ops (up to 30 s).  A topic
 * created a moment ago may not be in the metadata the group's first
 * assignment uses: the member would then read the other topics and not
 * that one until librdkafka's next metadata refresh (minutes: test 38). */
static void
wait_topics_known(struct consumer *c)
{
	int64_t until = mono_ms() + 30000;

	for (int i = 0; i < c->ops->ntopics && !worker_stop; i++) {
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(c->rk, c->ops->topics[i], NULL);

		while (rkt != NULL && !worker_stop) {
			const struct rd_kafka_metadata *md = NULL;
			rd_kafka_resp_err_t e = rd_kafka_metadata(c->rk, 0, rkt, &md, 2000);
			int known = e == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
			    md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
			    md->topics[0].partition_cnt > 0;

			if (md != NULL)
				rd_kafka_metadata_destroy(md);
			if (known)
				break;
			if (mono_ms() > until) {
				log_warn("topic %s is not in the brokers' metadata yet (%s); "
				    "it is read once librdkafka sees it", c->ops->topics[i],
				    rd_kafka_err2str(e));
				break;
			}
			worker_notify_alive(NULL);
			worker_sleep_ms(200);
		}
		if (rkt != NULL)
			rd_kafka_topic_destroy(rkt);
	}
}

/* Frees the batch buffers (the messages in them are destroyed elsewhere). */
static void
batch_free(struct consumer *c)
{
	free(c->batch);
	free(c->rejects);
	free(c->verdicts);
}

int
sink_run(const struct cfg *cfg, const struct sink_ops *ops)
{
	struct consumer c = { .cfg = cfg, .ops = ops };
	char err[1024], status[256], tlist[1024] = "";
	size_t tn = 0;
	int rc = 0;
	int64_t batch_start = 0, last_stats = mono_ms(), last_lag = 0, lag = 0;
	rd_kafka_topic_partition_list_t *topics;
	rd_kafka_resp_err_t e;

	snprintf(c.client_id, sizeof(c.client_id), "%s-%ld", ops->appname, (long)getpid());
	c.batch = calloc((size_t)ops->batch_size, sizeof(*c.batch));
	c.rejects = calloc((size_t)ops->batch_size, sizeof(*c.rejects));
	c.verdicts = calloc((size_t)ops->batch_size, sizeof(*c.verdicts));
	if (c.batch == NULL || c.rejects == NULL || c.verdicts == NULL) {
		log_error("out of memory for a batch of %d", ops->batch_size);
		batch_free(&c);
		return 1;
	}
	c.dlq = kfk_producer_new(cfg, c.client_id, kfk_acks_report, &c.dlq_acks, err,
	    sizeof(err));
	if (c.dlq == NULL) {	/* librdkafka refuses the configuration */
		log_error("%s", err);
		batch_free(&c);
		return CFG_EXIT_CONFIG;
	}
	struct kfk_topic *need = calloc((size_t)ops->ntopics + 1, sizeof(*need));
	if (need == NULL) {
		log_error("out of memory for %d topics", ops->ntopics);
		rd_kafka_destroy(c.dlq);
		batch_free(&c);
		return 1;
	}
	for (int i = 0; i < ops->ntopics; i++)
		need[i] = (struct kfk_topic){ ops->topics[i], ops->partitions,
		    ops->partitions_key };
	need[ops->ntopics] = (struct kfk_topic){ ops->dlq_topic, 1, NULL };
	int trc = kfk_topics_wait(c.dlq, need, ops->ntopics + 1, cfg);

	free(need);
	if (trc != 0) {
		/* a config error, or asked to stop while the brokers did not
		 * answer (a login they refuse): no member to join and leave
		 * (leave_group would wait for an assignment that cannot come) */
		rd_kafka_destroy(c.dlq);
		batch_free(&c);
		return trc == PGR_CONFIG ? CFG_EXIT_CONFIG : 0;
	}
	c.rk = kfk_consumer_new(cfg, ops->group_id, c.client_id, rebalance, &c, err,
	    sizeof(err));
	if (c.rk == NULL) {	/* librdkafka refuses the configuration */
		log_error("%s", err);
		rd_kafka_destroy(c.dlq);
		batch_free(&c);
		return CFG_EXIT_CONFIG;
	}
	c.queue = rd_kafka_queue_get_consumer(c.rk);	/* not NULL: group.id is set */
	wait_topics_known(&c);
	topics = rd_kafka_topic_partition_list_new(ops->ntopics);
	for (int i = 0; i < ops->ntopics; i++) {
		int w = snprintf(tlist + tn, sizeof(tlist) - tn, "%s%s", i ? ", " : "",
		    ops->topics[i]);

		if (w > 0 && (size_t)w < sizeof(tlist) - tn)
			tn += (size_t)w;
		rd_kafka_topic_partition_list_add(topics, ops->topics[i],
		    RD_KAFKA_PARTITION_UA);
	}
	e = rd_kafka_subscribe(c.rk, topics);
	rd_kafka_topic_partition_list_destroy(topics);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_error("subscribe to %s: %s", tlist, rd_kafka_err2str(e));
		rc = 1;
		goto out;
	}
	log_info("member of group %s on topic%s %s", ops->group_id,
	    ops->ntopics > 1 ? "s" : "", tlist);
	worker_notify_ready("consumer started");

	while (!worker_stop && !kfk_fatal()) {
		int64_t now = mono_ms();
		int timeout = 100;

		if (c.nbatch > 0)
			timeout = 0;	/* only what is already waiting */
		rd_kafka_message_t *m = rd_kafka_consumer_poll(c.rk, timeout);
		int drained = m == NULL;
		if (m != NULL) {
			c.taken_bytes += (int64_t)m->len;
			c.taken_msgs++;
			if (m->err) {
				if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET)
					stop_gap(&c, m);
				else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
					log_warn("consume: %s", rd_kafka_message_errstr(m));
				rd_kafka_message_destroy(m);
			} else {
				if (c.nbatch == 0)
					batch_start = mono_ms();
				c.batch[c.nbatch++] = m;
			}
		}
		rd_kafka_poll(c.dlq, 0);
		now = mono_ms();
		if (c.nbatch > 0 && (drained || c.nbatch >= ops->batch_size ||
		    now - batch_start >= ops->batch_timeout_ms))
			flush_batch(&c);
		if (drained && c.nbatch == 0)
			wake_fetchers(&c);
		if (now - last_stats >= 10000) {
			log_info("applied %" PRId64 ", skipped as already applied %"
			    PRId64 ", sent to DLQ %" PRId64 "; fetchers woken %" PRId64
			    " times", c.applied, c.stale, c.rejected, c.wakeups);
			last_stats = now;
		}
		if (now - last_lag >= 1000) {
			lag = consumer_lag(c.rk);
			last_lag = now;
		}
		int w = snprintf(status, sizeof(status), "applied=%" PRId64
		    " stale=%" PRId64 " dlq=%" PRId64 " lag=%" PRId64, c.applied,
		    c.stale, c.rejected, lag);
		if (c.ngaps > 0 && w > 0 && (size_t)w < sizeof(status))
			snprintf(status + w, sizeof(status) - (size_t)w,
			    " gaps=%d (partitions stopped below the log start)",
			    c.ngaps);
		worker_notify_alive(status);
	}
	/* Finish the batch in hand, then leave the group (revokes, commits). */
	if (flush_batch(&c) < 0)
		log_warn("stopping with %d messages not applied; they are read again "
		    "from the offsets in the target", c.nbatch);
out:
	log_info("leaving the group: applied %" PRId64 ", skipped %" PRId64
	    ", DLQ %" PRId64 ", fetchers woken %" PRId64 " times", c.applied,
	    c.stale, c.rejected, c.wakeups);
	int closed = leave_group(&c);
	for (int i = 0; i < c.nbatch; i++)
		rd_kafka_message_destroy(c.batch[i]);
	rd_kafka_flush(c.dlq, 5000);
	if (!closed) {
		if (c.db != NULL)
			PQfinish(c.db);
		_exit(rc ? rc : kfk_fatal() ? 1 : 0);	/* see leave_group() */
	}
	rd_kafka_queue_destroy(c.queue);
	rd_kafka_destroy(c.rk);
	rd_kafka_destroy(c.dlq);
	if (c.db != NULL)
		PQfinish(c.db);
	batch_free(&c);
	return rc ? rc : kfk_fatal() ? 1 : 0;
}
