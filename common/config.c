/*
 * config.c - reads the libconfig file and checks it against one table.
 *
 * The table cfg_schema lists every key pgrelay knows: its group, type,
 * range, default and whether it must be given.  Loading walks the file and
 * rejects what the table does not list, then walks the table and fills the
 * struct.  Nothing else in pgrelay parses configuration.
 */
#define _POSIX_C_SOURCE 200809L
#include "config.h"
#include "log.h"

#include <errno.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum cfg_type { CFG_T_STRING, CFG_T_INT, CFG_T_INT64, CFG_T_BOOL };

struct cfg_key {
	const char *group;
	const char *name;
	enum cfg_type type;
	size_t offset;
	int required;		/* 1: must be in the file (or the environment) */
	const char *def_str;
	long long def_int;
	long long min, max;	/* range for integers */
	const char *env;	/* environment variable overriding the file */
};

#define STR(g, k, field, req, def, env) \
	{ g, k, CFG_T_STRING, offsetof(struct cfg, field), req, def, 0, 0, 0, env }
#define INT(g, k, field, def, lo, hi) \
	{ g, k, CFG_T_INT, offsetof(struct cfg, field), 0, NULL, def, lo, hi, NULL }
#define BOOL(g, k, field, def) \
	{ g, k, CFG_T_BOOL, offsetof(struct cfg, field), 0, NULL, def, 0, 1, NULL }
#define INT64(g, k, field, def, lo, hi) \
	{ g, k, CFG_T_INT64, offsetof(struct cfg, field), 0, NULL, def, lo, hi, NULL }

static const struct cfg_key cfg_schema[] = {
	STR("log", "level", log_level, 0, "info", NULL),

	STR("kafka", "brokers", brokers, 1, NULL, "PGRELAY_KAFKA_BROKERS"),
	STR("kafka", "cdc_topic", cdc_topic, 0, "pgrelay.public.employees", NULL),
	STR("kafka", "dlq_topic", dlq_topic, 0, "pgrelay.dlq", NULL),
	INT("kafka", "partitions", partitions, 6, 1, 1000),
	INT("kafka", "replication_factor", replication_factor, 1, 1, 16),
	STR("kafka", "group_id", group_id, 0, "pgrelay-employees", NULL),

	STR("source", "dsn", source_dsn, 1, NULL, "PGRELAY_SOURCE_DSN"),
	STR("target", "dsn", target_dsn, 1, NULL, "PGRELAY_TARGET_DSN"),

	INT("producer", "poll_interval_ms", producer_poll_interval_ms, 200, 1, 600000),
	INT("producer", "batch_size", producer_batch_size, 5000, 1, 1000000),
	INT("producer", "retention_s", producer_retention_s, 3600, 0, 365 * 86400),
	INT("producer", "long_txn_warn_s", producer_long_txn_warn_s, 30, 1, 86400),
	/* renewed every second: 2 s leaves one renewal of slack */
	INT("producer", "lease_s", producer_lease_s, 5, 2, 3600),

	INT("snapshot", "batch_size", snapshot_batch_size, 10000, 1, 1000000),

	INT("consumer", "batch_size", consumer_batch_size, 1000, 1, 100000),
	INT("consumer", "batch_timeout_ms", consumer_batch_timeout_ms, 20, 1, 60000),
	INT("consumer", "count", consumer_count, 2, 0, 1000),
	INT("consumer", "min", consumer_min, 1, 0, 1000),
	INT("consumer", "max", consumer_max, 6, 1, 1000),

	STR("supervisor", "runtime_dir", runtime_dir, 0, "/run/pgrelay", "RUNTIME_DIRECTORY"),
	INT("supervisor", "drain_timeout_s", sup_drain_timeout_s, 30, 1, 3600),
	INT("supervisor", "watchdog_s", sup_watchdog_s, 20, 2, 3600),
	INT("supervisor", "start_timeout_s", sup_start_timeout_s, 60, 2, 3600),
	INT("supervisor", "restart_intensity", sup_restart_intensity, 5, 1, 1000),
	INT("supervisor", "restart_period_s", sup_restart_period_s, 60, 1, 86400),
	INT("supervisor", "backoff_initial_ms", sup_backoff_initial_ms, 1000, 10, 600000),
	INT("supervisor", "backoff_max_ms", sup_backoff_max_ms, 30000, 10, 3600000),
	INT("supervisor", "status_interval_s", sup_status_interval_s, 2, 1, 3600),

	STR("supervisor", "scale_pool", sup_scale_pool, 0, "consumer", NULL),

	BOOL("etl", "enabled", etl_enabled, 0),
	STR("etl", "spool_dir", etl_spool_dir, 0, "/var/spool/pgrelay/etl", NULL),
	STR("etl", "topic", etl_topic, 0, "pgrelay.etl.department_employee", NULL),
	STR("etl", "dlq_topic", etl_dlq_topic, 0, "pgrelay.etl.dlq", NULL),
	INT("etl", "partitions", etl_partitions, 3, 1, 1000),
	STR("etl", "group_id", etl_group_id, 0, "pgrelay-etl", NULL),
	STR("etl", "departments", etl_departments, 0, "ECC,CIT,EMS", NULL),
	INT("etl", "min_hire_year", etl_min_hire_year, 2010, 1, 9999),
	INT("etl", "poll_interval_ms", etl_poll_interval_ms, 1000, 10, 3600000),
	INT("etl", "batch_size", etl_batch_size, 1000, 1, 1000000),
	INT("etl", "loader_count", etl_loader_count, 1, 0, 1000),
	INT("etl", "loader_min", etl_loader_min, 0, 0, 1000),
	INT("etl", "loader_max", etl_loader_max, 3, 1, 1000),
	INT("etl", "loader_batch_size", etl_loader_batch_size, 1000, 1, 100000),
	INT("etl", "loader_batch_timeout_ms", etl_loader_batch_timeout_ms, 50, 1, 60000),

	STR("rules", "min_dob", rule_min_dob, 0, "2007-01-01", NULL),
	INT64("rules", "min_salary", rule_min_salary, 10000, INT32_MIN, INT32_MAX),
	INT64("rules", "min_emp_id", rule_min_emp_id, 0, INT32_MIN, INT32_MAX),
};

#define NKEYS (sizeof(cfg_schema) / sizeof(cfg_schema[0]))

static const struct cfg_key *
schema_find(const char *group, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++) {
		if (strcmp(cfg_schema[i].group, group) == 0 &&
		    (name == NULL || strcmp(cfg_schema[i].name, name) == 0))
			return &cfg_schema[i];
	}
	return NULL;
}

static const char *
type_name(int libconfig_type)
{
	switch (libconfig_type) {
	case CONFIG_TYPE_GROUP: return "a group";
	case CONFIG_TYPE_INT: return "an integer";
	case CONFIG_TYPE_INT64: return "an integer";
	case CONFIG_TYPE_FLOAT: return "a float";
	case CONFIG_TYPE_STRING: return "a string";
	case CONFIG_TYPE_BOOL: return "a boolean";
	case CONFIG_TYPE_ARRAY: return "an array";
	case CONFIG_TYPE_LIST: return "a list";
	default: return "something else";
	}
}

/* Rejects every group and key the schema does not know. */
static int
check_unknown(const char *path, config_setting_t *root, char *err, size_t errlen)
{
	int ngroups = config_setting_length(root);

	for (int i = 0; i < ngroups; i++) {
		config_setting_t *g = config_setting_get_elem(root, (unsigned)i);
		const char *gname = config_setting_name(g);

		if (schema_find(gname, NULL) == NULL) {
			snprintf(err, errlen, "%s:%d: %s: unknown group",
			    path, config_setting_source_line(g), gname);
			return -1;
		}
		if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
			snprintf(err, errlen, "%s:%d: %s: expected a group, got %s",
			    path, config_setting_source_line(g), gname,
			    type_name(config_setting_type(g)));
			return -1;
		}
		for (int j = 0; j < config_setting_length(g); j++) {
			config_setting_t *s = config_setting_get_elem(g, (unsigned)j);

			if (schema_find(gname, config_setting_name(s)) == NULL) {
				snprintf(err, errlen, "%s:%d: %s.%s: unknown key",
				    path, config_setting_source_line(s), gname,
				    config_setting_name(s));
				return -1;
			}
		}
	}
	return 0;
}

static int
set_string(struct cfg *cfg, const struct cfg_key *k, const char *value)
{
	char **slot = (char **)((char *)cfg + k->offset);
	char *copy = strdup(value);

	if (copy == NULL)
		return -1;
	free(*slot);
	*slot = copy;
	return 0;
}

static void
set_integer(struct cfg *cfg, const struct cfg_key *k, long long value)
{
	if (k->type == CFG_T_INT || k->type == CFG_T_BOOL)
		*(int *)((char *)cfg + k->offset) = (int)value;
	else
		*(int64_t *)((char *)cfg + k->offset) = (int64_t)value;
}

/* Fills one key from the file, the environment or the default. */
static int
load_key(struct cfg *cfg, config_setting_t *root, const struct cfg_key *k,
    char *err, size_t errlen)
{
	const char *path = cfg->path;
	config_setting_t *g = config_setting_get_member(root, k->group);
	config_setting_t *s = g ? config_setting_get_member(g, k->name) : NULL;
	const char *envval = k->env ? getenv(k->env) : NULL;

	if (envval != NULL && envval[0] != '\0') {
		if (set_string(cfg, k, envval) < 0)
			goto oom;
		return 0;
	}
	if (s == NULL) {
		if (k->required) {
			char hint[96] = "";

			if (k->env != NULL)
				snprintf(hint, sizeof(hint), " (or set %s)", k->env);
			snprintf(err, errlen, "%s:%d: %s.%s: missing key%s%s", path,
			    g ? config_setting_source_line(g) : 1, k->group, k->name,
			    g ? "" : " (its group is absent)", hint);
			return -1;
		}
		if (k->type == CFG_T_STRING) {
			if (k->def_str != NULL && set_string(cfg, k, k->def_str) < 0)
				goto oom;
		} else {
			set_integer(cfg, k, k->def_int);
		}
		return 0;
	}

	int line = config_setting_source_line(s);
	int t = config_setting_type(s);

	if (k->type == CFG_T_STRING) {
		if (t != CONFIG_TYPE_STRING) {
			snprintf(err, errlen, "%s:%d: %s.%s: expected a string, got %s",
			    path, line, k->group, k->name, type_name(t));
			return -1;
		}
		const char *v = config_setting_get_string(s);
		if (v[0] == '\0') {
			snprintf(err, errlen, "%s:%d: %s.%s: must not be empty",
			    path, line, k->group, k->name);
			return -1;
		}
		if (set_string(cfg, k, v) < 0)
			goto oom;
		return 0;
	}

	if (k->type == CFG_T_BOOL) {
		if (t != CONFIG_TYPE_BOOL) {
			snprintf(err, errlen, "%s:%d: %s.%s: expected true or false, got %s",
			    path, line, k->group, k->name, type_name(t));
			return -1;
		}
		set_integer(cfg, k, config_setting_get_bool(s));
		return 0;
	}
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
		snprintf(err, errlen, "%s:%d: %s.%s: expected an integer, got %s",
		    path, line, k->group, k->name, type_name(t));
		return -1;
	}
	long long v = config_setting_get_int64(s);
	if (v < k->min || v > k->max) {
		snprintf(err, errlen, "%s:%d: %s.%s: %lld is out of range [%lld, %lld]",
		    path, line, k->group, k->name, v, k->min, k->max);
		return -1;
	}
	set_integer(cfg, k, v);
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", path);
	return -1;
}

/* Line of a key in the file, for errors about relations between keys. */
static int
key_line(config_t *lc, const char *dotted)
{
	config_setting_t *s = config_lookup(lc, dotted);

	return s ? config_setting_source_line(s) : 1;
}

static int
check_relations(struct cfg *cfg, config_t *lc, char *err, size_t errlen)
{
	if (cfg_parse_date(cfg->rule_min_dob, &cfg->rule_min_dob_days) < 0) {
		snprintf(err, errlen, "%s:%d: rules.min_dob: \"%s\" is not a date "
		    "(want YYYY-MM-DD)", cfg->path, key_line(lc, "rules.min_dob"),
		    cfg->rule_min_dob);
		return -1;
	}
	if (cfg->consumer_min > cfg->consumer_max) {
		snprintf(err, errlen, "%s:%d: consumer.min: %d is above consumer.max %d",
		    cfg->path, key_line(lc, "consumer.min"), cfg->consumer_min,
		    cfg->consumer_max);
		return -1;
	}
	if (cfg->consumer_count < cfg->consumer_min ||
	    cfg->consumer_count > cfg->consumer_max) {
		snprintf(err, errlen, "%s:%d: consumer.count: %d is outside "
		    "[consumer.min %d, consumer.max %d]", cfg->path,
		    key_line(lc, "consumer.count"), cfg->consumer_count,
		    cfg->consumer_min, cfg->consumer_max);
		return -1;
	}
	if (cfg->consumer_max > cfg->partitions) {
		snprintf(err, errlen, "%s:%d: consumer.max: %d is above "
		    "kafka.partitions %d (a consumer beyond the partition count "
		    "would sit idle)", cfg->path, key_line(lc, "consumer.max"),
		    cfg->consumer_max, cfg->partitions);
		return -1;
	}
	if (cfg->etl_loader_min > cfg->etl_loader_max ||
	    cfg->etl_loader_count < cfg->etl_loader_min ||
	    cfg->etl_loader_count > cfg->etl_loader_max) {
		snprintf(err, errlen, "%s:%d: etl.loader_count: %d is outside "
		    "[etl.loader_min %d, etl.loader_max %d]", cfg->path,
		    key_line(lc, "etl.loader_count"), cfg->etl_loader_count,
		    cfg->etl_loader_min, cfg->etl_loader_max);
		return -1;
	}
	if (cfg->etl_loader_max > cfg->etl_partitions) {
		snprintf(err, errlen, "%s:%d: etl.loader_max: %d is above "
		    "etl.partitions %d", cfg->path, key_line(lc, "etl.loader_max"),
		    cfg->etl_loader_max, cfg->etl_partitions);
		return -1;
	}
	if (strcmp(cfg->sup_scale_pool, "consumer") != 0 &&
	    strcmp(cfg->sup_scale_pool, "etl_loader") != 0) {
		snprintf(err, errlen, "%s:%d: supervisor.scale_pool: \"%s\" is not "
		    "one of consumer, etl_loader", cfg->path,
		    key_line(lc, "supervisor.scale_pool"), cfg->sup_scale_pool);
		return -1;
	}
	enum log_level lvl;
	if (log_level_parse(cfg->log_level, &lvl) < 0) {
		snprintf(err, errlen, "%s:%d: log.level: \"%s\" is not one of "
		    "debug, info, warn, error", cfg->path,
		    key_line(lc, "log.level"), cfg->log_level);
		return -1;
	}
	if (strcmp(cfg->cdc_topic, cfg->dlq_topic) == 0) {
		snprintf(err, errlen, "%s:%d: kafka.dlq_topic: must differ from "
		    "kafka.cdc_topic", cfg->path, key_line(lc, "kafka.dlq_topic"));
		return -1;
	}
	return 0;
}

struct cfg *
cfg_load(const char *path, char *err, size_t errlen)
{
	config_t lc;
	struct cfg *cfg;

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		free(cfg);
		return NULL;
	}

	config_init(&lc);
	if (config_read_file(&lc, path) != CONFIG_TRUE) {
		if (config_error_type(&lc) == CONFIG_ERR_FILE_IO)
			snprintf(err, errlen, "%s: cannot read: %s", path,
			    strerror(errno));
		else
			snprintf(err, errlen, "%s:%d: syntax error: %s",
			    config_error_file(&lc) ? config_error_file(&lc) : path,
			    config_error_line(&lc), config_error_text(&lc));
		goto fail;
	}

	config_setting_t *root = config_root_setting(&lc);
	if (check_unknown(path, root, err, errlen) < 0)
		goto fail;
	for (size_t i = 0; i < NKEYS; i++)
		if (load_key(cfg, root, &cfg_schema[i], err, errlen) < 0)
			goto fail;
	if (check_relations(cfg, &lc, err, errlen) < 0)
		goto fail;

	config_destroy(&lc);
	return cfg;
fail:
	config_destroy(&lc);
	cfg_free(cfg);
	return NULL;
}

void
cfg_free(struct cfg *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < NKEYS; i++)
		if (cfg_schema[i].type == CFG_T_STRING)
			free(*(char **)((char *)cfg + cfg_schema[i].offset));
	free(cfg->path);
	free(cfg);
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

int
cfg_parse_date(const char *s, int32_t *days)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int y, m, d, n = 0;

	if (s == NULL || strlen(s) != 10 ||
	    sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10)
		return -1;
	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return -1;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return -1;
	*days = (int32_t)days_from_civil(y, (unsigned)m, (unsigned)d);
	return 0;
}
