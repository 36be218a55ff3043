/*
 * kafka.h - librdkafka handles configured the one way pgrelay wants them.
 *
 * Producers are idempotent (acks=all, no reordering on retry); the CDC
 * producer is also transactional (kfk_txn_producer_new).  Consumers
 * never auto-commit: a consumer's position lives in B, in the same
 * transaction as the rows (see workers/consumer.c).  Every client gets
 * kafka.properties first, then pgrelay's own settings, which the
 * properties may not change (kafka.c, NOTES).  librdkafka's own log and
 * error lines go through log.h, secrets redacted; a fatal error sets a
 * flag that each worker's loop checks with kfk_fatal().
 *
 * Ownership: the *_new functions return a handle the caller destroys with
 * rd_kafka_destroy() (after rd_kafka_flush() or rd_kafka_consumer_close());
 * cfg must outlive it (its secrets are redacted from librdkafka's lines).
 */
#ifndef PGRELAY_KAFKA_H
#define PGRELAY_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "err.h"

typedef void (*kfk_dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque);
typedef void (*kfk_rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque);

/* Checks cfg's kafka.properties against librdkafka: each property is set
 * on a producer's and on a consumer's configuration as pgrelay builds them;
 * one librdkafka refuses, one pgrelay sets itself and one that changes
 * such a setting under another name (an alias) are errors.  With create,
 * a producer and a consumer are created without brokers (nothing
 * connects), for what only rd_kafka_new checks: the SASL mechanism, the
 * TLS files.  0, or -1 with "FILE:LINE: kafka.properties: NAME: why" in
 * err (a secret's value redacted): the caller exits CFG_EXIT_CONFIG.
 * pgrelayd, which forks, never passes create but with -t. */
int kfk_conf_check(const struct cfg *cfg, int create, char *err, size_t errlen);

/* An idempotent producer; dr (may be NULL) gets every delivery report.
 * NULL with err when librdkafka refuses the configuration (a
 * configuration error: exit CFG_EXIT_CONFIG). */
rd_kafka_t *kfk_producer_new(const struct cfg *cfg, const char *client_id,
    kfk_dr_cb dr, void *opaque, char *err, size_t errlen);

/* A transactional producer (idempotent as well) with transactional_id: it
 * may produce only inside a transaction (kfk_txn_* below), after
 * kfk_txn_init().  Its kfk_txn_init() fences every earlier handle with the
 * same transactional_id, on any host: their open transaction is aborted
 * and whatever they send or commit afterwards fails with a fatal error
 * (kfk_fenced()).  A fenced or otherwise fatal handle is only destroyed:
 * never used again, and never replaced by one with another id. */
rd_kafka_t *kfk_txn_producer_new(const struct cfg *cfg, const char *client_id,
    const char *transactional_id, kfk_dr_cb dr, void *opaque, char *err,
    size_t errlen);

/* What the kfk_txn_* calls do while they wait (at most 500 ms at a time):
 * report liveness and whatever else must go on.  Returns 0 to go on
 * waiting, -1 to give up (the call then returns PGR_RETRY, having tried to
 * abort a transaction it was committing). */
typedef int (*kfk_tick_fn)(void *arg);

/* Each returns 0, PGR_RETRY (not done: the transaction, if one was open,
 * is aborted or will be by the broker; send its messages again in a new
 * one), or PGR_FATAL (the handle is dead: destroy it; kfk_fenced() tells
 * whether a newer producer fenced it), with err filled. */
int kfk_txn_init(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen);
int kfk_txn_begin(rd_kafka_t *rk, char *err, size_t errlen);
/* Delivers every message of the open transaction, then commits it; an
 * abortable failure (a message that could not be delivered ...) aborts
 * it and returns PGR_RETRY. */
int kfk_txn_commit(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen);
/* Aborts the open transaction: its messages are never seen by a
 * read_committed reader. */
int kfk_txn_abort(rd_kafka_t *rk, kfk_tick_fn tick, void *arg, char *err,
    size_t errlen);

/* 1 if rk's fatal error is that a newer producer with its
 * transactional.id fenced it. */
int kfk_fenced(rd_kafka_t *rk);

/* A consumer's prefetch: librdkafka fetches while its queue holds fewer
 * than KFK_PREFETCH_MESSAGES messages and fewer than KFK_PREFETCH_KBYTES
 * KB of payload (queued.min.messages, queued.max.messages.kbytes), in
 * fetches of at most KFK_FETCH_PARTITION_BYTES per partition.  Past either
 * limit librdkafka 2.0.2 stops fetching until its broker thread wakes
 * (sink.c wakes it; see Prefetch there). */
#define KFK_PREFETCH_KBYTES 512
#define KFK_PREFETCH_MESSAGES 100000
#define KFK_FETCH_PARTITION_BYTES 131072

/* A consumer in group_id with the cooperative-sticky assignor and manual
 * offsets; rebalance gets every assignment change.  NULL with err as
 * kfk_producer_new. */
rd_kafka_t *kfk_consumer_new(const struct cfg *cfg, const char *group_id,
    const char *client_id, kfk_rebalance_cb rebalance, void *opaque, char *err,
    size_t errlen);

/* A topic a worker writes or reads: created with partitions partitions
 * when missing.  partitions_key names the config key that sets the count;
 * an existing topic with another count is then a configuration error
 * (keys would move between partitions and break per-row order).  With
 * partitions_key NULL (a DLQ) any existing count will do. */
struct kfk_topic {
	const char *name;
	int partitions;
	const char *partitions_key;
};

/* Creates t if it is missing, with cfg's kafka.replication_factor,
 * kafka.min_insync_replicas and kafka.retention_ms, cleanup.policy delete
 * and no size limit.  An existing topic's settings are checked, and each
 * that risks losing changes no consumer applied yet is logged as a
 * warning (compaction, a shorter retention or a size limit, fewer
 * in-sync replicas, unclean leader election, fewer replicas).  0 when it
 * exists as wanted; PGR_CONFIG when it contradicts the configuration (its
 * partition count, an invalid name or replication factor); PGR_RETRY when
 * the brokers could not answer. */
int kfk_ensure_topic(rd_kafka_t *rk, const struct kfk_topic *t,
    const struct cfg *cfg, char *err, size_t errlen);

/* kfk_ensure_topic() for each of n topics, retrying with back-off (and
 * logging) while the brokers cannot answer.  0 when all exist; PGR_CONFIG
 * (logged) when one contradicts the configuration: the worker exits
 * CFG_EXIT_CONFIG; PGR_RETRY when worker_stop was set first. */
int kfk_topics_wait(rd_kafka_t *rk, const struct kfk_topic *t, int n,
    const struct cfg *cfg);

/* kfk_topics_wait() for the topic of each of cfg's tables (kafka.partitions) and the DLQ topic
 * (created with one partition: the DLQ is read by people, in order). */
int kfk_cdc_topics_wait(rd_kafka_t *rk, const struct cfg *cfg);

/* Produces one record (RD_KAFKA_MSG_F_FREE or _COPY in flags, as
 * rd_kafka_producev takes them) to partition, or to the one the key's
 * hash picks with RD_KAFKA_PARTITION_UA, waiting while librdkafka's queue
 * is full.  h (may be NULL) is owned by the record once it is queued.  0,
 * or with err (val and h are then still the caller's) PGR_DATA when Kafka
 * refuses this record for itself (larger than message.max.bytes: the
 * caller may set it aside and go on), PGR_RETRY otherwise. */
int kfk_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
    const void *key, size_t keylen, void *val, size_t len, int flags,
    rd_kafka_headers_t *h, char *err, size_t errlen);

/* Why a record goes to a dead-letter topic: the stage that set it aside,
 * the rule it broke and a one-line reason.  origin holds norigin name and
 * value pairs saying where it came from (a topic, partition and offset; a
 * source table and change_id); each becomes a header
 * "__pgrelay.errors.NAME", beside stage, rule, reason and ts_ms. */
struct kfk_dlq_why {
	const char *stage, *rule, *reason;
	const char *const *origin;
	int norigin;
};

/* kfk_produce() of a copy of (key, val) to topic with why's headers. */
int kfk_produce_dlq(rd_kafka_t *rk, const char *topic, const void *key,
    size_t keylen, const void *val, size_t len, const struct kfk_dlq_why *why,
    char *err, size_t errlen);

/* Delivery accounting of one producer: sent counts what the caller
 * produced, the delivery reports count acked and failed.  Give the struct
 * as the opaque of kfk_producer_new() with kfk_acks_report as dr. */
struct kfk_acks {
	long sent, acked, failed;
	rd_kafka_resp_err_t last_err;
};

void kfk_acks_report(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque);

/* Waits until Kafka acknowledged every message counted in a->sent.  -1
 * with err when one failed, on a fatal error, or when *stop is set and
 * they are still unacknowledged 5 s later (the caller's position has not
 * moved, so they are sent again after a restart). */
int kfk_acks_wait(rd_kafka_t *rk, struct kfk_acks *a,
    volatile sig_atomic_t *stop, char *err, size_t errlen);

/* 1 once librdkafka has reported a fatal error; the worker must exit
 * (the producer, fenced, destroys its handle and goes on: it then calls
 * kfk_fatal_clear()). */
int kfk_fatal(void);
void kfk_fatal_clear(void);

#endif
