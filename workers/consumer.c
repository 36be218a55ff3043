/*
 * consumer.c - pgrelay-consumer: one member of the CDC consumer group;
 * applies the changes of every configured table (cdc.tables; each its own
 * topic, all in one group) to B, exactly once in effect.  The batching,
 * offsets-in-B (per topic and partition), rebalance and DLQ machinery is
 * the shared engine in common/sink.c; a table on B (its description, rules,
 * registration and apply function) is common/target.c; this file is what
 * is CDC-specific: decode, validate, split a batch by table, replay the
 * verdicts.
 *
 * NOTES
 *
 * Start.  Before joining the group the member reads each target table
 * from B's catalog, compiles its rules against it, registers it in
 * pgrelay_targets (its version table) and makes its apply function
 * (target.c): a configuration B contradicts (a missing table, a rule on a
 * missing column or of the wrong type) exits 78 with file:line.  Each new
 * connection to B does the registration and the function again (cheap
 * when they exist).
 *
 * Versions.  Each row in B keeps the change_id of the last change applied
 * to it in its table's version table (kept after a delete); the apply
 * function applies a change only if it is newer (a snapshot row also if
 * equal), first claiming the row's version lock, a new row's too, in key
 * order, so two members applying one row at once go one after the other
 * and the newer version wins (common/target.c, NOTES).
 *
 * Batches.  A batch is decoded and checked here and split by table (by
 * topic); each table's part goes to its function in one statement, the
 * newest change of each row (rows told apart by their key's text,
 * codec_key_text) and the newest TRUNCATE; tables in the config's order,
 * all in the batch's one B transaction.  So a batch is atomic on B across
 * tables, but a transaction of A that wrote several tables reaches B in as
 * many batches as its changes' partitions and topics were read in: not
 * atomic.  The function returns the version B had of each element's row
 * (by ordinal) and its horizon; the verdicts replay the table's changes in
 * batch order over them.  If B refuses the batch as data, the engine
 * re-runs it through apply_message(), a change at a time: the same
 * function with a batch of one.
 *
 * Rules.  A change failing a rule of its table (common/validation.c) is not
 * applied and goes to the DLQ; B keeps the row's last valid version.
 *
 * TRUNCATE.  A TRUNCATE on A (op "t", version T) comes on every partition
 * of its table's topic.  B applies it once, on the first partition it
 * arrives by: every row of that table whose version is below T goes, with
 * its version, and T becomes the table's horizon (pgrelay_targets), below
 * which a change arriving later, from another partition's backlog, is
 * stale, for a row B never had too; on the other partitions it is stale.
 * It runs alone on the table (its advisory lock (1885828466, id), taken
 * shared by every apply of the table's changes).  In a batch, the result
 * is what applying the messages one by one would leave (common/target.c's
 * NOTES have the argument).  A batch applied a message at a time takes
 * the lock shared for a change, then exclusively for a TRUNCATE: two such
 * members can deadlock; PostgreSQL ends one, and its batch is retried.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "sink.h"
#include "target.h"
#include "validation.h"
#include "worker.h"

/* The consumer's tables, one per cdc.tables entry, in the config's order
 * (also the order a batch applies them in: two members lock tables in the
 * same order). */
struct tables {
	const struct cfg *cfg;
	struct target *t;
	int n;
};

static struct target *
table_of(const struct tables *ts, const rd_kafka_message_t *m)
{
	const char *topic = rd_kafka_topic_name(m->rkt);

	for (int i = 0; i < ts->n; i++)
		if (strcmp(ts->t[i].cfg->topic, topic) == 0)
			return &ts->t[i];
	return NULL;
}

/* Adds column col of tg's source table (A) to tg's table on B: its type
 * as A has it, and B's older rows given the value A's older rows read as
 * (a DEFAULT of ADD COLUMN; the default is then dropped again: events
 * carry every later value).  On b (B, autocommit).  0, or -1 with why. */
static int
add_column(const struct cfg *cfg, const struct target *tg, PGconn *b,
    const char *col, char *why, size_t whylen)
{
	char err[768];
	enum pgr_err cls;
	PGconn *a;
	struct rel *src = NULL;
	const struct rel_col *c;
	json_t *miss = NULL;
	json_error_t je;
	const char *mv = NULL;
	char *qc = NULL, *lit = NULL, *sql = NULL;
	int rc = -1;

	/* A's description, as the producer reads it (relmap_load) */
	a = db_connect(cfg->source_dsn, "pgrelay-consumer", err, sizeof(err));
	if (a != NULL)
		src = relmap_load(a, tg->cfg->source, tg->cfg->include,
		    tg->cfg->exclude, &cls, err, sizeof(err));
	PQfinish(a);
	if (src == NULL) {
		snprintf(why, whylen, "reading its type on the source: %s", err);
		return -1;
	}
	if ((c = relmap_col(src, col)) == NULL) {
		snprintf(why, whylen, "the source's table %s has no such column now "
		    "(dropped or renamed again)", tg->cfg->source);
		goto out;
	}
	if (src->missing != NULL) {
		miss = json_loads(src->missing, 0, &je);
		mv = json_string_value(json_object_get(miss, col));
	}
	qc = db_quote(b, col, 1);
	lit = mv != NULL ? db_quote(b, mv, 0) : NULL;
	if (qc == NULL || (mv != NULL && lit == NULL))
		goto oom;
	/* the type is format_type()'s: SQL as the catalog writes it */
	const char *type = c->type, *q = tg->rel->qname;
	size_t sl = 2 * strlen(q) + 2 * strlen(qc) + 2 * strlen(type) +
	    (lit ? strlen(lit) : 0) + 256;
	if ((sql = malloc(sl)) == NULL)
		goto oom;
	/* one transaction: B's older rows take the value, then the default
	 * goes (events carry every later value) */
	snprintf(sql, sl, "ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s %s%s%s%s%s",
	    q, qc, type, lit ? " DEFAULT " : "", lit ? lit : "", lit ? "::" : "",
	    lit ? type : "");
	if (db_exec(b, "BEGIN", 0, NULL, err, sizeof(err)) < 0 ||
	    db_exec(b, sql, 0, NULL, err, sizeof(err)) < 0 ||
	    (lit != NULL && (snprintf(sql, sl, "ALTER TABLE %s ALTER COLUMN %s "
	    "DROP DEFAULT", q, qc) < 0 || db_exec(b, sql, 0, NULL, err,
	    sizeof(err)) < 0)) || db_exec(b, "COMMIT", 0, NULL, err, sizeof(err)) < 0) {
		char ignore[256];

		if (PQtransactionStatus(b) != PQTRANS_IDLE)
			db_exec(b, "ROLLBACK", 0, NULL, ignore, sizeof(ignore));
		snprintf(why, whylen, "adding it to B (%s %s): %s", col, type, err);
		goto out;
	}
	log_info("added column %s %s to %s on the target (consumer.schema_evolution "
	    "= add_columns)%s", qc, type, q, lit ? "; its older rows hold the "
	    "value the source's older rows read as" : "");
	rc = 0;
	goto out;
oom:
	snprintf(why, whylen, "out of memory");
out:
	relmap_free(src);
	json_decref(miss);
	free(qc);
	free(lit);
	free(sql);
	return rc;
}

/* An event of tg carries column col, which B's description of tg's table
 * lacks: a column added (or renamed) on the source.  Reads B's table
 * again (B may have it by now), after adding the column with
 * consumer.schema_evolution = add_columns; at most once a second per
 * table.  0 when tg (replaced) has the column now, or -1 with why: the
 * change goes to the DLQ. */
static int
adapt_target(const struct cfg *cfg, struct target *tg, const char *col,
    char *why, size_t whylen)
{
	char err[1024];
	struct target nt;
	PGconn *b;
	time_t now = time(NULL);
	int rc;

	if (now - tg->looked_at < 1)
		goto missing;
	tg->looked_at = now;
	if ((b = db_connect(cfg->target_dsn, "pgrelay-consumer", err, sizeof(err))) == NULL)
		goto missing;
	if (strcmp(cfg->consumer_schema_evolution, "add_columns") == 0 &&
	    add_column(cfg, tg, b, col, err, sizeof(err)) < 0) {
		log_warn("column \"%s\" of %s is not on the target's %s and could "
		    "not be added: %s", col, tg->cfg->source, tg->cfg->target, err);
		PQfinish(b);
		goto missing;
	}
	rc = target_load(b, cfg, tg->cfg, &nt, err, sizeof(err));
	if (rc == 0 && (rc = target_ensure(b, cfg, &nt, err, sizeof(err))) < 0)
		target_free(&nt);
	PQfinish(b);
	if (rc < 0) {
		log_warn("reading %s on the target again: %s", tg->cfg->target, err);
		goto missing;
	}
	nt.looked_at = now;
	if (relmap_col(nt.rel, col) == NULL) {
		target_free(&nt);
		goto missing;
	}
	log_info("table %s on the target has column \"%s\" now: its changes "
	    "apply again", tg->cfg->target, col);
	target_free(tg);
	*tg = nt;
	return 0;
missing:
	snprintf(why, whylen, "column \"%s\" of the source's %s is not on the "
	    "target's %s (added or renamed on the source): add it to the target "
	    "(ALTER TABLE), or set consumer.schema_evolution = \"add_columns\"; "
	    "until then its changes go to the DLQ", col, tg->cfg->source,
	    tg->cfg->target);
	return -1;
}

/* Decodes m into ev and checks it against its table and the table's rules.
 * 0 when ev is a valid change of *tg (free it with codec_event_free());
 * -1 with *stage, *rule and why otherwise. */
static int
decode_valid(const struct tables *ts, const rd_kafka_message_t *m,
    struct change_event *ev, struct target **tg, const char **stage,
    const char **rule, char *why, size_t whylen)
{
	*stage = *rule = "decode";
	if ((*tg = table_of(ts, m)) == NULL) {
		snprintf(why, whylen, "topic %s is no configured table's",
		    rd_kafka_topic_name(m->rkt));
		return -1;
	}
	if (codec_decode_event(m->payload, m->len, ev, why, whylen) < 0)
		return -1;
	const char *col = codec_unknown_column((*tg)->rel, ev);
	if (col != NULL && adapt_target(ts->cfg, *tg, col, why, whylen) < 0) {
		*rule = "target.missing_column";
		codec_event_free(ev);
		return -1;
	}
	if (target_fill(*tg, ev->row) < 0) {
		snprintf(why, whylen, "out of memory");
		codec_event_free(ev);
		return -1;
	}
	if (codec_check_row_forms((*tg)->rel, ev, why, whylen) < 0) {
		codec_event_free(ev);
		return -1;
	}
	if (rule_check(&(*tg)->rules, ev, rule, why, whylen) < 0) {
		*stage = "validate";
		codec_event_free(ev);
		return -1;
	}
	return 0;
}

/* Whether a change of version ver and op applies over a row whose version
 * is cur (has: B holds one) under the truncate horizon hz (0: none), as
 * the apply function decides: below the horizon it is stale, for a row B
 * has no version of too. */
static int
newer(int has, int64_t cur, int64_t hz, int64_t ver, char op)
{
	if (ver < hz)
		return 0;
	return !has || ver > cur || (ver == cur && op == 'r');
}

/* A decoded, valid change of a row: its key and its place among the
 * table's changes. */
struct item {
	char *key;		/* codec_key_text() */
	int pos;
};

static int
item_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	if (c != 0)
		return c;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/*
 * Applies n valid changes ev[0..n-1] of table tg (in the batch's order) in
 * one statement, and fills verdicts[0..n-1] with SINK_APPLIED or
 * SINK_STALE: what applying them one by one would have said.  0, or
 * PGR_DATA / PGR_RETRY with err.
 */
static int
apply_table(PGconn *db, const struct target *tg, struct change_event *const *ev,
    int n, enum sink_result *verdicts, char *err, size_t errlen)
{
	struct item *items = calloc((size_t)n, sizeof(*items));
	int *group_of = calloc((size_t)n + 1, sizeof(*group_of));	/* by ordinal */
	int *has = calloc((size_t)n, sizeof(*has));			/* by group */
	int64_t *cur = calloc((size_t)n, sizeof(*cur));			/* by group */
	int64_t *hz = calloc((size_t)n, sizeof(*hz));	/* horizon before each */
	json_t *rows = json_array();
	char *text = NULL;
	PGresult *res = NULL;
	int nitems = 0, ngroups = 0, nsent = 0, rc = PGR_RETRY;
	int cut = -1;		/* the newest TRUNCATE */
	int64_t horizon = 0;	/* B's before the batch */
	enum pgr_err cls = PGR_RETRY;

	if (items == NULL || group_of == NULL || has == NULL || cur == NULL ||
	    hz == NULL || rows == NULL)
		goto oom;
	for (int i = 0; i < n; i++) {
		if (ev[i]->op == 't') {
			if (cut < 0 || ev[i]->change_id > ev[cut]->change_id)
				cut = i;
			continue;
		}
		if ((items[nitems].key = codec_key_text(tg->rel, ev[i]->row)) == NULL)
			goto oom;
		items[nitems++].pos = i;
	}
	qsort(items, (size_t)nitems, sizeof(*items), item_cmp);

	/* The newest change of each row: the last one a one-by-one apply
	 * would take, starting from no version at all; and the newest
	 * TRUNCATE, which the function applies first.  Element k of the
	 * array (ordinal k + 1) is group k's; the TRUNCATE comes last. */
	for (int g = 0; g < nitems; ) {
		int e = g, h = 0, last = -1;
		int64_t c = 0;

		for (; e < nitems && strcmp(items[e].key, items[g].key) == 0; e++) {
			const struct change_event *x = ev[items[e].pos];

			if (newer(h, c, 0, x->change_id, x->op)) {
				h = 1;
				c = x->change_id;
				last = items[e].pos;
			}
		}
		if (json_array_append_new(rows, codec_apply_elem(ev[last])) < 0)
			goto oom;
		group_of[++nsent] = ngroups++;
		g = e;
	}
	if (cut >= 0 && json_array_append_new(rows, codec_apply_elem(ev[cut])) < 0)
		goto oom;
	if (json_array_size(rows) > 0) {
		const char *params[1];

		if ((text = json_dumps(rows, JSON_COMPACT)) == NULL)
			goto oom;
		params[0] = text;
		res = db_query_cls(db, tg->apply_sql, 1, params, &cls, err, errlen);
		if (res == NULL) {
			rc = cls;
			goto out;
		}
		for (int r = 0; r < PQntuples(res); r++) {
			int64_t had = strtoll(PQgetvalue(res, r, 1), NULL, 10);
			long ord;

			if (PQgetisnull(res, r, 0)) {
				horizon = had;	/* (NULL, horizon) */
				continue;
			}
			ord = strtol(PQgetvalue(res, r, 0), NULL, 10);
			if (ord < 1 || ord > nsent) {
				snprintf(err, errlen, "table %s: the apply function "
				    "returned ordinal %ld of %d", tg->rel->qname, ord,
				    nsent);
				goto out;
			}
			has[group_of[ord]] = 1;
			cur[group_of[ord]] = had;
		}
	}

	/* Verdicts: replay the changes in their order over what B had.  The
	 * horizon in force before each; a TRUNCATE above it is applied and
	 * raises it. */
	for (int i = 0; i < n; i++) {
		hz[i] = horizon;
		if (ev[i]->op != 't')
			continue;
		if (ev[i]->change_id > horizon) {
			horizon = ev[i]->change_id;
			verdicts[i] = SINK_APPLIED;
		} else {
			verdicts[i] = SINK_STALE;
		}
	}
	/* Each row's changes over the version B had: a version below the
	 * horizon in force is a row that a TRUNCATE deleted. */
	for (int g = 0, k = 0; g < nitems; k++) {
		int e = g, h = has[k];
		int64_t c = cur[k];

		for (; e < nitems && strcmp(items[e].key, items[g].key) == 0; e++) {
			int pos = items[e].pos;
			const struct change_event *x = ev[pos];

			if (h && c < hz[pos])
				h = 0;
			if (newer(h, c, hz[pos], x->change_id, x->op)) {
				h = 1;
				c = x->change_id;
				verdicts[pos] = SINK_APPLIED;
			} else {
				verdicts[pos] = SINK_STALE;
			}
		}
		g = e;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory for a batch of %d changes of %s", n,
	    tg->cfg->target);
out:
	PQclear(res);
	free(text);
	json_decref(rows);
	if (items != NULL)
		for (int i = 0; i < nitems; i++)
			free(items[i].key);
	free(items);
	free(group_of);
	free(has);
	free(cur);
	free(hz);
	return rc;
}

/* One message at a time (B refused the batch as data): the table's apply
 * function with a batch of one, so that the rule is the same. */
static enum sink_result
apply_message(PGconn *db, const rd_kafka_message_t *m, void *opaque,
    const char **stage, const char **rule, char *why, size_t whylen,
    char *err, size_t errlen)
{
	const struct tables *ts = opaque;
	struct change_event ev;
	struct change_event *one[1] = { &ev };
	struct target *tg;
	enum sink_result verdict = SINK_STALE;
	int rc;

	if (decode_valid(ts, m, &ev, &tg, stage, rule, why, whylen) < 0)
		return SINK_REJECT;
	rc = apply_table(db, tg, one, 1, &verdict, err, errlen);
	codec_event_free(&ev);
	if (rc < 0)
		return rc == PGR_DATA ? SINK_REFUSED : SINK_ERROR;
	return verdict;
}

/* The batch split by table, each table's part applied by its function in
 * the batch's transaction (sink.c), tables in the config's order. */
static int
apply_batch(PGconn *db, rd_kafka_message_t *const *msgs, int n, void *opaque,
    struct sink_verdict *v, char *err, size_t errlen)
{
	const struct tables *ts = opaque;
	struct change_event *ev = calloc((size_t)n, sizeof(*ev));
	struct target **tg = calloc((size_t)n, sizeof(*tg));
	struct change_event **part = calloc((size_t)n, sizeof(*part));
	int *where = calloc((size_t)n, sizeof(*where));
	enum sink_result *verdicts = calloc((size_t)n, sizeof(*verdicts));
	int rc = PGR_RETRY;

	if (ev == NULL || tg == NULL || part == NULL || where == NULL ||
	    verdicts == NULL) {
		snprintf(err, errlen, "out of memory for a batch of %d", n);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		v[i].rc = SINK_REJECT;
		if (decode_valid(ts, msgs[i], &ev[i], &tg[i], &v[i].stage, &v[i].rule,
		    v[i].why, sizeof(v[i].why)) < 0)
			tg[i] = NULL;
	}
	for (int t = 0; t < ts->n; t++) {
		int np = 0;

		for (int i = 0; i < n; i++)
			if (tg[i] == &ts->t[t] && v[i].rc == SINK_REJECT) {
				where[np] = i;
				part[np++] = &ev[i];
			}
		if (np == 0)
			continue;
		if ((rc = apply_table(db, &ts->t[t], part, np, verdicts, err, errlen)) < 0)
			goto out;
		for (int k = 0; k < np; k++) {
			v[where[k]].rc = verdicts[k];
			tg[where[k]] = NULL;	/* done */
		}
	}
	rc = 0;
out:
	if (ev != NULL)
		for (int i = 0; i < n; i++)
			codec_event_free(&ev[i]);
	free(ev);
	free(tg);
	free(part);
	free(where);
	free(verdicts);
	return rc;
}

/* On each new connection to B: the tables' registrations and functions. */
static int
prepare_connection(PGconn *db, void *opaque, char *err, size_t errlen)
{
	const struct tables *ts = opaque;

	for (int i = 0; i < ts->n; i++) {
		int rc = target_ensure(db, ts->cfg, &ts->t[i], err, errlen);

		if (rc < 0)
			return rc == PGR_CONFIG ? PGR_RETRY : rc;
	}
	return 0;
}

/*
 * Reads each table's description from B, compiles its rules, registers it
 * and makes its apply function, before joining the group, so that a
 * configuration B contradicts stops the consumer at once.  Retries while
 * B cannot answer.  0, CFG_EXIT_CONFIG, or 0 with ts->n < count when a
 * stop was asked.
 */
static int
load_tables(const struct cfg *cfg, struct tables *ts)
{
	char err[2048];
	int attempt = 0;

	while (!worker_stop) {
		PGconn *db = db_connect(cfg->target_dsn, "pgrelay-consumer", err,
		    sizeof(err));
		int rc = PGR_RETRY;

		if (db != NULL && db_require_schema(db, "target", 5, err, sizeof(err)) < 0) {
			log_error("target database: %s; apply sql/target/*.sql to it", err);
			PQfinish(db);
			worker_sleep_ms(worker_backoff_ms(attempt++));
			continue;
		}
		if (db != NULL) {
			rc = 0;
			for (ts->n = 0; ts->n < cfg->ntables && rc == 0; ts->n++) {
				rc = target_load(db, cfg, &cfg->tables[ts->n],
				    &ts->t[ts->n], err, sizeof(err));
				if (rc == 0 && (rc = target_ensure(db, cfg, &ts->t[ts->n],
				    err, sizeof(err))) < 0)
					target_free(&ts->t[ts->n]);
				if (rc < 0)
					break;
			}
			PQfinish(db);
		}
		if (rc == 0)
			return 0;
		for (int i = 0; i < ts->n; i++)
			target_free(&ts->t[i]);
		ts->n = 0;
		if (rc == PGR_CONFIG) {
			log_error("%s", err);
			return CFG_EXIT_CONFIG;
		}
		int ms = worker_backoff_ms(attempt++);
		log_error("target database: %s; retrying in %d ms", err, ms);
		worker_notify_alive(NULL);	/* waiting on B is not hung */
		worker_sleep_ms(ms);
	}
	return 0;
}

int
main(int argc, char **argv)
{
	struct cfg *cfg = worker_start(argc, argv, "consumer",
	    "usage: pgrelay-consumer -c CONFIG\n"
	    "Applies the CDC topics' changes to the target database as one member\n"
	    "of the consumer group.", NULL);
	struct tables ts = { .cfg = cfg };
	const char **topics = calloc((size_t)cfg->ntables, sizeof(*topics));
	int rc;

	ts.t = calloc((size_t)cfg->ntables, sizeof(*ts.t));
	if (ts.t == NULL || topics == NULL) {
		log_error("out of memory for %d tables", cfg->ntables);
		return 1;
	}
	rc = load_tables(cfg, &ts);
	if (rc == 0 && ts.n == cfg->ntables) {
		for (int i = 0; i < cfg->ntables; i++)
			topics[i] = cfg->tables[i].topic;
		struct sink_ops ops = {
			.appname = "pgrelay-consumer",
			.schema_component = "target",
			.schema_version = 5,	/* any table: pgrelay_targets */
			.group_id = cfg->group_id,
			.topics = topics,
			.ntopics = cfg->ntables,
			.partitions = cfg->partitions,
			.partitions_key = "kafka.partitions",
			.dlq_topic = cfg->dlq_topic,
			.batch_size = cfg->consumer_batch_size,
			.batch_timeout_ms = cfg->consumer_batch_timeout_ms,
			.apply = apply_message,
			.apply_batch = apply_batch,
			.on_connect = prepare_connection,
			.opaque = &ts,
		};
		rc = sink_run(cfg, &ops);
	}
	for (int i = 0; i < ts.n; i++)
		target_free(&ts.t[i]);
	free(ts.t);
	free(topics);
	cfg_free(cfg);
	return rc;
}
