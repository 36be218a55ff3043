/*
 * fuzz_config.c - libFuzzer target for the config loader (cfg_load_string,
 * the in-memory twin of cfg_load, common/config.c): libconfig's parser and
 * pgrelay's schema and relation checks on any text.
 *
 * A config loaded keeps what config.c promises: every string key set and
 * not empty, consumer.min <= count <= max <= kafka.partitions, the same
 * for the ETL loaders, distinct CDC and DLQ topics, a scale_pool pgrelayd
 * knows, rules.min_dob a date.  A refusal is one line naming the file and
 * a line ("fuzz.conf:N: ...").  Nothing leaks (LeakSanitizer).  A broken
 * invariant calls abort().
 *
 * Inputs holding "@include" are skipped: libconfig would read the file
 * named, which makes a run depend on the machine (and "/dev/zero" never
 * ends).  The environment overrides are unset once, at start.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	unsetenv("PGRELAY_KAFKA_BROKERS");
	unsetenv("PGRELAY_SOURCE_DSN");
	unsetenv("PGRELAY_TARGET_DSN");
	unsetenv("RUNTIME_DIRECTORY");
	return 0;
}

static void
check_string(const char *s)
{
	if (s == NULL || s[0] == '\0')
		abort();
}

static void
check_config(const struct cfg *c)
{
	const char *strings[] = { c->log_level, c->brokers, c->cdc_topic, c->dlq_topic,
	    c->group_id, c->source_dsn, c->target_dsn, c->runtime_dir, c->sup_scale_pool,
	    c->etl_spool_dir, c->etl_topic, c->etl_dlq_topic, c->etl_group_id,
	    c->etl_departments, c->rule_min_dob };
	int32_t days;

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++)
		check_string(strings[i]);
	if (strcmp(c->path, "fuzz.conf") != 0)
		abort();
	if (!(c->consumer_min <= c->consumer_count && c->consumer_count <= c->consumer_max &&
	    c->consumer_max <= c->partitions))
		abort();
	if (!(c->etl_loader_min <= c->etl_loader_count &&
	    c->etl_loader_count <= c->etl_loader_max && c->etl_loader_max <= c->etl_partitions))
		abort();
	if (strcmp(c->cdc_topic, c->dlq_topic) == 0)
		abort();
	if (strcmp(c->sup_scale_pool, "consumer") != 0 &&
	    strcmp(c->sup_scale_pool, "etl_loader") != 0)
		abort();
	if (cfg_parse_date(c->rule_min_dob, &days) != 0 || days != c->rule_min_dob_days)
		abort();
	if (c->etl_enabled != 0 && c->etl_enabled != 1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[1024] = "", *text;
	struct cfg *cfg;

	if (memmem(data, size, "@include", 8) != NULL)
		return 0;
	text = malloc(size + 1);
	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	cfg = cfg_load_string(text, "fuzz.conf", err, sizeof(err));
	free(text);
	if (cfg == NULL) {
		/* "fuzz.conf:N: ..." on one line */
		if (strncmp(err, "fuzz.conf:", 10) != 0 || err[10] < '0' || err[10] > '9' ||
		    strchr(err, '\n') != NULL)
			abort();
		return 0;
	}
	check_config(cfg);
	cfg_free(cfg);
	return 0;
}
