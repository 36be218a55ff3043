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
#include "db.h"
#include "log.h"
#include "relmap.h"

#include <errno.h>
#include <fcntl.h>
#include <libconfig.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum cfg_type { CFG_T_STRING, CFG_T_INT, CFG_T_INT64, CFG_T_BOOL, CFG_T_KPROPS,
    CFG_T_TABLES };

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
#define KPROPS(g, k) \
	{ g, k, CFG_T_KPROPS, 0, 0, NULL, 0, 0, 0, NULL }
#define TABLES(g, k) \
	{ g, k, CFG_T_TABLES, 0, 0, NULL, 0, 0, 0, NULL }

static const struct cfg_key cfg_schema[] = {
	STR("log", "level", log_level, 0, "info", NULL),

	STR("kafka", "brokers", brokers, 1, NULL, "PGRELAY_KAFKA_BROKERS"),
	STR("kafka", "cdc_topic", cdc_topic, 0, "pgrelay.public.employees", NULL),
	STR("kafka", "topic_prefix", topic_prefix, 0, "pgrelay", NULL),
	STR("kafka", "dlq_topic", dlq_topic, 0, "pgrelay.dlq", NULL),
	INT("kafka", "partitions", partitions, 6, 1, 1000),
	INT("kafka", "replication_factor", replication_factor, 1, 1, 16),
	INT("kafka", "min_insync_replicas", min_insync_replicas, 1, 1, 16),
	INT64("kafka", "retention_ms", retention_ms, -1, -1, INT64_MAX),
	STR("kafka", "group_id", group_id, 0, "pgrelay-employees", NULL),
	KPROPS("kafka", "properties"),

	STR("source", "dsn", source_dsn, 1, NULL, "PGRELAY_SOURCE_DSN"),
	STR("target", "dsn", target_dsn, 1, NULL, "PGRELAY_TARGET_DSN"),

	TABLES("cdc", "tables"),
	BOOL("cdc", "schemas", cdc_schemas, 0),

	INT("producer", "poll_interval_ms", producer_poll_interval_ms, 10, 1, 600000),
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
	STR("consumer", "schema_evolution", consumer_schema_evolution, 0, "none", NULL),

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
	INT("etl", "max_record_lines", etl_max_record_lines, 10, 1, 100000),
	INT("etl", "max_record_bytes", etl_max_record_bytes, 65536, 1024, 16777216),
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

static int load_kprops(struct cfg *cfg, config_setting_t *list, char *err,
    size_t errlen);
static int load_tables(struct cfg *cfg, config_setting_t *list, char *err,
    size_t errlen);

/* Fills one key from the file, the environment or the default. */
static int
load_key(struct cfg *cfg, config_setting_t *root, const struct cfg_key *k,
    char *err, size_t errlen)
{
	const char *path = cfg->path;
	config_setting_t *g = config_setting_get_member(root, k->group);
	config_setting_t *s = g ? config_setting_get_member(g, k->name) : NULL;
	const char *envval = k->env ? getenv(k->env) : NULL;

	if (k->type == CFG_T_KPROPS)
		return s ? load_kprops(cfg, s, err, errlen) : 0;
	if (k->type == CFG_T_TABLES)
		return s ? load_tables(cfg, s, err, errlen) : 0;

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

/* A value from the file, for an error message: at most CFG_SHOWN_MAX
 * bytes of it, a control character, quote or backslash escaped as in C,
 * so that the error stays one line ("FILE:LINE: KEY: what is wrong")
 * whatever the string holds.  Returns buf. */
#define CFG_SHOWN_MAX 64
static const char *
shown(const char *v, char *buf, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; v[i] != '\0' && n + 8 < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (i == CFG_SHOWN_MAX) {
			/* not half a UTF-8 character (maybe drops a whole one) */
			while (n > 0 && ((unsigned char)buf[n - 1] & 0xC0) == 0x80)
				n--;
			if (n > 0 && (unsigned char)buf[n - 1] >= 0xC0)
				n--;
			n += (size_t)snprintf(buf + n, len - n, "...");
			break;
		}
		if (c == '\n')
			n += (size_t)snprintf(buf + n, len - n, "\\n");
		else if (c == '\t')
			n += (size_t)snprintf(buf + n, len - n, "\\t");
		else if (c == '"' || c == '\\')
			n += (size_t)snprintf(buf + n, len - n, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			n += (size_t)snprintf(buf + n, len - n, "\\x%02x", c);
		else
			buf[n++] = (char)c;
	}
	buf[n] = '\0';
	return buf;
}

/* ---- kafka.properties ----------------------------------------------------
 *
 * A list of ("name", value) pairs for librdkafka.  Here: the form (each a
 * pair of a name and a string, integer or boolean; no name twice), file:
 * and env: values read, and the rule for secrets.  Whether librdkafka
 * knows a name and takes its value is kafka.c's (kfk_conf_check).
 */

/* The properties librdkafka itself redacts in its configuration dumps. */
static const char *const cfg_secret_props[] = {
	"sasl.password", "ssl.key.password", "ssl.keystore.password",
	"ssl.key.pem", "sasl.oauthbearer.client.secret",
	"sasl.oauthbearer.config", NULL
};

/* A secret file's largest size (ssl.key.pem holds a whole key). */
#define CFG_SECRET_MAX 65536

int
cfg_kprop_is_secret(const char *name)
{
	for (size_t i = 0; cfg_secret_props[i] != NULL; i++)
		if (strcmp(name, cfg_secret_props[i]) == 0)
			return 1;
	return 0;
}

/* Overwrites s before it is freed (a volatile store is not optimized
 * away). */
static void
wipe(char *s)
{
	if (s == NULL)
		return;
	for (volatile char *p = s; *p != '\0'; p++)
		*p = '\0';
}

/* Reads file into a new string without its trailing newlines.  A secret
 * must not be readable by others.  NULL with why on error. */
static char *
read_value_file(const char *file, int secret, char *why, size_t whylen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);

	if (fd < 0) {
		snprintf(why, whylen, "cannot read %s: %s", file, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, whylen, "%s is not a regular file", file);
		goto fail;
	}
	if (secret && (st.st_mode & S_IROTH)) {
		snprintf(why, whylen, "%s holds a secret and every user can read it "
		    "(mode %04o); chmod o-rwx %s", file,
		    (unsigned)(st.st_mode & 07777), file);
		goto fail;
	}
	if (st.st_size > CFG_SECRET_MAX) {
		snprintf(why, whylen, "%s is larger than %d bytes", file, CFG_SECRET_MAX);
		goto fail;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		snprintf(why, whylen, "out of memory");
		goto fail;
	}
	while (n < (size_t)st.st_size &&
	    (r = read(fd, buf + n, (size_t)st.st_size - n)) != 0) {
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, whylen, "cannot read %s: %s", file, strerror(errno));
			goto fail;
		}
		n += (size_t)r;
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	if (n == 0 || strlen(buf) != n) {
		snprintf(why, whylen, "%s %s", file, n == 0 ? "is empty" :
		    "holds a NUL byte");
		goto fail;
	}
	close(fd);
	return buf;
fail:
	if (buf != NULL) {
		buf[n < (size_t)st.st_size ? n : (size_t)st.st_size] = '\0';
		wipe(buf);
	}
	free(buf);
	close(fd);
	return NULL;
}

/* The value of one pair as librdkafka takes it (a string), file: and env:
 * read.  NULL with why on error. */
static char *
kprop_value(config_setting_t *v, int secret, int conf_readable, char *why,
    size_t whylen)
{
	char num[32];
	const char *s;

	switch (config_setting_type(v)) {
	case CONFIG_TYPE_STRING:
		s = config_setting_get_string(v);
		break;
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		snprintf(num, sizeof(num), "%lld", config_setting_get_int64(v));
		s = num;
		break;
	case CONFIG_TYPE_BOOL:
		s = config_setting_get_bool(v) ? "true" : "false";
		break;
	default:
		snprintf(why, whylen, "expected a string, an integer or true/false "
		    "as the value, got %s", type_name(config_setting_type(v)));
		return NULL;
	}
	if (strncmp(s, "file:", 5) == 0)
		return read_value_file(s + 5, secret, why, whylen);
	if (strncmp(s, "env:", 4) == 0) {
		const char *e = s[4] != '\0' ? getenv(s + 4) : NULL;

		if (e == NULL || e[0] == '\0') {
			snprintf(why, whylen, "the environment variable %s is not set "
			    "or empty", s + 4);
			return NULL;
		}
		s = e;
	} else if (secret && conf_readable) {
		snprintf(why, whylen, "a secret in a config file every user can "
		    "read: give it as \"file:PATH\" (a file others cannot read) "
		    "or \"env:NAME\", or chmod o-rwx the config file");
		return NULL;
	}
	char *copy = strdup(s);
	if (copy == NULL)
		snprintf(why, whylen, "out of memory");
	return copy;
}

static int
load_kprops(struct cfg *cfg, config_setting_t *list, char *err, size_t errlen)
{
	struct stat st;
	char why[512] = "out of memory";
	int n = config_setting_length(list);
	int conf_readable = stat(cfg->path, &st) == 0 && (st.st_mode & S_IROTH);

	cfg->kprops_line = config_setting_source_line(list);
	if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		snprintf(err, errlen, "%s:%d: kafka.properties: expected a list of "
		    "(\"name\", value) pairs, got %s", cfg->path, cfg->kprops_line,
		    type_name(config_setting_type(list)));
		return -1;
	}
	cfg->kprops = calloc((size_t)n + 1, sizeof(*cfg->kprops));
	if (cfg->kprops == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return -1;
	}
	for (int i = 0; i < n; i++) {
		config_setting_t *pair = config_setting_get_elem(list, (unsigned)i);
		int t = config_setting_type(pair);
		config_setting_t *k = NULL;
		const char *name = NULL;
		int line = config_setting_source_line(pair);

		if ((t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY) &&
		    config_setting_length(pair) == 2) {
			k = config_setting_get_elem(pair, 0);
			line = config_setting_source_line(k);
			if (config_setting_type(k) == CONFIG_TYPE_STRING)
				name = config_setting_get_string(k);
		}
		if (name == NULL || name[0] == '\0') {
			snprintf(err, errlen, "%s:%d: kafka.properties: entry %d: expected "
			    "a pair (\"name\", value) with a name", cfg->path, line, i + 1);
			return -1;
		}
		for (int j = 0; j < cfg->nkprops; j++) {
			if (strcmp(cfg->kprops[j].name, name) == 0) {
				snprintf(err, errlen, "%s:%d: kafka.properties: %s: given "
				    "twice (first on line %d)", cfg->path, line, name,
				    cfg->kprops[j].line);
				return -1;
			}
		}
		struct cfg_kprop *kp = &cfg->kprops[cfg->nkprops];
		kp->line = line;
		kp->secret = cfg_kprop_is_secret(name);
		kp->name = strdup(name);
		if (kp->name == NULL) {
			snprintf(err, errlen, "%s: out of memory", cfg->path);
			return -1;
		}
		cfg->nkprops++;
		kp->value = cfg->kprops_raw ? strdup("(not read)") :
		    kprop_value(config_setting_get_elem(pair, 1), kp->secret,
		    conf_readable, why, sizeof(why));
		if (kp->value == NULL) {
			snprintf(err, errlen, "%s:%d: kafka.properties: %s: %s",
			    cfg->path, line, name, why);
			return -1;
		}
	}
	return 0;
}

/* Line of a key in the file, for errors about relations between keys. */
static int
key_line(config_t *lc, const char *dotted)
{
	config_setting_t *s = config_lookup(lc, dotted);

	return s ? config_setting_source_line(s) : 1;
}

/* ---- cdc.tables ----------------------------------------------------------
 *
 * A list of groups, one per table: source (required), target, topic,
 * include, exclude (arrays of column names) and rules (an array of
 * "column op value" strings).  Here: the form; the names are checked
 * against the catalogs by the workers and by pgrelayd -t (relmap.c).
 */

static void
free_strv(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static void
free_tables(struct cfg *cfg)
{
	for (int i = 0; i < cfg->ntables; i++) {
		struct cfg_table *t = &cfg->tables[i];

		free(t->source);
		free(t->target);
		free(t->topic);
		free_strv(t->include);
		free_strv(t->exclude);
		for (int j = 0; j < t->nrules; j++) {
			free(t->rules[j].column);
			free(t->rules[j].value);
			free(t->rules[j].name);
		}
		free(t->rules);
	}
	free(cfg->tables);
	cfg->tables = NULL;
	cfg->ntables = 0;
}

/* An array of strings (include, exclude) into a NULL-terminated list. */
static int
load_strv(const struct cfg *cfg, config_setting_t *a, const char *what,
    char ***out, char *err, size_t errlen)
{
	int n = config_setting_length(a);
	char **v;

	if (config_setting_type(a) != CONFIG_TYPE_ARRAY &&
	    config_setting_type(a) != CONFIG_TYPE_LIST) {
		snprintf(err, errlen, "%s:%d: cdc.tables: %s: expected an array of "
		    "column names, got %s", cfg->path, config_setting_source_line(a),
		    what, type_name(config_setting_type(a)));
		return -1;
	}
	if ((v = calloc((size_t)n + 1, sizeof(*v))) == NULL)
		goto oom;
	*out = v;
	for (int i = 0; i < n; i++) {
		config_setting_t *e = config_setting_get_elem(a, (unsigned)i);
		const char *str = config_setting_get_string(e);

		if (str == NULL || str[0] == '\0') {
			snprintf(err, errlen, "%s:%d: cdc.tables: %s: element %d is not "
			    "a column name", cfg->path, config_setting_source_line(a),
			    what, i + 1);
			return -1;
		}
		if ((v[i] = strdup(str)) == NULL)
			goto oom;
	}
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", cfg->path);
	return -1;
}

/* Parses "column op value" into r: the column a plain name (or
 * double-quoted), op one of >= > <= < = <> !=, the value the rest (a
 * single-quoted value loses its quotes).  0, or -1 with why. */
static int
parse_rule(const char *text, struct cfg_rule *r, char *why, size_t whylen)
{
	static const char *const ops[] = { ">=", "<=", "<>", "!=", ">", "<", "=" };
	const char *p = text, *c0, *c1;
	char col[128];
	size_t n = 0;

	while (*p == ' ' || *p == '\t')
		p++;
	if (*p == '"') {
		for (p++; *p != '\0'; p++) {
			if (*p == '"' && p[1] != '"')
				break;
			if (*p == '"')
				p++;
			if (n + 1 < sizeof(col))
				col[n++] = *p;
		}
		if (*p != '"')
			goto bad;
		p++;
	} else {
		c0 = p;
		while (*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '$')
			p++;
		c1 = p;
		for (const char *q = c0; q < c1 && n + 1 < sizeof(col); q++)
			col[n++] = (*q >= 'A' && *q <= 'Z') ? (char)(*q - 'A' + 'a') : *q;
	}
	col[n] = '\0';
	if (n == 0)
		goto bad;
	while (*p == ' ' || *p == '\t')
		p++;
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		size_t ol = strlen(ops[i]);

		if (strncmp(p, ops[i], ol) != 0)
			continue;
		snprintf(r->op, sizeof(r->op), "%s", strcmp(ops[i], "!=") == 0 ? "<>" : ops[i]);
		p += ol;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t vl = strlen(p);
		while (vl > 0 && (p[vl - 1] == ' ' || p[vl - 1] == '\t'))
			vl--;
		if (vl == 0 || strchr("<>=!", p[0]) != NULL)
			goto bad;
		if (vl >= 2 && p[0] == '\'' && p[vl - 1] == '\'') {
			p++;
			vl -= 2;
		}
		const char *suffix = r->op[0] == '>' ? "min" : r->op[0] == '<' &&
		    r->op[1] != '>' ? "max" : r->op[0] == '=' ? "eq" : "ne";
		size_t nl = strlen(col) + strlen(suffix) + 2;

		r->column = strdup(col);
		r->value = strndup(p, vl);
		r->name = malloc(nl);
		if (r->column == NULL || r->value == NULL || r->name == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		snprintf(r->name, nl, "%s.%s", col, suffix);
		return 0;
	}
bad:
	snprintf(why, whylen, "\"%s\" is not a rule (want \"column op value\", "
	    "op one of >= > <= < = <>, e.g. \"salary > 10000\")", text);
	return -1;
}

static int
load_table(struct cfg *cfg, config_setting_t *g, struct cfg_table *t, char *err,
    size_t errlen)
{
	static const char *const keys[] = { "source", "target", "topic", "include",
	    "exclude", "rules" };
	int line = config_setting_source_line(g);
	const char *str;

	t->line = line;
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		snprintf(err, errlen, "%s:%d: cdc.tables: expected a group "
		    "{ source = \"schema.table\"; ... }, got %s", cfg->path, line,
		    type_name(config_setting_type(g)));
		return -1;
	}
	for (int i = 0; i < config_setting_length(g); i++) {
		config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		size_t k = 0;

		while (k < sizeof(keys) / sizeof(keys[0]) &&
		    strcmp(keys[k], config_setting_name(s)) != 0)
			k++;
		if (k == sizeof(keys) / sizeof(keys[0])) {
			snprintf(err, errlen, "%s:%d: cdc.tables: %s: unknown key (a "
			    "table has source, target, topic, include, exclude, rules)",
			    cfg->path, config_setting_source_line(s),
			    config_setting_name(s));
			return -1;
		}
		if (k < 3 && (config_setting_type(s) != CONFIG_TYPE_STRING ||
		    config_setting_get_string(s)[0] == '\0')) {
			snprintf(err, errlen, "%s:%d: cdc.tables: %s: expected a "
			    "non-empty string", cfg->path, config_setting_source_line(s),
			    keys[k]);
			return -1;
		}
	}
	if (config_setting_lookup_string(g, "source", &str) != CONFIG_TRUE) {
		snprintf(err, errlen, "%s:%d: cdc.tables: source: missing key (the "
		    "table on the source, \"schema.table\")", cfg->path, line);
		return -1;
	}
	if ((t->source = strdup(str)) == NULL)
		goto oom;
	if (config_setting_lookup_string(g, "target", &str) != CONFIG_TRUE)
		str = t->source;
	if ((t->target = strdup(str)) == NULL)
		goto oom;
	if (config_setting_lookup_string(g, "topic", &str) == CONFIG_TRUE)
		t->topic = strdup(str);
	for (int l = 0; l < 2; l++) {
		config_setting_t *a = config_setting_get_member(g, l ? "exclude" : "include");

		if (a != NULL && load_strv(cfg, a, l ? "exclude" : "include",
		    l ? &t->exclude : &t->include, err, errlen) < 0)
			return -1;
	}
	config_setting_t *rules = config_setting_get_member(g, "rules");
	if (rules != NULL) {
		int n = config_setting_length(rules);

		if (config_setting_type(rules) != CONFIG_TYPE_ARRAY &&
		    config_setting_type(rules) != CONFIG_TYPE_LIST) {
			snprintf(err, errlen, "%s:%d: cdc.tables: rules: expected an "
			    "array of \"column op value\" strings, got %s", cfg->path,
			    config_setting_source_line(rules),
			    type_name(config_setting_type(rules)));
			return -1;
		}
		if ((t->rules = calloc((size_t)n + 1, sizeof(*t->rules))) == NULL)
			goto oom;
		for (int i = 0; i < n; i++) {
			config_setting_t *e = config_setting_get_elem(rules, (unsigned)i);
			const char *txt = config_setting_get_string(e);
			char why[256];

			t->rules[i].line = config_setting_source_line(e) ?
			    config_setting_source_line(e) : config_setting_source_line(rules);
			t->nrules++;
			if (txt == NULL || parse_rule(txt, &t->rules[i], why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s:%d: cdc.tables: rules: %s",
				    cfg->path, t->rules[i].line, txt == NULL ?
				    "expected a string \"column op value\"" : why);
				return -1;
			}
		}
	}
	return 0;
oom:
	snprintf(err, errlen, "%s: out of memory", cfg->path);
	return -1;
}

static int
load_tables(struct cfg *cfg, config_setting_t *list, char *err, size_t errlen)
{
	int n = config_setting_length(list);

	if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		snprintf(err, errlen, "%s:%d: cdc.tables: expected a list of tables, "
		    "( { source = \"public.employees\"; }, ... ), got %s", cfg->path,
		    config_setting_source_line(list), type_name(config_setting_type(list)));
		return -1;
	}
	if (n == 0)
		return 0;	/* (): the default, as if absent */
	if ((cfg->tables = calloc((size_t)n, sizeof(*cfg->tables))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return -1;
	}
	cfg->tables_given = 1;
	for (int i = 0; i < n; i++) {
		cfg->ntables++;
		if (load_table(cfg, config_setting_get_elem(list, (unsigned)i),
		    &cfg->tables[i], err, errlen) < 0)
			return -1;
	}
	return 0;
}

/* The rules.* keys as t's rules: public.employees' when cdc.tables does
 * not list it with rules of its own (and when there is no cdc.tables). */
static int
rules_of_employees(const struct cfg *cfg, struct cfg_table *t)
{
	char v[3][32];

	if ((t->rules = calloc(3, sizeof(*t->rules))) == NULL)
		return -1;
	snprintf(v[0], sizeof(v[0]), "%lld", (long long)cfg->rule_min_emp_id);
	snprintf(v[1], sizeof(v[1]), "%s", cfg->rule_min_dob);
	snprintf(v[2], sizeof(v[2]), "%lld", (long long)cfg->rule_min_salary);
	const char *cols[3] = { "emp_id", "dob", "salary" };
	const char *ops[3] = { ">=", ">=", ">" };
	for (int i = 0; i < 3; i++) {
		struct cfg_rule *r = &t->rules[t->nrules++];
		size_t nl = strlen(cols[i]) + 5;

		snprintf(r->op, sizeof(r->op), "%s", ops[i]);
		r->column = strdup(cols[i]);
		r->value = strdup(v[i]);
		if ((r->name = malloc(nl)) == NULL || r->column == NULL || r->value == NULL)
			return -1;
		snprintf(r->name, nl, "%s.min", cols[i]);
	}
	return 0;
}

/* The table pgrelay replicates without cdc.tables: employees, as the spec
 * has it, on kafka.cdc_topic, with the rules.* keys. */
static int
default_table(struct cfg *cfg)
{
	struct cfg_table *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return -1;
	cfg->tables = t;
	cfg->ntables = 1;
	t->source = strdup("public.employees");
	t->target = strdup("public.employees");
	t->topic = strdup(cfg->cdc_topic);
	if (t->source == NULL || t->target == NULL || t->topic == NULL)
		return -1;
	return rules_of_employees(cfg, t);
}

const struct cfg_table *
cfg_table_by_topic(const struct cfg *cfg, const char *topic)
{
	for (int i = 0; i < cfg->ntables; i++)
		if (strcmp(cfg->tables[i].topic, topic) == 0)
			return &cfg->tables[i];
	return NULL;
}

/* Defaults and the checks between tables: names that parse, one table
 * once, one topic per table, none the DLQ's. */
static int
check_tables(struct cfg *cfg, char *err, size_t errlen)
{
	char schema[128], table[128], why[256];

	if (!cfg->tables_given) {
		if (default_table(cfg) < 0) {
			snprintf(err, errlen, "%s: out of memory", cfg->path);
			return -1;
		}
		return 0;
	}
	for (int i = 0; i < cfg->ntables; i++) {
		struct cfg_table *t = &cfg->tables[i];

		for (int w = 0; w < 2; w++) {
			const char *name = w ? t->target : t->source;

			if (relmap_split_name(name, schema, sizeof(schema), table,
			    sizeof(table), why, sizeof(why)) < 0) {
				snprintf(err, errlen, "%s:%d: cdc.tables: %s: %s",
				    cfg->path, t->line, w ? "target" : "source", why);
				return -1;
			}
		}
		relmap_split_name(t->source, schema, sizeof(schema), table,
		    sizeof(table), why, sizeof(why));
		if (t->rules == NULL && strcmp(schema, "public") == 0 &&
		    strcmp(table, "employees") == 0 && rules_of_employees(cfg, t) < 0) {
			snprintf(err, errlen, "%s: out of memory", cfg->path);
			return -1;
		}
		if (t->topic == NULL) {
			size_t n = strlen(cfg->topic_prefix) + strlen(schema) +
			    strlen(table) + 3;
			if ((t->topic = malloc(n)) == NULL) {
				snprintf(err, errlen, "%s: out of memory", cfg->path);
				return -1;
			}
			snprintf(t->topic, n, "%s.%s.%s", cfg->topic_prefix, schema, table);
		}
		if (strcmp(t->topic, cfg->dlq_topic) == 0) {
			snprintf(err, errlen, "%s:%d: cdc.tables: topic: %s is "
			    "kafka.dlq_topic", cfg->path, t->line, t->topic);
			return -1;
		}
		for (int j = 0; j < i; j++) {
			const struct cfg_table *o = &cfg->tables[j];
			const char *what = strcmp(o->source, t->source) == 0 ? "source" :
			    strcmp(o->target, t->target) == 0 ? "target" :
			    strcmp(o->topic, t->topic) == 0 ? "topic" : NULL;

			if (what != NULL) {
				snprintf(err, errlen, "%s:%d: cdc.tables: %s: the same as "
				    "the table at line %d", cfg->path, t->line, what,
				    o->line);
				return -1;
			}
		}
	}
	return 0;
}


/* A string key that takes one of choices (NULL-terminated): 0, or -1
 * with "FILE:LINE: KEY: "value" is not one of a, b". */
static int
check_choice(const struct cfg *cfg, config_t *lc, const char *key,
    const char *val, const char *const *choices, char *err, size_t errlen)
{
	char v[4 * CFG_SHOWN_MAX + 16];
	size_t n;

	for (int i = 0; choices[i] != NULL; i++)
		if (strcmp(val, choices[i]) == 0)
			return 0;
	n = (size_t)snprintf(err, errlen, "%s:%d: %s: \"%s\" is not one of",
	    cfg->path, key_line(lc, key), key, shown(val, v, sizeof(v)));
	for (int i = 0; choices[i] != NULL && n < errlen; i++)
		n += (size_t)snprintf(err + n, errlen - n, "%s %s", i ? "," : "",
		    choices[i]);
	return -1;
}

static int
check_relations(struct cfg *cfg, config_t *lc, char *err, size_t errlen)
{
	char v[4 * CFG_SHOWN_MAX + 16];

	const char *const dsn_keys[][3] = {
		{ "source.dsn", "PGRELAY_SOURCE_DSN", cfg->source_dsn },
		{ "target.dsn", "PGRELAY_TARGET_DSN", cfg->target_dsn },
	};
	char why[256];

	for (size_t i = 0; i < sizeof(dsn_keys) / sizeof(dsn_keys[0]); i++) {
		const char *env = getenv(dsn_keys[i][1]);

		if (db_dsn_check(dsn_keys[i][2], why, sizeof(why)) == 0)
			continue;
		if (env != NULL && env[0] != '\0')
			snprintf(err, errlen, "%s (overrides %s): not a valid libpq "
			    "connection string: %s", dsn_keys[i][1], dsn_keys[i][0], why);
		else
			snprintf(err, errlen, "%s:%d: %s: not a valid libpq connection "
			    "string: %s", cfg->path, key_line(lc, dsn_keys[i][0]),
			    dsn_keys[i][0], why);
		return -1;
	}
	if (cfg_parse_date(cfg->rule_min_dob, &cfg->rule_min_dob_days) < 0) {
		snprintf(err, errlen, "%s:%d: rules.min_dob: \"%s\" is not a date "
		    "(want YYYY-MM-DD)", cfg->path, key_line(lc, "rules.min_dob"),
		    shown(cfg->rule_min_dob, v, sizeof(v)));
		return -1;
	}
	if (cfg->min_insync_replicas > cfg->replication_factor) {
		snprintf(err, errlen, "%s:%d: kafka.min_insync_replicas: %d is above "
		    "kafka.replication_factor %d (no write could ever be "
		    "acknowledged)", cfg->path, key_line(lc, "kafka.min_insync_replicas"),
		    cfg->min_insync_replicas, cfg->replication_factor);
		return -1;
	}
	if (cfg->retention_ms != -1 && cfg->retention_ms < 3600000) {
		snprintf(err, errlen, "%s:%d: kafka.retention_ms: %lld is below one "
		    "hour (3600000); use -1 to keep every record, or a time longer "
		    "than any outage of the consumers", cfg->path,
		    key_line(lc, "kafka.retention_ms"), (long long)cfg->retention_ms);
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
	if (check_choice(cfg, lc, "supervisor.scale_pool", cfg->sup_scale_pool,
	    (const char *const[]){ "consumer", "etl_loader", NULL }, err, errlen) < 0 ||
	    check_choice(cfg, lc, "consumer.schema_evolution",
	    cfg->consumer_schema_evolution,
	    (const char *const[]){ "none", "add_columns", NULL }, err, errlen) < 0)
		return -1;
	enum log_level lvl;
	if (log_level_parse(cfg->log_level, &lvl) < 0) {
		snprintf(err, errlen, "%s:%d: log.level: \"%s\" is not one of "
		    "debug, info, warn, error", cfg->path,
		    key_line(lc, "log.level"), shown(cfg->log_level, v, sizeof(v)));
		return -1;
	}
	if (strcmp(cfg->cdc_topic, cfg->dlq_topic) == 0) {
		snprintf(err, errlen, "%s:%d: kafka.dlq_topic: must differ from "
		    "kafka.cdc_topic", cfg->path, key_line(lc, "kafka.dlq_topic"));
		return -1;
	}
	return 0;
}

/* Reads text, or the file path when text is NULL; path names it in errors.
 * raw: kafka.properties' values stay as written (cfg_load_no_secrets). */
static struct cfg *
load(const char *path, const char *text, int raw, char *err, size_t errlen)
{
	config_t lc;
	struct cfg *cfg;
	int read;

	cfg = calloc(1, sizeof(*cfg));
	if (cfg == NULL || (cfg->path = strdup(path)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", path);
		free(cfg);
		return NULL;
	}
	cfg->kprops_raw = raw;

	config_init(&lc);
	read = text != NULL ? config_read_string(&lc, text) : config_read_file(&lc, path);
	if (read != CONFIG_TRUE) {
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
	if (check_relations(cfg, &lc, err, errlen) < 0 ||
	    check_tables(cfg, err, errlen) < 0)
		goto fail;

	config_destroy(&lc);
	return cfg;
fail:
	config_destroy(&lc);
	cfg_free(cfg);
	return NULL;
}

struct cfg *
cfg_load(const char *path, char *err, size_t errlen)
{
	return load(path, NULL, 0, err, errlen);
}

struct cfg *
cfg_load_string(const char *text, const char *name, char *err, size_t errlen)
{
	return load(name, text, 0, err, errlen);
}

struct cfg *
cfg_load_no_secrets(const char *path, char *err, size_t errlen)
{
	return load(path, NULL, 1, err, errlen);
}

void
cfg_free(struct cfg *cfg)
{
	if (cfg == NULL)
		return;
	for (int i = 0; i < cfg->nkprops; i++) {
		if (cfg->kprops[i].secret)
			wipe(cfg->kprops[i].value);
		free(cfg->kprops[i].name);
		free(cfg->kprops[i].value);
	}
	free(cfg->kprops);
	free_tables(cfg);
	for (size_t i = 0; i < NKEYS; i++)
		if (cfg_schema[i].type == CFG_T_STRING)
			free(*(char **)((char *)cfg + cfg_schema[i].offset));
	free(cfg->path);
	free(cfg);
}

int
cfg_schema_key(size_t i, struct cfg_key_info *ki)
{
	static const char *const type_names[] = {
		[CFG_T_STRING] = "string", [CFG_T_INT] = "integer",
		[CFG_T_INT64] = "integer", [CFG_T_BOOL] = "boolean",
		[CFG_T_KPROPS] = "list", [CFG_T_TABLES] = "list",
	};

	if (i >= NKEYS)
		return -1;
	const struct cfg_key *k = &cfg_schema[i];
	*ki = (struct cfg_key_info){
		.group = k->group, .name = k->name, .type = type_names[k->type],
		.required = k->required, .def_str = k->def_str, .def_int = k->def_int,
		.min = k->min, .max = k->max, .env = k->env,
	};
	return 0;
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
