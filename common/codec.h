/*
 * codec.h - the CDC message format, one place for encoding and decoding.
 *
 * Key:   {"emp_id":42}; none (null) for a TRUNCATE, as Debezium's
 * Value: a Debezium-shaped change event (JsonConverter, schemas disabled):
 *   {"before":{...}|null, "after":{...}|null, "op":"c|u|d|r|t", "ts_ms":N,
 *    "source":{"version":..., "connector":"pgrelay", "name":"pgrelay",
 *              "db":..., "schema":"public", "table":"employees",
 *              "snapshot":"true|false", "change_id":N, "txId":N, "ts_ms":N}}
 * A row: {"emp_id":int, "first_name":str|null, "last_name":str|null,
 *         "dob":int|null (days since 1970-01-01, as Debezium's io.debezium.time.Date),
 *         "city":str|null, "salary":int|null}
 *
 * source.change_id is the row's version: the id of the change in A's change
 * table (for a snapshot row, the newest change of that row the snapshot saw).
 *
 * op "t" is a TRUNCATE of employees: before and after null, its change_id
 * in source (the truncate's version: B deletes every row older than it).
 * It is about no row, so no key, and it is sent to every partition.
 *
 * Decoding is strict about what pgrelay needs (types, ranges, lengths that
 * B's columns accept) and ignores fields it does not know.
 */
#ifndef PGRELAY_CODEC_H
#define PGRELAY_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define CODEC_TEXT_MAX 100	/* characters in a VARCHAR(100) column */

struct emp_row {
	int32_t emp_id;
	char *first_name;	/* NULL is SQL NULL */
	char *last_name;
	char *city;
	int has_dob;
	int32_t dob_days;
	int has_salary;
	int32_t salary;
};

struct change {
	char op;		/* 'c', 'u', 'd', 'r' or 't' (no row) */
	int64_t change_id;
	int64_t txid;
	int64_t ts_ms;		/* commit-side time the change was written */
	int has_before;
	int has_after;
	struct emp_row before;
	struct emp_row after;
};

/* The row a change is about: after for c/u/r, before for d; for t, which
 * is about none, an empty row (emp_id 0, every value NULL). */
const struct emp_row *codec_change_row(const struct change *c);

/* Returns a malloc'd JSON value (NUL-terminated, *len without the NUL) or
 * NULL when a value cannot be carried (codec_check_row() says which) or
 * memory runs out.  Caller frees with free(). */
char *codec_encode_change(const struct change *c, const char *dbname, size_t *len);

/* Why codec_encode_change() cannot carry row r: 0 if it can (a NULL from
 * the encoder was then a lack of memory), else -1 with why naming the
 * column (a dob outside CODEC_DOB_MIN_DAYS..MAX, a string that is not
 * UTF-8). */
int codec_check_row(const struct emp_row *r, char *why, size_t whylen);

/* Encodes changes as the JSON array pgrelay_apply_employees() reads on the
 * target: the row as in a change event (dob in days since 1970-01-01)
 * plus op and version: [{op, version, emp_id, first_name, ...}, ...]; a
 * TRUNCATE as {op: "t", version}.  malloc'd and NUL-terminated, or NULL
 * when out of memory. */
char *codec_encode_apply_rows(const struct change *const *changes, int n);

/* Writes the key {"emp_id":N} into buf; returns its length. */
size_t codec_encode_key(int32_t emp_id, char *buf, size_t len);

/* Decodes a value.  0 on success (free with codec_change_free()), -1 with
 * a reason in err when the bytes are not a change pgrelay can apply. */
int codec_decode_change(const void *buf, size_t len, struct change *out,
    char *err, size_t errlen);

void codec_change_free(struct change *c);

/* Writes days since 1970-01-01 as "YYYY-MM-DD" into buf (>= 11 bytes). */
void codec_days_to_date(int32_t days, char *buf, size_t len);

/* Oldest and newest dates a row may carry: 0001-01-01 and 9999-12-31. */
#define CODEC_DOB_MIN_DAYS (-719162)
#define CODEC_DOB_MAX_DAYS 2932896

#endif
