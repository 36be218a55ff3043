/*
 * cdc.c - one change event to the CDC topic, or to the DLQ when it cannot
 * be carried (see cdc.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "cdc.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "log.h"

/* The DLQ record of a change that cannot be carried: its key, a value
 * that says which change it was ({"op":"u","change_id":42}), and headers
 * with the reason and the source. */
static int
send_unrepresentable(rd_kafka_t *rk, const struct cfg *cfg,
    const struct change *c, const char *key, size_t keylen, const char *why,
    char *err, size_t errlen)
{
	char val[96], id[24];
	const char *origin[] = { "table", "public.employees", "change_id", id };
	const struct kfk_dlq_why w = { "capture", "source.unrepresentable", why,
	    origin, 2 };
	int n;

	snprintf(id, sizeof(id), "%" PRId64, c->change_id);
	n = snprintf(val, sizeof(val), "{\"op\":\"%c\",\"change_id\":%" PRId64 "}",
	    c->op, c->change_id);
	log_warn("change %" PRId64 " (op %c, emp_id %ld) cannot be carried by "
	    "the change event: %s; it goes to the DLQ topic %s and the row keeps "
	    "its previous state on the target", c->change_id, c->op,
	    (long)codec_change_row(c)->emp_id, why, cfg->dlq_topic);
	return kfk_produce_dlq(rk, cfg->dlq_topic, key, keylen, val, (size_t)n,
	    &w, err, errlen);
}

/* A TRUNCATE (op 't'): one copy to each of the CDC topic's partitions,
 * without a key, so that each partition's stream carries it in order with
 * the changes of its rows (see NOTES in workers/producer.c).  The topic
 * has cfg->partitions partitions: the workers check it at start. */
static int
send_truncate(rd_kafka_t *rk, const struct cfg *cfg, const struct change *c,
    const char *dbname, struct kfk_acks *acks, char *err, size_t errlen)
{
	size_t len;
	char *val = codec_encode_change(c, dbname, &len);

	if (val == NULL) {
		snprintf(err, errlen, "out of memory encoding change %" PRId64,
		    c->change_id);
		return -1;
	}
	for (int32_t p = 0; p < cfg->partitions; p++) {
		if (kfk_produce(rk, cfg->cdc_topic, p, NULL, 0, val, len,
		    RD_KAFKA_MSG_F_COPY, NULL, err, errlen) < 0) {
			free(val);
			return -1;
		}
		acks->sent++;
	}
	free(val);
	log_info("TRUNCATE of employees (change %" PRId64 ") sent to each of "
	    "the %d partitions of %s; the target deletes every row older than it",
	    c->change_id, cfg->partitions, cfg->cdc_topic);
	return 0;
}

const char *
cdc_dob_unrepresentable(const char *dob_text, char *why, size_t whylen)
{
	snprintf(why, whylen, "dob '%s' is outside 0001-01-01 to 9999-12-31, "
	    "what the change event carries", dob_text);
	return why;
}

int
cdc_send(rd_kafka_t *rk, const struct cfg *cfg, const struct change *c,
    const char *dbname, const char *why_unrepresentable, struct kfk_acks *acks,
    char *err, size_t errlen)
{
	char key[32], why[256];
	size_t keylen, len;
	char *val;

	if (c->op == 't')
		return send_truncate(rk, cfg, c, dbname, acks, err, errlen);
	keylen = codec_encode_key(codec_change_row(c)->emp_id, key, sizeof(key));
	if (why_unrepresentable != NULL) {
		if (send_unrepresentable(rk, cfg, c, key, keylen,
		    why_unrepresentable, err, errlen) < 0)
			return -1;
		acks->sent++;
		return 0;
	}
	val = codec_encode_change(c, dbname, &len);
	if (val == NULL) {
		if (codec_check_row(codec_change_row(c), why, sizeof(why)) == 0) {
			snprintf(err, errlen, "out of memory encoding change %"
			    PRId64, c->change_id);
			return -1;
		}
		if (send_unrepresentable(rk, cfg, c, key, keylen, why, err,
		    errlen) < 0)
			return -1;
		acks->sent++;
		return 0;
	}
	if (kfk_produce(rk, cfg->cdc_topic, RD_KAFKA_PARTITION_UA, key, keylen,
	    val, len, RD_KAFKA_MSG_F_FREE, NULL, err, errlen) < 0) {
		free(val);
		return -1;
	}
	acks->sent++;
	return 0;
}
