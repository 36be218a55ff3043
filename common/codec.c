/*
 * codec.c - JSON encoding and strict decoding of CDC change events (jansson).
 */
#define _POSIX_C_SOURCE 200809L
#include "codec.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_VERSION "pgrelay-0.1"

const struct emp_row *
codec_change_row(const struct change *c)
{
	return c->op == 'd' ? &c->before : &c->after;
}

/* NULL when a value cannot be carried (a string that is not UTF-8, a
 * dob outside the codec's range) or memory runs out: codec_check_row()
 * tells which. */
static json_t *
row_to_json(const struct emp_row *r)
{
	json_t *o = json_object();
	int bad = 0;

	if (o == NULL)
		return NULL;
	if (r->has_dob && (r->dob_days < CODEC_DOB_MIN_DAYS ||
	    r->dob_days > CODEC_DOB_MAX_DAYS))
		bad = 1;
	/* json_object_set_new() fails (and frees nothing) on a NULL value:
	 * json_string() of a string that is not UTF-8 */
	bad |= json_object_set_new(o, "emp_id", json_integer(r->emp_id));
	bad |= json_object_set_new(o, "first_name",
	    r->first_name ? json_string(r->first_name) : json_null());
	bad |= json_object_set_new(o, "last_name",
	    r->last_name ? json_string(r->last_name) : json_null());
	bad |= json_object_set_new(o, "dob",
	    r->has_dob ? json_integer(r->dob_days) : json_null());
	bad |= json_object_set_new(o, "city",
	    r->city ? json_string(r->city) : json_null());
	bad |= json_object_set_new(o, "salary",
	    r->has_salary ? json_integer(r->salary) : json_null());
	if (bad) {
		json_decref(o);
		return NULL;
	}
	return o;
}

int
codec_check_row(const struct emp_row *r, char *why, size_t whylen)
{
	const char *const names[] = { "first_name", "last_name", "city" };
	const char *const vals[] = { r->first_name, r->last_name, r->city };

	if (r->has_dob && (r->dob_days < CODEC_DOB_MIN_DAYS ||
	    r->dob_days > CODEC_DOB_MAX_DAYS)) {
		snprintf(why, whylen, "dob: %ld days from 1970-01-01 is outside "
		    "0001-01-01 to 9999-12-31, what the change event carries",
		    (long)r->dob_days);
		return -1;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		json_t *s = vals[i] ? json_string(vals[i]) : NULL;
		if (vals[i] != NULL && s == NULL) {
			snprintf(why, whylen, "%s: not valid UTF-8", names[i]);
			return -1;
		}
		json_decref(s);
	}
	return 0;
}

char *
codec_encode_change(const struct change *c, const char *dbname, size_t *len)
{
	char op[2] = { c->op, '\0' };
	json_t *src, *ev;
	char *out;

	src = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:I}",
	    "version", CODEC_VERSION, "connector", "pgrelay", "name", "pgrelay",
	    "db", dbname ? dbname : "", "schema", "public", "table", "employees",
	    "snapshot", c->op == 'r' ? "true" : "false",
	    "change_id", (json_int_t)c->change_id, "txId", (json_int_t)c->txid,
	    "ts_ms", (json_int_t)c->ts_ms);
	ev = json_pack("{s:o, s:o, s:o, s:s, s:I}",
	    "before", c->has_before ? row_to_json(&c->before) : json_null(),
	    "after", c->has_after ? row_to_json(&c->after) : json_null(),
	    "source", src, "op", op, "ts_ms", (json_int_t)c->ts_ms);
	if (ev == NULL)
		return NULL;
	out = json_dumps(ev, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(ev);
	if (out != NULL && len != NULL)
		*len = strlen(out);
	return out;
}

char *
codec_encode_apply_rows(const struct change *const *changes, int n)
{
	json_t *arr = json_array();
	char *out;

	if (arr == NULL)
		return NULL;
	for (int i = 0; i < n; i++) {
		const struct change *c = changes[i];
		const struct emp_row *r = codec_change_row(c);
		char op[2] = { c->op, '\0' };
		json_t *o = c->op == 't' ? json_object() : row_to_json(r);

		if (o == NULL || json_array_append_new(arr, o) < 0) {
			json_decref(arr);
			return NULL;
		}
		json_object_set_new(o, "op", json_string(op));
		json_object_set_new(o, "version", json_integer((json_int_t)c->change_id));
	}
	out = json_dumps(arr, JSON_COMPACT);
	json_decref(arr);
	return out;
}

size_t
codec_encode_key(int32_t emp_id, char *buf, size_t len)
{
	int n = snprintf(buf, len, "{\"emp_id\":%ld}", (long)emp_id);

	return n < 0 ? 0 : (size_t)n < len ? (size_t)n : len - 1;
}

/* Number of UTF-8 characters (jansson already checked the encoding). */
static size_t
utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static int
get_text(json_t *row, const char *name, char **out, char *err, size_t errlen)
{
	json_t *v = json_object_get(row, name);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s: expected a string or null", name);
		return -1;
	}
	if (utf8_chars(json_string_value(v)) > CODEC_TEXT_MAX) {
		snprintf(err, errlen, "%s: longer than %d characters", name,
		    CODEC_TEXT_MAX);
		return -1;
	}
	*out = strdup(json_string_value(v));
	if (*out == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* An optional integer in [lo, hi]; *has is 0 when null or absent. */
static int
get_int(json_t *row, const char *name, int required, long long lo, long long hi,
    int *has, int32_t *out, char *err, size_t errlen)
{
	json_t *v = json_object_get(row, name);

	*has = 0;
	if (v == NULL || json_is_null(v)) {
		if (required) {
			snprintf(err, errlen, "%s: missing", name);
			return -1;
		}
		return 0;
	}
	if (!json_is_integer(v)) {
		snprintf(err, errlen, "%s: expected an integer%s", name,
		    required ? "" : " or null");
		return -1;
	}
	json_int_t i = json_integer_value(v);
	if (i < lo || i > hi) {
		snprintf(err, errlen, "%s: %lld is out of range", name, (long long)i);
		return -1;
	}
	*has = 1;
	*out = (int32_t)i;
	return 0;
}

static int
row_from_json(json_t *o, const char *which, struct emp_row *r, char *err,
    size_t errlen)
{
	char why[192];
	int has_id;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(o)) {
		snprintf(err, errlen, "%s: expected an object", which);
		return -1;
	}
	if (get_int(o, "emp_id", 1, INT32_MIN, INT32_MAX, &has_id, &r->emp_id,
	    why, sizeof(why)) < 0 ||
	    get_text(o, "first_name", &r->first_name, why, sizeof(why)) < 0 ||
	    get_text(o, "last_name", &r->last_name, why, sizeof(why)) < 0 ||
	    get_text(o, "city", &r->city, why, sizeof(why)) < 0 ||
	    get_int(o, "dob", 0, CODEC_DOB_MIN_DAYS, CODEC_DOB_MAX_DAYS,
	    &r->has_dob, &r->dob_days, why, sizeof(why)) < 0 ||
	    get_int(o, "salary", 0, INT32_MIN, INT32_MAX, &r->has_salary,
	    &r->salary, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s.%s", which, why);
		free(r->first_name);
		free(r->last_name);
		free(r->city);
		memset(r, 0, sizeof(*r));
		return -1;
	}
	return 0;
}

int
codec_decode_change(const void *buf, size_t len, struct change *out, char *err,
    size_t errlen)
{
	json_error_t jerr;
	json_t *ev, *v, *src;
	const char *op;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len == 0) {
		snprintf(err, errlen, "empty message value");
		return -1;
	}
	ev = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (ev == NULL) {
		snprintf(err, errlen, "not JSON: %s at byte %d", jerr.text,
		    jerr.position);
		return -1;
	}
	if (!json_is_object(ev)) {
		snprintf(err, errlen, "expected a JSON object");
		goto fail;
	}
	v = json_object_get(ev, "op");
	op = json_is_string(v) ? json_string_value(v) : NULL;
	if (op == NULL || strlen(op) != 1 || strchr("cudrt", op[0]) == NULL) {
		snprintf(err, errlen, "op: expected one of \"c\", \"u\", \"d\", "
		    "\"r\", \"t\"");
		goto fail;
	}
	out->op = op[0];

	src = json_object_get(ev, "source");
	v = src ? json_object_get(src, "change_id") : NULL;
	if (!json_is_object(src) || !json_is_integer(v) || json_integer_value(v) < 0) {
		snprintf(err, errlen, "source.change_id: expected a non-negative integer");
		goto fail;
	}
	out->change_id = json_integer_value(v);
	v = json_object_get(src, "txId");
	out->txid = json_is_integer(v) ? json_integer_value(v) : 0;
	v = json_object_get(ev, "ts_ms");
	out->ts_ms = json_is_integer(v) ? json_integer_value(v) : 0;

	if (out->op == 't') {
		/* a TRUNCATE is about no row: Debezium's has none */
		const char *const sides[] = { "before", "after" };
		for (int i = 0; i < 2; i++) {
			v = json_object_get(ev, sides[i]);
			if (v != NULL && !json_is_null(v)) {
				snprintf(err, errlen, "%s: expected null for op \"t\"",
				    sides[i]);
				goto fail;
			}
		}
	} else if (out->op == 'd') {
		if (row_from_json(json_object_get(ev, "before"), "before",
		    &out->before, err, errlen) < 0)
			goto fail;
		out->has_before = 1;
	} else {
		if (row_from_json(json_object_get(ev, "after"), "after",
		    &out->after, err, errlen) < 0)
			goto fail;
		out->has_after = 1;
	}
	json_decref(ev);
	return 0;
fail:
	json_decref(ev);
	codec_change_free(out);
	return -1;
}

static void
row_free(struct emp_row *r)
{
	free(r->first_name);
	free(r->last_name);
	free(r->city);
	r->first_name = r->last_name = r->city = NULL;
}

void
codec_change_free(struct change *c)
{
	row_free(&c->before);
	row_free(&c->after);
	c->has_before = c->has_after = 0;
}

void
codec_days_to_date(int32_t days, char *buf, size_t len)
{
	/* civil_from_days, H. Hinnant's algorithm */
	int64_t z = (int64_t)days + 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t y = (int64_t)yoe + era * 400;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1;
	unsigned m = mp < 10 ? mp + 3 : mp - 9;

	snprintf(buf, len, "%04lld-%02u-%02u", (long long)(y + (m <= 2)), m, d);
}
