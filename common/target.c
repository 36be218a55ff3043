/*
 * target.c - a target table's registration on B and its apply function.
 *
 * NOTES
 *
 * Registry.  pgrelay_targets holds one row per target table: its id, its
 * version table (the version of the last change applied to each row, kept
 * after a delete as a tombstone; the key columns with the target's names
 * and types) and its truncate horizon.  pgrelay_register_target() makes
 * both on first use, under B's setup lock (advisory lock (1885828466,
 * 0)), so consumers starting together register a table once.  employees
 * of a version-4 install is registered by 005_any_table.sql with its old
 * version table (pgrelay_row_version) and horizon.
 *
 * The apply function.  Generated from B's entry (relmap_sql_apply_body)
 * with the semantics of 004_truncate.sql's pgrelay_apply_employees(), per
 * table: the table's truncate lock is the advisory lock (1885828466, id),
 * taken shared for changes and exclusively when the batch holds a
 * TRUNCATE above the horizon; the horizon is pgrelay_targets.horizon;
 * each row's version lock is claimed in key order before anything is
 * read, a new row's too; a change applies when newer than the row's
 * version (a snapshot row also when equal) and not below the horizon.
 * It returns, for each element of the batch (by its ordinal in the JSON
 * array) whose row B had a version of, that version, and (NULL, horizon)
 * when B had a horizon: the consumer replays its verdicts from these.
 * The function is named by the md5 of its text, pgrelay_apply_<16 hex>,
 * and created only when missing (pgrelay_ensure_function, under the setup
 * lock): consumers never replace each other's function, and a table whose
 * columns changed gets a new one beside the old.
 */
#define _POSIX_C_SOURCE 200809L
#include "target.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

#define APPLY_RETURNS "TABLE (pgrelay_ord bigint, pgrelay_had bigint)"

/* "FILE:LINE" of table t, for errors. */
static void
table_where(const struct cfg *cfg, const struct cfg_table *t, char *buf, size_t len)
{
	if (t->line > 0)
		snprintf(buf, len, "%s:%d", cfg->path, t->line);
	else
		snprintf(buf, len, "%s: the default table %s (no cdc.tables)", cfg->path,
		    t->source);
}

/* tg->fill from B: the missing values of tg's table made into the event's
 * forms by the same SQL that makes A's events (relmap_sql_row). */
static int
load_fill(PGconn *db, struct target *tg, char *err, size_t errlen)
{
	char *row = relmap_sql_row(db, tg->rel, "x"), *q = NULL;
	const char *params[1] = { tg->rel->missing };
	PGresult *res = NULL;
	json_t *all = NULL;
	json_error_t je;
	int rc = -1;

	if (row == NULL)
		goto oom;
	size_t ql = strlen(row) + strlen(tg->rel->qname) + 96;
	if ((q = malloc(ql)) == NULL)
		goto oom;
	snprintf(q, ql, "SELECT (%s)::text FROM json_populate_record(NULL::%s, "
	    "$1::json) x", row, tg->rel->qname);
	if (db_exec(db, RELMAP_SESSION_SQL, 0, NULL, err, errlen) < 0 ||
	    (res = db_query(db, q, 1, params, err, errlen)) == NULL)
		goto out;
	all = json_loads(PQgetvalue(res, 0, 0), 0, &je);
	tg->fill = json_object();
	if (all == NULL || tg->fill == NULL)
		goto oom;
	json_t *miss = json_loads(tg->rel->missing, 0, &je);
	const char *k;
	json_t *v;

	json_object_foreach(miss, k, v) {
		json_t *f = json_object_get(all, k);

		(void)v;
		if (f != NULL && json_object_set(tg->fill, k, f) < 0) {
			json_decref(miss);
			goto oom;
		}
	}
	json_decref(miss);
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory reading table %s", tg->cfg->target);
out:
	json_decref(all);
	PQclear(res);
	free(row);
	free(q);
	return rc;
}

int
target_load(PGconn *db, const struct cfg *cfg, const struct cfg_table *t,
    struct target *out, char *err, size_t errlen)
{
	char why[768], where[512];
	enum pgr_err cls;

	memset(out, 0, sizeof(*out));
	out->cfg = t;
	out->rel = relmap_load(db, t->target, NULL, NULL, &cls, why, sizeof(why));
	if (out->rel == NULL) {
		if (cls == PGR_CONFIG) {
			table_where(cfg, t, where, sizeof(where));
			snprintf(err, errlen, "%s: cdc.tables: target: %s (the target "
			    "database)", where, why);
		} else {
			snprintf(err, errlen, "reading table %s on the target: %s",
			    t->target, why);
		}
		return cls;
	}
	if (rules_compile(&out->rules, cfg, t, out->rel, err, errlen) < 0) {
		target_free(out);
		return PGR_CONFIG;
	}
	if (out->rel->missing != NULL && load_fill(db, out, err, errlen) < 0) {
		target_free(out);
		return PGR_RETRY;
	}
	return 0;
}

int
target_fill(const struct target *tg, json_t *row)
{
	const char *k;
	json_t *v;

	if (tg->fill == NULL || row == NULL)
		return 0;
	json_object_foreach(tg->fill, k, v) {
		if (json_object_get(row, k) == NULL &&
		    json_object_set(row, k, v) < 0)
			return -1;
	}
	return 0;
}

/* The key's column names as a JSON array, for pgrelay_register_target. */
static char *
key_names(const struct rel *r)
{
	json_t *a = json_array();
	char *s;

	if (a == NULL)
		return NULL;
	for (int k = 0; k < r->nkeys; k++)
		if (json_array_append_new(a, json_string(r->cols[r->keys[k]].name)) < 0) {
			json_decref(a);
			return NULL;
		}
	s = json_dumps(a, JSON_COMPACT);
	json_decref(a);
	return s;
}

int
target_ensure(PGconn *db, const struct cfg *cfg, struct target *tg, char *err,
    size_t errlen)
{
	char *keys = key_names(tg->rel), *body = NULL, *text = NULL;
	char id[16], where[512];
	const char *params[4];
	PGresult *res = NULL;
	int rc = PGR_RETRY;

	if (keys == NULL)
		goto oom;
	params[0] = tg->rel->qname;
	params[1] = keys;
	res = db_query(db, "SELECT id, version_table, problem FROM "
	    "pgrelay_register_target($1::regclass, "
	    "ARRAY(SELECT json_array_elements_text($2::json)))", 2, params, err, errlen);
	if (res == NULL)
		goto out;
	if (PQntuples(res) != 1) {
		snprintf(err, errlen, "pgrelay_register_target(%s) returned %d rows",
		    tg->rel->qname, PQntuples(res));
		goto out;
	}
	if (!PQgetisnull(res, 0, 2)) {
		table_where(cfg, tg->cfg, where, sizeof(where));
		snprintf(err, errlen, "%s: cdc.tables: target: %s", where,
		    PQgetvalue(res, 0, 2));
		rc = PGR_CONFIG;
		goto out;
	}
	tg->reg_id = (int)strtol(PQgetvalue(res, 0, 0), NULL, 10);
	free(tg->version_table);
	if ((tg->version_table = strdup(PQgetvalue(res, 0, 1))) == NULL)
		goto oom;
	PQclear(res);
	res = NULL;

	body = relmap_sql_apply_body(db, tg->rel, tg->reg_id, tg->version_table);
	if (body == NULL)
		goto oom;
	size_t tl = strlen(APPLY_RETURNS) + strlen(body) + 1;
	if ((text = malloc(tl)) == NULL)
		goto oom;
	snprintf(text, tl, "%s%s", APPLY_RETURNS, body);
	params[0] = text;
	params[1] = APPLY_RETURNS;
	params[2] = body;
	res = db_query(db, "SELECT n, pgrelay_ensure_function(n, 'p_rows json', 'json', $2, $3) "
	    "FROM (SELECT 'pgrelay_apply_' || left(md5($1), 16) AS n) f", 3, params,
	    err, errlen);
	if (res == NULL)
		goto out;
	if (PQgetvalue(res, 0, 1)[0] == 't')
		log_info("made the apply function %s for table %s (registered as %d, "
		    "versions in %s)", PQgetvalue(res, 0, 0), tg->rel->qname,
		    tg->reg_id, tg->version_table);
	free(tg->apply_sql);
	size_t al = strlen(PQgetvalue(res, 0, 0)) + 96;
	if ((tg->apply_sql = malloc(al)) == NULL)
		goto oom;
	/* the name is pgrelay_apply_ and hex digits: no quoting needed */
	snprintf(tg->apply_sql, al, "SELECT pgrelay_ord, pgrelay_had FROM %s($1::json)",
	    PQgetvalue(res, 0, 0));
	params[0] = PQgetvalue(res, 0, 0);
	snprintf(id, sizeof(id), "%d", tg->reg_id);
	params[1] = id;
	if (db_exec(db, "UPDATE pgrelay_targets SET apply_fn = $1 WHERE id = $2::int "
	    "AND apply_fn IS DISTINCT FROM $1", 2, params, err, errlen) < 0)
		goto out;
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory preparing table %s", tg->cfg->target);
out:
	PQclear(res);
	free(keys);
	free(body);
	free(text);
	return rc;
}

void
target_free(struct target *tg)
{
	rules_free(&tg->rules);
	relmap_free(tg->rel);
	free(tg->version_table);
	free(tg->apply_sql);
	json_decref(tg->fill);
	memset(tg, 0, sizeof(*tg));
}
