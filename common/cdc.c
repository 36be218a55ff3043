/*
 * cdc.c - the configured tables on A, their capture, their events, and
 * sending one event (see cdc.h).
 *
 * NOTES
 *
 * Capture.  Each table has a row trigger, AFTER INSERT OR UPDATE OR
 * DELETE, whose function pgrelay makes from the table's description
 * (cdc_capture_sql): one row of pgrelay_changes per row changed, with the
 * table's id, the action, the key as text and the row as to_json()
 * writes it (the new row, or the old one for a delete); an update that
 * changes the key is a delete of the old key and a create of the new.  A
 * TRUNCATE is one row of its own (sql/source/004_any_table.sql).  The
 * trigger sends no NOTIFY: its commit-time lock cost A's writers a third
 * of their throughput (issue 16); the producer polls
 * (producer.poll_interval_ms) instead.  pgrelay_tables keeps the md5 of
 * the capture installed, so a start installs it only when the table's
 * description calls for another (CREATE TRIGGER takes a lock that holds
 * the table's writers for the moment it runs).
 *
 * The capture functions are SECURITY DEFINER, owned by pgrelay_changes'
 * owner, every name in them qualified: a trigger function runs with the
 * rights of whoever fires it, so up to source version 4 every writer
 * needed INSERT on pgrelay_changes.  Now A's writers need no right on
 * pgrelay's tables, and their search_path lends the capture nothing
 * (sql/source/005_definer.sql; test 155).
 *
 * The capture writes to_json(NEW): every column, whatever the config
 * carries; the producer chooses the columns when it makes the event, by
 * the table's type at that moment (json_populate_record).
 */
#define _POSIX_C_SOURCE 200809L
#include "cdc.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "utf8.h"
#include "validation.h"

void
cdc_tables_free(struct cdc_table *t, int n)
{
	if (t == NULL)
		return;
	for (int i = 0; i < n; i++) {
		relmap_free(t[i].rel);
		free(t[i].key_schema);
		free(t[i].val_schema);
	}
	free(t);
}

/* relmap_load() of table ct of cfg, a config error told as
 * "FILE:LINE: cdc.tables: source: why" (the default table has no line). */
static struct rel *
load_rel(PGconn *db, const struct cfg *cfg, const struct cfg_table *ct,
    enum pgr_err *cls, char *err, size_t errlen)
{
	char why[768];
	struct rel *r = relmap_load(db, ct->source, ct->include, ct->exclude, cls,
	    why, sizeof(why));

	if (r == NULL) {
		if (*cls == PGR_CONFIG && ct->line > 0)
			snprintf(err, errlen, "%s:%d: cdc.tables: source: %s", cfg->path,
			    ct->line, why);
		else
			snprintf(err, errlen, "%s", why);
	}
	return r;
}

char *
cdc_capture_sql(PGconn *db, const struct rel *r, const char *id,
    const char *changes_schema)
{
	char *ck_new = relmap_sql_change_key(db, r, "NEW");
	char *ck_old = relmap_sql_change_key(db, r, "OLD");
	char *changed = relmap_sql_key_changed(db, r);
	char *sch = db_quote(db, changes_schema, 1);
	char *out = NULL;

	/* SECURITY DEFINER: it runs as its owner, pgrelay's role, which owns
	 * pgrelay_changes, whoever writes the table.  Every function, operator
	 * and type it names is qualified (pg_catalog's, or pgrelay_changes'
	 * schema), so a writer's search_path cannot lend it one; that rather
	 * than SET search_path, which cost A's writers 15% (bench/README.md,
	 * The capture runs as pgrelay's role; test 155 tries the lending). */
	const char *fmt =
	    "CREATE OR REPLACE FUNCTION %s.pgrelay_capture_%s() RETURNS trigger\n"
	    "LANGUAGE plpgsql SECURITY DEFINER AS $pgrelay$\n"
	    "BEGIN\n"
	    "    IF TG_OP OPERATOR(pg_catalog.=) 'INSERT' THEN\n"
	    "        INSERT INTO %s.pgrelay_changes (rel, action, key, row)\n"
	    "        VALUES (%s, 'c', %s, pg_catalog.to_json(NEW));\n"
	    "    ELSIF TG_OP OPERATOR(pg_catalog.=) 'UPDATE' THEN\n"
	    "        IF %s THEN\n"
	    "            INSERT INTO %s.pgrelay_changes (rel, action, key, row)\n"
	    "            VALUES (%s, 'd', %s, pg_catalog.to_json(OLD)),\n"
	    "                   (%s, 'c', %s, pg_catalog.to_json(NEW));\n"
	    "        ELSE\n"
	    "            INSERT INTO %s.pgrelay_changes (rel, action, key, row)\n"
	    "            VALUES (%s, 'u', %s, pg_catalog.to_json(NEW));\n"
	    "        END IF;\n"
	    "    ELSE\n"
	    "        INSERT INTO %s.pgrelay_changes (rel, action, key, row)\n"
	    "        VALUES (%s, 'd', %s, pg_catalog.to_json(OLD));\n"
	    "    END IF;\n"
	    "    RETURN NULL;\n"
	    "END\n"
	    "$pgrelay$;\n"
	    "CREATE OR REPLACE TRIGGER pgrelay_capture\n"
	    "    AFTER INSERT OR UPDATE OR DELETE ON %s\n"
	    "    FOR EACH ROW EXECUTE FUNCTION %s.pgrelay_capture_%s();\n"
	    "CREATE OR REPLACE TRIGGER pgrelay_capture_truncate\n"
	    "    AFTER TRUNCATE ON %s\n"
	    "    FOR EACH STATEMENT EXECUTE FUNCTION %s.pgrelay_capture_truncate(%s);\n";
	if (ck_new != NULL && ck_old != NULL && changed != NULL && sch != NULL) {
		int n = snprintf(NULL, 0, fmt, sch, id, sch, id, ck_new, changed,
		    sch, id, ck_old, id, ck_new, sch, id, ck_new, sch, id, ck_old,
		    r->qname, sch, id, r->qname, sch, id);

		if (n > 0 && (out = malloc((size_t)n + 1)) != NULL)
			snprintf(out, (size_t)n + 1, fmt, sch, id, sch, id, ck_new,
			    changed, sch, id, ck_old, id, ck_new, sch, id, ck_new, sch,
			    id, ck_old, r->qname, sch, id, r->qname, sch, id);
	}
	free(changed);
	free(ck_new);
	free(ck_old);
	free(sch);
	return out;
}

/* Installs t's capture when pgrelay_tables has none, or another.  0, or
 * PGR_RETRY with err (A failed, or pgrelay's user may not change the
 * table: err says what an administrator runs). */
static int
ensure_capture(PGconn *db, struct cdc_table *t, char *err, size_t errlen)
{
	const char *params[3] = { t->rel->qname, NULL, NULL };
	PGresult *res;
	char *sql = NULL, sch[128];

	res = db_query(db, "SELECT t.id, t.capture_md5, "
	    "  (SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
	    "      ON n.oid = c.relnamespace "
	    "    WHERE c.oid = 'pgrelay_changes'::regclass) "
	    "  FROM (SELECT 1) one LEFT JOIN pgrelay_tables t "
	    "    ON t.relid = $1::regclass", 1, params, err, errlen);
	if (res == NULL)
		return PGR_RETRY;
	snprintf(sch, sizeof(sch), "%s", PQgetvalue(res, 0, 2));
	if (!PQgetisnull(res, 0, 0)) {
		t->id = atoi(PQgetvalue(res, 0, 0));
		sql = cdc_capture_sql(db, t->rel, PQgetvalue(res, 0, 0), sch);
		if (sql == NULL) {
			PQclear(res);
			snprintf(err, errlen, "out of memory");
			return PGR_RETRY;
		}
		params[1] = sql;
		PGresult *same = db_query(db, "SELECT md5($1) = $2", 2,
		    (const char *[]){ sql, PQgetvalue(res, 0, 1) }, err, errlen);
		if (same == NULL) {
			PQclear(res);
			free(sql);
			return PGR_RETRY;
		}
		int installed = strcmp(PQgetvalue(same, 0, 0), "t") == 0;
		PQclear(same);
		if (installed) {
			PQclear(res);
			free(sql);
			return 0;
		}
	}
	PQclear(res);
	free(sql);
	sql = NULL;

	/* One transaction: the id, the trigger function and triggers, the md5 */
	if (db_exec(db, "BEGIN", 0, NULL, err, errlen) < 0)
		return PGR_RETRY;
	res = db_query(db, "INSERT INTO pgrelay_tables (relid) VALUES ($1::regclass) "
	    "ON CONFLICT (relid) DO UPDATE SET relid = EXCLUDED.relid RETURNING id",
	    1, params, err, errlen);
	if (res == NULL)
		goto fail;
	t->id = atoi(PQgetvalue(res, 0, 0));
	sql = cdc_capture_sql(db, t->rel, PQgetvalue(res, 0, 0), sch);
	PQclear(res);
	if (sql == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	res = PQexec(db, sql);	/* generated DDL: names quoted, no values */
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		snprintf(err, errlen, "installing the capture of %s.%s on the source: "
		    "%s", t->rel->schema, t->rel->table,
		    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) ?
		    PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : PQerrorMessage(db));
		if (state != NULL && strcmp(state, "42501") == 0)
			snprintf(err + strlen(err), errlen - strlen(err), "; pgrelay's "
			    "user may not change the table: an administrator runs the "
			    "SQL `pgrelayctl -c CONFIG capture-sql` prints, on the "
			    "source database");
		PQclear(res);
		goto fail;
	}
	PQclear(res);
	params[1] = sql;
	if (db_exec(db, "UPDATE pgrelay_tables SET capture_md5 = md5($2), "
	    "installed_at = now() WHERE relid = $1::regclass", 2, params, err,
	    errlen) < 0 || db_exec(db, "COMMIT", 0, NULL, err, errlen) < 0)
		goto fail;
	log_info("installed the capture of %s.%s on the source (its changes go to "
	    "pgrelay_changes as rel %d)", t->rel->schema, t->rel->table, t->id);
	free(sql);
	return 0;
fail:
	free(sql);
	if (!db_broken(db)) {
		char ignore[256];

		db_exec(db, "ROLLBACK", 0, NULL, ignore, sizeof(ignore));
	}
	return PGR_RETRY;
}

/* Says which captured tables the config no longer lists: their writers
 * still pay for a capture no one reads. */
static void
warn_unconfigured(PGconn *db, const struct cdc_table *t, int n)
{
	char err[512];
	PGresult *res;

	/* a table dropped since: its triggers went with it */
	res = db_query(db, "DELETE FROM pgrelay_tables t WHERE NOT EXISTS "
	    "(SELECT 1 FROM pg_class c WHERE c.oid = t.relid) RETURNING id",
	    0, NULL, err, sizeof(err));
	if (res == NULL) {
		log_warn("forgetting dropped tables: %s", err);
	} else {
		for (int i = 0; i < PQntuples(res); i++)
			log_info("the table captured as rel %s was dropped on the source; "
			    "its capture is forgotten", PQgetvalue(res, i, 0));
		PQclear(res);
	}
	res = db_query(db, "SELECT relid::text, id FROM pgrelay_tables "
	    "ORDER BY id", 0, NULL, err, sizeof(err));

	if (res == NULL) {
		log_warn("listing the captured tables: %s", err);
		return;
	}
	/* once a process: the producer describes its tables again after
	 * each ALTER TABLE (and at its first round) */
	static int warned;

	for (int i = 0; i < PQntuples(res) && !warned; i++) {
		int id = atoi(PQgetvalue(res, i, 1)), listed = 0;

		for (int j = 0; j < n; j++)
			listed |= t[j].id == id;
		if (!listed)
			log_warn("table %s is captured on the source (rel %d) but not in "
			    "cdc.tables: its changes are no longer sent and its writers "
			    "still pay for the capture; an administrator drops it with "
			    "the SQL `pgrelayctl -c CONFIG capture-sql` prints",
			    PQgetvalue(res, i, 0), id);
	}
	warned = 1;
	PQclear(res);
}

int
cdc_tables_open(PGconn *db, const struct cfg *cfg, struct cdc_table **out,
    int *n, char *err, size_t errlen)
{
	struct cdc_table *t = calloc((size_t)cfg->ntables, sizeof(*t));
	int rc;

	*out = NULL;
	*n = 0;
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return PGR_RETRY;
	}
	for (int i = 0; i < cfg->ntables; i++) {
		enum pgr_err cls;

		t[i].cfg = &cfg->tables[i];
		t[i].rel = load_rel(db, cfg, t[i].cfg, &cls, err, errlen);
		if (t[i].rel == NULL) {
			cdc_tables_free(t, i);
			return cls == PGR_CONFIG ? PGR_CONFIG : PGR_RETRY;
		}
		if ((rc = ensure_capture(db, &t[i], err, errlen)) < 0) {
			cdc_tables_free(t, i + 1);
			return rc;
		}
		if (cfg->cdc_schemas &&
		    ((t[i].key_schema = relmap_connect_schema(t[i].rel,
		    t[i].cfg->topic, 1)) == NULL ||
		    (t[i].val_schema = relmap_connect_schema(t[i].rel,
		    t[i].cfg->topic, 0)) == NULL)) {
			cdc_tables_free(t, i + 1);
			snprintf(err, errlen, "out of memory");
			return PGR_RETRY;
		}
	}
	*out = t;
	*n = cfg->ntables;
	warn_unconfigured(db, t, cfg->ntables);
	return 0;
}

char *
cdc_event_sql(PGconn *db, const struct cdc_table *t, const char *alias,
    const char *op, const char *version, const char *txid, const char *ts_ms)
{
	char *row = relmap_sql_row(db, t->rel, alias);
	char *sch = db_quote(db, t->rel->schema, 0), *tab = db_quote(db, t->rel->table, 0);
	char *out = NULL;
	const char *fmt =
	    "(SELECT row_to_json(pgrelay_v) FROM (SELECT "
	    "CASE WHEN %s = 'd' THEN %s END AS before, "
	    "CASE WHEN %s IN ('c', 'u', 'r') THEN %s END AS after, "
	    "(SELECT row_to_json(pgrelay_s) FROM (SELECT '" CDC_EVENT_VERSION
	    "'::text AS version, 'pgrelay'::text AS connector, 'pgrelay'::text AS "
	    "name, current_database()::text AS db, %s::text AS schema, %s::text AS "
	    "\"table\", CASE WHEN %s = 'r' THEN 'true' ELSE 'false' END AS snapshot, "
	    "%s AS change_id, %s AS \"txId\", %s AS ts_ms) pgrelay_s) AS source, "
	    "(%s)::text AS op, %s AS ts_ms) pgrelay_v)::text";

	if (row != NULL && sch != NULL && tab != NULL) {
		int n = snprintf(NULL, 0, fmt, op, row, op, row, sch, tab, op, version,
		    txid, ts_ms, op, ts_ms);

		if (n > 0 && (out = malloc((size_t)n + 1)) != NULL)
			snprintf(out, (size_t)n + 1, fmt, op, row, op, row, sch, tab, op,
			    version, txid, ts_ms, op, ts_ms);
	}
	free(row);
	free(sch);
	free(tab);
	return out;
}

char *
cdc_key_sql(PGconn *db, const struct cdc_table *t, const char *alias)
{
	char *k = relmap_sql_key(db, t->rel, alias), *out = NULL;

	if (k != NULL && (out = malloc(strlen(k) + 16)) != NULL)
		sprintf(out, "(%s)::text", k);
	free(k);
	return out;
}

char *
cdc_bad_sql(PGconn *db, const struct cdc_table *t, const char *alias)
{
	return relmap_sql_bad(db, t->rel, alias);
}

/* The DLQ record of a change that cannot be carried: its key, a value
 * that says which change it was ({"op":"u","change_id":42}), and headers
 * with the reason and the source. */
static int
send_unrepresentable(rd_kafka_t *rk, const struct cfg *cfg,
    const struct cdc_table *t, char op, int64_t change_id, const char *key,
    size_t klen, const char *why, char *err, size_t errlen)
{
	char id[24], table[300], ops[2] = { op, '\0' };
	const char *origin[] = { "table", table, "change_id", id };
	const struct kfk_dlq_why w = { "capture", "source.unrepresentable", why,
	    origin, 2 };
	json_t *v = json_pack("{s:s, s:I}", "op", ops, "change_id", (json_int_t)change_id);
	char *val = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	int rc;

	json_decref(v);
	if (val == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	snprintf(id, sizeof(id), "%" PRId64, change_id);
	snprintf(table, sizeof(table), "%s.%s", t->rel->schema, t->rel->table);
	log_warn("change %" PRId64 " (op %c) of %s cannot be carried by the change "
	    "event: %s; it goes to the DLQ topic %s and the row keeps its previous "
	    "state on the target", change_id, op, table, why, cfg->dlq_topic);
	rc = kfk_produce_dlq(rk, cfg->dlq_topic, key, klen, val, strlen(val), &w,
	    err, errlen);
	free(val);
	return rc;
}

/* {"schema":SCHEMA,"payload":PAYLOAD}: two JSON texts, both whole (the
 * schema from jansson, the payload from A's row_to_json), put in one
 * object; "payload":null for a NULL payload (a TRUNCATE's key).
 * malloc'd, or NULL when memory runs out. */
static char *
with_schema(const char *schema, const char *payload, size_t plen)
{
	const char *fmt = "{\"schema\":%s,\"payload\":%.*s}";
	int n;
	char *out;

	if (payload == NULL) {
		payload = "null";
		plen = 4;
	}
	n = snprintf(NULL, 0, fmt, schema, (int)plen, payload);
	if (n < 0 || (out = malloc((size_t)n + 1)) == NULL)
		return NULL;
	snprintf(out, (size_t)n + 1, fmt, schema, (int)plen, payload);
	return out;
}

int
cdc_send(rd_kafka_t *rk, const struct cfg *cfg, const struct cdc_table *t,
    char op, int64_t change_id, const char *key, size_t klen, const char *val,
    size_t vlen, const char *bad, struct kfk_acks *acks, char *err, size_t errlen)
{
	char why[160];
	long at;

	if (op == 't') {
		/* one copy to each partition, without a key, so that each
		 * partition's stream carries it in order with the changes of
		 * its rows (see NOTES in workers/producer.c); the topic has
		 * cfg->partitions: the workers check it at start */
		char *sv = t->val_schema ? with_schema(t->val_schema, val, vlen) : NULL;

		if (t->val_schema != NULL && sv == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		for (int32_t p = 0; p < cfg->partitions; p++) {
			if (kfk_produce(rk, t->cfg->topic, p, NULL, 0,
			    sv ? sv : (void *)val, sv ? strlen(sv) : vlen,
			    RD_KAFKA_MSG_F_COPY, NULL, err, errlen) < 0) {
				free(sv);
				return -1;
			}
			acks->sent++;
		}
		free(sv);
		log_info("TRUNCATE of %s.%s (change %" PRId64 ") sent to each of the "
		    "%d partitions of %s; the target deletes every row older than it",
		    t->rel->schema, t->rel->table, change_id, cfg->partitions,
		    t->cfg->topic);
		return 0;
	}
	if (bad == NULL && (at = utf8_invalid_at(val, vlen)) >= 0) {
		snprintf(why, sizeof(why), "the row holds text that is not UTF-8 "
		    "(byte %ld of its event)", at);
		bad = why;
	}
	if (bad != NULL) {
		if (send_unrepresentable(rk, cfg, t, op, change_id, key, klen, bad,
		    err, errlen) < 0)
			return -1;
		acks->sent++;
		return 0;
	}
	/* the partition librdkafka's default (consistent_random) gives the
	 * payload key, whatever the record's key bytes */
	int32_t part = rd_kafka_msg_partitioner_consistent(NULL, key, klen,
	    cfg->partitions, NULL, NULL);
	int rc;

	if (t->key_schema == NULL) {
		rc = kfk_produce(rk, t->cfg->topic, part, key, klen, (void *)val,
		    vlen, RD_KAFKA_MSG_F_COPY, NULL, err, errlen);
	} else {
		char *sk = with_schema(t->key_schema, key, klen);
		char *sv = with_schema(t->val_schema, val, vlen);

		if (sk == NULL || sv == NULL) {
			snprintf(err, errlen, "out of memory");
			rc = -1;
		} else {
			/* F_FREE: librdkafka frees the value once sent */
			rc = kfk_produce(rk, t->cfg->topic, part, sk, strlen(sk), sv,
			    strlen(sv), RD_KAFKA_MSG_F_FREE, NULL, err, errlen);
			if (rc == 0)
				sv = NULL;
		}
		free(sk);
		free(sv);
	}
	if (rc < 0)
		return -1;
	acks->sent++;
	return 0;
}

/* The id placeholder of cdc_capture_script's templates. */
#define ID_MARK "@PGRELAY_ID@"

char *
cdc_capture_script(PGconn *db, const struct cfg *cfg, char *err, size_t errlen)
{
	char *out = NULL, sch[128], oids[4096] = "{";
	size_t len = 0, ol = 1;
	FILE *f = open_memstream(&out, &len);
	PGresult *res;
	int ok = f != NULL;

	if (!ok) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	res = db_query(db, "SELECT n.nspname FROM pg_class c JOIN pg_namespace n "
	    "ON n.oid = c.relnamespace WHERE c.oid = 'pgrelay_changes'::regclass",
	    0, NULL, err, errlen);
	if (res == NULL) {
		fclose(f);
		free(out);
		return NULL;
	}
	snprintf(sch, sizeof(sch), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	char *qsch = db_quote(db, sch, 1), *lsch = db_quote(db, sch, 0);
	if (qsch == NULL || lsch == NULL) {
		free(qsch);
		free(lsch);
		fclose(f);
		free(out);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	fprintf(f, "-- pgrelay: the capture of the tables of %s, for the source "
	    "database\n-- (psql -v ON_ERROR_STOP=1 -f FILE), run by a superuser: "
	    "it hands the capture\n-- functions to the owner of pgrelay_changes, "
	    "as whom they run.\n", cfg->path);
	for (int i = 0; i < cfg->ntables && ok; i++) {
		enum pgr_err cls;
		struct rel *r = load_rel(db, cfg, &cfg->tables[i], &cls, err, errlen);
		char *tmpl, *name;

		if (r == NULL) {
			ok = 0;
			break;
		}
		res = db_query(db, "SELECT $1::regclass::oid", 1,
		    (const char *[]){ r->qname }, err, errlen);
		if (res == NULL) {
			relmap_free(r);
			ok = 0;
			break;
		}
		ol += (size_t)snprintf(oids + ol, ol < sizeof(oids) ? sizeof(oids) - ol : 0,
		    "%s%s", i ? "," : "", PQgetvalue(res, 0, 0));
		PQclear(res);
		tmpl = cdc_capture_sql(db, r, ID_MARK, sch);
		name = db_quote(db, r->qname, 0);
		if (tmpl == NULL || name == NULL || strstr(tmpl, "$pgrelay_tmpl$")) {
			snprintf(err, errlen, "out of memory");
			ok = 0;
		} else {
			/* the id is the table's in pgrelay_tables; md5 of the SQL
			 * as run, as pgrelay computes it, so it does not run it again */
			fprintf(f, "\n-- %s.%s, key (", r->schema, r->table);
			for (int k = 0; k < r->nkeys; k++)
				fprintf(f, "%s%s", k ? ", " : "", r->cols[r->keys[k]].name);
			fprintf(f, ")\nDO $pgrelay_do$\nDECLARE\n    rel_id integer;\n"
			    "    tmpl text := $pgrelay_tmpl$%s$pgrelay_tmpl$;\nBEGIN\n"
			    "    INSERT INTO %s.pgrelay_tables (relid) VALUES (%s::regclass)\n"
			    "    ON CONFLICT (relid) DO UPDATE SET relid = EXCLUDED.relid\n"
			    "    RETURNING id INTO rel_id;\n"
			    "    EXECUTE replace(tmpl, '" ID_MARK "', rel_id::text);\n"
			    "    -- run as the owner of pgrelay_changes (SECURITY DEFINER)\n"
			    "    EXECUTE format('ALTER FUNCTION %%I.pgrelay_capture_%%s() OWNER TO %%I',\n"
			    "        %s, rel_id, (SELECT r.rolname FROM pg_class c\n"
			    "            JOIN pg_namespace n ON n.oid = c.relnamespace\n"
			    "            JOIN pg_roles r ON r.oid = c.relowner\n"
			    "           WHERE n.nspname = %s AND c.relname = 'pgrelay_changes'));\n"
			    "    UPDATE %s.pgrelay_tables\n"
			    "       SET capture_md5 = md5(replace(tmpl, '" ID_MARK "', rel_id::text)),\n"
			    "           installed_at = now()\n"
			    "     WHERE id = rel_id;\nEND\n$pgrelay_do$;\n",
			    tmpl, qsch, name, lsch, lsch, qsch);
		}
		free(tmpl);
		free(name);
		relmap_free(r);
	}
	if (ok && ol + 2 > sizeof(oids)) {
		snprintf(err, errlen, "too many tables");
		ok = 0;
	}
	if (ok) {
		/* captured tables the config no longer lists */
		const char *params[1] = { oids };

		oids[ol] = '}';
		oids[ol + 1] = '\0';

		res = db_query(db, "SELECT t.id, t.relid::text, c.oid IS NOT NULL "
		    "FROM pgrelay_tables t LEFT JOIN pg_class c ON c.oid = t.relid "
		    "WHERE t.relid::oid <> ALL ($1::oid[]) ORDER BY t.id", 1, params,
		    err, errlen);
		ok = res != NULL;
		for (int i = 0; ok && i < PQntuples(res); i++) {
			fprintf(f, "\n-- %s: captured, no longer in cdc.tables\n",
			    PQgetvalue(res, i, 1));
			if (strcmp(PQgetvalue(res, i, 2), "t") == 0)
				fprintf(f, "DROP TRIGGER IF EXISTS pgrelay_capture ON %s;\n"
				    "DROP TRIGGER IF EXISTS pgrelay_capture_truncate ON %s;\n",
				    PQgetvalue(res, i, 1), PQgetvalue(res, i, 1));
			fprintf(f, "DROP FUNCTION IF EXISTS %s.pgrelay_capture_%s();\n"
			    "DELETE FROM %s.pgrelay_tables WHERE id = %s;\n", qsch,
			    PQgetvalue(res, i, 0), qsch, PQgetvalue(res, i, 0));
		}
		PQclear(res);
	}
	free(qsch);
	free(lsch);
	if (fclose(f) != 0 && ok) {
		snprintf(err, errlen, "out of memory");
		ok = 0;
	}
	if (!ok) {
		free(out);
		return NULL;
	}
	return out;
}

int
cdc_tables_check(PGconn *db, const struct cfg *cfg, char *err, size_t errlen)
{
	for (int i = 0; i < cfg->ntables; i++) {
		const struct cfg_table *ct = &cfg->tables[i];
		enum pgr_err cls;
		struct rel *r = load_rel(db, cfg, ct, &cls, err, errlen);

		if (r == NULL)
			return cls == PGR_CONFIG ? PGR_CONFIG : PGR_RETRY;
		/* the rules, compiled as the consumer compiles them (against
		 * B's table, which has the same columns) */
		struct table_rules tr;
		if (rules_compile(&tr, cfg, ct, r, err, errlen) < 0) {
			relmap_free(r);
			return PGR_CONFIG;
		}
		rules_free(&tr);
		relmap_free(r);
	}
	return 0;
}
