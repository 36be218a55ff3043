/*
 * consumer.c - pgrelay-consumer: one member of the CDC consumer group;
 * applies the CDC topic's changes to B's employees table, exactly once in
 * effect.  The batching, offsets-in-B, rebalance and DLQ machinery is the
 * shared engine in common/sink.c; this file is what is CDC-specific: decode,
 * validate, apply one change.
 *
 * NOTES
 *
 * Versions.  Each row in B keeps the change_id of the last change applied
 * to it (pgrelay_row_version, kept after a delete);
 * pgrelay_apply_employee() applies a change only if it is newer (a
 * snapshot row also if equal).  So a replayed batch, a message a producer
 * sent twice, or a snapshot row older than what B holds can never apply a
 * change twice or move a row back.  Both apply functions first take the
 * row's version lock, inserting the version of a row B has none of, so
 * two members applying one row at once (a partition briefly shared in a
 * rebalance, a stopped member that wakes up) go one after the other and
 * the newer version wins, a new row's included (schema version 3; test
 * 35).
 *
 * Batches.  A batch is applied set-based: the changes are decoded and
 * checked here, the newest change of each row in the batch (what applying
 * them one by one would leave) goes to pgrelay_apply_employees() in one
 * statement, and the versions B held before tell which changes were
 * applied and which were stale.  If B refuses the batch as data, the
 * engine re-runs it through apply_message(), a change at a time.
 *
 * Rules.  A change failing a rule (common/validation.c) is not applied and
 * goes to the DLQ; B keeps the row's last valid version.
 *
 * TRUNCATE.  A TRUNCATE on A (op "t", version T) comes on every partition
 * (workers/producer.c).  B applies it once, on the first partition it
 * arrives by: every row whose version is below T goes, with its version,
 * and T becomes B's truncate horizon (pgrelay_truncate_horizon), below
 * which any change arriving later, from another partition's backlog, is
 * stale, for a row B never had too; on the other partitions it is stale
 * (schema version 4, sql/target/004_truncate.sql).  It runs alone on B
 * (an exclusive lock that every apply takes shared).  In a batch the
 * newest TRUNCATE goes to pgrelay_apply_employees() with the newest
 * change of each row, and the result is what applying the batch's
 * messages one by one would leave: one by one, a row's version and the
 * horizon only grow, and a row ends as the newest event that reached it
 * (its version before, its changes, the TRUNCATEs), in any order (the
 * SQL function's header has the details).  The verdicts replay the
 * batch in its order over the versions B had and its horizon before the
 * batch: a change below the horizon in force at its place is stale, and
 * a row whose version is below it is gone, then new again.  B never shows
 * a row from before T beside one from after it: a change above T follows
 * T on its partition, so the batch that applies T first deletes the old
 * rows in its own transaction.  Not atomic: the changes after T of the
 * TRUNCATE's own transaction reach B per partition, in several batches.
 * A batch applied a message at a time (B refused a value) takes the
 * truncate lock shared for a change, then exclusively for a TRUNCATE:
 * two such members, or one and a member waiting on a row it holds, can
 * deadlock; PostgreSQL ends one, and its batch is retried.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "db.h"
#include "sink.h"
#include "validation.h"
#include "worker.h"

/* Decodes m into ch and checks the rules.  0 when ch is a valid change (free
 * it with codec_change_free()); -1 with *stage, *rule and why otherwise. */
static int
decode_valid(const struct rules *rules, const rd_kafka_message_t *m,
    struct change *ch, const char **stage, const char **rule, char *why,
    size_t whylen)
{
	if (codec_decode_change(m->payload, m->len, ch, why, whylen) < 0) {
		*stage = *rule = "decode";
		return -1;
	}
	if (rule_check(rules, ch, rule, why, whylen) < 0) {
		*stage = "validate";
		codec_change_free(ch);
		return -1;
	}
	return 0;
}

static enum sink_result
apply_message(PGconn *db, const rd_kafka_message_t *m, void *opaque,
    const char **stage, const char **rule, char *why, size_t whylen,
    char *err, size_t errlen)
{
	const struct rules *rules = opaque;
	struct change ch;
	char op[2], id[16], ver[24], dob[16], sal[16];
	const char *params[8];
	PGresult *res;
	enum sink_result rc;
	enum pgr_err cls = PGR_RETRY;

	if (decode_valid(rules, m, &ch, stage, rule, why, whylen) < 0)
		return SINK_REJECT;
	const struct emp_row *r = codec_change_row(&ch);	/* empty for 't' */
	op[0] = ch.op;
	op[1] = '\0';
	snprintf(id, sizeof(id), "%ld", (long)r->emp_id);
	snprintf(ver, sizeof(ver), "%" PRId64, ch.change_id);
	snprintf(dob, sizeof(dob), "%ld", (long)r->dob_days);
	snprintf(sal, sizeof(sal), "%ld", (long)r->salary);
	params[0] = op;
	params[1] = ch.op == 't' ? NULL : id;
	params[2] = ver;
	params[3] = r->first_name;
	params[4] = r->last_name;
	params[5] = r->has_dob ? dob : NULL;
	params[6] = r->city;
	params[7] = r->has_salary ? sal : NULL;
	res = db_query_cls(db, "SELECT pgrelay_apply_employee($1, $2::int, $3::bigint, "
	    "$4, $5, $6::int, $7, $8::int)", 8, params, &cls, err, errlen);
	if (res == NULL) {
		rc = cls == PGR_DATA ? SINK_REFUSED : SINK_ERROR;
	} else {
		rc = strcmp(PQgetvalue(res, 0, 0), "applied") == 0 ? SINK_APPLIED : SINK_STALE;
		PQclear(res);
	}
	codec_change_free(&ch);
	return rc;
}

/* A decoded, valid change: its row and its place in the batch. */
struct item {
	int32_t emp_id;
	int pos;
};

static int
item_cmp(const void *a, const void *b)
{
	const struct item *x = a, *y = b;

	if (x->emp_id != y->emp_id)
		return x->emp_id < y->emp_id ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Whether a change of version ver and op applies over a row whose version
 * is cur (has: B holds one) under the truncate horizon hz (0: none), as
 * the apply functions decide: below the horizon it is stale, for a row B
 * has no version of too. */
static int
newer(int has, int64_t cur, int64_t hz, int64_t ver, char op)
{
	if (ver < hz)
		return 0;
	return !has || ver > cur || (ver == cur && op == 'r');
}

static int
apply_batch(PGconn *db, rd_kafka_message_t *const *msgs, int n, void *opaque,
    struct sink_verdict *v, char *err, size_t errlen)
{
	const struct rules *rules = opaque;
	struct change *ch = calloc((size_t)n, sizeof(*ch));
	struct item *items = calloc((size_t)n, sizeof(*items));
	const struct change **win = calloc((size_t)n, sizeof(*win));
	int *truncs = calloc((size_t)n, sizeof(*truncs));	/* positions of 't' */
	int64_t *hz = calloc((size_t)n, sizeof(*hz));	/* horizon before each */
	char *rows = NULL;
	PGresult *res = NULL;
	int nitems = 0, nwin = 0, ntruncs = 0, nr = 0, rc = PGR_RETRY;
	int cut = -1;		/* the newest TRUNCATE's position */
	int64_t horizon = 0;	/* B's before the batch */
	enum pgr_err cls = PGR_RETRY;

	if (ch == NULL || items == NULL || win == NULL || truncs == NULL ||
	    hz == NULL) {
		snprintf(err, errlen, "out of memory for a batch of %d", n);
		goto out;
	}
	for (int i = 0; i < n; i++) {
		v[i].rc = SINK_REJECT;
		if (decode_valid(rules, msgs[i], &ch[i], &v[i].stage, &v[i].rule,
		    v[i].why, sizeof(v[i].why)) < 0)
			continue;
		if (ch[i].op == 't') {
			truncs[ntruncs++] = i;
			if (cut < 0 || ch[i].change_id > ch[cut].change_id)
				cut = i;
			continue;
		}
		items[nitems].emp_id = codec_change_row(&ch[i])->emp_id;
		items[nitems++].pos = i;
	}
	qsort(items, (size_t)nitems, sizeof(*items), item_cmp);

	/* The newest change of each row: the last one a one-by-one apply
	 * would take, starting from no version at all; and the newest
	 * TRUNCATE, which the function applies first. */
	for (int g = 0; g < nitems; ) {
		int e = g, has = 0, last = -1;
		int64_t cur = 0;

		for (; e < nitems && items[e].emp_id == items[g].emp_id; e++) {
			const struct change *c = &ch[items[e].pos];
			if (newer(has, cur, 0, c->change_id, c->op)) {
				has = 1;
				cur = c->change_id;
				last = items[e].pos;
			}
		}
		win[nwin++] = &ch[last];
		g = e;
	}
	if (cut >= 0)
		win[nwin++] = &ch[cut];
	if (nwin > 0) {
		const char *params[1];

		rows = codec_encode_apply_rows(win, nwin);
		if (rows == NULL) {
			snprintf(err, errlen, "out of memory encoding a batch of %d", nwin);
			goto out;
		}
		params[0] = rows;
		res = db_query_cls(db, "SELECT emp_id, had FROM pgrelay_apply_employees($1::json) "
		    "ORDER BY emp_id", 1, params, &cls, err, errlen);
		if (res == NULL) {
			rc = cls;
			goto out;
		}
		/* its last row (NULLs sort last), if B had a horizon: (NULL, it) */
		nr = PQntuples(res);
		if (nr > 0 && PQgetisnull(res, nr - 1, 0))
			horizon = strtoll(PQgetvalue(res, --nr, 1), NULL, 10);
	}

	/* Verdicts: replay the batch in its order over what B had.  The
	 * horizon in force before each message; a TRUNCATE above it is
	 * applied and raises it. */
	for (int i = 0, t = 0; i < n; i++) {
		hz[i] = horizon;
		if (t < ntruncs && truncs[t] == i) {
			t++;
			if (ch[i].change_id > horizon) {
				horizon = ch[i].change_id;
				v[i].rc = SINK_APPLIED;
			} else {
				v[i].rc = SINK_STALE;
			}
		}
	}
	/* Each row's changes over the version B had: a version below the
	 * horizon in force is a row that a TRUNCATE deleted. */
	for (int g = 0, r = 0; g < nitems; ) {
		int e = g, has = 0;
		int64_t cur = 0;

		while (r < nr && strtol(PQgetvalue(res, r, 0), NULL, 10) < items[g].emp_id)
			r++;
		if (r < nr && strtol(PQgetvalue(res, r, 0), NULL, 10) == items[g].emp_id) {
			has = 1;
			cur = strtoll(PQgetvalue(res, r, 1), NULL, 10);
		}
		for (; e < nitems && items[e].emp_id == items[g].emp_id; e++) {
			int pos = items[e].pos;
			const struct change *c = &ch[pos];

			if (has && cur < hz[pos])
				has = 0;
			if (newer(has, cur, hz[pos], c->change_id, c->op)) {
				has = 1;
				cur = c->change_id;
				v[pos].rc = SINK_APPLIED;
			} else {
				v[pos].rc = SINK_STALE;
			}
		}
		g = e;
	}
	rc = 0;
out:
	PQclear(res);
	free(rows);
	if (ch != NULL)
		for (int i = 0; i < n; i++)
			codec_change_free(&ch[i]);
	free(ch);
	free(items);
	free(win);
	free(truncs);
	free(hz);
	return rc;
}

int
main(int argc, char **argv)
{
	struct rules rules;
	struct cfg *cfg = worker_start(argc, argv, "consumer",
	    "usage: pgrelay-consumer -c CONFIG\n"
	    "Applies the CDC topic's changes to the target database as one member\n"
	    "of the consumer group.", NULL);

	rule_init(&rules, cfg);
	struct sink_ops ops = {
		.appname = "pgrelay-consumer",
		.schema_component = "target",
		.schema_version = 4,	/* TRUNCATE and its horizon */
		.group_id = cfg->group_id,
		.topic = cfg->cdc_topic,
		.partitions = cfg->partitions,
		.partitions_key = "kafka.partitions",
		.dlq_topic = cfg->dlq_topic,
		.batch_size = cfg->consumer_batch_size,
		.batch_timeout_ms = cfg->consumer_batch_timeout_ms,
		.apply = apply_message,
		.apply_batch = apply_batch,
		.opaque = &rules,
	};
	int rc = sink_run(cfg, &ops);

	cfg_free(cfg);
	return rc;
}
