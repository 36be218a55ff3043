/*
 * etl_loader.c - pgrelay-etl_loader: one member of the ETL consumer group;
 * loads records from the ETL topic into B's department_employee and keeps
 * department_employee_salary's totals exact.  The batching, offsets-in-B,
 * rebalance and DLQ machinery is the shared engine in common/sink.c.
 *
 * NOTES
 *
 * Exact totals.  pgrelay_etl_load() inserts a record only if its identity
 * (file sha256, line) is new, and adds its salary to the department's
 * total in the same statement's transaction only then.  Together with the
 * offsets kept in B, a replay after kill -9, a rebalance or a producer
 * resending part of a file never counts a salary twice.
 */
#define _POSIX_C_SOURCE 200809L
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "sink.h"
#include "worker.h"

static const char *
text_field(json_t *o, const char *name, size_t max, char *why, size_t whylen)
{
	json_t *v = json_object_get(o, name);

	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > max) {
		snprintf(why, whylen, "%s: expected a non-empty string of at most %zu "
		    "bytes", name, max);
		return NULL;
	}
	return json_string_value(v);
}

static enum sink_result
apply_record(PGconn *db, const rd_kafka_message_t *m, void *opaque,
    const char **stage, const char **rule, char *why, size_t whylen,
    char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *o, *line, *salary;
	char line_s[16], salary_s[16];
	const char *params[8];
	enum sink_result rc = SINK_REJECT;

	(void)opaque;
	*stage = *rule = "decode";
	o = m->payload ? json_loadb(m->payload, m->len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
	if (!json_is_object(o)) {
		snprintf(why, whylen, "not a JSON object: %s", o ? "wrong type" : jerr.text);
		json_decref(o);
		return SINK_REJECT;
	}
	line = json_object_get(o, "line");
	salary = json_object_get(o, "salary");
	if ((params[0] = text_field(o, "sha256", 64, why, whylen)) == NULL ||
	    (params[2] = text_field(o, "file", 1000, why, whylen)) == NULL ||
	    (params[3] = text_field(o, "department", 100, why, whylen)) == NULL ||
	    (params[4] = text_field(o, "department_division", 200, why, whylen)) == NULL ||
	    (params[5] = text_field(o, "position_title", 200, why, whylen)) == NULL ||
	    (params[6] = text_field(o, "hire_date", 10, why, whylen)) == NULL)
		goto out;
	if (!json_is_integer(line) || json_integer_value(line) < 1 ||
	    json_integer_value(line) > INT32_MAX) {
		snprintf(why, whylen, "line: expected a positive integer");
		goto out;
	}
	if (!json_is_integer(salary) || json_integer_value(salary) < 0 ||
	    json_integer_value(salary) > INT32_MAX) {
		snprintf(why, whylen, "salary: expected a non-negative integer");
		goto out;
	}
	snprintf(line_s, sizeof(line_s), "%lld", (long long)json_integer_value(line));
	snprintf(salary_s, sizeof(salary_s), "%lld", (long long)json_integer_value(salary));
	params[1] = line_s;
	params[7] = salary_s;
	enum pgr_err cls = PGR_RETRY;
	PGresult *res = db_query_cls(db, "SELECT pgrelay_etl_load($1, $2::int, $3, $4, "
	    "$5, $6, $7::date, $8::int)", 8, params, &cls, err, errlen);
	if (res == NULL) {
		/* a bad date is PGR_DATA (SQLSTATE 22): rejected alone */
		rc = cls == PGR_DATA ? SINK_REFUSED : SINK_ERROR;
	} else {
		rc = strcmp(PQgetvalue(res, 0, 0), "applied") == 0 ? SINK_APPLIED : SINK_STALE;
		PQclear(res);
	}
out:
	json_decref(o);
	return rc;
}

int
main(int argc, char **argv)
{
	struct cfg *cfg = worker_start(argc, argv, "etl_loader",
	    "usage: pgrelay-etl_loader -c CONFIG\n"
	    "Loads the ETL topic into department_employee as one member of the\n"
	    "ETL consumer group.", NULL);
	const char *const topics[] = { cfg->etl_topic };
	struct sink_ops ops = {
		.appname = "pgrelay-etl_loader",
		.schema_component = "etl",
		.group_id = cfg->etl_group_id,
		.topics = topics,
		.ntopics = 1,
		.partitions = cfg->etl_partitions,
		.partitions_key = "etl.partitions",
		.dlq_topic = cfg->etl_dlq_topic,
		.batch_size = cfg->etl_loader_batch_size,
		.batch_timeout_ms = cfg->etl_loader_batch_timeout_ms,
		.apply = apply_record,
		.opaque = NULL,
	};
	int rc = sink_run(cfg, &ops);

	cfg_free(cfg);
	return rc;
}
