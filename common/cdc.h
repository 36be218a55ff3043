/*
 * cdc.h - what the producer and the snapshot share: sending one change
 * event to the CDC topic, or setting aside a change the event cannot carry.
 *
 * A value of A that the change event cannot carry (a dob of 'infinity' or
 * outside 0001-01-01..9999-12-31, a string that is not UTF-8) must not
 * stop the pipeline behind it, nor be altered silently: that change goes
 * to the DLQ topic, with stage "capture", rule "source.unrepresentable"
 * and a reason naming the column, and the changes after it go on.  On B
 * the row keeps its previous state, as for a change that breaks a rule.
 */
#ifndef PGRELAY_CDC_H
#define PGRELAY_CDC_H

#include <stddef.h>

#include "codec.h"
#include "config.h"
#include "kafka.h"

/* The version of A's schema (component 'source') the producer and the
 * snapshot need: 2 captures a TRUNCATE (sql/source/002_truncate.sql), 3
 * holds the producer's lease (003_producer_lease.sql). */
#define CDC_SOURCE_SCHEMA_VERSION 3

/* The days from 1970-01-01 of the date column COL, as the change event
 * carries them, or NULL when the event cannot carry it (infinity, or
 * outside 0001-01-01..9999-12-31): computing COL - DATE '1970-01-01' for
 * 'infinity' would fail the whole query, round after round.  A NULL here
 * with COL not NULL marks the change unrepresentable. */
#define CDC_DOB_DAYS_SQL(col) \
    "CASE WHEN " col " BETWEEN DATE '0001-01-01' AND DATE '9999-12-31' " \
    "THEN " col " - DATE '1970-01-01' END"

/* why = the reason a dob A holds (dob_text, as A prints it) cannot be
 * carried (CDC_DOB_DAYS_SQL gave NULL for it).  Returns why. */
const char *cdc_dob_unrepresentable(const char *dob_text, char *why, size_t whylen);

/* Sends c to cfg's CDC topic keyed by its row's emp_id, or, when its
 * values cannot be carried (why_unrepresentable, if not NULL, says why;
 * else codec_check_row() finds out), to cfg's DLQ topic.  Either way the
 * record is counted in acks->sent.  A TRUNCATE (op 't') goes to every
 * partition of the CDC topic, without a key: cfg->partitions records.  0,
 * or -1 with err (out of memory, or librdkafka refused a record). */
int cdc_send(rd_kafka_t *rk, const struct cfg *cfg, const struct change *c,
    const char *dbname, const char *why_unrepresentable, struct kfk_acks *acks,
    char *err, size_t errlen);

#endif
