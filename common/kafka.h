/*
 * kafka.h - librdkafka handles configured the one way pgrelay wants them.
 *
 * Producers are idempotent (acks=all, no reordering on retry).  Consumers
 * never auto-commit: a consumer's position lives in B, in the same
 * transaction as the rows (see workers/consumer.c).  librdkafka's own log
 * and error lines go through log.h; a fatal error sets a flag that each
 * worker's loop checks with kfk_fatal().
 *
 * Ownership: the *_new functions return a handle the caller destroys with
 * rd_kafka_destroy() (after rd_kafka_flush() or rd_kafka_consumer_close()).
 */
#ifndef PGRELAY_KAFKA_H
#define PGRELAY_KAFKA_H

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stddef.h>

#include "config.h"

typedef void (*kfk_dr_cb)(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque);
typedef void (*kfk_rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque);

/* An idempotent producer; dr (may be NULL) gets every delivery report. */
rd_kafka_t *kfk_producer_new(const struct cfg *cfg, const char *client_id,
    kfk_dr_cb dr, void *opaque, char *err, size_t errlen);

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
 * offsets; rebalance gets every assignment change. */
rd_kafka_t *kfk_consumer_new(const struct cfg *cfg, const char *group_id,
    const char *client_id, kfk_rebalance_cb rebalance, void *opaque, char *err,
    size_t errlen);

/* Creates topic with the given partition count if it is missing; if it
 * exists with another partition count, fails and says so. */
int kfk_ensure_topic(rd_kafka_t *rk, const char *topic, int partitions,
    int replication_factor, char *err, size_t errlen);

/* kfk_ensure_topic() for cfg's CDC topic (kafka.partitions) and DLQ topic
 * (one partition: the DLQ is read by people, in order). */
int kfk_ensure_topics(rd_kafka_t *rk, const struct cfg *cfg, char *err,
    size_t errlen);

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

/* 1 once librdkafka has reported a fatal error; the worker must exit. */
int kfk_fatal(void);

#endif
