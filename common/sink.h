/*
 * sink.h - the Kafka-to-PostgreSQL batch consumer shared by the CDC
 * consumer (workers/consumer.c) and the ETL loader (workers/etl_loader.c).
 * See the NOTES in sink.c.
 *
 * The worker supplies an apply callback, called inside the batch's
 * transaction on the target for each message.  It must make a replayed
 * message harmless (idempotent).  It returns:
 *   SINK_APPLIED  the message changed the target
 *   SINK_STALE    the target already holds it or something newer
 *   SINK_REJECT   not applicable: *stage, *rule (static strings) and why say
 *                 why; the message goes to the DLQ
 *   SINK_REFUSED  the target refused the message's values (db_query_cls()
 *                 classed the failure PGR_DATA): err says why; the message
 *                 goes to the DLQ as target.refused
 *   SINK_ERROR    a statement failed for any other reason (PGR_RETRY): err
 *                 holds it; the batch is retried
 *
 * It may also supply apply_batch, which applies the whole batch at once
 * (set-based, one round trip) and fills one verdict per message.  When it
 * fails with PGR_DATA the engine rolls back and re-runs the batch through
 * apply, a message at a time, so that only the message the target refuses
 * is rejected.
 */
#ifndef PGRELAY_SINK_H
#define PGRELAY_SINK_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "config.h"
#include "err.h"

enum sink_result { SINK_APPLIED, SINK_STALE, SINK_REJECT, SINK_REFUSED, SINK_ERROR };

typedef enum sink_result (*sink_apply_fn)(PGconn *db, const rd_kafka_message_t *m,
    void *opaque, const char **stage, const char **rule, char *why, size_t whylen,
    char *err, size_t errlen);

struct sink_verdict {
	enum sink_result rc;		/* SINK_APPLIED, SINK_STALE or SINK_REJECT */
	const char *stage, *rule;	/* for SINK_REJECT: static strings */
	char why[256];
};

/* 0 with v[0..n-1] filled, or PGR_DATA / PGR_RETRY with err (nothing may
 * be counted). */
typedef int (*sink_apply_batch_fn)(PGconn *db, rd_kafka_message_t *const *msgs,
    int n, void *opaque, struct sink_verdict *v, char *err, size_t errlen);

struct sink_ops {
	const char *appname;		/* application_name and client.id prefix */
	const char *schema_component;	/* row expected in pgrelay_schema_version */
	int schema_version;		/* ... with at least this version */
	const char *group_id;
	const char *const *topics;	/* the topics the member reads, one group */
	int ntopics;
	int partitions;			/* for creating the topics when missing */
	const char *partitions_key;	/* the config key that sets it */
	const char *dlq_topic;
	int batch_size;
	int batch_timeout_ms;
	sink_apply_fn apply;
	sink_apply_batch_fn apply_batch;	/* optional */
	/* optional: called on each new connection to the target, after the
	 * schema check; 0, or PGR_RETRY with err (the connection is closed
	 * and opened again after a back-off) */
	int (*on_connect)(PGconn *db, void *opaque, char *err, size_t errlen);
	void *opaque;
};

/* Runs the member until worker_stop; returns the process exit code. */
int sink_run(const struct cfg *cfg, const struct sink_ops *ops);

#endif
