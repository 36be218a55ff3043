/*
 * test_codec.c - CDC events: the envelope decoded strictly for any table,
 * each row value checked against the target's column (the JSON form of its
 * class, an integer's width, a varchar's length, a date's range), keys as
 * one string, the apply function's batch element; Debezium compatibility;
 * the employees encoder the producer still uses (round trips through the
 * generic decoder); and a seeded mutation fuzz loop that must never crash
 * (the sanitized build catches memory errors).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "relfix.h"
#include "tap.h"

static struct rel *emp, *multi;

/* Decodes json and checks its row against r: 0 (ev filled, to free) or -1
 * with err. */
static int
decode_check(const struct rel *r, const char *json, size_t len,
    struct change_event *ev, char *err, size_t errlen)
{
	if (codec_decode_event(json, len, ev, err, errlen) < 0)
		return -1;
	if (codec_check_row_forms(r, ev, err, errlen) < 0) {
		codec_event_free(ev);
		return -1;
	}
	return 0;
}

/* An employees row as the producer's event carries it. */
struct emp_row {
	int32_t emp_id;
	const char *first_name, *last_name, *city;	/* NULL: null */
	int has_dob, has_salary;
	int32_t dob_days, salary;
};

static json_t *
emp_json(const struct emp_row *r)
{
	return json_pack("{s:i, s:o, s:o, s:o, s:o, s:o}", "emp_id", (int)r->emp_id,
	    "first_name", r->first_name ? json_string(r->first_name) : json_null(),
	    "last_name", r->last_name ? json_string(r->last_name) : json_null(),
	    "dob", r->has_dob ? json_integer(r->dob_days) : json_null(),
	    "city", r->city ? json_string(r->city) : json_null(),
	    "salary", r->has_salary ? json_integer(r->salary) : json_null());
}

/* The employees row r as JSON values in ev's row are equal. */
static int
row_is(const json_t *row, const struct emp_row *r)
{
	json_t *want = emp_json(r);
	int same = json_equal(want, row);

	json_decref(want);
	return same;
}

/* An event of op about row, in the form A's server makes it
 * (common/cdc.c), decodes back: envelope fields and row. */
static void
round_trip(char op, const struct emp_row *row, const char *what)
{
	struct change_event d;
	char err[256], ops[2] = { op, '\0' };
	json_t *ev = json_pack("{s:o, s:o, s:{s:s, s:s, s:s, s:s, s:s, s:s, s:s, "
	    "s:I, s:I, s:I}, s:s, s:I}",
	    "before", op == 'd' ? emp_json(row) : json_null(),
	    "after", op == 'd' ? json_null() : emp_json(row),
	    "source", "version", "pgrelay-0.2", "connector", "pgrelay", "name",
	    "pgrelay", "db", "pgrelay", "schema", "public", "table", "employees",
	    "snapshot", op == 'r' ? "true" : "false", "change_id", (json_int_t)42,
	    "txId", (json_int_t)777, "ts_ms", (json_int_t)1700000000000,
	    "op", ops, "ts_ms", (json_int_t)1700000000000);
	char *json = ev ? json_dumps(ev, JSON_COMPACT) : NULL;

	json_decref(ev);
	ok(json != NULL, "%s: an event", what);
	if (json == NULL)
		return;
	int rc = decode_check(emp, json, strlen(json), &d, err, sizeof(err));
	ok(rc == 0, "%s: decodes and fits employees", what);
	if (rc == 0) {
		ok(d.op == op && d.change_id == 42 && d.txid == 777 && d.ts_ms == 1700000000000,
		    "%s: op, change_id, txId and ts_ms survive", what);
		ok(row_is(d.row, row), "%s: the row survives", what);
		codec_event_free(&d);
	} else {
		printf("#   %s\n#   %s\n", err, json);
	}
	free(json);
}

/* json is refused (by the envelope or, against r, by a row value) with a
 * reason containing reason. */
static void
rejects_for(const struct rel *r, const char *json, const char *reason)
{
	struct change_event d;
	char err[256] = "";
	int rc = decode_check(r, json, strlen(json), &d, err, sizeof(err));

	if (!ok(rc == -1 && strstr(err, reason) != NULL, "rejects %.60s: %s", json, reason))
		printf("#   rc %d, reason '%s'\n", rc, err);
	if (rc == 0)
		codec_event_free(&d);
}

static void
rejects(const char *json, const char *reason)
{
	rejects_for(emp, json, reason);
}

static void
accepts_for(const struct rel *r, const char *json, const char *what)
{
	struct change_event d;
	char err[256] = "";
	int rc = decode_check(r, json, strlen(json), &d, err, sizeof(err));

	if (!ok(rc == 0, "accepts %s", what))
		printf("#   %s\n#   %s\n", err, json);
	if (rc == 0)
		codec_event_free(&d);
}

/* A row of the multi-type table with one column's value v (JSON text). */
static void
multi_row(char *buf, size_t len, const char *col, const char *v)
{
	snprintf(buf, len, "{\"op\":\"c\",\"source\":{\"change_id\":5},\"after\":"
	    "{\"k1\":\"6f1c2b4e-1111-4c1a-9d2b-000000000001\",\"k2\":7,\"%s\":%s}}",
	    col, v);
}

static void
multi_accepts(const char *col, const char *v)
{
	char json[512], what[160];

	multi_row(json, sizeof(json), col, v);
	snprintf(what, sizeof(what), "%s = %s", col, v);
	accepts_for(multi, json, what);
}

static void
multi_rejects(const char *col, const char *v, const char *reason)
{
	char json[512];

	multi_row(json, sizeof(json), col, v);
	rejects_for(multi, json, reason);
}

/* The value forms of each class (relmap.h), at and past their limits. */
static void
test_forms(void)
{
	multi_accepts("i2", "-32768");
	multi_rejects("i2", "32768", "after.i2: 32768 is out of range for smallint");
	multi_accepts("i4", "2147483647");
	multi_rejects("i4", "-2147483649", "after.i4: -2147483649 is out of range for integer");
	multi_accepts("i8", "-9223372036854775808");
	multi_rejects("i8", "1.0", "after.i8: expected an integer");
	multi_accepts("f8", "1.5e300");
	multi_accepts("f8", "7");
	multi_accepts("f8", "\"NaN\"");
	multi_accepts("f4", "\"-Infinity\"");
	multi_rejects("f8", "\"1.5\"", "after.f8: expected a number, \"NaN\"");
	multi_accepts("n", "\"-12345678901234567890.000000000000000000001\"");
	multi_accepts("n", "\"NaN\"");
	multi_accepts("n", "\".5\"");
	multi_rejects("n", "12.5", "after.n: expected a decimal number as a string");
	multi_rejects("n", "\"1e5\"", "after.n: expected a decimal number as a string");
	multi_rejects("n", "\"-\"", "after.n: expected a decimal");
	multi_accepts("b", "false");
	multi_rejects("b", "\"true\"", "after.b: expected true or false");
	multi_accepts("vc", "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"");
	multi_accepts("vc", "\"abcde   \"");	/* excess spaces: PostgreSQL drops them */
	multi_rejects("vc", "\"abcdef\"", "after.vc: longer than 5 characters");
	multi_rejects("ch", "\"abcd\"", "after.ch: longer than 3 characters");
	multi_accepts("t", "\"any length at all, any length at all, any length\"");
	multi_rejects("t", "5", "after.t: expected a string");
	multi_accepts("d", "2932896");
	multi_rejects("d", "2932897", "after.d: 2932897 is out of range");
	multi_rejects("d", "\"2008-01-01\"", "after.d: expected an integer (days");
	multi_accepts("ts", "-62135596800000000");
	multi_rejects("ts", "\"2008-01-01 00:00\"", "after.ts: expected an integer");
	multi_accepts("tm", "86400000000");
	multi_rejects("tm", "86400000001", "after.tm: 86400000001 is out of range");
	multi_accepts("tstz", "\"2020-01-01T00:00:00.000000Z\"");
	multi_accepts("tstz", "\"infinity\"");
	multi_rejects("tstz", "1", "after.tstz: expected a string");
	multi_accepts("iv", "\"P1Y2M3DT4H5M6S\"");
	multi_accepts("by", "\"AAEC\"");
	multi_rejects("by", "[0,1]", "after.by: expected a string");
	multi_accepts("j", "\"{\\\"a\\\": [1, 2]}\"");
	multi_rejects("j", "{\"a\":1}", "after.j: expected a string");
	multi_accepts("ai", "[1,null,3]");
	multi_accepts("ai", "[]");
	multi_rejects("ai", "\"{1,2}\"", "after.ai: expected an array");
	multi_rejects("ai", "[1,\"2\"]", "after.ai[2]: expected an integer");
	multi_accepts("ad", "[0,null,-1]");
	multi_rejects("ad", "[99999999]", "after.ad[1]: 99999999 is out of range");
	multi_accepts("nope", "\"a column B does not have: ignored\"");

	/* keys: every key column present and not null, after and before */
	rejects_for(multi, "{\"op\":\"c\",\"source\":{\"change_id\":5},\"after\":"
	    "{\"k1\":\"6f1c2b4e-1111-4c1a-9d2b-000000000001\"}}",
	    "after.k2: missing (a key column)");
	rejects_for(multi, "{\"op\":\"d\",\"source\":{\"change_id\":5},\"before\":"
	    "{\"k1\":null,\"k2\":1}}", "before.k1: missing (a key column)");
	accepts_for(multi, "{\"op\":\"d\",\"source\":{\"change_id\":5},\"before\":"
	    "{\"k1\":\"x\",\"k2\":1}}", "a delete with its key only");
}

/* codec_key_text, codec_key_desc, codec_apply_elem */
static void
test_keys(void)
{
	const char *json = "{\"op\":\"u\",\"source\":{\"change_id\":9,\"txId\":3},"
	    "\"after\":{\"t\":\"x\",\"k2\":-4,\"k1\":\"a \\\"b\\\"\"}}";
	struct change_event d;
	char err[256], desc[128];
	char *k, *e;
	json_t *elem;

	ok(decode_check(multi, json, strlen(json), &d, err, sizeof(err)) == 0,
	    "a composite-key row decodes");
	k = codec_key_text(multi, d.row);
	is_str(k, "[\"a \\\"b\\\"\",-4]", "key text: the key columns in key order, compact JSON");
	free(k);
	codec_key_desc(multi, d.row, desc, sizeof(desc));
	is_str(desc, "k1 a \"b\", k2 -4", "key description for reasons");
	elem = codec_apply_elem(&d);
	e = json_dumps(elem, JSON_COMPACT | JSON_SORT_KEYS);
	is_str(e, "{\"op\":\"u\",\"row\":{\"k1\":\"a \\\"b\\\"\",\"k2\":-4,\"t\":\"x\"},"
	    "\"version\":9}", "apply element: op, version and the event's row");
	free(e);
	json_decref(elem);
	codec_event_free(&d);

	json = "{\"op\":\"t\",\"source\":{\"change_id\":77},\"before\":null,\"after\":null}";
	ok(decode_check(multi, json, strlen(json), &d, err, sizeof(err)) == 0 &&
	    d.row == NULL, "a TRUNCATE decodes with no row and passes the row check");
	elem = codec_apply_elem(&d);
	e = json_dumps(elem, JSON_COMPACT | JSON_SORT_KEYS);
	is_str(e, "{\"op\":\"t\",\"version\":77}", "apply element of a TRUNCATE: op and version");
	free(e);
	json_decref(elem);
	codec_event_free(&d);

	json = "{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":5}}";
	ok(decode_check(emp, json, strlen(json), &d, err, sizeof(err)) == 0,
	    "employees row with its key only");
	k = codec_key_text(emp, d.row);
	is_str(k, "[5]", "employees' key text");
	free(k);
	codec_key_desc(emp, d.row, desc, sizeof(desc));
	is_str(desc, "emp_id 5", "employees' key description, as the reasons had it");
	codec_event_free(&d);
}

/* The field named name of a Connect struct schema s, or NULL. */
static json_t *
field_of(json_t *s, const char *name)
{
	size_t i;
	json_t *f;

	json_array_foreach(json_object_get(s, "fields"), i, f) {
		if (strcmp(json_string_value(json_object_get(f, "field")), name) == 0)
			return f;
	}
	return NULL;
}

/* "type" (and "name", or none when name is NULL) of field col of st. */
static void
connect_is(json_t *st, const char *col, const char *type, const char *name,
    int optional)
{
	json_t *f = field_of(st, col);
	const char *n = f ? json_string_value(json_object_get(f, "name")) : NULL;

	const char *t = f ? json_string_value(json_object_get(f, "type")) : NULL;

	ok(t != NULL && strcmp(t, type) == 0, "connect schema: %s is %s (%s)", col,
	    type, t ? t : "missing");
	ok(name ? n != NULL && strcmp(n, name) == 0 : n == NULL,
	    "connect schema: %s is named %s", col, name ? name : "(none)");
	ok(f && json_is_true(json_object_get(f, "optional")) == optional,
	    "connect schema: %s is %s", col, optional ? "optional" : "required");
}

/* cdc.schemas: the Kafka Connect schemas made from a table's description,
 * and the consumer reading an event in Connect's form. */
static void
test_connect(void)
{
	char *ks = relmap_connect_schema(emp, "pgrelay.public.employees", 1);
	char *vs = relmap_connect_schema(emp, "pgrelay.public.employees", 0);
	json_error_t je;
	json_t *v = vs ? json_loads(vs, 0, &je) : NULL, *after;
	struct change_event d;
	char err[256], *ev;

	is_str(ks, "{\"type\":\"struct\",\"fields\":[{\"type\":\"int32\","
	    "\"optional\":false,\"field\":\"emp_id\"}],\"optional\":false,"
	    "\"name\":\"pgrelay.public.employees.Key\"}",
	    "connect schema of employees' key: one required int32, named TOPIC.Key");
	ok(v != NULL, "the value schema is JSON");
	is_str(json_string_value(json_object_get(v, "name")),
	    "pgrelay.public.employees.Envelope", "the value schema is TOPIC.Envelope");
	after = field_of(v, "after");
	is_str(after ? json_string_value(json_object_get(after, "name")) : NULL,
	    "pgrelay.public.employees.Value", "after is TOPIC.Value");
	ok(json_equal(after ? json_object_get(after, "fields") : NULL,
	    json_object_get(field_of(v, "before"), "fields")),
	    "before and after have the same fields");
	connect_is(after, "emp_id", "int32", NULL, 0);
	connect_is(after, "first_name", "string", NULL, 1);
	connect_is(after, "dob", "int32", "io.debezium.time.Date", 1);
	connect_is(after, "salary", "int32", NULL, 1);
	connect_is(v, "op", "string", NULL, 0);
	connect_is(field_of(v, "source"), "change_id", "int64", NULL, 0);

	/* every class, by the base types relmap_load() records */
	multi->cols[0].oid = 2950;		/* k1 uuid */
	multi->cols[2].oid = 21;		/* i2 */
	multi->cols[3].oid = 23;
	multi->cols[4].oid = 20;		/* i8 */
	multi->cols[6].oid = 700;		/* f4 */
	multi->cols[7].oid = 701;
	multi->cols[9].notnull = 1;		/* t text NOT NULL */
	free(vs);
	json_decref(v);
	vs = relmap_connect_schema(multi, "p.public.multi", 0);
	v = vs ? json_loads(vs, 0, &je) : NULL;
	after = field_of(v, "after");
	connect_is(after, "k1", "string", "io.debezium.data.Uuid", 0);
	connect_is(after, "i2", "int16", NULL, 1);
	connect_is(after, "i4", "int32", NULL, 1);
	connect_is(after, "i8", "int64", NULL, 1);
	connect_is(after, "n", "string", NULL, 1);
	connect_is(after, "f4", "float", NULL, 1);
	connect_is(after, "f8", "double", NULL, 1);
	connect_is(after, "b", "boolean", NULL, 1);
	connect_is(after, "t", "string", NULL, 0);
	connect_is(after, "by", "bytes", NULL, 1);
	connect_is(after, "tm", "int64", "io.debezium.time.MicroTime", 1);
	connect_is(after, "ts", "int64", "io.debezium.time.MicroTimestamp", 1);
	connect_is(after, "tstz", "string", "io.debezium.time.ZonedTimestamp", 1);
	connect_is(after, "iv", "string", "io.debezium.time.Interval", 1);
	connect_is(after, "j", "string", "io.debezium.data.Json", 1);
	connect_is(after, "ai", "array", NULL, 1);
	is_str(json_string_value(json_object_get(json_object_get(field_of(after, "ad"),
	    "items"), "name")), "io.debezium.time.Date", "connect schema: ad's items are Dates");
	multi->cols[9].notnull = 0;

	/* the consumer reads the payload of Connect's form */
	const char *bare = "{\"before\":null,\"after\":{\"emp_id\":5,\"first_name\":\"A\","
	    "\"last_name\":null,\"dob\":14000,\"city\":null,\"salary\":20000},"
	    "\"source\":{\"change_id\":3,\"txId\":9},\"op\":\"u\",\"ts_ms\":2}";
	size_t n = strlen(bare) + strlen(vs) + 64;
	ev = malloc(n);
	snprintf(ev, n, "{\"schema\":%s,\"payload\":%s}", vs, bare);
	if (!ok(decode_check(emp, ev, strlen(ev), &d, err, sizeof(err)) == 0,
	    "an event with its Connect schema decodes"))
		printf("#   %s\n", err);
	else {
		is_int(d.op, 'u', "schema form: op from the payload");
		is_int(d.change_id, 3, "schema form: change_id from the payload");
		is_int(json_integer_value(json_object_get(d.row, "salary")), 20000,
		    "schema form: the row from the payload");
		codec_event_free(&d);
	}
	/* a column B's table lacks (added on A) is named, not ignored */
	snprintf(ev, n, "{\"before\":null,\"after\":{\"emp_id\":5,\"title\":\"x\"},"
	    "\"source\":{\"change_id\":3},\"op\":\"c\"}");
	if (ok(codec_decode_event(ev, strlen(ev), &d, err, sizeof(err)) == 0,
	    "an event with a column B lacks decodes")) {
		const char *u = codec_unknown_column(emp, &d);

		ok(u != NULL && strcmp(u, "title") == 0,
		    "codec_unknown_column names it: %s", u ? u : "(none)");
		codec_event_free(&d);
	}
	snprintf(ev, n, "{\"before\":null,\"after\":{\"emp_id\":5,\"city\":null},"
	    "\"source\":{\"change_id\":3},\"op\":\"c\"}");
	if (ok(codec_decode_event(ev, strlen(ev), &d, err, sizeof(err)) == 0,
	    "an event with fewer columns than B decodes")) {
		ok(codec_unknown_column(emp, &d) == NULL,
		    "codec_unknown_column: none unknown when the event has fewer");
		codec_event_free(&d);
	}
	snprintf(ev, n, "{\"schema\":%s,\"payload\":\"x\"}", vs);
	ok(codec_decode_event(ev, strlen(ev), &d, err, sizeof(err)) < 0 &&
	    strstr(err, "payload") != NULL, "a schema without an object payload is refused: %s", err);
	free(ev);
	free(ks);
	free(vs);
	json_decref(v);
}

int
main(void)
{
	static const struct fixcol mcols[] = {
		{ "k1", "uuid", NULL, PGT_TEXT, PGT_NONE, 1 },
		{ "k2", "integer", NULL, PGT_INT, PGT_NONE, 2 },
		{ "i2", "smallint", NULL, PGT_INT, PGT_NONE, 0 },
		{ "i4", "integer", NULL, PGT_INT, PGT_NONE, 0 },
		{ "i8", "bigint", NULL, PGT_INT, PGT_NONE, 0 },
		{ "n", "numeric(40,21)", "numeric", PGT_NUMERIC, PGT_NONE, 0 },
		{ "f4", "real", NULL, PGT_FLOAT, PGT_NONE, 0 },
		{ "f8", "double precision", NULL, PGT_FLOAT, PGT_NONE, 0 },
		{ "b", "boolean", NULL, PGT_BOOL, PGT_NONE, 0 },
		{ "t", "text", NULL, PGT_TEXT, PGT_NONE, 0 },
		{ "vc", "character varying(5)", "character varying", PGT_TEXT, PGT_NONE, 0 },
		{ "ch", "character(3)", "character", PGT_TEXT, PGT_NONE, 0 },
		{ "by", "bytea", NULL, PGT_BYTEA, PGT_NONE, 0 },
		{ "d", "date", NULL, PGT_DATE, PGT_NONE, 0 },
		{ "tm", "time without time zone", NULL, PGT_TIME, PGT_NONE, 0 },
		{ "ts", "timestamp without time zone", NULL, PGT_TIMESTAMP, PGT_NONE, 0 },
		{ "tstz", "timestamp with time zone", NULL, PGT_TIMESTAMPTZ, PGT_NONE, 0 },
		{ "iv", "interval", NULL, PGT_INTERVAL, PGT_NONE, 0 },
		{ "j", "jsonb", NULL, PGT_JSON, PGT_NONE, 0 },
		{ "ai", "integer[]", NULL, PGT_ARRAY, PGT_INT, 0 },
		{ "ad", "date[]", NULL, PGT_ARRAY, PGT_DATE, 0 },
	};
	struct emp_row full = { .emp_id = 7, .first_name = "Zoë", .last_name = "O\"Brien",
	    .city = "Köln, \\ \n", .has_dob = 1, .dob_days = 13514, .has_salary = 1,
	    .salary = 123456 };
	struct emp_row nulls = { .emp_id = -3 };
	char buf[64];

	emp = fix_employees();
	multi = fix_rel("public", "multi", mcols, (int)(sizeof(mcols) / sizeof(mcols[0])));

	round_trip('c', &full, "create with every field");
	round_trip('u', &full, "update");
	round_trip('r', &nulls, "snapshot row with nulls");
	round_trip('d', &full, "delete");


	/* An event as Debezium's PostgreSQL connector writes it. */
	const char *dbz = "{\"before\":null,\"after\":{\"emp_id\":5,\"first_name\":\"A\","
	    "\"last_name\":\"B\",\"dob\":14000,\"city\":\"C\",\"salary\":20000},"
	    "\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\","
	    "\"name\":\"a\",\"ts_ms\":1,\"snapshot\":\"false\",\"db\":\"pgrelay\","
	    "\"sequence\":\"[null,\\\"2\\\"]\",\"schema\":\"public\",\"table\":\"employees\","
	    "\"txId\":9,\"lsn\":123,\"xmin\":null,\"change_id\":3},\"op\":\"c\",\"ts_ms\":2,"
	    "\"transaction\":null}";
	struct change_event d;
	char err[256];
	int rc = decode_check(emp, dbz, strlen(dbz), &d, err, sizeof(err));
	if (!ok(rc == 0, "a Debezium event with extra fields decodes"))
		printf("#   %s\n", err);
	/* Every field the decoder fills; ts_ms is the envelope's (2), not source's (1). */
	is_int(d.op, 'c', "Debezium create: op");
	is_int(d.change_id, 3, "Debezium create: source.change_id");
	is_int(d.txid, 9, "Debezium create: source.txId");
	is_int(d.ts_ms, 2, "Debezium create: ts_ms");
	struct emp_row five = { .emp_id = 5, .first_name = "A", .last_name = "B", .city = "C",
	    .has_dob = 1, .dob_days = 14000, .has_salary = 1, .salary = 20000 };
	ok(d.row != NULL && row_is(d.row, &five), "Debezium create: the row is after");
	codec_event_free(&d);

	/* A Debezium delete (REPLICA IDENTITY FULL): before carries the row,
	 * after is null. */
	const char *dbzdel = "{\"before\":{\"emp_id\":6,\"first_name\":\"D\","
	    "\"last_name\":null,\"dob\":null,\"city\":null,\"salary\":null},\"after\":null,"
	    "\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\","
	    "\"name\":\"a\",\"ts_ms\":10,\"snapshot\":\"false\",\"db\":\"pgrelay\","
	    "\"schema\":\"public\",\"table\":\"employees\",\"txId\":11,\"lsn\":124,"
	    "\"xmin\":null,\"change_id\":4},\"op\":\"d\",\"ts_ms\":12,\"transaction\":null}";
	rc = decode_check(emp, dbzdel, strlen(dbzdel), &d, err, sizeof(err));
	if (!ok(rc == 0, "a Debezium delete decodes"))
		printf("#   %s\n", err);
	ok(d.op == 'd' && d.change_id == 4 && d.txid == 11 && d.ts_ms == 12,
	    "Debezium delete: op, change_id, txId, ts_ms");
	struct emp_row six = { .emp_id = 6, .first_name = "D" };
	ok(d.row != NULL && row_is(d.row, &six), "Debezium delete: the row is before");
	codec_event_free(&d);

	/* A TRUNCATE: Debezium's shape, no row, in both directions. */
	/* as A's server makes it (common/cdc.c) */
	const char *tjson = "{\"before\":null,\"after\":null,\"source\":{\"version\":"
	    "\"pgrelay-0.2\",\"connector\":\"pgrelay\",\"name\":\"pgrelay\",\"db\":"
	    "\"pgrelay\",\"schema\":\"public\",\"table\":\"employees\",\"snapshot\":"
	    "\"false\",\"change_id\":77,\"txId\":5,\"ts_ms\":3},\"op\":\"t\",\"ts_ms\":3}";
	size_t tlen = strlen(tjson);
	rc = decode_check(emp, tjson, tlen, &d, err, sizeof(err));
	if (!ok(rc == 0, "a TRUNCATE decodes back"))
		printf("#   %s\n#   %s\n", err, tjson);
	ok(d.op == 't' && d.change_id == 77 && d.txid == 5 && d.ts_ms == 3 && d.row == NULL,
	    "TRUNCATE: op, change_id, txId, ts_ms; no row");
	codec_event_free(&d);
	const char *dbztr = "{\"source\":{\"version\":\"2.7.0.Final\","
	    "\"connector\":\"postgresql\",\"name\":\"a\",\"ts_ms\":20,"
	    "\"snapshot\":\"false\",\"db\":\"pgrelay\",\"schema\":\"public\","
	    "\"table\":\"employees\",\"txId\":21,\"lsn\":125,\"change_id\":8},"
	    "\"op\":\"t\",\"ts_ms\":22}";
	rc = decode_check(emp, dbztr, strlen(dbztr), &d, err, sizeof(err));
	if (!ok(rc == 0, "a Debezium truncate without before and after decodes"))
		printf("#   %s\n", err);
	ok(d.op == 't' && d.change_id == 8 && d.txid == 21 && d.row == NULL,
	    "Debezium truncate: op, change_id, txId; no row");
	codec_event_free(&d);

	/* the envelope */
	rejects("", "empty message value");
	rejects("\xff\xfe garbage", "not JSON");
	rejects("null", "not JSON");
	rejects("42", "not JSON");
	rejects("[]", "expected a JSON object");
	rejects("{\"op\":\"x\",\"source\":{\"change_id\":1}}", "op: expected one of");
	rejects("{\"op\":\"cc\",\"source\":{\"change_id\":1}}", "op: expected one of");
	rejects("{\"op\":\"c\",\"after\":{\"emp_id\":1}}", "source.change_id");
	rejects("{\"op\":\"t\"}", "source.change_id");
	rejects("{\"op\":\"t\",\"source\":{\"change_id\":1},\"before\":{\"emp_id\":1}}",
	    "before: expected null for op \"t\"");
	rejects("{\"op\":\"t\",\"source\":{\"change_id\":1},\"after\":[]}",
	    "after: expected null for op \"t\"");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":-1},\"after\":{\"emp_id\":1}}",
	    "source.change_id: expected an integer above 0");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":0},\"after\":{\"emp_id\":1}}",
	    "source.change_id: expected an integer above 0");
	rejects("{\"op\":\"r\",\"source\":{\"change_id\":-1},\"after\":{\"emp_id\":1}}",
	    "source.change_id: expected an integer above 0");
	accepts_for(emp, "{\"op\":\"r\",\"source\":{\"change_id\":0},\"after\":"
	    "{\"emp_id\":1,\"dob\":13514,\"salary\":20000}}",
	    "a snapshot row of version 0 (no change of it captured)");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":\"1\"},\"after\":{\"emp_id\":1}}",
	    "source.change_id: expected an integer above 0");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1,\"txId\":\"9\"},\"after\":{\"emp_id\":1}}",
	    "source.txId: expected an integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"ts_ms\":1.5,\"after\":{\"emp_id\":1}}",
	    "ts_ms: expected an integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1}}", "after: expected an object");
	rejects("{\"op\":\"u\",\"source\":{\"change_id\":1},\"after\":[1]}",
	    "after: expected an object");
	rejects("{\"op\":\"d\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1}}",
	    "before: expected an object");
	rejects("{\"op\":\"c\",\"op\":\"u\",\"source\":{\"change_id\":1}}", "not JSON");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,"
	    "\"city\":\"a\\u0000b\"}}", "not JSON");
	/* employees' values (test 30's garbage) */
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":\"1\"}}",
	    "after.emp_id: expected an integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"first_name\":\"x\"}}",
	    "after.emp_id: missing");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":2147483648}}",
	    "after.emp_id: 2147483648 is out of range");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"salary\":1.5}}",
	    "after.salary: expected an integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"dob\":\"2008-01-01\"}}",
	    "after.dob: expected an integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"dob\":2932897}}",
	    "after.dob: 2932897 is out of range");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"city\":5}}",
	    "after.city: expected a string");

	/* Length limits count characters, not bytes. */
	char name[1024], json[1200];
	name[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(name, "\xc3\xa9");	/* é */
	snprintf(json, sizeof(json), "{\"op\":\"c\",\"source\":{\"change_id\":1},"
	    "\"after\":{\"emp_id\":1,\"last_name\":\"%s\"}}", name);
	accepts_for(emp, json, "100 two-byte characters in a VARCHAR(100)");
	strcat(name, "e");
	snprintf(json, sizeof(json), "{\"op\":\"c\",\"source\":{\"change_id\":1},"
	    "\"after\":{\"emp_id\":1,\"last_name\":\"%s\"}}", name);
	rejects(json, "after.last_name: longer than 100 characters");

	test_forms();
	test_keys();

	codec_days_to_date(0, buf, sizeof(buf));
	is_str(buf, "1970-01-01", "day 0");
	codec_days_to_date(13514, buf, sizeof(buf));
	is_str(buf, "2007-01-01", "day 13514");
	codec_days_to_date(-1, buf, sizeof(buf));
	is_str(buf, "1969-12-31", "day -1");
	codec_days_to_date(CODEC_DOB_MIN_DAYS, buf, sizeof(buf));
	is_str(buf, "0001-01-01", "the oldest date");
	codec_days_to_date(CODEC_DOB_MAX_DAYS, buf, sizeof(buf));
	is_str(buf, "9999-12-31", "the newest date");

	test_connect();

	/* Mutation fuzz: flip, insert and delete bytes of a valid event. */
	const char *base = "{\"before\":null,\"after\":{\"emp_id\":7,\"first_name\":"
	    "\"Zoë\",\"last_name\":\"O\\\"Brien\",\"dob\":13514,\"city\":\"K\\u00f6ln\","
	    "\"salary\":123456},\"source\":{\"version\":\"pgrelay-0.2\",\"connector\":"
	    "\"pgrelay\",\"name\":\"pgrelay\",\"db\":\"db\",\"schema\":\"public\","
	    "\"table\":\"employees\",\"snapshot\":\"false\",\"change_id\":9,\"txId\":1,"
	    "\"ts_ms\":2},\"op\":\"u\",\"ts_ms\":2}";
	size_t slen = strlen(base);
	unsigned long long state = 88172645463325252ULL;
	int decoded = 0, refused_n = 0, sane = 1;
	for (int i = 0; i < 20000; i++) {
		char m[2048];
		size_t n = slen;
		memcpy(m, base, slen);
		for (int k = 0; k < 1 + i % 4; k++) {
			state ^= state << 13; state ^= state >> 7; state ^= state << 17;
			size_t pos = state % (n ? n : 1);
			switch ((state >> 32) % 3) {
			case 0: m[pos] = (char)(state >> 40); break;
			case 1: if (n < sizeof(m) - 1) { memmove(m + pos + 1, m + pos, n - pos); m[pos] = (char)(state >> 48); n++; } break;
			default: if (n > 0) { memmove(m + pos, m + pos + 1, n - pos - 1); n--; } break;
			}
		}
		if (decode_check(emp, m, n, &d, err, sizeof(err)) == 0) {
			decoded++;
			/* strchr finds the terminating NUL, so reject '\0' first */
			if (d.op == '\0' || strchr("cudrt", d.op) == NULL ||
			    d.change_id < (d.op == 'r' ? 0 : 1) ||
			    (d.row == NULL) != (d.op == 't') ||
			    (d.row != NULL && !json_is_integer(json_object_get(d.row, "emp_id"))))
				sane = 0;
			if (d.row != NULL) {
				char *kt = codec_key_text(emp, d.row);
				json_t *el = codec_apply_elem(&d);
				sane &= kt != NULL && el != NULL;
				free(kt);
				json_decref(el);
			}
			codec_event_free(&d);
		} else {
			refused_n++;
			if (err[0] == '\0')
				sane = 0;
		}
	}

	ok(sane, "20000 mutated events: every decode is sane, every refusal has a reason "
	    "(%d decoded, %d refused)", decoded, refused_n);
	ok(refused_n > 10000, "most mutations are refused");
	relmap_free(emp);
	relmap_free(multi);
	return done_testing();
}
