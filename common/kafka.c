/*
 * kafka.c - builds librdkafka producers, consumers and topics for pgrelay.
 */
#define _POSIX_C_SOURCE 200809L
#include "kafka.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
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

static void
kfk_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	char fbuf[512];

	(void)opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		rd_kafka_resp_err_t ferr = rd_kafka_fatal_error(rk, fbuf, sizeof(fbuf));
		log_error("kafka fatal error %s: %s; the process exits and is "
		    "restarted", rd_kafka_err2name(ferr), fbuf);
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

rd_kafka_t *
kfk_producer_new(const struct cfg *cfg, const char *client_id, kfk_dr_cb dr,
    void *opaque, char *err, size_t errlen)
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
		"message.timeout.ms", "0",	/* never give up: the position stays put */
		"socket.keepalive.enable", "true",
		NULL
	};
	char why[512];
	rd_kafka_conf_t *conf = base_conf(cfg, client_id, pairs, err, errlen);
	rd_kafka_t *rk;

	if (conf == NULL)
		return NULL;
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

/* Partition count of an existing topic, or -1 with err; *replicas gets
 * its first partition's replica count, *brokers the cluster's size. */
static int
topic_partitions(rd_kafka_t *rk, const char *topic, int *replicas, int *brokers,
    char *err, size_t errlen)
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
	else {
		n = md->topics[0].partition_cnt;
		*brokers = md->broker_cnt;
		*replicas = n > 0 ? md->topics[0].partitions[0].replica_cnt : 0;
	}
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

/* The settings pgrelay gives the topics it creates (see kafka.h), as
 * name and value pairs; NULL-terminated. */
static void
topic_settings(const struct cfg *cfg, char isr[16], char ret[24],
    const char *pairs[11])
{
	snprintf(isr, 16, "%d", cfg->min_insync_replicas);
	snprintf(ret, 24, "%lld", (long long)cfg->retention_ms);
	const char *p[] = { "cleanup.policy", "delete", "retention.ms", ret,
	    "retention.bytes", "-1", "min.insync.replicas", isr,
	    "unclean.leader.election.enable", "false", NULL };
	memcpy(pairs, p, sizeof(p));
}

/* Logs a warning for each setting of the existing topic t that can lose
 * changes the consumers have not applied yet.  Never fails: a topic we
 * cannot describe is only noted. */
static void
check_topic_settings(rd_kafka_t *rk, const char *topic, const struct cfg *cfg,
    int replicas, int brokers)
{
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(
	    RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_event_t *ev;
	const rd_kafka_ConfigResource_t **rs;
	size_t nrs = 0, nc = 0;

	rd_kafka_DescribeConfigs(rk, &res, 1, NULL, q);
	ev = rd_kafka_queue_poll(q, 10000);
	if (ev == NULL || rd_kafka_event_error(ev)) {
		log_info("topic %s: cannot read its settings (%s); not checked",
		    topic, ev ? rd_kafka_event_error_string(ev) : "no answer in 10 s");
		goto out;
	}
	rs = rd_kafka_DescribeConfigs_result_resources(
	    rd_kafka_event_DescribeConfigs_result(ev), &nrs);
	const rd_kafka_ConfigEntry_t **ce = nrs ?
	    rd_kafka_ConfigResource_configs(rs[0], &nc) : NULL;
	for (size_t i = 0; i < nc; i++) {
		const char *k = rd_kafka_ConfigEntry_name(ce[i]);
		const char *v = rd_kafka_ConfigEntry_value(ce[i]);
		long long n = v ? strtoll(v, NULL, 10) : 0;

		if (v == NULL)
			continue;
		if (strcmp(k, "cleanup.policy") == 0 && strstr(v, "compact") != NULL)
			log_warn("topic %s has cleanup.policy=%s: compaction deletes a "
			    "row's older changes, and a change a consumer has not "
			    "applied yet can go with them; set cleanup.policy=delete",
			    topic, v);
		else if (strcmp(k, "retention.ms") == 0 && n != -1 &&
		    (cfg->retention_ms == -1 || n < cfg->retention_ms))
			log_warn("topic %s keeps records for %lld ms (retention.ms), "
			    "less than kafka.retention_ms (%lld): changes the "
			    "consumers have not applied by then are deleted (the "
			    "partition then stops: re-snapshot)", topic, n,
			    (long long)cfg->retention_ms);
		else if (strcmp(k, "retention.bytes") == 0 && n != -1)
			log_warn("topic %s deletes records beyond %lld bytes per "
			    "partition (retention.bytes), applied or not; set it to -1",
			    topic, n);
		else if (strcmp(k, "min.insync.replicas") == 0 &&
		    n < cfg->min_insync_replicas)
			log_warn("topic %s has min.insync.replicas=%lld, below "
			    "kafka.min_insync_replicas %d: an acknowledged change can "
			    "be lost with one broker", topic, n, cfg->min_insync_replicas);
		else if (strcmp(k, "unclean.leader.election.enable") == 0 &&
		    strcmp(v, "true") == 0)
			log_warn("topic %s allows unclean leader election: a replica "
			    "that missed acknowledged changes can become leader and "
			    "lose them; set it to false", topic);
	}
	if (replicas > 0 && replicas < cfg->replication_factor)
		log_warn("topic %s has %d replicas, fewer than "
		    "kafka.replication_factor %d", topic, replicas,
		    cfg->replication_factor);
	if (brokers >= 3 && replicas < 3)
		log_warn("topic %s has %d replicas on a cluster of %d brokers: one "
		    "lost broker can lose acknowledged changes; use 3 "
		    "(kafka.replication_factor, kafka.min_insync_replicas 2)",
		    topic, replicas, brokers);
out:
	if (ev != NULL)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_ConfigResource_destroy(res);
}

int
kfk_ensure_topic(rd_kafka_t *rk, const struct kfk_topic *t,
    const struct cfg *cfg, char *err, size_t errlen)
{
	char why[512], isr[16], ret[24];
	const char *settings[11];
	rd_kafka_NewTopic_t *nt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	int rc = PGR_RETRY;

	nt = rd_kafka_NewTopic_new(t->name, t->partitions, cfg->replication_factor,
	    why, sizeof(why));
	if (nt == NULL) {
		snprintf(err, errlen, "topic %s: %s", t->name, why);
		return PGR_CONFIG;
	}
	topic_settings(cfg, isr, ret, settings);
	for (int i = 0; settings[i] != NULL; i += 2) {
		if (rd_kafka_NewTopic_set_config(nt, settings[i], settings[i + 1]) !=
		    RD_KAFKA_RESP_ERR_NO_ERROR) {
			snprintf(err, errlen, "topic %s: cannot set %s", t->name,
			    settings[i]);
			rd_kafka_NewTopic_destroy(nt);
			return PGR_CONFIG;
		}
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
		log_info("created topic %s with %d partitions, %d replicas, "
		    "min.insync.replicas %d, retention.ms %s", t->name, t->partitions,
		    cfg->replication_factor, cfg->min_insync_replicas, ret);
		rc = 0;
	} else if (terr == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
		int replicas = 0, brokers = 0;
		int have = topic_partitions(rk, t->name, &replicas, &brokers, err,
		    errlen);
		if (have == t->partitions || (have > 0 && t->partitions_key == NULL)) {
			check_topic_settings(rk, t->name, cfg, replicas, brokers);
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
    const struct cfg *cfg)
{
	char err[1024];
	int attempt = 0;

	for (int i = 0; i < n; ) {
		if (worker_stop)
			return PGR_RETRY;
		int rc = kfk_ensure_topic(rk, &t[i], cfg, err, sizeof(err));
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

	return kfk_topics_wait(rk, t, 2, cfg);
}

int
kfk_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
    const void *key, size_t keylen, void *val, size_t len, int flags,
    rd_kafka_headers_t *h, char *err, size_t errlen)
{
	rd_kafka_resp_err_t e;

	while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic),
	    RD_KAFKA_V_PARTITION(partition),
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
	if (kfk_produce(rk, topic, RD_KAFKA_PARTITION_UA, key, keylen,
	    (void *)val, len, RD_KAFKA_MSG_F_COPY, h, err, errlen) < 0) {
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
