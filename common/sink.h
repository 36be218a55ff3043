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
 *   SINK_ERROR    a statement failed: err holds it ("SQLSTATE xxxxx: ...")
 */
#ifndef PGRELAY_SINK_H
#define PGRELAY_SINK_H

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <stddef.h>

#include "config.h"

enum sink_result { SINK_APPLIED, SINK_STALE, SINK_REJECT, SINK_ERROR };

typedef enum sink_result (*sink_apply_fn)(PGconn *db, const rd_kafka_message_t *m,
    void *opaque, const char **stage, const char **rule, char *why, size_t whylen,
    char *err, size_t errlen);

struct sink_ops {
	const char *appname;		/* application_name and client.id prefix */
	const char *schema_component;	/* row expected in pgrelay_schema_version */
	const char *group_id;
	const char *topic;
	int partitions;			/* for creating the topic when missing */
	const char *dlq_topic;
	int batch_size;
	int batch_timeout_ms;
	sink_apply_fn apply;
	void *opaque;
};

/* Runs the member until worker_stop; returns the process exit code. */
int sink_run(const struct cfg *cfg, const struct sink_ops *ops);

#endif
