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
 * change twice or move a row back.
 *
 * Rules.  A change failing a rule (common/validation.c) is not applied and
 * goes to the DLQ; B keeps the row's last valid version.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "codec.h"
#include "config.h"
#include "db.h"
#include "sink.h"
#include "validation.h"
#include "worker.h"

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

	if (codec_decode_change(m->payload, m->len, &ch, why, whylen) < 0) {
		*stage = *rule = "decode";
		return SINK_REJECT;
	}
	if (rule_check(rules, &ch, rule, why, whylen) < 0) {
		*stage = "validate";
		codec_change_free(&ch);
		return SINK_REJECT;
	}
	const struct emp_row *r = codec_change_row(&ch);
	op[0] = ch.op;
	op[1] = '\0';
	snprintf(id, sizeof(id), "%ld", (long)r->emp_id);
	snprintf(ver, sizeof(ver), "%" PRId64, ch.change_id);
	snprintf(dob, sizeof(dob), "%ld", (long)r->dob_days);
	snprintf(sal, sizeof(sal), "%ld", (long)r->salary);
	params[0] = op;
	params[1] = id;
	params[2] = ver;
	params[3] = r->first_name;
	params[4] = r->last_name;
	params[5] = r->has_dob ? dob : NULL;
	params[6] = r->city;
	params[7] = r->has_salary ? sal : NULL;
	res = db_query(db, "SELECT pgrelay_apply_employee($1, $2::int, $3::bigint, "
	    "$4, $5, $6::int, $7, $8::int)", 8, params, err, errlen);
	if (res == NULL) {
		rc = SINK_ERROR;
	} else {
		rc = strcmp(PQgetvalue(res, 0, 0), "applied") == 0 ? SINK_APPLIED : SINK_STALE;
		PQclear(res);
	}
	codec_change_free(&ch);
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
		.group_id = cfg->group_id,
		.topic = cfg->cdc_topic,
		.partitions = cfg->partitions,
		.dlq_topic = cfg->dlq_topic,
		.batch_size = cfg->consumer_batch_size,
		.batch_timeout_ms = cfg->consumer_batch_timeout_ms,
		.apply = apply_message,
		.opaque = &rules,
	};
	int rc = sink_run(cfg, &ops);

	cfg_free(cfg);
	return rc;
}
