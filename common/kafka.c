/*
 * kafka.c - builds librdkafka producers, consumers and topics for pgrelay.
 */
#define _POSIX_C_SOURCE 200809L
#include "kafka.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "worker.h"

#define KFK_STR_(x) #x
#define KFK_STR(x) KFK_STR_(x)

static atomic_int kfk_fatal_seen;

int
kfk_fatal(void)
{
	return atomic_load(&kfk_fatal_seen);
}

static void
kfk_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	enum log_level l = level <= 3 ? LOG_LVL_ERROR :
	    level <= 4 ? LOG_LVL_WARN : level <= 6 ? LOG_LVL_INFO : LOG_LVL_DEBUG;

	log_msg(l, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

void
kfk_fatal_clear(void)
{
	atomic_store(&kfk_fatal_seen, 0);
}

/* librdkafka 2.0.2 reports a fenced transactional producer as __FENCED
 * (rdkafka_txnmgr.c maps the broker's two codes to it); the broker's own
 * codes are accepted too. */
static int
fenced_error(rd_kafka_resp_err_t e)
{
	return e == RD_KAFKA_RESP_ERR__FENCED ||
	    e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
	    e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

int
kfk_fenced(rd_kafka_t *rk)
{
	return fenced_error(rd_kafka_fatal_error(rk, NULL, 0));
}

static void
kfk_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char fbuf[512];

	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fbuf, sizeof(fbuf));
		if (fenced_error(ferr))
			log_warn("kafka: this producer was fenced (%s: %s): a newer "
			    "producer with its transactional.id took over, and "
			    "nothing more it sends can reach the topic",
			    rd_kafka_err2name(ferr), fbuf);
		else
			log_error("kafka fatal error %s: %s; the process exits and "
			    "is restarted", rd_kafka_err2name(ferr), fbuf);
		atomic_store(&kfk_fatal_seen, 1);
		return;
	}
	/* Transport errors while a broker restarts are retried by librdkafka. */
	log_warn("kafka: %s: %s (retrying)", rd_kafka_err2name((rd_kafka_resp_err_t)err),
	    reason);
}

static int
conf_set(rd_kafka_conf_t *conf, const char *key, const char *val, char *err,
    size_t errlen)
{
	char why[256];

	if (rd_kafka_conf_set(conf, key, val, why, sizeof(why)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "librdkafka setting %s=%s: %s", key, val, why);
		return -1;
	}
	return 0;
}

static rd_kafka_conf_t *
base_conf(const struct cfg *cfg, const char *client_id,
    const char *const *pairs, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	if (conf_set(conf, "bootstrap.servers", cfg->brokers, err, errlen) < 0 ||
	    conf_set(conf, "client.id", client_id, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; pairs[i] != NULL; i += 2)
		if (conf_set(conf, pairs[i], pairs[i + 1], err, errlen) < 0)
			goto fail;
	rd_kafka_conf_set_log_cb(conf, kfk_log_cb);
	rd_kafka_conf_set_error_cb(conf, kfk_error_cb);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/* A producer with the settings every pgrelay producer shares, then the
 * NULL-terminated pairs of extra. */
static rd_kafka_t *
producer_new(const struct cfg *cfg, const char *client_id,
    const char *const *extra, kfk_dr_cb dr, void *opaque, char *err,
    size_t errlen)
{
	static const char *const pairs[] = {
		"enable.idempotence", "true",
		"acks", "all",
		"linger.ms", "2",
		/* none: a consumer's prefetch limit counts decompressed bytes
		 * and its fetch size compressed ones, so lz4 multiplied a
		 * consumer's memory while it drained a backlog (42 MB against
		 * 22 MB measured, README); CDC events are small and Kafka is
		 * near, there is little to save on the wire */
		"compression.codec", "none",
		"socket.keepalive.enable", "true",
		NULL
	};
	char why[512];
	rd_kafka_conf_t *conf = base_conf(cfg, client_id, pairs, err, errlen);
	rd_kafka_t *rk;

	if (conf == NULL)
		return NULL;
	for (size_t i = 0; extra[i] != NULL; i += 2) {
		if (conf_set(conf, extra[i], extra[i + 1], err, errlen) < 0) {
			rd_kafka_conf_destroy(conf);
			return NULL;
		}
	}
	if (dr != NULL)
		rd_kafka_conf_set_dr_msg_cb(conf, dr);
	rd_kafka_conf_set_opaque(conf, opaque);
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "cannot create kafka producer: %s", why);
		return NULL;
	}
	return rk;	/* conf is owned by rk now */
}

rd_kafka_t *
kfk_producer_new(const struct cfg *cfg, const char *client_id, kfk_dr_cb dr,
    void *opaque, char *err, size_t errlen)
{
	static const char *const extra[] = {
		"message.timeout.ms", "0",	/* never give up: the position stays put */
		NULL
	};

	return producer_new(cfg, client_id, extra, dr, opaque, err, errlen);
}

rd_kafka_t *
kfk_txn_producer_new(const struct cfg *cfg, const char *client_id,
    const char *transactional_id, kfk_dr_cb dr, void *opaque, char *err,
    size_t errlen)
{
	const char *const extra[] = {
		"transactional.id", transactional_id,
		/* message.timeout.ms is left to librdkafka, which sets it to
		 * transaction.timeout.ms (60 s): a message that cannot be
		 * delivered fails its transaction, which is aborted and sent
		 * again from the position, rather than keep it open for ever */
		NULL
	};

	return producer_new(cfg, client_id, extra, dr, opaque, err, errlen);
}

rd_kafka_t *
kfk_consumer_new(const struct cfg *cfg, const char *group_id,
    const char *client_id, kfk_rebalance_cb rebalance, void *opaque, char *err,
    size_t errlen)
{
	const char *const pairs[] = {
		"group.id", group_id,
		"partition.assignment.strategy", "cooperative-sticky",
		/* Kafka's committed offset is for lag monitoring only (the
		 * target holds the real one): the consumer stores an offset
		 * once its batch committed on the target, librdkafka sends the
		 * stored offsets once a second and on revoke and close, not one
		 * OffsetCommit per batch to the group coordinator */
		"enable.auto.commit", "true",
		"auto.commit.interval.ms", "1000",
		"enable.auto.offset.store", "false",
		/* an offset out of the log's range means changes the target
		 * never applied are gone: stop, never skip (sink.c, Gaps); a
		 * partition the target has no offset for starts at its
		 * beginning by an explicit assignment, not by a reset */
		"auto.offset.reset", "error",
		"isolation.level", "read_committed",
		"session.timeout.ms", "10000",
		"heartbeat.interval.ms", "250",	/* a rebalance round is noticed within 250 ms */
		"socket.keepalive.enable", "true",
		/* prefetch: 512 KB is about a batch of 1,000 changes ahead;
		 * librdkafka's 64 MB and 1 MB defaults would make a consumer's
		 * RSS follow the backlog (kafka.h) */
		"queued.max.messages.kbytes", KFK_STR(KFK_PREFETCH_KBYTES),
		"queued.min.messages", KFK_STR(KFK_PREFETCH_MESSAGES),
		"fetch.message.max.bytes", KFK_STR(KFK_FETCH_PARTITION_BYTES),
		NULL
	};
	char why[512];
	rd_kafka_conf_t *conf = base_conf(cfg, client_id, pairs, err, errlen);
	rd_kafka_t *rk;

	if (conf == NULL)
		return NULL;
	rd_kafka_conf_set_rebalance_cb(conf, rebalance);
	rd_kafka_conf_set_opaque(conf, opaque);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof(why));
	if (rk == NULL) {
		rd_kafka_conf_destroy(conf);
		snprintf(err, errlen, "cannot create kafka consumer: %s", why);
		return NULL;
	}
	rd_kafka_poll_set_consumer(rk);
	return rk;
}

/* Partition count of an existing topic, or -1 with err. */
static int
topic_partitions(rd_kafka_t *rk, const char *topic, char *err, size_t errlen)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
	rd_kafka_resp_err_t e;
	int n = -1;

	if (t == NULL) {
		snprintf(err, errlen, "topic %s: %s", topic,
		    rd_kafka_err2str(rd_kafka_last_error()));
		return -1;
	}
	e = rd_kafka_metadata(rk, 0, t, &md, 10000);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(err, errlen, "topic %s: metadata: %s", topic, rd_kafka_err2str(e));
	else if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(err, errlen, "topic %s: metadata: %s", topic,
		    md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "no topic");
	else
		n = md->topics[0].partition_cnt;
	if (md != NULL)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(t);
	return n;
}

/* CreateTopics errors that no retry can mend. */
static int
topic_error_is_config(rd_kafka_resp_err_t e)
{
	return e == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION ||
	    e == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS ||
	    e == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ||
	    e == RD_KAFKA_RESP_ERR_INVALID_CONFIG ||
	    e == RD_KAFKA_RESP_ERR_POLICY_VIOLATION;
}

int
kfk_ensure_topic(rd_kafka_t *rk, const struct kfk_topic *t,
    int replication_factor, char *err, size_t errlen)
{
	char why[512];
	rd_kafka_NewTopic_t *nt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	int rc = PGR_RETRY;

	nt = rd_kafka_NewTopic_new(t->name, t->partitions, replication_factor,
	    why, sizeof(why));
	if (nt == NULL) {
		snprintf(err, errlen, "topic %s: %s", t->name, why);
		return PGR_CONFIG;
	}
	q = rd_kafka_queue_new(rk);
	rd_kafka_CreateTopics(rk, &nt, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 30000);
	if (ev == NULL) {
		snprintf(err, errlen, "topic %s: no answer from the brokers within "
		    "30 s; check kafka.brokers", t->name);
		goto out;
	}
	if (rd_kafka_event_error(ev)) {
		snprintf(err, errlen, "topic %s: create: %s", t->name,
		    rd_kafka_event_error_string(ev));
		goto out;
	}
	const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
	size_t cnt = 0;
	const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &cnt);
	rd_kafka_resp_err_t terr = cnt ? rd_kafka_topic_result_error(tr[0]) :
	    RD_KAFKA_RESP_ERR_UNKNOWN;

	if (terr == RD_KAFKA_RESP_ERR_NO_ERROR) {
		log_info("created topic %s with %d partitions", t->name, t->partitions);
		rc = 0;
	} else if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
		int have = topic_partitions(rk, t->name, err, errlen);
		if (have == t->partitions || (have > 0 && t->partitions_key == NULL)) {
			rc = 0;
		} else if (have > 0) {
			snprintf(err, errlen, "topic %s exists with %d partitions but "
			    "%s is %d; set %s to %d (a different count would move "
			    "keys between partitions and break per-row order)",
			    t->name, have, t->partitions_key, t->partitions,
			    t->partitions_key, have);
			rc = PGR_CONFIG;
		}
	} else {
		snprintf(err, errlen, "topic %s: create: %s", t->name,
		    cnt ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
		if (topic_error_is_config(terr))
			rc = PGR_CONFIG;
	}
out:
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_NewTopic_destroy(nt);
	return rc;
}

int
kfk_topics_wait(rd_kafka_t *rk, const struct kfk_topic *t, int n,
    int replication_factor)
{
	char err[1024];
	int attempt = 0;

	for (int i = 0; i < n; ) {
		if (worker_stop)
			return PGR_RETRY;
		int rc = kfk_ensure_topic(rk, &t[i], replication_factor, err,
		    sizeof(err));
		if (rc == 0) {
			i++;
			continue;
		}
		if (rc == PGR_CONFIG) {
			log_error("%s: a configuration error; not retrying", err);
			return PGR_CONFIG;
		}
		log_error("%s; retrying", err);
		worker_sleep_ms(worker_backoff_ms(attempt++));
	}
	return 0;
}

int
kfk_cdc_topics_wait(rd_kafka_t *rk, const struct cfg *cfg)
{
	const struct kfk_topic t[] = {
		{ cfg->cdc_topic, cfg->partitions, "kafka.partitions" },
		{ cfg->dlq_topic, 1, NULL },
	};

	return kfk_topics_wait(rk, t, 2, cfg->replication_factor);
}

int
kfk_produce(rd_kafka_t *rk, const char *topic, const void *key, size_t keylen,
    void *val, size_t len, int flags, rd_kafka_headers_t *h, char *err,
    size_t errlen)
{
	rd_kafka_resp_err_t e;

	while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
	    RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE(val, len),
	    RD_KAFKA_V_MSGFLAGS(flags), RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(rk, 50);	/* let deliveries drain the queue */
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(e));
		return -1;
	}
	return 0;
}

int
kfk_produce_dlq(rd_kafka_t *rk, const char *topic, const void *key,
    size_t keylen, const void *val, size_t len, const struct kfk_dlq_why *why,
    char *err, size_t errlen)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new((size_t)why->norigin + 4);
	char name[96], ts[24];
	struct timespec now;

	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(ts, sizeof(ts), "%lld",
	    (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000);
	rd_kafka_header_add(h, "__pgrelay.errors.stage", -1, why->stage, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.rule", -1, why->rule, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.reason", -1, why->reason, -1);
	for (int i = 0; i + 1 < 2 * why->norigin; i += 2) {
		snprintf(name, sizeof(name), "__pgrelay.errors.%s", why->origin[i]);
		rd_kafka_header_add(h, name, -1, why->origin[i + 1], -1);
	}
	rd_kafka_header_add(h, "__pgrelay.errors.ts_ms", -1, ts, -1);
	if (kfk_produce(rk, topic, key, keylen, (void *)val, len,
	    RD_KAFKA_MSG_F_COPY, h, err, errlen) < 0) {
		rd_kafka_headers_destroy(h);
		return -1;
	}
	return 0;
}

void
kfk_acks_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
	struct kfk_acks *a = opaque;

	(void)rk;
	if (msg->err) {
		a->failed++;
		a->last_err = msg->err;
	} else {
		a->acked++;
	}
}

int
kfk_acks_wait(rd_kafka_t *rk, struct kfk_acks *a, volatile sig_atomic_t *stop,
    char *err, size_t errlen)
{
	while (a->acked + a->failed < a->sent && !kfk_fatal()) {
		rd_kafka_flush(rk, 100);
		worker_notify_alive(NULL);	/* waiting on a broker is not hung */
		if (*stop && a->acked + a->failed < a->sent) {
			rd_kafka_flush(rk, 5000);
			if (a->acked + a->failed < a->sent) {
				snprintf(err, errlen, "stopping with %ld messages not "
				    "acknowledged; they are sent again after a restart",
				    a->sent - a->acked - a->failed);
				return -1;
			}
		}
	}
	if (kfk_fatal() || a->failed > 0) {
		snprintf(err, errlen, "%ld messages failed: %s", a->failed,
		    kfk_fatal() ? "fatal producer error" : rd_kafka_err2str(a->last_err));
		return -1;
	}
	return 0;
}

/* ---- transactions ---------------------------------------------------------
 *
 * Each call blocks for at most KFK_TXN_SLICE_MS, then calls tick and, if
 * tick returns 0, resumes (librdkafka 2.0.2 resumes init, commit and abort
 * after a retriable timeout: rdkafka_txnmgr.c).  librdkafka's error object
 * has three flags; what they ask of the caller (rdkafka.h, Transactional
 * producer API): */
#define KFK_TXN_SLICE_MS 500

enum txn_action { TXN_AGAIN, TXN_ABORT, TXN_DEAD };

/* Classifies e, writes "what: error" into err, destroys e. */
static enum txn_action
txn_error(rd_kafka_error_t *e, const char *what, char *err, size_t errlen)
{
	enum txn_action a;

	/* neither retriable nor abortable: treat as fatal, as rdkafka.h
	 * recommends (a wrong state, an authorization failure ...) */
	a = rd_kafka_error_is_fatal(e) ? TXN_DEAD :
	    rd_kafka_error_txn_requires_abort(e) ? TXN_ABORT :
	    rd_kafka_error_is_retriable(e) ? TXN_AGAIN : TXN_DEAD;
	snprintf(err, errlen, "kafka transaction: %s: %s: %s", what,
	    rd_kafka_error_name(e), rd_kafka_error_string(e));
	rd_kafka_error_destroy(e);
	return a;
}

int
kfk_txn_init(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen)
{
	for (int n = 0;; n++) {
		rd_kafka_error_t *e = rd_kafka_init_transactions(rk, KFK_TXN_SLICE_MS);

		if (e == NULL)
			return 0;
		if (txn_error(e, "init", err, errlen) != TXN_AGAIN)
			return PGR_FATAL;
		if (n % 20 == 19)	/* every 10 s */
			log_warn("%s; still trying (the transaction coordinator "
			    "must answer before this producer sends)", err);
		if (tick(arg) < 0)
			return PGR_RETRY;
	}
}

int
kfk_txn_begin(rd_kafka_t *rk, char *err, size_t errlen)
{
	rd_kafka_error_t *e = rd_kafka_begin_transaction(rk);

	if (e == NULL)
		return 0;
	/* begin is local: a failure is a wrong state or a fatal error */
	txn_error(e, "begin", err, errlen);
	return PGR_FATAL;
}

int
kfk_txn_abort(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen)
{
	for (;;) {
		rd_kafka_error_t *e = rd_kafka_abort_transaction(rk, KFK_TXN_SLICE_MS);

		if (e == NULL)
			return 0;
		if (txn_error(e, "abort", err, errlen) != TXN_AGAIN)
			return PGR_FATAL;
		if (tick(arg) < 0)
			return PGR_RETRY;
	}
}

int
kfk_txn_commit(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen)
{
	for (;;) {
		rd_kafka_error_t *e = rd_kafka_commit_transaction(rk, KFK_TXN_SLICE_MS);
		char why[512];

		if (e == NULL)
			return 0;
		switch (txn_error(e, "commit", err, errlen)) {
		case TXN_DEAD:
			return PGR_FATAL;
		case TXN_ABORT:
			if (kfk_txn_abort(rk, tick, arg, why, sizeof(why)) == PGR_FATAL) {
				snprintf(err + strlen(err), errlen - strlen(err),
				    "; then %s", why);
				return PGR_FATAL;
			}
			return PGR_RETRY;
		case TXN_AGAIN:
			if (tick(arg) < 0) {
				/* given up: abort if it can (one slice, tick says
				 * stop), so that the partitions' readers are not held
				 * back until the transaction times out */
				kfk_txn_abort(rk, tick, arg, why, sizeof(why));
				return PGR_RETRY;
			}
			break;
		}
	}
}
