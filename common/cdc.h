/*
 * cdc.h - what the producer and the snapshot share: the configured tables
 * as A's catalog describes them, their capture on A, the SQL that makes a
 * change event, and sending one event to its table's topic, or to the DLQ
 * when it cannot be carried.
 *
 * The event (key and value) is made by A's server, in the query that
 * reads the change or the row (cdc_event_sql): values go from their types
 * to the event's forms by PostgreSQL's own functions (common/relmap.c),
 * and the worker sends the text it gets.  Key: {"k1":v1,...} in the key's
 * order; none (null) for a TRUNCATE, as Debezium's.  Value:
 *   {"before":ROW|null,"after":ROW|null,"source":{"version":...,
 *    "connector":"pgrelay","name":"pgrelay","db":...,"schema":...,
 *    "table":...,"snapshot":"true|false","change_id":N,"txId":N,
 *    "ts_ms":N},"op":"c|u|d|r|t","ts_ms":N}
 * source.change_id is the row's version: the id of the change in A's
 * change table (for a snapshot row, the newest change of that row the
 * snapshot saw).  op "t" is a TRUNCATE of the table: before and after
 * null, sent to every partition of its topic.
 *
 * With cdc.schemas, key and value each travel as Kafka Connect's
 * JsonConverter writes them with schemas.enable=true:
 *   {"schema":SCHEMA,"payload":KEY or VALUE above}
 * the schemas made from the table's description when the worker read it
 * (relmap_connect_schema).  Either way a record's partition is chosen
 * from the payload key (CRC32, librdkafka's consistent partitioner), so
 * a topic's rows keep their partitions when the switch changes.
 *
 * A value of A that the event cannot carry (a date past 9999 or
 * 'infinity', an infinite timestamp, a multi-dimensional array, text that
 * is not UTF-8) must not stop the pipeline behind it, nor be altered
 * silently: that change goes to the DLQ topic, with stage "capture", rule
 * "source.unrepresentable" and a reason naming the column, and the
 * changes after it go on.  On B the row keeps its previous state, as for
 * a change that breaks a rule.
 */
#ifndef PGRELAY_CDC_H
#define PGRELAY_CDC_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "kafka.h"
#include "relmap.h"

/* The version of A's schema (component 'source') the producer and the
 * snapshot need: 4 has pgrelay_changes and pgrelay_tables
 * (sql/source/004_any_table.sql). */
#define CDC_SOURCE_SCHEMA_VERSION 5

#define CDC_EVENT_VERSION "pgrelay-0.2"	/* source.version */

/* One configured table, as A knows it. */
struct cdc_table {
	const struct cfg_table *cfg;
	struct rel *rel;	/* A's catalog */
	int id;			/* pgrelay_tables.id: the rel of its changes */
	char *key_schema;	/* with cdc.schemas: the Kafka Connect schemas */
	char *val_schema;	/* of its keys and values (relmap_connect_schema) */
};

/* Describes every table of cfg from A's catalog and makes sure each is
 * captured with the capture its description calls for (installing or
 * replacing it where it is missing or older, in one transaction per
 * table).  0 with *out (free with cdc_tables_free) and *n; PGR_CONFIG
 * when a table cannot be replicated (no key, a type pgrelay cannot
 * carry, missing: err names it); PGR_RETRY when A failed, or when
 * pgrelay's user may not install a capture (err says what an
 * administrator runs: pgrelayctl capture-sql). */
int cdc_tables_open(PGconn *db, const struct cfg *cfg, struct cdc_table **out,
    int *n, char *err, size_t errlen);

void cdc_tables_free(struct cdc_table *t, int n);

/* Checks every table of cfg against A's catalog, installing nothing: it
 * exists, has a key, has no column of a type pgrelay cannot carry, and
 * its rules name its columns.  0, PGR_CONFIG with err ("FILE:LINE: ..."),
 * or PGR_RETRY (A failed). */
int cdc_tables_check(PGconn *db, const struct cfg *cfg, char *err, size_t errlen);

/* The SQL that installs table r's capture as rel id (its row trigger
 * function and its two triggers; id is the rel's number as text, or a
 * placeholder), pgrelay_changes being in schema changes_schema.
 * malloc'd, or NULL when out of memory. */
char *cdc_capture_sql(PGconn *db, const struct rel *r, const char *id,
    const char *changes_schema);

/* The script an administrator runs on A (psql) to install the capture of
 * every table of cfg, and to drop the capture of tables pgrelay_tables
 * holds that cfg no longer lists; pgrelay's own user needs no right to
 * change the tables then.  malloc'd, or NULL with err. */
char *cdc_capture_script(PGconn *db, const struct cfg *cfg, char *err, size_t errlen);

/* SQL expressions over the row alias."col" (a row of t's table): the
 * event's value as text, made of op (an SQL expression giving 'c', 'u',
 * 'd', 'r' or 't'), version, txid and ts_ms (bigint expressions); the key
 * as text; why the row cannot be carried (text) or NULL.  malloc'd. */
char *cdc_event_sql(PGconn *db, const struct cdc_table *t, const char *alias,
    const char *op, const char *version, const char *txid, const char *ts_ms);
char *cdc_key_sql(PGconn *db, const struct cdc_table *t, const char *alias);
char *cdc_bad_sql(PGconn *db, const struct cdc_table *t, const char *alias);

/* Sends one event of table t: val (the value's text, vlen bytes) keyed by
 * key to t's topic; for op 't' a copy to each of its cfg->partitions
 * partitions, without a key.  When bad is not NULL (why the row cannot
 * be carried) or val is not UTF-8, the change goes to the DLQ topic
 * instead.  Either way each record is counted in acks->sent.  0, or -1
 * with err (librdkafka refused a record). */
int cdc_send(rd_kafka_t *rk, const struct cfg *cfg, const struct cdc_table *t,
    char op, int64_t change_id, const char *key, size_t klen, const char *val,
    size_t vlen, const char *bad, struct kfk_acks *acks, char *err, size_t errlen);

#endif
