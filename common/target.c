/*
 * target.c - a target table's registration on B and its apply function.
 *
 * NOTES
 *
 * Registry.  pgrelay_targets holds one row per target table: its id, its
 * version table (the version, A's change_id, of the last change applied
 * to each row, kept after a delete as a tombstone; the key columns with
 * the target's names and types) and its truncate horizon.
 * pgrelay_register_target() makes both on first use, under B's setup lock
 * (advisory lock (1885828466, 0)), so consumers starting together register
 * a table once.  employees of a version-4 install is registered by
 * 005_any_table.sql with its old version table (pgrelay_row_version) and
 * horizon (pgrelay_truncate_horizon's).
 *
 * The apply function.  Generated from B's entry (relmap_sql_apply_body),
 * one per table and shape; what follows is why it is right.  (Before
 * target version 5 the same argument sat in the headers of the
 * hand-written employees functions of sql/target/001, 003 and 004, which
 * 005_any_table.sql now drops.)  It applies a batch, a JSON array of
 * changes with at most one per row (the consumer keeps each row's newest
 * and the batch's newest TRUNCATE); a batch of one is how the consumer
 * applies messages one at a time.  It returns, for each element (by its
 * ordinal in the array) whose row B had a version of, that version, and
 * (NULL, horizon) when B had a horizon before the batch: the consumer
 * replays the batch in its order over these and counts each change,
 * TRUNCATEs included, applied or stale.  The function is named by the md5
 * of its text, pgrelay_apply_<16 hex>, and created only when missing
 * (pgrelay_ensure_function, under the setup lock): consumers never replace
 * each other's function, and a table whose columns changed gets a new one
 * beside the old.
 *
 * Versions.  A change applies only if its version is newer than the one
 * the row's version table holds, so a replayed or duplicated message never
 * applies twice or moves a row back to an older state.  A snapshot row
 * (op "r") carries the newest version its snapshot saw of the row and
 * applies when equal too.  change_ids are unique, so only a snapshot row
 * can carry a version B already holds, or a TRUNCATE's (snapshot.c).
 *
 * Horizon.  pgrelay_targets.horizon is the change_id of the newest
 * TRUNCATE applied to the table (0: none).  A TRUNCATE of version T
 * deletes every row of the table whose version is below T (or that has
 * none), with its version, and makes T the horizon; from then on a change
 * below the horizon is stale, for a row B never had too.  A row whose
 * version is T or newer stays: a snapshot row that carries T (no change of
 * its own since) or a row A wrote after the TRUNCATE.  The producer sends
 * a TRUNCATE to every partition, each partition's stream carries it in
 * order, and a change below T still in another partition's backlog meets
 * the horizon.  So every version B keeps is at or above the horizon, and a
 * version below it carries nothing the horizon does not: hence deleted
 * rather than kept as a tombstone at T.
 *
 * Locks.  The table's truncate lock is the transaction-scoped advisory
 * lock (1885828466, id), id its pgrelay_targets.id (on B, 0 is the setup
 * lock; on A, 1 is the producer's and 2 the snapshot's).  Before anything
 * else the function takes it exclusively when the batch holds a TRUNCATE,
 * shared when not; the next statement reads the horizon under it, in a new
 * snapshot (plpgsql takes one per statement in READ COMMITTED).  So an
 * apply of a TRUNCATE runs alone on the table, after every apply that
 * began before it has committed and before any that begins after it reads
 * the horizon.  The lock comes before any row's version lock in both
 * kinds, so they cannot deadlock on it (a batch applied a message at a
 * time can: consumer.c).  Then, with a TRUNCATE above the horizon (T), the
 * function reads the versions B had of the batch's rows, for the caller,
 * deletes the rows and versions below T and raises the horizon to T.  Then
 * two statements, for the changes at or above the horizon (now T) only; a
 * change below it claims nothing (a new row's version would be below the
 * horizon) and is stale.  The first, the claim, takes every row's version
 * lock in key order: a row B has no version of gets the change's (a new
 * row: the change applies), a version B holds is locked (ON CONFLICT DO
 * UPDATE locks the row even where its WHERE is false), after any
 * transaction that is inserting or changing it ends.  So two members that
 * briefly share a partition, or a stopped member that wakes up, apply one
 * row one after the other, new rows included, the newer version wins in
 * either order, and they wait for each other instead of deadlocking.  The
 * second reads the versions B had and writes the rows and versions, under
 * those locks and in a snapshot taken after them: it sees what the
 * transactions it waited for wrote, a row one of them created included.
 * Its data-modifying CTEs run to completion whether or not the final
 * SELECT reads them.
 *
 * One pass = one at a time.  The batch's result is what applying its
 * messages one at a time, in their order, would leave.  Call a row's
 * effective version its version in the version table, or the horizon when
 * it has none or an older one (a TRUNCATE deleted it).  One at a time, a
 * change applies exactly when it is newer than the row's effective version
 * (a snapshot row also when equal), and sets it; a TRUNCATE of version T
 * raises every effective version below T to T, deleting those rows.  Each
 * step only raises effective versions, to a maximum: a row ends as the
 * newest event that reached it (its state before the batch, the batch's
 * changes of it, the batch's TRUNCATEs), whatever their order.  The
 * function reaches the same maxima in one pass: first the batch's newest
 * TRUNCATE if it is above the horizon (T), then each row's newest change
 * if it is at or above the horizon (now T) and newer than the row's
 * version.  A change below T is not written at all: one at a time, it
 * would have been written and then deleted by T, or found stale.  Of a
 * row's changes in the batch only the newest is sent: the older ones
 * would be overwritten by it, or are stale.
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
 * forms by the same SQL that makes A's events (relmap_sql_row; it sets
 * db's session to RELMAP_SESSION_SQL). */
static int
load_fill(PGconn *db, struct target *tg, char *err, size_t errlen)
{
	char *row = relmap_sql_row(db, tg->rel, "x"), *q = NULL;
	const char *params[1] = { tg->rel->missing };
	PGresult *res = NULL;
	json_error_t je;
	int rc = -1;

	if (row == NULL)
		goto oom;
	size_t ql = strlen(row) + strlen(tg->rel->qname) + 96;
	if ((q = malloc(ql)) == NULL)
		goto oom;
	/* the columns without a missing value read as null: stripped */
	snprintf(q, ql, "SELECT json_strip_nulls(%s)::text FROM "
	    "json_populate_record(NULL::%s, $1::json) x", row, tg->rel->qname);
	if (db_exec(db, RELMAP_SESSION_SQL, 0, NULL, err, errlen) < 0 ||
	    (res = db_query(db, q, 1, params, err, errlen)) == NULL)
		goto out;
	if ((tg->fill = json_loads(PQgetvalue(res, 0, 0), 0, &je)) == NULL)
		goto oom;
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory reading table %s", tg->cfg->target);
out:
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
