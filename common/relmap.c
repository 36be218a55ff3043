/*
 * relmap.c - a replicated table's description from the catalog, and the
 * SQL that converts its values to and from the change event's forms.
 *
 * NOTES
 *
 * Types are classed by their base type (a domain by the type it is over,
 * an array by its element): the class decides the event's form (relmap.h)
 * and both conversions.  A class's two conversions are inverse on every
 * value it accepts; a value outside them (a date past 9999, an infinite
 * timestamp, a multi-dimensional array) is named by relmap_sql_bad() and
 * goes to the DLQ, never altered.  Conversions run in SQL, by PostgreSQL's
 * own input and output functions: numeric never passes through a double,
 * and the session settings they depend on are fixed (RELMAP_SESSION_SQL).
 *
 * Generated SQL names columns and strings through db_quote() (libpq's
 * PQescapeIdentifier and PQescapeLiteral).
 */
#define _POSIX_C_SOURCE 200809L
#include "relmap.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

/* A growing string; on out of memory it stays failed and yields NULL. */
struct sbuf {
	char *s;
	size_t len, cap;
	int failed;
};

static void
sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->failed)
		return;
	for (;;) {
		size_t room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? room : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			b->failed = 1;
			return;
		}
		if (b->s != NULL && (size_t)n < room) {
			b->len += (size_t)n;
			return;
		}
		size_t cap = b->cap ? b->cap * 2 : 256;
		while (cap < b->len + (size_t)n + 1)
			cap *= 2;
		char *s = realloc(b->s, cap);
		if (s == NULL) {
			b->failed = 1;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
}

static char *
sb_done(struct sbuf *b)
{
	if (b->failed) {
		free(b->s);
		return NULL;
	}
	return b->s;
}

enum pgt_class
pgt_classify(unsigned oid, char typtype, char typcategory)
{
	switch (oid) {
	case 16: return PGT_BOOL;
	case 17: return PGT_BYTEA;
	case 20: case 21: case 23: return PGT_INT;
	case 114: case 3802: return PGT_JSON;
	case 142: case 2950: return PGT_TEXT;		/* xml, uuid */
	case 700: case 701: return PGT_FLOAT;
	case 790: return PGT_NONE;	/* money: its text depends on lc_monetary */
	case 1082: return PGT_DATE;
	case 1083: return PGT_TIME;
	case 1114: return PGT_TIMESTAMP;
	case 1184: return PGT_TIMESTAMPTZ;
	case 1186: return PGT_INTERVAL;
	case 1700: return PGT_NUMERIC;
	default: break;
	}
	if (typtype == 'e' || typtype == 'r' || typtype == 'm')
		return PGT_TEXT;		/* enums, ranges, multiranges */
	if (typtype != 'b')
		return PGT_NONE;		/* composite, pseudo */
	switch (typcategory) {
	case 'S':	/* strings: text, varchar, char, name, citext */
	case 'I':	/* inet, cidr */
	case 'V':	/* bit, varbit */
	case 'G':	/* geometric */
	case 'D':	/* timetz */
		return PGT_TEXT;
	default:
		return PGT_NONE;	/* user-defined, reg*, internal */
	}
}

const char *
pgt_class_name(enum pgt_class c)
{
	switch (c) {
	case PGT_INT: return "integer";
	case PGT_FLOAT: return "float";
	case PGT_NUMERIC: return "numeric (string)";
	case PGT_BOOL: return "boolean";
	case PGT_TEXT: return "text";
	case PGT_DATE: return "date (days)";
	case PGT_TIMESTAMP: return "timestamp (microseconds)";
	case PGT_TIMESTAMPTZ: return "timestamptz (ISO-8601 UTC)";
	case PGT_TIME: return "time (microseconds)";
	case PGT_INTERVAL: return "interval (ISO-8601)";
	case PGT_BYTEA: return "bytea (base64)";
	case PGT_JSON: return "json (string)";
	case PGT_ARRAY: return "array";
	default: return "not carried";
	}
}

/* Splits one part of a name: a quoted identifier ("a""b") or a plain one
 * (folded to lower case, as PostgreSQL does).  Returns the rest after it. */
static const char *
split_part(const char *s, char *out, size_t outlen, int *ok)
{
	size_t n = 0;

	*ok = 0;
	if (*s == '"') {
		for (s++; *s != '\0'; s++) {
			if (*s == '"') {
				if (s[1] != '"')
					break;
				s++;
			}
			if (n + 1 >= outlen)
				return s;
			out[n++] = *s;
		}
		if (*s != '"' || n == 0)
			return s;
		s++;
	} else {
		for (; *s != '\0' && *s != '.'; s++) {
			char c = *s;

			if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			    (c >= '0' && c <= '9' && n > 0) || (c == '$' && n > 0)))
				return s;
			if (n + 1 >= outlen)
				return s;
			out[n++] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
		}
		if (n == 0)
			return s;
	}
	out[n] = '\0';
	*ok = 1;
	return s;
}

int
relmap_split_name(const char *name, char *schema, size_t slen, char *table,
    size_t tlen, char *why, size_t whylen)
{
	int ok;
	const char *s = split_part(name, schema, slen, &ok);

	if (ok && *s == '\0') {
		snprintf(table, tlen, "%s", schema);
		snprintf(schema, slen, "public");
		return 0;
	}
	if (ok && *s == '.') {
		s = split_part(s + 1, table, tlen, &ok);
		if (ok && *s == '\0')
			return 0;
	}
	snprintf(why, whylen, "\"%s\" is not a table name (want schema.table; "
	    "quote a part with double quotes if it has other characters)", name);
	return -1;
}

void
relmap_free(struct rel *r)
{
	if (r == NULL)
		return;
	for (int i = 0; i < r->ncols; i++) {
		free(r->cols[i].name);
		free(r->cols[i].type);
		free(r->cols[i].cast);
		free(r->cols[i].elem_type);
	}
	free(r->cols);
	free(r->keys);
	free(r->missing);
	free(r->schema);
	free(r->table);
	free(r->qname);
	free(r);
}

const struct rel_col *
relmap_col(const struct rel *r, const char *name)
{
	for (int i = 0; i < r->ncols; i++)
		if (strcmp(r->cols[i].name, name) == 0)
			return &r->cols[i];
	return NULL;
}

static int
listed(char *const *list, const char *name)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return 1;
	return 0;
}

/* Every column with its base type (domains resolved, one level per step)
 * and, for an array, its element's base type. */
#define COLUMNS_SQL \
    "WITH RECURSIVE b(oid, base) AS (" \
    "    SELECT oid, oid FROM pg_type WHERE typtype <> 'd' " \
    "  UNION ALL " \
    "    SELECT t.oid, b.base FROM pg_type t JOIN b ON t.typbasetype = b.oid " \
    "     WHERE t.typtype = 'd') " \
    "SELECT a.attname, format_type(a.atttypid, a.atttypmod), " \
    "       bt.oid::bigint, bt.typtype, bt.typcategory, " \
    "       et.oid::bigint, et.typtype, et.typcategory, " \
    "       format_type(bt.typelem, NULL), format_type(a.atttypid, NULL), " \
    "       a.attnotnull " \
    "  FROM pg_attribute a " \
    "  JOIN b ab ON ab.oid = a.atttypid " \
    "  JOIN pg_type bt ON bt.oid = ab.base " \
    "  LEFT JOIN b eb ON bt.typcategory = 'A' AND eb.oid = bt.typelem " \
    "  LEFT JOIN pg_type et ON et.oid = eb.base " \
    " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped " \
    " ORDER BY a.attnum"

/* The primary key, else the replica identity index, else the narrowest
 * unique index on NOT NULL columns without expressions or predicate. */
#define KEY_SQL \
    "SELECT array_agg(a.attname::text ORDER BY k.ord) " \
    "  FROM pg_index i " \
    "  CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) " \
    "  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum " \
    " WHERE i.indrelid = $1::regclass AND i.indisunique AND i.indisvalid " \
    "   AND i.indpred IS NULL AND i.indexprs IS NULL " \
    " GROUP BY i.indexrelid, i.indisprimary, i.indisreplident " \
    "HAVING bool_and(a.attnotnull) " \
    " ORDER BY i.indisprimary DESC, i.indisreplident DESC, count(*), i.indexrelid " \
    " LIMIT 1"

struct rel *
relmap_load(PGconn *db, const char *name, char *const *include,
    char *const *exclude, enum pgr_err *cls, char *err, size_t errlen)
{
	char schema[128], table[128], why[256], *qs = NULL, *qt = NULL;
	char *full = NULL;
	PGresult *res = NULL;
	struct rel *r = NULL;
	const char *params[1];

	*cls = PGR_CONFIG;
	if (relmap_split_name(name, schema, sizeof(schema), table, sizeof(table),
	    why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s", why);
		return NULL;
	}
	qs = db_quote(db, schema, 1);
	qt = db_quote(db, table, 1);
	if (qs == NULL || qt == NULL)
		goto oom;
	size_t flen = strlen(qs) + strlen(qt) + 2;
	if ((full = malloc(flen)) == NULL)
		goto oom;
	snprintf(full, flen, "%s.%s", qs, qt);
	params[0] = full;

	/* to_regclass: NULL, not an error, for a missing table */
	res = db_query(db, "SELECT c.relkind, c.oid::bigint, "
	    "       (SELECT json_object_agg(a.attname, (a.attmissingval::text::text[])[1]) "
	    "          FROM pg_attribute a WHERE a.attrelid = c.oid AND a.atthasmissing "
	    "           AND NOT a.attisdropped AND a.attnum > 0)::text "
	    "  FROM pg_class c WHERE c.oid = to_regclass($1)", 1, params, err, errlen);
	if (res == NULL) {
		*cls = PGR_RETRY;
		goto fail;
	}
	if (PQntuples(res) != 1 || strchr("rp", PQgetvalue(res, 0, 0)[0]) == NULL) {
		snprintf(err, errlen, "table %s.%s %s in database %s", schema, table,
		    PQntuples(res) == 1 ? "is not a table" : "does not exist",
		    PQdb(db));
		goto fail;
	}

	if ((r = calloc(1, sizeof(*r))) == NULL)
		goto oom;
	r->oid = (unsigned)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
	if (!PQgetisnull(res, 0, 2) && (r->missing = strdup(PQgetvalue(res, 0, 2))) == NULL)
		goto oom;
	PQclear(res);
	res = NULL;
	r->schema = strdup(schema);
	r->table = strdup(table);
	r->qname = full;
	full = NULL;
	if (r->schema == NULL || r->table == NULL)
		goto oom;

	params[0] = r->qname;
	res = db_query(db, COLUMNS_SQL, 1, params, err, errlen);
	if (res == NULL) {
		*cls = PGR_RETRY;
		goto fail;
	}
	r->ncols = PQntuples(res);
	if ((r->cols = calloc((size_t)r->ncols + 1, sizeof(*r->cols))) == NULL)
		goto oom;
	for (int i = 0; i < r->ncols; i++) {
		struct rel_col *c = &r->cols[i];

		c->name = strdup(PQgetvalue(res, i, 0));
		c->type = strdup(PQgetvalue(res, i, 1));
		c->cast = strdup(PQgetvalue(res, i, 9));
		if (c->name == NULL || c->type == NULL || c->cast == NULL)
			goto oom;
		c->oid = (unsigned)strtoul(PQgetvalue(res, i, 2), NULL, 10);
		c->typtype = PQgetvalue(res, i, 3)[0];
		c->notnull = PQgetvalue(res, i, 10)[0] == 't';
		c->cls = pgt_classify(c->oid, c->typtype, PQgetvalue(res, i, 4)[0]);
		if (PQgetvalue(res, i, 4)[0] == 'A' && !PQgetisnull(res, i, 5)) {
			c->cls = PGT_ARRAY;
			c->elem_oid = (unsigned)strtoul(PQgetvalue(res, i, 5), NULL, 10);
			c->elem_typtype = PQgetvalue(res, i, 6)[0];
			c->elem_cls = pgt_classify(
			    (unsigned)strtoul(PQgetvalue(res, i, 5), NULL, 10),
			    PQgetvalue(res, i, 6)[0], PQgetvalue(res, i, 7)[0]);
			if ((c->elem_type = strdup(PQgetvalue(res, i, 8))) == NULL)
				goto oom;
		}
		c->sent = (include == NULL || include[0] == NULL || listed(include, c->name)) &&
		    !listed(exclude, c->name);
	}
	PQclear(res);

	for (int l = 0; l < 2; l++) {
		char *const *list = l == 0 ? include : exclude;

		for (; list != NULL && *list != NULL; list++) {
			if (relmap_col(r, *list) == NULL) {
				snprintf(err, errlen, "table %s.%s has no column \"%s\" "
				    "(named in %s)", schema, table, *list,
				    l == 0 ? "include" : "exclude");
				res = NULL;
				goto fail;
			}
		}
	}

	res = db_query(db, KEY_SQL, 1, params, err, errlen);
	if (res == NULL) {
		*cls = PGR_RETRY;
		goto fail;
	}
	if (PQntuples(res) != 1) {
		snprintf(err, errlen, "table %s.%s has no primary key and no unique "
		    "index on NOT NULL columns: pgrelay cannot tell its rows apart; "
		    "add a primary key", schema, table);
		goto fail;
	}
	{
		/* {a,"b c"}: read it back through the server, one name a row */
		const char *arr[1] = { PQgetvalue(res, 0, 0) };
		PGresult *names = db_query(db, "SELECT unnest($1::text[])", 1, arr,
		    err, errlen);

		if (names == NULL) {
			*cls = PGR_RETRY;
			goto fail;
		}
		r->nkeys = PQntuples(names);
		r->keys = calloc((size_t)r->nkeys + 1, sizeof(*r->keys));
		if (r->keys == NULL) {
			PQclear(names);
			goto oom;
		}
		for (int k = 0; k < r->nkeys; k++) {
			const struct rel_col *c = relmap_col(r, PQgetvalue(names, k, 0));
			int idx = (int)(c - r->cols);

			r->keys[k] = idx;
			r->cols[idx].key = k + 1;
			r->cols[idx].sent = 1;
		}
		PQclear(names);
	}
	PQclear(res);
	res = NULL;

	for (int i = 0; i < r->ncols; i++) {
		const struct rel_col *c = &r->cols[i];

		if (c->cls == PGT_NONE || (c->cls == PGT_ARRAY &&
		    (c->elem_cls == PGT_NONE || c->elem_cls == PGT_ARRAY))) {
			if (!c->sent)
				continue;	/* excluded: never read */
			snprintf(err, errlen, "table %s.%s: column \"%s\" has type %s, "
			    "which pgrelay cannot carry (README, Types); exclude the "
			    "column or change its type", schema, table, c->name, c->type);
			goto fail;
		}
	}
	free(qs);
	free(qt);
	return r;
oom:
	*cls = PGR_RETRY;
	snprintf(err, errlen, "out of memory reading table %s", name);
fail:
	PQclear(res);
	relmap_free(r);
	free(full);
	free(qs);
	free(qt);
	return NULL;
}

/* ---- the Kafka Connect schema of the events ---- */

/* The schema of one value of class cls, base type oid (typtype tt):
 * Connect's type, and Debezium's semantic name where it has one. */
static json_t *
connect_type(enum pgt_class cls, unsigned oid, char tt, enum pgt_class ecls,
    unsigned eoid, char ett, int optional)
{
	const char *type = "string", *name = NULL;
	json_t *o;

	switch (cls) {
	case PGT_INT:
		type = oid == 21 ? "int16" : oid == 20 ? "int64" : "int32";
		break;
	case PGT_FLOAT:
		type = oid == 700 ? "float" : "double";	/* JsonConverter's names */
		break;
	case PGT_BOOL:
		type = "boolean";
		break;
	case PGT_NUMERIC:	/* decimal.handling.mode=string */
		break;
	case PGT_TEXT:
		name = oid == 2950 ? "io.debezium.data.Uuid" :
		    oid == 142 ? "io.debezium.data.Xml" :
		    tt == 'e' ? "io.debezium.data.Enum" : NULL;
		break;
	case PGT_DATE:
		type = "int32";
		name = "io.debezium.time.Date";
		break;
	case PGT_TIMESTAMP:
		type = "int64";
		name = "io.debezium.time.MicroTimestamp";
		break;
	case PGT_TIMESTAMPTZ:
		name = "io.debezium.time.ZonedTimestamp";
		break;
	case PGT_TIME:
		type = "int64";
		name = "io.debezium.time.MicroTime";
		break;
	case PGT_INTERVAL:	/* interval.handling.mode=string */
		name = "io.debezium.time.Interval";
		break;
	case PGT_BYTEA:		/* bytes travel as base64 in JsonConverter's JSON */
		type = "bytes";
		break;
	case PGT_JSON:
		name = "io.debezium.data.Json";
		break;
	case PGT_ARRAY:
		o = json_pack("{s:s, s:o, s:b}", "type", "array", "items",
		    connect_type(ecls, eoid, ett, PGT_NONE, 0, 0, 1), "optional",
		    optional);
		return o;
	case PGT_NONE:
		break;
	}
	o = json_pack("{s:s, s:b}", "type", type, "optional", optional);
	if (o != NULL && name != NULL &&
	    (json_object_set_new(o, "name", json_string(name)) < 0 ||
	    json_object_set_new(o, "version", json_integer(1)) < 0)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* A struct of r's sent columns (key: its key columns, in its order). */
static json_t *
connect_struct(const struct rel *r, const char *name, int key, int optional,
    const char *field)
{
	json_t *fields = json_array(), *o;
	int n = key ? r->nkeys : r->ncols;

	for (int i = 0; i < n && fields != NULL; i++) {
		const struct rel_col *c = &r->cols[key ? r->keys[i] : i];
		json_t *f;

		if (!c->sent)
			continue;
		f = connect_type(c->cls, c->oid, c->typtype, c->elem_cls, c->elem_oid,
		    c->elem_typtype, !(c->notnull || c->key));
		if (f == NULL || json_object_set_new(f, "field", json_string(c->name)) < 0 ||
		    json_array_append_new(fields, f) < 0) {
			json_decref(f);
			json_decref(fields);
			fields = NULL;
		}
	}
	if (fields == NULL)
		return NULL;
	o = json_pack("{s:s, s:o, s:b, s:s}", "type", "struct", "fields", fields,
	    "optional", optional, "name", name);
	if (o != NULL && field != NULL &&
	    json_object_set_new(o, "field", json_string(field)) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The source block's schema (common/cdc.h lists its fields). */
static json_t *
connect_source(void)
{
	static const struct { const char *f, *t; int opt; } src[] = {
		{ "version", "string", 0 }, { "connector", "string", 0 },
		{ "name", "string", 0 }, { "db", "string", 0 },
		{ "schema", "string", 0 }, { "table", "string", 0 },
		{ "snapshot", "string", 1 }, { "change_id", "int64", 0 },
		{ "txId", "int64", 1 }, { "ts_ms", "int64", 1 },
	};
	json_t *fields = json_array();

	for (size_t i = 0; i < sizeof(src) / sizeof(src[0]) && fields != NULL; i++) {
		if (json_array_append_new(fields, json_pack("{s:s, s:b, s:s}", "type",
		    src[i].t, "optional", src[i].opt, "field", src[i].f)) < 0) {
			json_decref(fields);
			fields = NULL;
		}
	}
	if (fields == NULL)
		return NULL;
	return json_pack("{s:s, s:o, s:b, s:s, s:s}", "type", "struct", "fields",
	    fields, "optional", 0, "name", "io.pgrelay.connector.Source", "field",
	    "source");
}

char *
relmap_connect_schema(const struct rel *r, const char *topic, int key)
{
	size_t tl = strlen(topic) + 16;
	char *kn = malloc(tl), *vn = malloc(tl), *en = malloc(tl), *out = NULL;
	json_t *s = NULL;

	if (kn == NULL || vn == NULL || en == NULL)
		goto done;
	snprintf(kn, tl, "%s.Key", topic);
	snprintf(vn, tl, "%s.Value", topic);
	snprintf(en, tl, "%s.Envelope", topic);
	if (key)
		s = connect_struct(r, kn, 1, 0, NULL);
	else
		s = json_pack("{s:s, s:[o, o, o, {s:s, s:b, s:s}, {s:s, s:b, s:s}], "
		    "s:b, s:s, s:i}", "type", "struct", "fields",
		    connect_struct(r, vn, 0, 1, "before"),
		    connect_struct(r, vn, 0, 1, "after"), connect_source(),
		    "type", "string", "optional", 0, "field", "op",
		    "type", "int64", "optional", 1, "field", "ts_ms",
		    "optional", 0, "name", en, "version", 1);
	if (s != NULL)
		out = json_dumps(s, JSON_COMPACT | JSON_PRESERVE_ORDER);
done:
	json_decref(s);
	free(kn);
	free(vn);
	free(en);
	return out;
}

/* ---- SQL on A: to the event ---- */

/* The event's form of the value x (an SQL expression) of class cls. */
static void
to_event(struct sbuf *b, enum pgt_class cls, enum pgt_class elem, const char *x)
{
	switch (cls) {
	case PGT_NUMERIC:
	case PGT_INTERVAL:
	case PGT_JSON:
		sb_add(b, "(%s)::text", x);
		break;
	case PGT_DATE:
		sb_add(b, "CASE WHEN %s BETWEEN DATE '0001-01-01' AND DATE '9999-12-31' "
		    "THEN %s - DATE '1970-01-01' END", x, x);
		break;
	case PGT_TIMESTAMP:
		sb_add(b, "CASE WHEN isfinite(%s) THEN (extract(epoch FROM %s) * "
		    "1000000)::bigint END", x, x);
		break;
	case PGT_TIMESTAMPTZ:
		sb_add(b, "CASE WHEN isfinite(%s) THEN to_char(%s, "
		    "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || CASE WHEN %s < "
		    "TIMESTAMPTZ '0001-01-01 00:00:00+00' THEN ' BC' ELSE '' END "
		    "ELSE (%s)::text END", x, x, x, x);
		break;
	case PGT_TIME:
		sb_add(b, "(extract(epoch FROM %s) * 1000000)::bigint", x);
		break;
	case PGT_BYTEA:
		sb_add(b, "translate(encode(%s, 'base64'), E'\\n', '')", x);
		break;
	case PGT_ARRAY:
		sb_add(b, "CASE WHEN array_ndims(%s) > 1 OR array_lower(%s, 1) <> 1 "
		    "THEN NULL WHEN %s IS NOT NULL THEN coalesce((SELECT "
		    "array_to_json(array_agg(", x, x, x);
		to_event(b, elem, PGT_NONE, "pgrelay_u.e");
		sb_add(b, " ORDER BY pgrelay_u.i)) FROM unnest(%s) WITH ORDINALITY "
		    "AS pgrelay_u(e, i)), '[]'::json) END", x);
		break;
	default:		/* INT, FLOAT, BOOL, TEXT: as to_json writes them */
		sb_add(b, "%s", x);
		break;
	}
}

/* "x"."col", malloc'd. */
static char *
col_ref(PGconn *db, const char *alias, const char *col)
{
	char *q = db_quote(db, col, 1);
	size_t n;
	char *s;

	if (q == NULL)
		return NULL;
	n = strlen(alias) + strlen(q) + 2;
	if ((s = malloc(n)) != NULL)
		snprintf(s, n, "%s.%s", alias, q);
	free(q);
	return s;
}

/* (SELECT row_to_json(pgrelay_o) FROM (SELECT e1 AS "c1", ...) pgrelay_o),
 * for the key columns or every sent column. */
static char *
object_sql(PGconn *db, const struct rel *r, const char *alias, int keys_only)
{
	struct sbuf b = { 0 };
	int n = keys_only ? r->nkeys : r->ncols, first = 1;

	sb_add(&b, "(SELECT row_to_json(pgrelay_o) FROM (SELECT ");
	for (int i = 0; i < n; i++) {
		const struct rel_col *c = &r->cols[keys_only ? r->keys[i] : i];
		char *x, *q;

		if (!c->sent)
			continue;
		x = col_ref(db, alias, c->name);
		q = db_quote(db, c->name, 1);
		if (x == NULL || q == NULL) {
			free(x);
			free(q);
			b.failed = 1;
			break;
		}
		sb_add(&b, "%s", first ? "" : ", ");
		to_event(&b, c->cls, c->elem_cls, x);
		sb_add(&b, " AS %s", q);
		first = 0;
		free(x);
		free(q);
	}
	sb_add(&b, ") pgrelay_o)");
	return sb_done(&b);
}

char *
relmap_sql_row(PGconn *db, const struct rel *r, const char *alias)
{
	return object_sql(db, r, alias, 0);
}

char *
relmap_sql_key(PGconn *db, const struct rel *r, const char *alias)
{
	return object_sql(db, r, alias, 1);
}

char *
relmap_sql_bad(PGconn *db, const struct rel *r, const char *alias)
{
	struct sbuf b = { 0 };
	int n = 0;

	sb_add(&b, "NULLIF(concat_ws('; '::text");
	for (int i = 0; i < r->ncols; i++) {
		const struct rel_col *c = &r->cols[i];
		enum pgt_class e = c->cls == PGT_ARRAY ? c->elem_cls : c->cls;
		char *x, *lit;

		if (!c->sent || (c->cls != PGT_ARRAY && e != PGT_DATE &&
		    e != PGT_TIMESTAMP))
			continue;
		x = col_ref(db, alias, c->name);
		lit = db_quote(db, c->name, 0);
		if (x == NULL || lit == NULL) {
			free(x);
			free(lit);
			b.failed = 1;
			break;
		}
		/* concat_ws takes at most 100 arguments: nest every 90 */
		if (++n % 90 == 0)
			sb_add(&b, ", concat_ws('; '::text");
		if (c->cls == PGT_DATE)
			sb_add(&b, ", CASE WHEN NOT (%s BETWEEN DATE '0001-01-01' AND "
			    "DATE '9999-12-31') THEN format('%%s ''%%s'' is outside "
			    "0001-01-01 to 9999-12-31, what the change event carries', "
			    "%s, %s) END", x, lit, x);
		else if (c->cls == PGT_TIMESTAMP)
			sb_add(&b, ", CASE WHEN NOT isfinite(%s) THEN format('%%s ''%%s'' "
			    "is not a finite timestamp, what the change event carries', "
			    "%s, %s) END", x, lit, x);
		else if (c->cls == PGT_ARRAY) {
			sb_add(&b, ", CASE WHEN array_ndims(%s) > 1 OR array_lower(%s, 1) "
			    "<> 1 THEN format('%%s is a multi-dimensional array or does "
			    "not start at index 1, what the change event does not carry', "
			    "%s)", x, x, lit);
			if (e == PGT_DATE)
				sb_add(&b, " WHEN EXISTS (SELECT 1 FROM unnest(%s) AS "
				    "pgrelay_u(e) WHERE NOT (pgrelay_u.e BETWEEN DATE "
				    "'0001-01-01' AND DATE '9999-12-31')) THEN format('%%s "
				    "holds a date outside 0001-01-01 to 9999-12-31, what the "
				    "change event carries', %s)", x, lit);
			if (e == PGT_TIMESTAMP)
				sb_add(&b, " WHEN EXISTS (SELECT 1 FROM unnest(%s) AS "
				    "pgrelay_u(e) WHERE NOT isfinite(pgrelay_u.e)) THEN "
				    "format('%%s holds an infinite timestamp, which the "
				    "change event does not carry', %s)", x, lit);
			sb_add(&b, " END");
		}
		free(x);
		free(lit);
	}
	for (int k = n / 90; k >= 0; k--)
		sb_add(&b, ")");
	sb_add(&b, ", '')");
	if (n == 0 && !b.failed) {	/* every value of the table can be carried */
		b.len = 0;
		sb_add(&b, "NULL::text");
	}
	return sb_done(&b);
}

/* The key column x's part of the change table's key: a text that does not
 * depend on the writer's session settings, nor on its search_path: every
 * function, operator and type is pg_catalog's by name (the capture runs
 * them as pgrelay's role, cdc.c). */
static void
change_key_part(struct sbuf *b, enum pgt_class cls, const char *x)
{
	switch (cls) {
	case PGT_DATE:
		sb_add(b, "(%s OPERATOR(pg_catalog.-) '1970-01-01'::pg_catalog.date)"
		    "::pg_catalog.text", x);
		break;
	case PGT_TIMESTAMP:
	case PGT_TIMESTAMPTZ:
	case PGT_TIME:
	case PGT_INTERVAL:	/* EXTRACT is pg_catalog.extract by the grammar */
		sb_add(b, "extract(epoch FROM %s)::pg_catalog.text", x);
		break;
	case PGT_BYTEA:
		sb_add(b, "pg_catalog.encode(%s, 'hex')", x);
		break;
	case PGT_FLOAT:
		sb_add(b, "(%s)::pg_catalog.float8::pg_catalog.numeric::pg_catalog.text", x);
		break;
	default:
		sb_add(b, "(%s)::pg_catalog.text", x);
		break;
	}
}

char *
relmap_sql_change_key(PGconn *db, const struct rel *r, const char *alias)
{
	struct sbuf b = { 0 };

	if (r->nkeys > 1)
		sb_add(&b, "pg_catalog.json_build_array(");
	for (int k = 0; k < r->nkeys; k++) {
		const struct rel_col *c = &r->cols[r->keys[k]];
		char *x = col_ref(db, alias, c->name);

		if (x == NULL) {
			b.failed = 1;
			break;
		}
		sb_add(&b, "%s", k ? ", " : "");
		change_key_part(&b, c->cls, x);
		free(x);
	}
	if (r->nkeys > 1)
		sb_add(&b, ")::pg_catalog.text");
	return sb_done(&b);
}

/* Whether NEW's key differs from OLD's: each key column compared by
 * pg_catalog's = where its (base) type is PostgreSQL's own or an enum, as
 * IS DISTINCT FROM would (numeric 1.0 = 1.00, which stays one row on B);
 * else, a type whose = lives in another schema (an extension's), by its
 * change key part.  Every name qualified: the capture runs as pgrelay's
 * role and must take nothing from its caller's search_path (cdc.c).  A
 * key is NOT NULL. */
#define FIRST_NORMAL_OID 16384u		/* PostgreSQL's FirstNormalObjectId */
char *
relmap_sql_key_changed(PGconn *db, const struct rel *r)
{
	struct sbuf b = { 0 };

	for (int k = 0; k < r->nkeys; k++) {
		const struct rel_col *c = &r->cols[r->keys[k]];
		char *n = col_ref(db, "NEW", c->name), *o = col_ref(db, "OLD", c->name);

		if (n == NULL || o == NULL) {
			free(n);
			free(o);
			b.failed = 1;
			break;
		}
		sb_add(&b, "%s", k ? " OR " : "");
		if (c->oid < FIRST_NORMAL_OID || c->typtype == 'e') {
			sb_add(&b, "NOT (%s OPERATOR(pg_catalog.=) %s)", n, o);
		} else {
			sb_add(&b, "NOT (");
			change_key_part(&b, c->cls, n);
			sb_add(&b, " OPERATOR(pg_catalog.=) ");
			change_key_part(&b, c->cls, o);
			sb_add(&b, ")");
		}
		free(n);
		free(o);
	}
	return sb_done(&b);
}

/* ---- SQL on B: from the event ---- */

char *
relmap_sql_record_def(PGconn *db, const struct rel *r)
{
	struct sbuf b = { 0 };

	for (int i = 0; i < r->ncols; i++) {
		char *q = db_quote(db, r->cols[i].name, 1);

		if (q == NULL) {
			b.failed = 1;
			break;
		}
		sb_add(&b, "%s%s %s", i ? ", " : "", q,
		    r->cols[i].cls == PGT_ARRAY ? "json" : "text");
		free(q);
	}
	return sb_done(&b);
}

/* Converts the event's form v (text, or json for an array element list)
 * of class cls to a value of type type. */
static void
from_event(struct sbuf *b, enum pgt_class cls, const char *type, const char *v)
{
	switch (cls) {
	case PGT_DATE:
		sb_add(b, "(DATE '1970-01-01' + (%s)::integer)::%s", v, type);
		break;
	case PGT_TIMESTAMP:
		/* in whole days, then microseconds: exact (interval * float8
		 * would round past 2^53 microseconds) */
		sb_add(b, "(TIMESTAMP '1970-01-01' + ((%s)::bigint / 86400000000) * "
		    "INTERVAL '1 day' + ((%s)::bigint %% 86400000000) * "
		    "INTERVAL '1 microsecond')::%s", v, v, type);
		break;
	case PGT_TIME:
		sb_add(b, "(CASE WHEN (%s)::bigint = 86400000000 THEN TIME '24:00' "
		    "ELSE TIME '00:00' + (%s)::bigint * INTERVAL '1 microsecond' "
		    "END)::%s", v, v, type);
		break;
	case PGT_BYTEA:
		sb_add(b, "decode(%s, 'base64')::%s", v, type);
		break;
	default:	/* the text form: the type's input function */
		sb_add(b, "(%s)::%s", v, type);
		break;
	}
}

/* The type to cast an event's value to, for a type name without its
 * modifier: "character" and "bit" without a length mean character(1) and
 * bit(1) in SQL, and an explicit cast to them truncates; bpchar and varbit
 * do not, and the column's own length then checks the value. */
static const char *
unbounded(const char *type)
{
	if (strcmp(type, "character") == 0)
		return "bpchar";
	if (strcmp(type, "character[]") == 0)
		return "bpchar[]";
	if (strcmp(type, "bit") == 0)
		return "varbit";
	if (strcmp(type, "bit[]") == 0)
		return "varbit[]";
	return type;
}

char *
relmap_sql_from_event(PGconn *db, const struct rel_col *col, const char *alias)
{
	struct sbuf b = { 0 };
	char *x = col_ref(db, alias, col->name);

	if (x == NULL)
		return NULL;
	if (col->cls == PGT_ARRAY) {
		sb_add(&b, "CASE WHEN %s IS NOT NULL THEN ARRAY(SELECT ", x);
		from_event(&b, col->elem_cls, unbounded(col->elem_type), "pgrelay_u.e");
		sb_add(&b, " FROM json_array_elements_text(%s) WITH ORDINALITY AS "
		    "pgrelay_u(e, i) ORDER BY pgrelay_u.i)::%s END", x,
		    unbounded(col->cast));
	} else {
		from_event(&b, col->cls, unbounded(col->cast), x);
	}
	free(x);
	return sb_done(&b);
}

/* The batch's elements as rows of converted values: pgr_ord, pgr_op,
 * pgr_version, then every column of r ("col"), from p_rows. */
static void
apply_rows_sql(PGconn *db, struct sbuf *b, const struct rel *r, const char *where)
{
	char *def = relmap_sql_record_def(db, r);

	if (def == NULL) {
		b->failed = 1;
		return;
	}
	sb_add(b, "SELECT pgr_e.pgr_ord, pgr_e.pgr_op, pgr_e.pgr_version");
	for (int i = 0; i < r->ncols; i++) {
		char *conv = relmap_sql_from_event(db, &r->cols[i], "pgr_r");
		char *q = db_quote(db, r->cols[i].name, 1);

		if (conv == NULL || q == NULL)
			b->failed = 1;
		else
			sb_add(b, ", %s AS %s", conv, q);
		free(conv);
		free(q);
	}
	/* each element's JSON is parsed once (json's -> parses it again at
	 * every use) */
	sb_add(b, " FROM ROWS FROM (json_to_recordset(p_rows) AS (op text, "
	    "version bigint, \"row\" json)) WITH ORDINALITY AS pgr_e(pgr_op, "
	    "pgr_version, pgr_row, pgr_ord) CROSS JOIN LATERAL "
	    "json_to_record(pgr_e.pgr_row) AS pgr_r(%s) WHERE %s", def, where);
	free(def);
}

/* a."k1" = b."k1" AND ...: the key columns of r. */
static void
key_join(PGconn *db, struct sbuf *b, const struct rel *r, const char *a,
    const char *o)
{
	for (int k = 0; k < r->nkeys; k++) {
		char *q = db_quote(db, r->cols[r->keys[k]].name, 1);

		if (q == NULL) {
			b->failed = 1;
			return;
		}
		sb_add(b, "%s%s.%s = %s.%s", k ? " AND " : "", a, q, o, q);
		free(q);
	}
}

/* "k1", "k2" (prefix. before each when prefix is not NULL): r's key. */
static void
key_list(PGconn *db, struct sbuf *b, const struct rel *r, const char *prefix)
{
	for (int k = 0; k < r->nkeys; k++) {
		char *q = db_quote(db, r->cols[r->keys[k]].name, 1);

		if (q == NULL) {
			b->failed = 1;
			return;
		}
		sb_add(b, "%s%s%s%s", k ? ", " : "", prefix ? prefix : "",
		    prefix ? "." : "", q);
		free(q);
	}
}

/* The statements and their order are what common/target.c's NOTES argue
 * for: change them together. */
char *
relmap_sql_apply_body(PGconn *db, const struct rel *r, int reg_id,
    const char *version_table)
{
	struct sbuf b = { 0 };
	const char *vt = version_table, *t = r->qname;
	int nonkey = 0;

	sb_add(&b, "\nDECLARE\n"
	    "    pgr_cut bigint;\n    pgr_horizon bigint;\n    pgr_low bigint;\n"
	    "    pgr_trunc boolean;\n    pgr_fresh bigint[];\n"
	    "    pgr_had_o bigint[];\n    pgr_had_v bigint[];\n"
	    "    pgr_old_o bigint[];\n    pgr_old_v bigint[];\n"
	    "BEGIN\n"
	    "    SELECT max(pgr_e.version) INTO pgr_cut\n"
	    "      FROM json_to_recordset(p_rows) AS pgr_e(op text, version bigint)\n"
	    "     WHERE pgr_e.op = 't';\n"
	    "    IF pgr_cut IS NULL THEN\n"
	    "        PERFORM pg_advisory_xact_lock_shared(1885828466, %d);\n"
	    "    ELSE\n"
	    "        PERFORM pg_advisory_xact_lock(1885828466, %d);\n"
	    "    END IF;\n"
	    "    SELECT pgr_t.horizon INTO pgr_horizon FROM pgrelay_targets pgr_t\n"
	    "     WHERE pgr_t.id = %d;\n"
	    "    pgr_horizon := coalesce(pgr_horizon, 0);\n"
	    "    pgr_low := pgr_horizon;\n"
	    "    pgr_trunc := coalesce(pgr_cut > pgr_horizon, false);\n"
	    "    IF pgr_trunc THEN\n"
	    "        SELECT array_agg(pgr_c.pgr_ord), array_agg(pgr_v.change_id)\n"
	    "          INTO pgr_had_o, pgr_had_v\n"
	    "          FROM (", reg_id, reg_id, reg_id);
	apply_rows_sql(db, &b, r, "pgr_e.pgr_op <> 't'");
	sb_add(&b, ") pgr_c\n          JOIN %s pgr_v ON ", vt);
	key_join(db, &b, r, "pgr_v", "pgr_c");
	sb_add(&b, ";\n        DELETE FROM %s pgr_d WHERE NOT EXISTS (SELECT 1 FROM %s "
	    "pgr_v WHERE ", t, vt);
	key_join(db, &b, r, "pgr_v", "pgr_d");
	sb_add(&b, " AND pgr_v.change_id >= pgr_cut);\n"
	    "        DELETE FROM %s pgr_v WHERE pgr_v.change_id < pgr_cut;\n"
	    "        UPDATE pgrelay_targets SET horizon = pgr_cut, truncated_at = now()\n"
	    "         WHERE id = %d;\n"
	    "        pgr_low := pgr_cut;\n"
	    "    END IF;\n\n", vt, reg_id);

	/* the claim: every row's version lock, in key order */
	sb_add(&b, "    WITH pgr_c AS (");
	apply_rows_sql(db, &b, r, "pgr_e.pgr_op <> 't' AND pgr_e.pgr_version >= pgr_low");
	sb_add(&b, "\n    ), pgr_claim AS (\n        INSERT INTO %s AS pgr_v (", vt);
	key_list(db, &b, r, NULL);
	sb_add(&b, ", change_id, deleted)\n        SELECT ");
	key_list(db, &b, r, "pgr_c");
	sb_add(&b, ", pgr_c.pgr_version, pgr_c.pgr_op = 'd' FROM pgr_c ORDER BY ");
	key_list(db, &b, r, "pgr_c");
	sb_add(&b, "\n        ON CONFLICT (");
	key_list(db, &b, r, NULL);
	sb_add(&b, ") DO UPDATE SET change_id = pgr_v.change_id WHERE false\n"
	    "        RETURNING ");
	key_list(db, &b, r, "pgr_v");
	sb_add(&b, "\n    )\n    SELECT coalesce(array_agg(pgr_c.pgr_ord), '{}') INTO "
	    "pgr_fresh\n      FROM pgr_claim JOIN pgr_c ON ");
	key_join(db, &b, r, "pgr_claim", "pgr_c");
	sb_add(&b, ";\n\n");

	/* the writes, under those locks, in a snapshot taken after them */
	sb_add(&b, "    WITH pgr_c AS (");
	apply_rows_sql(db, &b, r, "pgr_e.pgr_op <> 't' AND pgr_e.pgr_version >= pgr_low");
	sb_add(&b, "\n    ), pgr_old AS (\n        SELECT pgr_c.pgr_ord, pgr_v.change_id "
	    "FROM pgr_c JOIN %s pgr_v ON ", vt);
	key_join(db, &b, r, "pgr_v", "pgr_c");
	/* NOT IN a subquery: a hashed subplan (<> ALL of an array compared
	 * each element with each: quadratic in the batch) */
	sb_add(&b, "\n         WHERE pgr_c.pgr_ord NOT IN (SELECT unnest(pgr_fresh))\n"
	    "    ), pgr_win AS (\n"
	    "        SELECT pgr_c.*, pgr_o.pgr_ord IS NOT NULL AS pgr_known\n"
	    "          FROM pgr_c LEFT JOIN pgr_old pgr_o ON pgr_o.pgr_ord = pgr_c.pgr_ord\n"
	    "         WHERE pgr_o.change_id IS NULL OR pgr_c.pgr_version > pgr_o.change_id\n"
	    "            OR (pgr_c.pgr_version = pgr_o.change_id AND pgr_c.pgr_op = 'r')\n"
	    "    ), pgr_del AS (\n"
	    "        DELETE FROM %s pgr_t USING pgr_win WHERE pgr_win.pgr_op = 'd' AND ", t);
	key_join(db, &b, r, "pgr_t", "pgr_win");
	sb_add(&b, "\n    ), pgr_ups AS (\n        INSERT INTO %s AS pgr_t (", t);
	for (int i = 0; i < r->ncols; i++) {
		char *q = db_quote(db, r->cols[i].name, 1);

		if (q == NULL) {
			b.failed = 1;
			break;
		}
		sb_add(&b, "%s%s", i ? ", " : "", q);
		free(q);
	}
	sb_add(&b, ") OVERRIDING SYSTEM VALUE\n        SELECT ");
	for (int i = 0; i < r->ncols; i++) {
		char *q = db_quote(db, r->cols[i].name, 1);

		if (q == NULL) {
			b.failed = 1;
			break;
		}
		sb_add(&b, "%spgr_win.%s", i ? ", " : "", q);
		free(q);
	}
	sb_add(&b, " FROM pgr_win WHERE pgr_win.pgr_op <> 'd'\n        ON CONFLICT (");
	key_list(db, &b, r, NULL);
	sb_add(&b, ") DO ");
	for (int i = 0; i < r->ncols; i++) {
		char *q;

		if (r->cols[i].key)
			continue;
		if ((q = db_quote(db, r->cols[i].name, 1)) == NULL) {
			b.failed = 1;
			break;
		}
		sb_add(&b, "%s%s = EXCLUDED.%s", nonkey++ ? ", " : "UPDATE SET ", q, q);
		free(q);
	}
	if (nonkey == 0)
		sb_add(&b, "NOTHING");
	sb_add(&b, "\n    ), pgr_ver AS (\n        INSERT INTO %s AS pgr_v (", vt);
	key_list(db, &b, r, NULL);
	sb_add(&b, ", change_id, deleted)\n        SELECT ");
	key_list(db, &b, r, "pgr_win");
	sb_add(&b, ", pgr_win.pgr_version, pgr_win.pgr_op = 'd' FROM pgr_win "
	    "WHERE pgr_win.pgr_known\n        ON CONFLICT (");
	key_list(db, &b, r, NULL);
	sb_add(&b, ") DO UPDATE SET change_id = EXCLUDED.change_id, "
	    "deleted = EXCLUDED.deleted\n    )\n"
	    "    SELECT array_agg(pgr_o.pgr_ord), array_agg(pgr_o.change_id)\n"
	    "      INTO pgr_old_o, pgr_old_v FROM pgr_old pgr_o;\n\n"
	    "    IF pgr_trunc THEN\n"
	    "        RETURN QUERY SELECT * FROM unnest(pgr_had_o, pgr_had_v);\n"
	    "    ELSE\n"
	    "        RETURN QUERY SELECT * FROM unnest(pgr_old_o, pgr_old_v);\n"
	    "    END IF;\n"
	    "    IF pgr_horizon > 0 THEN\n"
	    "        RETURN QUERY SELECT NULL::bigint, pgr_horizon;\n"
	    "    END IF;\n"
	    "END\n");
	return sb_done(&b);
}
