/*
 * test_codec.c - CDC events: round trips, Debezium compatibility, strict
 * rejection of garbage with a reason, and a seeded mutation fuzz loop that
 * must never crash (the sanitized build catches memory errors).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "tap.h"

static int
rows_equal(const struct emp_row *a, const struct emp_row *b)
{
#define SEQ(x, y) ((x) == NULL ? (y) == NULL : (y) != NULL && strcmp((x), (y)) == 0)
	return a->emp_id == b->emp_id && SEQ(a->first_name, b->first_name) &&
	    SEQ(a->last_name, b->last_name) && SEQ(a->city, b->city) &&
	    a->has_dob == b->has_dob && (!a->has_dob || a->dob_days == b->dob_days) &&
	    a->has_salary == b->has_salary && (!a->has_salary || a->salary == b->salary);
#undef SEQ
}

static void
round_trip(char op, const struct emp_row *row, const char *what)
{
	struct change c = { .op = op, .change_id = 42, .txid = 777, .ts_ms = 1700000000000 };
	struct change d;
	char err[256];
	size_t len;
	char *json;

	if (op == 'd') {
		c.has_before = 1;
		c.before = *row;
	} else {
		c.has_after = 1;
		c.after = *row;
	}
	json = codec_encode_change(&c, "pgrelay", &len);
	ok(json != NULL && len == strlen(json), "%s: encodes", what);
	int rc = codec_decode_change(json, len, &d, err, sizeof(err));
	ok(rc == 0, "%s: decodes back", what);
	if (rc == 0) {
		ok(d.op == op && d.change_id == 42 && d.txid == 777 && d.ts_ms == 1700000000000,
		    "%s: op, change_id, txId and ts_ms survive", what);
		ok(rows_equal(codec_change_row(&d), row), "%s: the row survives", what);
		codec_change_free(&d);
	} else {
		printf("#   %s\n#   %s\n", err, json);
	}
	free(json);
}

static void
rejects(const char *json, const char *reason)
{
	struct change d;
	char err[256] = "";
	int rc = codec_decode_change(json, strlen(json), &d, err, sizeof(err));

	if (!ok(rc == -1 && strstr(err, reason) != NULL, "rejects %.40s: %s", json, reason))
		printf("#   rc %d, reason '%s'\n", rc, err);
	if (rc == 0)
		codec_change_free(&d);
}

/* A row the event cannot carry: the encoder refuses it (never drops the
 * column) and codec_check_row() names the column. */
static void
refused(const struct emp_row *r, const char *want, const char *what)
{
	struct change c = { .op = 'c', .change_id = 1, .has_after = 1, .after = *r };
	char why[256] = "";
	size_t len;
	char *json = codec_encode_change(&c, "db", &len);

	ok(json == NULL, "%s: not encoded", what);
	free(json);
	if (!ok(codec_check_row(r, why, sizeof(why)) == -1 && strstr(why, want) != NULL,
	    "%s: %s", what, want))
		printf("#   why '%s'\n", why);
}

static void
unrepresentable(void)
{
	struct emp_row r = { .emp_id = 1, .first_name = "a", .has_dob = 1 };
	char why[64] = "";

	r.dob_days = CODEC_DOB_MAX_DAYS;
	ok(codec_check_row(&r, why, sizeof(why)) == 0, "dob 9999-12-31 can be carried");
	r.dob_days = CODEC_DOB_MIN_DAYS;
	ok(codec_check_row(&r, why, sizeof(why)) == 0, "dob 0001-01-01 can be carried");
	r.dob_days = CODEC_DOB_MAX_DAYS + 1;
	refused(&r, "dob: 2932897 days from 1970-01-01 is outside", "dob 10000-01-01");
	r.dob_days = CODEC_DOB_MIN_DAYS - 1;
	refused(&r, "dob: -719163 days", "dob 0000-12-31");
	r.dob_days = 0;
	r.city = "K\xf6ln";		/* Latin-1, not UTF-8 */
	refused(&r, "city: not valid UTF-8", "a Latin-1 city");
	r.city = NULL;
	r.last_name = "\xc3";		/* a UTF-8 sequence cut short */
	refused(&r, "last_name: not valid UTF-8", "a cut UTF-8 sequence");
}

int
main(void)
{
	struct emp_row full = { .emp_id = 7, .first_name = "Zoë", .last_name = "O\"Brien",
	    .city = "Köln, \\ \n", .has_dob = 1, .dob_days = 13514, .has_salary = 1,
	    .salary = 123456 };
	struct emp_row nulls = { .emp_id = -3 };
	char key[32], buf[64];

	round_trip('c', &full, "create with every field");
	unrepresentable();
	round_trip('u', &full, "update");
	round_trip('r', &nulls, "snapshot row with nulls");
	round_trip('d', &full, "delete");

	is_int(codec_encode_key(42, key, sizeof(key)), 13, "key length");
	is_str(key, "{\"emp_id\":42}", "key is Debezium-shaped");
	codec_encode_key(-2147483647 - 1, key, sizeof(key));
	is_str(key, "{\"emp_id\":-2147483648}", "key of INT32_MIN");

	/* An event as Debezium's PostgreSQL connector writes it. */
	const char *dbz = "{\"before\":null,\"after\":{\"emp_id\":5,\"first_name\":\"A\","
	    "\"last_name\":\"B\",\"dob\":14000,\"city\":\"C\",\"salary\":20000},"
	    "\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\","
	    "\"name\":\"a\",\"ts_ms\":1,\"snapshot\":\"false\",\"db\":\"pgrelay\","
	    "\"sequence\":\"[null,\\\"2\\\"]\",\"schema\":\"public\",\"table\":\"employees\","
	    "\"txId\":9,\"lsn\":123,\"xmin\":null,\"change_id\":3},\"op\":\"c\",\"ts_ms\":2,"
	    "\"transaction\":null}";
	struct change d;
	char err[256];
	int rc = codec_decode_change(dbz, strlen(dbz), &d, err, sizeof(err));
	if (!ok(rc == 0, "a Debezium event with extra fields decodes"))
		printf("#   %s\n", err);
	/* Every field the decoder fills; ts_ms is the envelope's (2), not source's (1). */
	is_int(d.op, 'c', "Debezium create: op");
	is_int(d.change_id, 3, "Debezium create: source.change_id");
	is_int(d.txid, 9, "Debezium create: source.txId");
	is_int(d.ts_ms, 2, "Debezium create: ts_ms");
	ok(d.has_after && !d.has_before, "Debezium create: after present, before absent");
	is_int(d.after.emp_id, 5, "Debezium create: after.emp_id");
	is_str(d.after.first_name, "A", "Debezium create: after.first_name");
	is_str(d.after.last_name, "B", "Debezium create: after.last_name");
	is_str(d.after.city, "C", "Debezium create: after.city");
	ok(d.after.has_dob && d.after.dob_days == 14000, "Debezium create: after.dob 14000");
	ok(d.after.has_salary && d.after.salary == 20000, "Debezium create: after.salary 20000");
	ok(codec_change_row(&d) == &d.after, "Debezium create: the row is after");
	codec_change_free(&d);

	/* A Debezium delete (REPLICA IDENTITY FULL): before carries the row,
	 * after is null; null columns decode as absent. */
	const char *dbzdel = "{\"before\":{\"emp_id\":6,\"first_name\":\"D\","
	    "\"last_name\":null,\"dob\":null,\"city\":null,\"salary\":null},\"after\":null,"
	    "\"source\":{\"version\":\"2.7.0.Final\",\"connector\":\"postgresql\","
	    "\"name\":\"a\",\"ts_ms\":10,\"snapshot\":\"false\",\"db\":\"pgrelay\","
	    "\"schema\":\"public\",\"table\":\"employees\",\"txId\":11,\"lsn\":124,"
	    "\"xmin\":null,\"change_id\":4},\"op\":\"d\",\"ts_ms\":12,\"transaction\":null}";
	rc = codec_decode_change(dbzdel, strlen(dbzdel), &d, err, sizeof(err));
	if (!ok(rc == 0, "a Debezium delete decodes"))
		printf("#   %s\n", err);
	ok(d.op == 'd' && d.change_id == 4 && d.txid == 11 && d.ts_ms == 12,
	    "Debezium delete: op, change_id, txId, ts_ms");
	ok(d.has_before && !d.has_after, "Debezium delete: before present, after absent");
	ok(codec_change_row(&d) == &d.before, "Debezium delete: the row is before");
	ok(d.before.emp_id == 6 && d.before.first_name != NULL &&
	    strcmp(d.before.first_name, "D") == 0 && d.before.last_name == NULL &&
	    d.before.city == NULL && !d.before.has_dob && !d.before.has_salary,
	    "Debezium delete: emp_id and first_name kept, null columns absent");
	codec_change_free(&d);

	/* A TRUNCATE: Debezium's shape (JsonConverter writes the envelope's
	 * unset before and after as null), no row, in both directions. */
	struct change tr = { .op = 't', .change_id = 77, .txid = 5, .ts_ms = 3 };
	size_t tlen;
	char *tjson = codec_encode_change(&tr, "pgrelay", &tlen);
	ok(tjson != NULL && strstr(tjson, "\"before\":null,\"after\":null,") != NULL &&
	    strstr(tjson, "\"op\":\"t\"") != NULL &&
	    strstr(tjson, "\"change_id\":77,") != NULL,
	    "a TRUNCATE encodes as op t, before and after null, source.change_id");
	rc = codec_decode_change(tjson, tlen, &d, err, sizeof(err));
	if (!ok(rc == 0, "a TRUNCATE decodes back"))
		printf("#   %s\n#   %s\n", err, tjson);
	ok(d.op == 't' && d.change_id == 77 && d.txid == 5 && d.ts_ms == 3 &&
	    !d.has_before && !d.has_after, "TRUNCATE: op, change_id, txId, ts_ms; no row");
	codec_change_free(&d);
	free(tjson);
	const char *dbztr = "{\"source\":{\"version\":\"2.7.0.Final\","
	    "\"connector\":\"postgresql\",\"name\":\"a\",\"ts_ms\":20,"
	    "\"snapshot\":\"false\",\"db\":\"pgrelay\",\"schema\":\"public\","
	    "\"table\":\"employees\",\"txId\":21,\"lsn\":125,\"change_id\":8},"
	    "\"op\":\"t\",\"ts_ms\":22}";
	rc = codec_decode_change(dbztr, strlen(dbztr), &d, err, sizeof(err));
	if (!ok(rc == 0, "a Debezium truncate without before and after decodes"))
		printf("#   %s\n", err);
	ok(d.op == 't' && d.change_id == 8 && d.txid == 21 && !d.has_before &&
	    !d.has_after, "Debezium truncate: op, change_id, txId; no row");
	codec_change_free(&d);
	const struct change *trs[1] = { &tr };
	char *trow = codec_encode_apply_rows(trs, 1);
	is_str(trow, "[{\"op\":\"t\",\"version\":77}]",
	    "a TRUNCATE for pgrelay_apply_employees(): op and version only");
	free(trow);

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
	    "source.change_id: expected a non-negative integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1}}", "after: expected an object");
	rejects("{\"op\":\"d\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1}}",
	    "before: expected an object");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":\"1\"}}",
	    "after.emp_id: expected an integer");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"first_name\":\"x\"}}",
	    "after.emp_id: missing");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":2147483648}}",
	    "after.emp_id: 2147483648 is out of range");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"salary\":1.5}}",
	    "after.salary: expected an integer or null");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"dob\":\"2008-01-01\"}}",
	    "after.dob: expected an integer or null");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"dob\":2932897}}",
	    "after.dob: 2932897 is out of range");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,\"city\":5}}",
	    "after.city: expected a string or null");
	rejects("{\"op\":\"c\",\"op\":\"u\",\"source\":{\"change_id\":1}}", "not JSON");
	rejects("{\"op\":\"c\",\"source\":{\"change_id\":1},\"after\":{\"emp_id\":1,"
	    "\"city\":\"a\\u0000b\"}}", "not JSON");

	/* Length limits count characters, not bytes. */
	char name[1024], json[1200];
	name[0] = '\0';
	for (int i = 0; i < 100; i++)
		strcat(name, "\xc3\xa9");	/* é */
	snprintf(json, sizeof(json), "{\"op\":\"c\",\"source\":{\"change_id\":1},"
	    "\"after\":{\"emp_id\":1,\"last_name\":\"%s\"}}", name);
	ok(codec_decode_change(json, strlen(json), &d, err, sizeof(err)) == 0,
	    "100 two-byte characters fit VARCHAR(100)");
	codec_change_free(&d);
	strcat(name, "e");
	snprintf(json, sizeof(json), "{\"op\":\"c\",\"source\":{\"change_id\":1},"
	    "\"after\":{\"emp_id\":1,\"last_name\":\"%s\"}}", name);
	rejects(json, "after.last_name: longer than 100 characters");

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

	/* Mutation fuzz: flip, insert and delete bytes of a valid event. */
	struct change seed = { .op = 'u', .change_id = 9, .has_after = 1, .after = full };
	size_t slen;
	char *base = codec_encode_change(&seed, "db", &slen);
	unsigned long long state = 88172645463325252ULL;
	int decoded = 0, refused = 0, sane = 1;
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
		if (codec_decode_change(m, n, &d, err, sizeof(err)) == 0) {
			decoded++;
			/* strchr finds the terminating NUL, so reject '\0' first */
			if (d.op == '\0' || strchr("cudrt", d.op) == NULL || d.change_id < 0 ||
			    d.has_before != (d.op == 'd') ||
			    d.has_after != (d.op != 'd' && d.op != 't'))
				sane = 0;
			codec_change_free(&d);
		} else {
			refused++;
			if (err[0] == '\0')
				sane = 0;
		}
	}
	free(base);
	ok(sane, "20000 mutated events: every decode is sane, every refusal has a reason "
	    "(%d decoded, %d refused)", decoded, refused);
	ok(refused > 10000, "most mutations are refused");
	return done_testing();
}
