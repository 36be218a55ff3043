/*
 * config.h - pgrelay's configuration, loaded from a libconfig file.
 *
 * The file is checked against one schema table (config.c): an unknown group
 * or key, a value of the wrong type or out of range, and a missing required
 * key are all errors that name the file, the line and the key.  Three
 * environment variables override the file after it is read:
 *   PGRELAY_KAFKA_BROKERS -> kafka.brokers
 *   PGRELAY_SOURCE_DSN    -> source.dsn
 *   PGRELAY_TARGET_DSN    -> target.dsn
 * A key overridden by the environment may be absent from the file.
 *
 * kafka.properties is a list of ("name", value) pairs passed to librdkafka
 * (every client pgrelay makes).  Any value may be "file:PATH" (the file's
 * content, without its trailing newline) or "env:NAME" (that variable),
 * read at load.  A secret property (cfg_kprop_is_secret) read from a file
 * others can read, or given plainly in a config file others can read, is
 * an error.  cfg_load() checks the list's form and reads the values;
 * kfk_conf_check() (kafka.h) checks each against librdkafka.
 *
 * Ownership: cfg_load() returns a struct the caller frees with cfg_free();
 * every string in it is owned by the struct (secrets are wiped first).
 */
#ifndef PGRELAY_CONFIG_H
#define PGRELAY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define CFG_EXIT_CONFIG 78	/* EX_CONFIG: do not restart, fix the file */

/* One entry of kafka.properties. */
struct cfg_kprop {
	char *name;		/* librdkafka's name, as given */
	char *value;		/* file: and env: already read */
	int line;		/* of the pair, for errors */
	int secret;		/* never to be printed (cfg_kprop_is_secret) */
};

/* One rule of a table: "column op value" (cdc.tables[].rules). */
struct cfg_rule {
	char *column;
	char op[3];		/* ">=", ">", "<=", "<", "=" or "<>" */
	char *value;		/* as written, without its quotes */
	char *name;		/* column + ".min" / ".max" / ".eq" / ".ne": the DLQ
				 * header __pgrelay.errors.rule */
	int line;
};

/* One table of cdc.tables. */
struct cfg_table {
	char *source;		/* "schema.table" on A, as written */
	char *target;		/* on B; default: source */
	char *topic;		/* default: kafka.topic_prefix.schema.table */
	char **include;		/* columns the events carry (NULL-terminated), or NULL: all */
	char **exclude;		/* columns they leave out, or NULL */
	struct cfg_rule *rules;
	int nrules;
	int line;		/* of the table's group; 0 for the default table */
};

struct cfg {
	char *path;

	/* log */
	char *log_level;

	/* kafka */
	char *brokers;
	char *cdc_topic;		/* the default table's topic; names the pipeline */
	char *topic_prefix;		/* of the tables' default topics */
	char *dlq_topic;
	int partitions;
	int replication_factor;
	int min_insync_replicas;	/* of the topics pgrelay creates */
	int64_t retention_ms;		/* of the topics pgrelay creates; -1: keep all */
	char *group_id;
	struct cfg_kprop *kprops;	/* kafka.properties, nkprops of them */
	int nkprops;
	int kprops_line;		/* the line of kafka.properties */
	int kprops_raw;			/* cfg_load_no_secrets: values unread */

	/* source (A) and target (B) */
	char *source_dsn;
	char *target_dsn;

	/* producer */
	int producer_poll_interval_ms;
	int producer_batch_size;
	int producer_retention_s;
	int producer_long_txn_warn_s;
	int producer_lease_s;		/* a standby takes over a holder silent this long */

	/* snapshot */
	int snapshot_batch_size;

	/* consumer */
	int consumer_batch_size;
	int consumer_batch_timeout_ms;
	int consumer_count;
	int consumer_min;
	int consumer_max;

	/* supervisor */
	char *runtime_dir;		/* control socket, active config copy */
	int sup_drain_timeout_s;
	int sup_watchdog_s;
	int sup_start_timeout_s;	/* the watchdog's limit before READY=1 */
	int sup_restart_intensity;	/* more crashes than this ... */
	int sup_restart_period_s;	/* ... within this many seconds stop a pool */
	int sup_backoff_initial_ms;
	int sup_backoff_max_ms;
	int sup_status_interval_s;

	char *sup_scale_pool;		/* the pool SIGUSR1/SIGUSR2 scale */

	/* etl */
	int etl_enabled;
	char *etl_spool_dir;
	char *etl_topic;
	char *etl_dlq_topic;
	int etl_partitions;
	char *etl_group_id;
	char *etl_departments;		/* comma-separated department codes */
	int etl_min_hire_year;
	int etl_poll_interval_ms;
	int etl_batch_size;
	int etl_max_record_lines;	/* a CSV record over more lines ... */
	int etl_max_record_bytes;	/* ... or bytes is rejected (an unbalanced quote?) */
	int etl_loader_count;
	int etl_loader_min;
	int etl_loader_max;
	int etl_loader_batch_size;
	int etl_loader_batch_timeout_ms;

	/* cdc.tables: at least one.  Without the key, one table,
	 * public.employees, on kafka.cdc_topic, with the rules.* keys'
	 * rules (emp_id >= min_emp_id, dob >= min_dob, salary > min_salary). */
	struct cfg_table *tables;
	int ntables;
	int tables_given;		/* cdc.tables is in the file */
	int cdc_schemas;		/* cdc.schemas: events carry their Kafka
					 * Connect schema (common/cdc.h) */

	/* rules (the default table's) */
	char *rule_min_dob;		/* "YYYY-MM-DD": dob before it fails */
	int32_t rule_min_dob_days;	/* the same, as days since 1970-01-01 */
	int64_t rule_min_salary;	/* salary <= this fails */
	int64_t rule_min_emp_id;	/* emp_id < this fails */
};

/* Loads and checks path.  On error returns NULL and writes one line,
 * "FILE:LINE: KEY: what is wrong", to err. */
struct cfg *cfg_load(const char *path, char *err, size_t errlen);

/* The same for a config held in memory (a NUL-terminated text); name
 * stands for the file in errors and in cfg->path. */
struct cfg *cfg_load_string(const char *text, const char *name, char *err,
    size_t errlen);

void cfg_free(struct cfg *cfg);

/* One key of the schema as documentation sees it: man/cfgkeys.c prints
 * them all, and pgrelay.conf(5) is made from that list (with the example
 * file's comments).  Every pointer is static. */
struct cfg_key_info {
	const char *group;
	const char *name;
	const char *type;	/* "string", "integer", "boolean" or "list" */
	int required;		/* must be in the file or the environment */
	const char *def_str;	/* a string's default; NULL: none */
	long long def_int;	/* an integer's or boolean's default */
	long long min, max;	/* an integer's range */
	const char *env;	/* the variable overriding the key, or NULL */
};

/* The i-th key of the schema, in the table's order: 0, or -1 past the
 * last one. */
int cfg_schema_key(size_t i, struct cfg_key_info *ki);

/* cfg_load() for a program that needs no Kafka client (pgrelayctl):
 * kafka.properties' values stay as written (file: and env: unread, no
 * secret rule), so it runs without the service's secrets. */
struct cfg *cfg_load_no_secrets(const char *path, char *err, size_t errlen);

/* 1 when the librdkafka property name holds a secret (sasl.password,
 * ssl.key.password, ...): its value is never printed. */
int cfg_kprop_is_secret(const char *name);

/* The table of cfg whose topic is topic, or NULL. */
const struct cfg_table *cfg_table_by_topic(const struct cfg *cfg, const char *topic);

/* Parses "YYYY-MM-DD" into days since 1970-01-01; -1 if not a valid date. */
int cfg_parse_date(const char *s, int32_t *days);

#endif
