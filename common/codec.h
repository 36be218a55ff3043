/*
 * codec.h - the CDC message format, one place for decoding (and, until the
 * generic producer lands, the employees-only encoders the producer uses).
 *
 * Key:   {"k1":v1, ...}: the table's key columns in key order, in their
 *        event forms; none (null) for a TRUNCATE, as Debezium's
 * Value: a Debezium-shaped change event (JsonConverter, schemas disabled):
 *   {"before":ROW|null, "after":ROW|null, "op":"c|u|d|r|t", "ts_ms":N,
 *    "source":{"version":..., "connector":"pgrelay", "name":...,
 *              "db":..., "schema":..., "table":...,
 *              "snapshot":"true|false", "change_id":N, "txId":N, "ts_ms":N}}
 *   ROW: {"col": value, ...}, each value in its column's event form
 *   (relmap.h, enum pgt_class: Debezium's JSON forms).
 *
 * source.change_id is the row's version: the id of the change in A's change
 * table (for a snapshot row, the newest change of that row the snapshot saw).
 * c, u and r carry the row in after, d in before (the old row); t (a
 * TRUNCATE of the table) carries neither and comes on every partition of
 * the table's topic.
 *
 * Decoding is in two steps.  codec_decode_event() checks the envelope,
 * which is the same for every table: a JSON object, op one of c u d r t,
 * source.change_id an integer above 0, txId and ts_ms integers when
 * present, the row an object (and for t: no row).  codec_check_row_forms()
 * then checks the row against the target table's entry (relmap.h): every
 * key column present and not null, every value of a column B has in that
 * column's event form and within what B's column accepts where that is
 * cheap to know (an integer's width, a varchar's length, a date's range).
 * Fields B has no column for are ignored (issue 17 maps columns).
 */
#ifndef PGRELAY_CODEC_H
#define PGRELAY_CODEC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "relmap.h"

/* A decoded change event. */
struct change_event {
	char op;		/* 'c', 'u', 'd', 'r' or 't' */
	int64_t change_id;	/* > 0 */
	int64_t txid;		/* 0 when absent */
	int64_t ts_ms;		/* the envelope's; 0 when absent */
	json_t *row;		/* after for c/u/r, before for d; NULL for t.
				 * A reference the event owns. */
};

/* Decodes a value's envelope.  0 (free with codec_event_free()), or -1
 * with a reason naming the field in err. */
int codec_decode_event(const void *buf, size_t len, struct change_event *out,
    char *err, size_t errlen);

void codec_event_free(struct change_event *e);

/* Checks e's row against the target table r (see above).  0, or -1 with
 * "after.col: why" (before.col for a delete) in err.  A TRUNCATE passes. */
int codec_check_row_forms(const struct rel *r, const struct change_event *e,
    char *err, size_t errlen);

/* The row's key as one string, for telling rows apart in a batch: a JSON
 * array of the key columns' values in key order, dumped compactly.
 * malloc'd, or NULL when memory runs out.  The row must have passed
 * codec_check_row_forms(). */
char *codec_key_text(const struct rel *r, const json_t *row);

/* "emp_id 5", "k1 x, k2 7": the row's key for a reason text, into buf. */
void codec_key_desc(const struct rel *r, const json_t *row, char *buf, size_t len);

/* The element of the apply function's batch for e (common/target.c):
 * {"op":..., "version":N, "row":{...}} ({"op":"t","version":N} for a
 * TRUNCATE).  A new reference, or NULL when memory runs out. */
json_t *codec_apply_elem(const struct change_event *e);

/* Writes days since 1970-01-01 as "YYYY-MM-DD" into buf (>= 11 bytes). */
void codec_days_to_date(int32_t days, char *buf, size_t len);

/* Oldest and newest dates an event carries: 0001-01-01 and 9999-12-31. */
#define CODEC_DOB_MIN_DAYS (-719162)
#define CODEC_DOB_MAX_DAYS 2932896

/* The first column of e's row that r (B's table) does not have, or NULL
 * (also for a TRUNCATE).  Points into e. */
const char *codec_unknown_column(const struct rel *r, const struct change_event *e);

#endif
