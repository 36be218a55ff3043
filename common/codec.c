/*
 * codec.c - strict decoding of CDC change events (jansson), for any table;
 * and the employees-only encoders the producer uses until the generic
 * producer lands (at the end, marked).
 *
 * NOTES
 *
 * The envelope is checked here once for every table; the row's values are
 * checked against B's description of the target table (relmap.h), so that
 * a value of the wrong form is a decode failure with the column's name
 * (the DLQ's stage "decode"), not a refusal by B in the middle of a batch.
 * The checks stop where the cheap ones end: an integer's width, a
 * varchar(n)'s length, a date's range, a number's or a decimal string's
 * syntax.  What only B can tell (a CHECK, an enum's labels, a bad base64)
 * B refuses, and that message alone goes to the DLQ (target.refused).
 */
#define _POSIX_C_SOURCE 200809L
#include "codec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CODEC_VERSION "pgrelay-0.1"

/* ---- decoding ---------------------------------------------------------- */

/* An optional integer field of an object: 0 when absent or null, -1 when
 * of another type. */
static int
opt_int(json_t *o, const char *name, int64_t *out)
{
	json_t *v = json_object_get(o, name);

	*out = 0;
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_integer(v))
		return -1;
	*out = json_integer_value(v);
	return 0;
}

int
codec_decode_event(const void *buf, size_t len, struct change_event *out,
    char *err, size_t errlen)
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
	/* Kafka Connect's JsonConverter form (cdc.schemas): the event is
	 * the payload; its schema is for Connect's sinks */
	if (json_object_get(ev, "schema") != NULL) {
		v = json_object_get(ev, "payload");
		if (!json_is_object(v)) {
			snprintf(err, errlen, "payload: expected an object beside "
			    "\"schema\"");
			goto fail;
		}
		json_incref(v);
		json_decref(ev);
		ev = v;
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
	/* a snapshot row of a row A changed before its capture began has
	 * no change of its own: version 0 */
	if (!json_is_object(src) || !json_is_integer(v) ||
	    json_integer_value(v) < (out->op == 'r' ? 0 : 1)) {
		snprintf(err, errlen, "source.change_id: expected an integer above 0 "
		    "(0 or above for a snapshot row)");
		goto fail;
	}
	out->change_id = json_integer_value(v);
	if (opt_int(src, "txId", &out->txid) < 0) {
		snprintf(err, errlen, "source.txId: expected an integer");
		goto fail;
	}
	if (opt_int(ev, "ts_ms", &out->ts_ms) < 0) {
		snprintf(err, errlen, "ts_ms: expected an integer");
		goto fail;
	}

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
	} else {
		const char *side = out->op == 'd' ? "before" : "after";

		v = json_object_get(ev, side);
		if (!json_is_object(v)) {
			snprintf(err, errlen, "%s: expected an object", side);
			goto fail;
		}
		out->row = json_incref(v);
	}
	json_decref(ev);
	return 0;
fail:
	json_decref(ev);
	codec_event_free(out);
	return -1;
}

void
codec_event_free(struct change_event *e)
{
	json_decref(e->row);
	e->row = NULL;
}

/* ---- a row's values against B's columns -------------------------------- */

/* Number of UTF-8 characters (jansson already checked the encoding). */
static size_t
utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

/* n of "character varying(n)" or "character(n)"; 0 when unbounded. */
static long
char_limit(const char *type)
{
	const char *p = NULL;

	if (strncmp(type, "character varying(", 18) == 0)
		p = type + 18;
	else if (strncmp(type, "character(", 10) == 0)
		p = type + 10;
	if (p == NULL)
		return 0;
	char *end;
	long n = strtol(p, &end, 10);
	return *end == ')' && end[1] == '\0' && n > 0 ? n : 0;
}

/* "-12.50", "7", ".5": a decimal string as numeric::text writes it (and
 * PostgreSQL reads it), or NaN and the infinities. */
static int
is_decimal(const char *s)
{
	int digits = 0;

	if (strcmp(s, "NaN") == 0 || strcmp(s, "Infinity") == 0 ||
	    strcmp(s, "-Infinity") == 0)
		return 1;
	if (*s == '-' || *s == '+')
		s++;
	for (; *s >= '0' && *s <= '9'; s++)
		digits++;
	if (*s == '.')
		for (s++; *s >= '0' && *s <= '9'; s++)
			digits++;
	return digits > 0 && *s == '\0';
}

/* Checks one non-null value v of class cls; the column's cast and type
 * (for widths and lengths) when not an array element.  NULL when it fits,
 * else what was expected. */
static const char *
check_value(enum pgt_class cls, const char *cast, const char *type, json_t *v,
    char *buf, size_t len)
{
	json_int_t i;

	switch (cls) {
	case PGT_INT:
		if (!json_is_integer(v))
			return "expected an integer";
		i = json_integer_value(v);
		if ((strcmp(cast, "smallint") == 0 && (i < INT16_MIN || i > INT16_MAX)) ||
		    (strcmp(cast, "integer") == 0 && (i < INT32_MIN || i > INT32_MAX))) {
			snprintf(buf, len, "%lld is out of range for %s", (long long)i,
			    cast);
			return buf;
		}
		return NULL;
	case PGT_FLOAT:
		if (json_is_number(v))
			return NULL;
		if (json_is_string(v) && (strcmp(json_string_value(v), "NaN") == 0 ||
		    strcmp(json_string_value(v), "Infinity") == 0 ||
		    strcmp(json_string_value(v), "-Infinity") == 0))
			return NULL;
		return "expected a number, \"NaN\", \"Infinity\" or \"-Infinity\"";
	case PGT_NUMERIC:
		if (!json_is_string(v) || !is_decimal(json_string_value(v)))
			return "expected a decimal number as a string";
		return NULL;
	case PGT_BOOL:
		return json_is_boolean(v) ? NULL : "expected true or false";
	case PGT_DATE:
		if (!json_is_integer(v))
			return "expected an integer (days since 1970-01-01)";
		i = json_integer_value(v);
		if (i < CODEC_DOB_MIN_DAYS || i > CODEC_DOB_MAX_DAYS) {
			snprintf(buf, len, "%lld is out of range (0001-01-01 to "
			    "9999-12-31)", (long long)i);
			return buf;
		}
		return NULL;
	case PGT_TIMESTAMP:
		return json_is_integer(v) ? NULL :
		    "expected an integer (microseconds since 1970)";
	case PGT_TIME:
		if (!json_is_integer(v))
			return "expected an integer (microseconds since midnight)";
		i = json_integer_value(v);
		if (i < 0 || i > 86400000000LL) {
			snprintf(buf, len, "%lld is out of range for a time of day",
			    (long long)i);
			return buf;
		}
		return NULL;
	case PGT_TEXT:
		if (!json_is_string(v))
			return "expected a string";
		if (type != NULL) {
			long max = char_limit(type);
			const char *s = json_string_value(v);
			size_t n = utf8_chars(s), sl = strlen(s), sp = 0;

			while (sp < sl && s[sl - 1 - sp] == ' ')
				sp++;
			/* PostgreSQL drops excess trailing spaces */
			if (max > 0 && n > (size_t)max && n - sp > (size_t)max) {
				snprintf(buf, len, "longer than %ld characters", max);
				return buf;
			}
		}
		return NULL;
	case PGT_TIMESTAMPTZ:
	case PGT_INTERVAL:
	case PGT_BYTEA:
	case PGT_JSON:
		return json_is_string(v) ? NULL : "expected a string";
	default:
		return "a value of a type pgrelay does not carry";
	}
}

int
codec_check_row_forms(const struct rel *r, const struct change_event *e,
    char *err, size_t errlen)
{
	const char *side = e->op == 'd' ? "before" : "after";
	char buf[128];

	if (e->op == 't')
		return 0;
	for (int i = 0; i < r->ncols; i++) {
		const struct rel_col *c = &r->cols[i];
		json_t *v = json_object_get(e->row, c->name);
		const char *why = NULL;

		if (v == NULL || json_is_null(v)) {
			if (c->key) {
				snprintf(err, errlen, "%s.%s: missing (a key column)",
				    side, c->name);
				return -1;
			}
			continue;
		}
		if (c->cls != PGT_ARRAY) {
			why = check_value(c->cls, c->cast, c->type, v, buf, sizeof(buf));
		} else if (!json_is_array(v)) {
			why = "expected an array";
		} else {
			size_t k;
			json_t *el;

			json_array_foreach(v, k, el) {
				if (json_is_null(el))
					continue;
				why = check_value(c->elem_cls, "", NULL, el, buf, sizeof(buf));
				if (why != NULL) {
					snprintf(err, errlen, "%s.%s[%zu]: %s", side,
					    c->name, k + 1, why);
					return -1;
				}
			}
		}
		if (why != NULL) {
			snprintf(err, errlen, "%s.%s: %s", side, c->name, why);
			return -1;
		}
	}
	return 0;
}

char *
codec_key_text(const struct rel *r, const json_t *row)
{
	json_t *a = json_array();
	char *s;

	if (a == NULL)
		return NULL;
	for (int k = 0; k < r->nkeys; k++) {
		json_t *v = json_object_get(row, r->cols[r->keys[k]].name);

		if (json_array_append(a, v ? v : json_null()) < 0) {
			json_decref(a);
			return NULL;
		}
	}
	s = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(a);
	return s;
}

void
codec_key_desc(const struct rel *r, const json_t *row, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (int k = 0; k < r->nkeys && n < len; k++) {
		const char *name = r->cols[r->keys[k]].name;
		json_t *v = json_object_get(row, name);
		char *dump = NULL;
		const char *shown;
		int w;

		if (json_is_string(v))
			shown = json_string_value(v);
		else if (v != NULL && (dump = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY)))
			shown = dump;
		else
			shown = "null";
		w = snprintf(buf + n, len - n, "%s%s %s", k ? ", " : "", name, shown);
		free(dump);
		if (w < 0)
			break;
		n += (size_t)w;
	}
}

json_t *
codec_apply_elem(const struct change_event *e)
{
	char op[2] = { e->op, '\0' };

	if (e->op == 't')
		return json_pack("{s:s, s:I}", "op", op, "version",
		    (json_int_t)e->change_id);
	return json_pack("{s:s, s:I, s:O}", "op", op, "version",
	    (json_int_t)e->change_id, "row", e->row);
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
