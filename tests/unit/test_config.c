/*
 * test_config.c - cfg_load: values, defaults, environment overrides, and
 * every kind of error naming file, line and key.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

static char dir[] = "/tmp/pgrelay-test-config-XXXXXX";

static const char *
write_file(const char *name, const char *text)
{
	static char path[256];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	fputs(text, f);
	fclose(f);
	return path;
}

#define BASE \
	"kafka = {\n" \
	"  brokers = \"b1:9092\";\n" \
	"  partitions = 8;\n" \
	"};\n" \
	"source = { dsn = \"host=a\"; };\n" \
	"target = { dsn = \"host=b\"; };\n"

/* Loads text; returns the error line ("" when it loaded). */
static const char *
load_err(const char *name, const char *text, struct cfg **out)
{
	static char err[1024];
	const char *path = write_file(name, text);
	struct cfg *cfg;

	err[0] = '\0';		/* no stale message from an earlier load */
	cfg = cfg_load(path, err, sizeof(err));

	if (out != NULL)
		*out = cfg;
	else
		cfg_free(cfg);
	if (cfg != NULL)
		err[0] = '\0';
	return err;
}

static int
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Loads text and expects cfg_load to return NULL with an error that
 * starts with dir/want ("FILE:LINE: KEY: ..."). */
static void
check_error(const char *name, const char *text, const char *want)
{
	char full[512];
	struct cfg *cfg;
	const char *err = load_err(name, text, &cfg);

	snprintf(full, sizeof(full), "%s/%s", dir, want);
	if (!ok(cfg == NULL && starts_with(err, full),
	    "%s: refused, error starts with '%s'", name, want))
		printf("#   got: %s '%s'\n", cfg ? "a config," : "NULL,", err);
	cfg_free(cfg);
}

int
main(void)
{
	struct cfg *cfg;
	int32_t days;

	if (mkdtemp(dir) == NULL)
		return 1;
	unsetenv("PGRELAY_KAFKA_BROKERS");
	unsetenv("PGRELAY_SOURCE_DSN");
	unsetenv("PGRELAY_TARGET_DSN");
	unsetenv("RUNTIME_DIRECTORY");

	is_str(load_err("base.conf", BASE, &cfg), "", "a minimal config loads");
	is_str(cfg->brokers, "b1:9092", "kafka.brokers from the file");
	is_int(cfg->partitions, 8, "kafka.partitions from the file");
	is_str(cfg->cdc_topic, "pgrelay.public.employees", "kafka.cdc_topic default");
	is_int(cfg->consumer_count, 2, "consumer.count default");
	is_int(cfg->rule_min_salary, 10000, "rules.min_salary default");
	is_int(cfg->rule_min_dob_days, 13514, "rules.min_dob default as days (2007-01-01)");
	is_str(cfg->runtime_dir, "/run/pgrelay", "supervisor.runtime_dir default");
	is_int(cfg->producer_lease_s, 5, "producer.lease_s default (5 s: takeover within 10)");
	cfg_free(cfg);

	{
		char err[1024];
		struct cfg *ex = cfg_load("etc/pgrelay.conf", err, sizeof(err));
		ok(ex != NULL, "the shipped etc/pgrelay.conf loads");
		if (ex == NULL)
			printf("#   %s\n", err);
		else
			is_int(ex->consumer_max, 6, "and its consumer.max is 6");
		is_int(ex ? ex->producer_lease_s : -1, 5, "and it lists producer.lease_s = 5");
		cfg_free(ex);
	}

	setenv("PGRELAY_KAFKA_BROKERS", "env:1", 1);
	setenv("PGRELAY_SOURCE_DSN", "host=envA", 1);
	setenv("PGRELAY_TARGET_DSN", "host=envB", 1);
	is_str(load_err("env.conf", "kafka = { partitions = 3; };\n"
	    "consumer = { max = 3; };\n", &cfg), "",
	    "brokers and DSNs may be absent when the environment sets them");
	is_str(cfg->brokers, "env:1", "PGRELAY_KAFKA_BROKERS overrides kafka.brokers");
	is_str(cfg->source_dsn, "host=envA", "PGRELAY_SOURCE_DSN overrides source.dsn");
	is_str(cfg->target_dsn, "host=envB", "PGRELAY_TARGET_DSN overrides target.dsn");
	cfg_free(cfg);
	load_err("env2.conf", BASE, &cfg);
	is_str(cfg->brokers, "env:1", "the environment wins over the file");
	cfg_free(cfg);
	unsetenv("PGRELAY_KAFKA_BROKERS");
	unsetenv("PGRELAY_SOURCE_DSN");
	unsetenv("PGRELAY_TARGET_DSN");

	check_error("typo.conf", "kafka = {\n  brokers = \"x\";\n\n  partitons = 3;\n};\n",
	    "typo.conf:4: kafka.partitons: unknown key");
	check_error("group.conf", BASE "\nkafak = { a = 1; };\n",
	    "group.conf:8: kafak: unknown group");
	check_error("type.conf", "kafka = {\n  brokers = \"x\";\n  partitions = \"6\";\n};\n"
	    "source = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "type.conf:3: kafka.partitions: expected an integer, got a string");
	check_error("type2.conf", BASE "log = { level = 3; };\n",
	    "type2.conf:7: log.level: expected a string, got an integer");
	check_error("missing.conf", "kafka = { brokers = \"x\"; };\n"
	    "target = { dsn = \"b\"; };\n",
	    "missing.conf:1: source.dsn: missing key (its group is absent) (or set PGRELAY_SOURCE_DSN)");
	check_error("range.conf", BASE "consumer = {\n  batch_size = 0;\n};\n",
	    "range.conf:8: consumer.batch_size: 0 is out of range [1, 100000]");
	check_error("max.conf", BASE "consumer = {\n  max = 9;\n};\n",
	    "max.conf:8: consumer.max: 9 is above kafka.partitions 8");
	check_error("count.conf", BASE "consumer = {\n  count = 5;\n  max = 4;\n};\n",
	    "count.conf:8: consumer.count: 5 is outside [consumer.min 1, consumer.max 4]");
	check_error("dob.conf", BASE "rules = {\n  min_dob = \"2007-02-30\";\n};\n",
	    "dob.conf:8: rules.min_dob: \"2007-02-30\" is not a date");
	check_error("level.conf", BASE "log = {\n  level = \"loud\";\n};\n",
	    "level.conf:8: log.level: \"loud\" is not one of debug, info, warn, error");
	check_error("syntax.conf", "kafka = {\n  brokers = \"x\";\n  partitions = ;\n};\n",
	    "syntax.conf:3: syntax error");
	check_error("empty.conf", BASE "kafka2 = 1;\n", "empty.conf:7: kafka2: unknown group");
	check_error("dlq.conf", "kafka = {\n  brokers = \"x\";\n  dlq_topic = \"t\";\n"
	    "  cdc_topic = \"t\";\n};\nsource = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "dlq.conf:3: kafka.dlq_topic: must differ from kafka.cdc_topic");

	/* The error paths the checks above leave out (config.c at 6e4c202). */
	/* config.c:147, a known group name given a value that is not a group */
	check_error("notgroup.conf", BASE "consumer = 3;\n",
	    "notgroup.conf:7: consumer: expected a group, got an integer");
	check_error("notgroup2.conf", BASE "\netl = ( \"a\", \"b\" );\n",
	    "notgroup2.conf:8: etl: expected a group, got a list");
	/* config.c:209, the group is there but the key is not (line of the group) */
	check_error("nokey.conf", "source = { dsn = \"a\"; };\nkafka = {\n"
	    "  partitions = 8;\n};\ntarget = { dsn = \"b\"; };\n",
	    "nokey.conf:2: kafka.brokers: missing key (or set PGRELAY_KAFKA_BROKERS)");
	/* config.c:234 */
	check_error("emptystr.conf", BASE "log = {\n  level = \"\";\n};\n",
	    "emptystr.conf:8: log.level: must not be empty");
	check_error("emptystr2.conf", "kafka = {\n  brokers = \"\";\n};\n"
	    "source = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "emptystr2.conf:2: kafka.brokers: must not be empty");
	/* config.c:245 */
	check_error("bool.conf", BASE "etl = {\n  enabled = 1;\n};\n",
	    "bool.conf:8: etl.enabled: expected true or false, got an integer");
	check_error("bool2.conf", BASE "etl = {\n  enabled = \"yes\";\n};\n",
	    "bool2.conf:8: etl.enabled: expected true or false, got a string");
	is_str(load_err("booltrue.conf", BASE "etl = {\n  enabled = true;\n};\n", &cfg),
	    "", "etl.enabled = true loads");
	is_int(cfg ? cfg->etl_enabled : -1, 1, "and sets etl_enabled");
	cfg_free(cfg);
	/* config.c:259, above the range, and a 64-bit key */
	check_error("range2.conf", "kafka = {\n  brokers = \"x\";\n  partitions = 1001;\n};\n"
	    "source = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "range2.conf:3: kafka.partitions: 1001 is out of range [1, 1000]");
	check_error("range64.conf", BASE "rules = {\n  min_salary = 2147483648L;\n};\n",
	    "range64.conf:8: rules.min_salary: 2147483648 is out of range "
	    "[-2147483648, 2147483647]");
	/* config.c:289 (checked before consumer.count, which is also off here) */
	check_error("minmax.conf", BASE "consumer = {\n  min = 5;\n  max = 4;\n"
	    "  count = 4;\n};\n",
	    "minmax.conf:8: consumer.min: 5 is above consumer.max 4");
	/* config.c:296, count below min */
	check_error("count2.conf", BASE "consumer = {\n  min = 2;\n  count = 1;\n};\n",
	    "count2.conf:9: consumer.count: 1 is outside [consumer.min 2, consumer.max 6]");
	/* config.c:312, each way loader_count can be outside its bounds */
	check_error("lminmax.conf", BASE "etl = {\n  loader_min = 3;\n  loader_max = 2;\n"
	    "  loader_count = 2;\n};\n",
	    "lminmax.conf:10: etl.loader_count: 2 is outside [etl.loader_min 3, "
	    "etl.loader_max 2]");
	check_error("lbelow.conf", BASE "etl = {\n  loader_min = 2;\n};\n",
	    "lbelow.conf:1: etl.loader_count: 1 is outside [etl.loader_min 2, "
	    "etl.loader_max 3]");
	check_error("labove.conf", BASE "etl = {\n  loader_count = 3;\n  loader_max = 2;\n};\n",
	    "labove.conf:8: etl.loader_count: 3 is outside [etl.loader_min 0, "
	    "etl.loader_max 2]");
	/* config.c:319 */
	check_error("lmax.conf", BASE "etl = {\n  partitions = 2;\n  loader_max = 3;\n};\n",
	    "lmax.conf:9: etl.loader_max: 3 is above etl.partitions 2");
	/* config.c:326, and the two names it accepts */
	check_error("pool.conf", BASE "supervisor = {\n  scale_pool = \"producer\";\n};\n",
	    "pool.conf:8: supervisor.scale_pool: \"producer\" is not one of consumer, "
	    "etl_loader");
	is_str(load_err("pool2.conf", BASE "supervisor = {\n  scale_pool = \"etl_loader\";\n};\n",
	    &cfg), "", "supervisor.scale_pool = \"etl_loader\" loads");
	is_str(cfg ? cfg->sup_scale_pool : NULL, "etl_loader", "and is kept");
	cfg_free(cfg);
	is_str(load_err("pool3.conf", BASE "supervisor = {\n  scale_pool = \"consumer\";\n};\n",
	    &cfg), "", "supervisor.scale_pool = \"consumer\" loads");
	cfg_free(cfg);

	/* producer.lease_s: renewed every second, so at least 2 */
	is_str(load_err("lease.conf", BASE "producer = {\n  lease_s = 2;\n};\n", &cfg),
	    "", "producer.lease_s = 2 loads");
	is_int(cfg ? cfg->producer_lease_s : -1, 2, "and is kept");
	cfg_free(cfg);
	check_error("lease1.conf", BASE "producer = {\n  lease_s = 1;\n};\n",
	    "lease1.conf:8: producer.lease_s: 1 is out of range [2, 3600]");
	check_error("lease2.conf", BASE "producer = {\n  lease_s = 3601;\n};\n",
	    "lease2.conf:8: producer.lease_s: 3601 is out of range [2, 3600]");
	check_error("lease3.conf", BASE "producer = {\n  lease_s = \"5s\";\n};\n",
	    "lease3.conf:8: producer.lease_s: expected an integer, got a string");

	char err[512];
	ok(cfg_load("/nonexistent/x.conf", err, sizeof(err)) == NULL &&
	    strstr(err, "/nonexistent/x.conf: cannot read") == err,
	    "an unreadable file is named");

	ok(cfg_parse_date("1970-01-01", &days) == 0 && days == 0, "1970-01-01 is day 0");
	ok(cfg_parse_date("2007-01-01", &days) == 0 && days == 13514, "2007-01-01 is day 13514");
	ok(cfg_parse_date("1969-12-31", &days) == 0 && days == -1, "1969-12-31 is day -1");
	ok(cfg_parse_date("2000-02-29", &days) == 0, "2000-02-29 is a date");
	ok(cfg_parse_date("1900-02-29", &days) < 0, "1900-02-29 is not");
	ok(cfg_parse_date("2007-13-01", &days) < 0, "month 13 is not");
	ok(cfg_parse_date("2007-1-01", &days) < 0, "a short month is not");
	ok(cfg_parse_date("garbage!!!", &days) < 0, "garbage is not");
	ok(cfg_parse_date("", &days) < 0, "empty is not");
	return done_testing();
}
