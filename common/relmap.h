/*
 * relmap.h - what pgrelay knows of one replicated table, read from a
 * database's catalog: its columns, their types, its key.  The one place
 * that maps a PostgreSQL type to the change event's form of its values
 * (README, "Types"), and that writes the SQL which converts them, on A to
 * the event and on B back from it.  Modelled on PostgreSQL's logical
 * replication relation map (LogicalRepRelMapEntry, relation.c): the
 * producer, the snapshot and the consumer ask an entry for columns and
 * key instead of knowing any table.
 *
 * An entry is built once per process start (relmap_load) and again when
 * the table changes (issue 17).  Names in generated SQL are quoted with
 * the connection's PQescapeIdentifier / PQescapeLiteral: no value is
 * ever pasted into SQL.
 *
 * Ownership: relmap_load() returns an entry the caller frees with
 * relmap_free(); every generated string is malloc'd and the caller's.
 */
#ifndef PGRELAY_RELMAP_H
#define PGRELAY_RELMAP_H

#include <libpq-fe.h>
#include <stddef.h>

#include "err.h"

/* How a type's values travel in the change event (Debezium's JSON forms,
 * with decimal.handling.mode=string, binary.handling.mode=base64,
 * interval.handling.mode=string and microsecond time). */
enum pgt_class {
	PGT_NONE = 0,	/* not carried: refused at configuration time */
	PGT_INT,	/* int2/int4/int8: a JSON integer */
	PGT_FLOAT,	/* float4/float8: a number, or "NaN", "Infinity", "-Infinity" */
	PGT_NUMERIC,	/* numeric: a string of its exact digits */
	PGT_BOOL,	/* boolean: true/false */
	PGT_TEXT,	/* text, varchar, char, uuid, enum, inet, ...: the text form */
	PGT_DATE,	/* date: days since 1970-01-01 (io.debezium.time.Date) */
	PGT_TIMESTAMP,	/* timestamp: microseconds since 1970 (MicroTimestamp) */
	PGT_TIMESTAMPTZ,/* timestamptz: ISO-8601 in UTC, "...Z" (ZonedTimestamp) */
	PGT_TIME,	/* time: microseconds since midnight (MicroTime) */
	PGT_INTERVAL,	/* interval: ISO-8601 duration, "P1Y2M3DT4H5M6S" */
	PGT_BYTEA,	/* bytea: base64 */
	PGT_JSON,	/* json/jsonb: the JSON text, as a string (io.debezium.data.Json) */
	PGT_ARRAY	/* a one-dimensional array: a JSON array of its element's form */
};

struct rel_col {
	char *name;
	char *type;		/* format_type(): "character varying(100)", "mood[]" */
	char *cast;		/* the same without its modifier: B casts an event's
				 * value to it, and the column's modifier then checks
				 * it (an explicit cast to varchar(n) would truncate) */
	enum pgt_class cls;
	enum pgt_class elem_cls;	/* for PGT_ARRAY */
	char *elem_type;	/* for PGT_ARRAY: the element's format_type() */
	unsigned oid;		/* its base type (after domains), for the */
	char typtype;		/* Kafka Connect schema: int2/4/8, float4/8, */
	unsigned elem_oid;	/* uuid, enum ... (relmap_connect_schema) */
	char elem_typtype;
	int notnull;		/* attnotnull */
	int key;		/* 1 + its place in the key, or 0 */
	int sent;		/* carried by the event (include/exclude lists) */
};

struct rel {
	char *schema;		/* as in the catalog, unquoted */
	char *table;
	char *qname;		/* "schema"."table", quoted for SQL */
	unsigned oid;		/* pg_class.oid */
	char *missing;		/* {"col": "text", ...}: the value a row written
				 * before ADD COLUMN ... DEFAULT reads as
				 * (attmissingval), or NULL when no column has one */
	int ncols;
	struct rel_col *cols;	/* in attnum order */
	int nkeys;
	int *keys;		/* indexes into cols, in the key's order */
};

/* Splits "schema.table" (or "table": schema public) into its parts; each
 * may be double-quoted ("My Schema"."t.1").  0, or -1 with why. */
int relmap_split_name(const char *name, char *schema, size_t slen, char *table,
    size_t tlen, char *why, size_t whylen);

/* Reads table name ("schema.table") from db's catalog.  include/exclude
 * (NULL-terminated lists, or NULL) choose the columns the event carries;
 * a key column is always carried.  Returns the entry, or NULL with err
 * and *cls: PGR_CONFIG when the table is missing, has no key (a primary
 * key, or a unique index on NOT NULL columns without expressions or a
 * predicate), has a column of a type pgrelay cannot carry, or a listed
 * column is missing; PGR_RETRY when the query failed. */
struct rel *relmap_load(PGconn *db, const char *name, char *const *include,
    char *const *exclude, enum pgr_err *cls, char *err, size_t errlen);

void relmap_free(struct rel *r);

/* The column named name, or NULL. */
const struct rel_col *relmap_col(const struct rel *r, const char *name);

/* The class of a type from its catalog facts (base type after domains):
 * oid, typtype, typcategory.  PGT_NONE for a type pgrelay cannot carry. */
enum pgt_class pgt_classify(unsigned oid, char typtype, char typcategory);

/* The name of a class, for messages and README ("date (days)"). */
const char *pgt_class_name(enum pgt_class c);

/*
 * SQL on A.  The caller's session must have TimeZone UTC, DateStyle ISO
 * and IntervalStyle iso_8601 (run RELMAP_SESSION_SQL once).
 */
#define RELMAP_SESSION_SQL "SELECT set_config('TimeZone', 'UTC', false), " \
    "set_config('DateStyle', 'ISO, YMD', false), " \
    "set_config('IntervalStyle', 'iso_8601', false), " \
    "set_config('extra_float_digits', '1', false)"

/* An expression giving the event's row (json) of the table row whose
 * columns are alias."col": {"col": value, ...} for the sent columns. */
char *relmap_sql_row(PGconn *db, const struct rel *r, const char *alias);

/* An expression giving the event's key (json) of that row:
 * {"k1": value, ...}, in the key's order. */
char *relmap_sql_key(PGconn *db, const struct rel *r, const char *alias);

/* An expression giving NULL when every value of that row can be carried,
 * else text saying which cannot and why (a date outside 0001..9999, an
 * infinite timestamp, a multi-dimensional array). */
char *relmap_sql_bad(PGconn *db, const struct rel *r, const char *alias);

/* An expression giving the text that identifies the row's key in A's
 * change table (pgrelay_changes.key), as the capture trigger writes it:
 * each key column's text (relmap.c, change_key_part), or for several
 * json_build_array(k1, k2, ...)::text; every name pg_catalog-qualified. */
char *relmap_sql_change_key(PGconn *db, const struct rel *r, const char *alias);

/* A condition of a row trigger: NEW's key is not OLD's (every name
 * qualified). */
char *relmap_sql_key_changed(PGconn *db, const struct rel *r);

/* The Kafka Connect schema (JsonConverter's JSON, schemas.enable=true)
 * of the events of r on topic: key 1, the key's struct ("TOPIC.Key");
 * key 0, the envelope ("TOPIC.Envelope": before and after "TOPIC.Value",
 * source, op, ts_ms).  Types follow Debezium's PostgreSQL connector with
 * the handling modes relmap.h names (README, Types).  Compact JSON text,
 * malloc'd, or NULL when memory runs out. */
char *relmap_connect_schema(const struct rel *r, const char *topic, int key);

/*
 * SQL on B.
 */

/* The column definition list for json_to_record() reading an event row:
 * "col" text, "arr" json, ... for every column of r (B's entry). */
char *relmap_sql_record_def(PGconn *db, const struct rel *r);

/* An expression converting column col of alias (a record read with
 * relmap_sql_record_def) from the event's form to the column's type. */
char *relmap_sql_from_event(PGconn *db, const struct rel_col *col, const char *alias);

/* The body (DECLARE ... END) of the plpgsql function
 *   f(p_rows json) RETURNS TABLE (pgrelay_ord bigint, pgrelay_had bigint)
 * that applies a batch of changes to target r (B's entry), registered in
 * pgrelay_targets as reg_id with its version table version_table (a
 * qualified, quoted name).  p_rows is a JSON array of
 * {"op":..,"version":N,"row":{event row}} (a TRUNCATE: no row), at most
 * one per row.  Its semantics and why they are right (version locks in
 * key order, the truncate lock and horizon, one pass = one message at a
 * time): common/target.c, NOTES.  malloc'd, or NULL when memory runs out. */
char *relmap_sql_apply_body(PGconn *db, const struct rel *r, int reg_id,
    const char *version_table);

#endif
