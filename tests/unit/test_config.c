/*
 * test_config.c - cfg_load: values, defaults, environment overrides, and
 * every kind of error naming file, line and key; kafka.properties and its
 * check against librdkafka (kfk_conf_check).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "kafka.h"
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

/* Loads text (mode mode) and runs kfk_conf_check (create as given);
 * expects an error starting with dir/want, or none when want is "". */
static void
check_kafka(const char *name, int mode, int create, const char *text,
    const char *want)
{
	char err[1024] = "", full[512];
	const char *path = write_file(name, text);
	struct cfg *cfg;
	int rc = -1;

	chmod(path, (mode_t)mode);
	cfg = cfg_load(path, err, sizeof(err));
	if (cfg != NULL)
		rc = kfk_conf_check(cfg, create, err, sizeof(err));
	if (want[0] == '\0') {
		if (!ok(rc == 0, "%s: accepted", name))
			printf("#   got: '%s'\n", err);
	} else {
		snprintf(full, sizeof(full), "%s/%s", dir, want);
		if (!ok(rc < 0 && starts_with(err, full), "%s: refused, error starts "
		    "with '%s'", name, want))
			printf("#   got: '%s'\n", err);
	}
	cfg_free(cfg);
}

#define KBASE \
	"source = { dsn = \"host=a\"; };\n" \
	"target = { dsn = \"host=b\"; };\n" \
	"kafka = {\n" \
	"  brokers = \"b1:9092\";\n" \
	"  properties = (\n"

static void
test_kafka_properties(void)
{
	struct cfg *cfg;
	char text[1024], secret[256];

	is_str(load_err("kp.conf", KBASE
	    "    (\"security.protocol\", \"SASL_SSL\"),\n"
	    "    (\"socket.timeout.ms\", 30000),\n"
	    "    (\"enable.ssl.certificate.verification\", true),\n"
	    "    [\"sasl.username\", \"u\"]\n"
	    "  );\n};\n", &cfg), "", "kafka.properties: pairs of strings, integers, booleans load");
	ok(cfg != NULL && cfg->nkprops == 4 &&
	    strcmp(cfg->kprops[0].value, "SASL_SSL") == 0 && cfg->kprops[0].line == 6 &&
	    strcmp(cfg->kprops[1].value, "30000") == 0 && cfg->kprops[1].line == 7 &&
	    strcmp(cfg->kprops[2].value, "true") == 0 &&
	    strcmp(cfg->kprops[3].value, "u") == 0,
	    "each as librdkafka's string, with its line (a pair may be an array)");
	cfg_free(cfg);
	check_kafka("kpok.conf", 0600, 0, KBASE "    (\"security.protocol\", \"SASL_SSL\"),\n"
	    "    (\"sasl.mechanisms\", \"PLAIN\")\n  );\n};\n", "");

	check_error("kpgroup.conf", KBASE "  );\n  properties2 = 1;\n};\n",
	    "kpgroup.conf:7: kafka.properties2: unknown key");
	check_error("kpnotlist.conf", "kafka = {\n  brokers = \"x\";\n"
	    "  properties = { a = 1; };\n};\nsource = { dsn = \"a\"; };\n"
	    "target = { dsn = \"b\"; };\n",
	    "kpnotlist.conf:3: kafka.properties: expected a list of (\"name\", value) "
	    "pairs, got a group");
	check_error("kpnotpair.conf", KBASE "    (\"acks\")\n  );\n};\n",
	    "kpnotpair.conf:6: kafka.properties: entry 1: expected a pair");
	check_error("kpname.conf", KBASE "    (1, \"x\")\n  );\n};\n",
	    "kpname.conf:6: kafka.properties: entry 1: expected a pair");
	check_error("kpfloat.conf", KBASE "    (\"x.y\", 1.5)\n  );\n};\n",
	    "kpfloat.conf:6: kafka.properties: x.y: expected a string, an integer or "
	    "true/false as the value, got a float");
	check_error("kptwice.conf", KBASE "    (\"linger.ms\", 1),\n\n"
	    "    (\"linger.ms\", 2)\n  );\n};\n",
	    "kptwice.conf:8: kafka.properties: linger.ms: given twice (first on line 6)");

	/* secrets: file: and env:, and where they may be plain */
	ok(cfg_kprop_is_secret("sasl.password") && cfg_kprop_is_secret("ssl.key.password") &&
	    cfg_kprop_is_secret("ssl.keystore.password") && cfg_kprop_is_secret("ssl.key.pem") &&
	    !cfg_kprop_is_secret("sasl.username"), "which properties are secrets");
	snprintf(secret, sizeof(secret), "%s", write_file("pw", "s3cret\n"));
	chmod(secret, 0600);
	snprintf(text, sizeof(text), KBASE "    (\"sasl.password\", \"file:%s\")\n  );\n};\n",
	    secret);
	is_str(load_err("kpfile.conf", text, &cfg), "", "a file: secret (0600) loads");
	is_str(cfg && cfg->nkprops == 1 ? cfg->kprops[0].value : NULL, "s3cret",
	    "its content, without the newline");
	ok(cfg && cfg->kprops[0].secret, "and is marked secret");
	cfg_free(cfg);
	chmod(secret, 0644);
	check_error("kpfile2.conf", text, "kpfile2.conf:6: kafka.properties: sasl.password: ");
	ok(strstr(load_err("kpfile3.conf", text, NULL), "every user can read it (mode 0644)")
	    != NULL, "a secret file every user can read is refused, its mode named");
	snprintf(secret, sizeof(secret), "%s", write_file("user", "reader\n"));
	chmod(secret, 0644);
	snprintf(text, sizeof(text), KBASE "    (\"sasl.username\", \"file:%s\")\n  );\n};\n",
	    secret);
	is_str(load_err("kpfile4.conf", text, NULL), "", "a file: value that is no secret may be readable");
	check_error("kpnofile.conf", KBASE "    (\"sasl.password\", \"file:/nonexistent/pw\")\n"
	    "  );\n};\n", "kpnofile.conf:6: kafka.properties: sasl.password: cannot read "
	    "/nonexistent/pw: ");
	snprintf(secret, sizeof(secret), "%s", write_file("empty", "\n"));
	chmod(secret, 0600);
	snprintf(text, sizeof(text), KBASE "    (\"sasl.password\", \"file:%s\")\n  );\n};\n",
	    secret);
	ok(strstr(load_err("kpempty.conf", text, NULL), "is empty") != NULL,
	    "an empty secret file is refused");
	setenv("PGRELAY_TEST_PW", "from-env", 1);
	is_str(load_err("kpenv.conf", KBASE "    (\"sasl.password\", \"env:PGRELAY_TEST_PW\")\n"
	    "  );\n};\n", &cfg), "", "an env: secret loads");
	is_str(cfg && cfg->nkprops == 1 ? cfg->kprops[0].value : NULL, "from-env",
	    "with the variable's value");
	cfg_free(cfg);
	unsetenv("PGRELAY_TEST_PW");
	{
		char e2[512];
		const char *path = write_file("kpctl.conf", KBASE
		    "    (\"sasl.password\", \"env:PGRELAY_TEST_PW\")\n  );\n};\n");
		cfg = cfg_load_no_secrets(path, e2, sizeof(e2));
		ok(cfg != NULL && cfg->nkprops == 1, "cfg_load_no_secrets (pgrelayctl) "
		    "loads without the secret's variable");
		cfg_free(cfg);
	}
	check_error("kpenv2.conf", KBASE "    (\"sasl.password\", \"env:PGRELAY_TEST_PW\")\n"
	    "  );\n};\n", "kpenv2.conf:6: kafka.properties: sasl.password: the environment "
	    "variable PGRELAY_TEST_PW is not set or empty");
	/* a plain secret: only in a config file others cannot read */
	check_kafka("kpplain.conf", 0644, 0, KBASE "    (\"sasl.password\", \"pw\")\n  );\n};\n",
	    "kpplain.conf:6: kafka.properties: sasl.password: a secret in a config file "
	    "every user can read");
	check_kafka("kpplain2.conf", 0640, 0, KBASE "    (\"sasl.password\", \"pw\")\n  );\n};\n",
	    "");

	/* librdkafka's verdict, and pgrelay's own settings */
	check_kafka("kpunknown.conf", 0600, 0, KBASE "    (\"security.protocol\", \"SSL\"),\n"
	    "    (\"no.such.thing\", \"1\")\n  );\n};\n",
	    "kpunknown.conf:7: kafka.properties: no.such.thing: librdkafka: No such "
	    "configuration property");
	check_kafka("kpvalue.conf", 0600, 0, KBASE "    (\"linger.ms\", \"soon\")\n  );\n};\n",
	    "kpvalue.conf:6: kafka.properties: linger.ms: pgrelay sets it itself (to 2)");
	check_kafka("kpvalue2.conf", 0600, 0, KBASE "    (\"socket.timeout.ms\", \"soon\")\n"
	    "  );\n};\n", "kpvalue2.conf:6: kafka.properties: socket.timeout.ms: librdkafka: "
	    "Invalid value");
	check_kafka("kpacks.conf", 0600, 0, KBASE "    (\"acks\", 1)\n  );\n};\n",
	    "kpacks.conf:6: kafka.properties: acks: pgrelay sets it itself (to all); it "
	    "cannot be overridden");
	check_kafka("kpgid.conf", 0600, 0, KBASE "    (\"group.id\", \"g\")\n  );\n};\n",
	    "kpgid.conf:6: kafka.properties: group.id: pgrelay sets it itself (from "
	    "kafka.group_id, etl.group_id)");
	check_kafka("kptxn.conf", 0600, 0, KBASE "    (\"transactional.id\", \"t\")\n  );\n};\n",
	    "kptxn.conf:6: kafka.properties: transactional.id: pgrelay sets it itself (from the CDC producer's fencing");
	check_kafka("kpalias.conf", 0600, 0, KBASE "    (\"queue.buffering.max.ms\", 100)\n"
	    "  );\n};\n", "kpalias.conf:6: kafka.properties: queue.buffering.max.ms: it sets "
	    "linger.ms, which pgrelay sets itself");
	check_kafka("kpalias2.conf", 0600, 0, KBASE "    (\"metadata.broker.list\", \"b2:9092\")\n"
	    "  );\n};\n", "kpalias2.conf:6: kafka.properties: metadata.broker.list: it sets "
	    "bootstrap.servers");
	check_kafka("kpalias3.conf", 0600, 0, KBASE "    (\"max.partition.fetch.bytes\", 1048576)\n"
	    "  );\n};\n", "kpalias3.conf:6: kafka.properties: max.partition.fetch.bytes: it "
	    "sets fetch.message.max.bytes");
	/* create: what only rd_kafka_new checks */
	check_kafka("kpca.conf", 0600, 1, KBASE "    (\"security.protocol\", \"SSL\"),\n"
	    "    (\"ssl.ca.location\", \"/nonexistent/ca.crt\")\n  );\n};\n",
	    "kpca.conf:7: kafka.properties: ssl.ca.location: librdkafka cannot create a "
	    "producer with it: ");
	check_kafka("kpca2.conf", 0600, 0, KBASE "    (\"security.protocol\", \"SSL\"),\n"
	    "    (\"ssl.ca.location\", \"/nonexistent/ca.crt\")\n  );\n};\n", "");
	check_kafka("kpmech.conf", 0600, 1, KBASE "    (\"security.protocol\", \"SASL_SSL\"),\n"
	    "    (\"sasl.mechanisms\", \"NOPE\")\n  );\n};\n",
	    "kpmech.conf:7: kafka.properties: sasl.mechanisms: librdkafka cannot create a "
	    "producer with it: ");
	check_kafka("kpcreate.conf", 0600, 1, KBASE "    (\"security.protocol\", \"SASL_SSL\"),\n"
	    "    (\"sasl.mechanisms\", \"PLAIN\"),\n    (\"sasl.username\", \"u\"),\n"
	    "    (\"sasl.password\", \"p\")\n  );\n};\n", "");
	check_kafka("kpnone.conf", 0644, 1, BASE, "");
}

#define TBASE \
	"source = { dsn = \"host=a\"; };\n" \
	"target = { dsn = \"host=b\"; };\n" \
	"kafka = { brokers = \"b1:9092\"; };\n"

/* cdc.tables: defaults, rules, and the errors of its form. */
static void
test_tables(void)
{
	struct cfg *cfg;

	is_str(load_err("t0.conf", TBASE, &cfg), "", "without cdc.tables: loads");
	ok(cfg != NULL && cfg->ntables == 1 && !cfg->tables_given &&
	    strcmp(cfg->tables[0].source, "public.employees") == 0 &&
	    strcmp(cfg->tables[0].topic, "pgrelay.public.employees") == 0 &&
	    cfg->tables[0].nrules == 3 &&
	    strcmp(cfg->tables[0].rules[2].name, "salary.min") == 0 &&
	    strcmp(cfg->tables[0].rules[2].op, ">") == 0 &&
	    strcmp(cfg->tables[0].rules[2].value, "10000") == 0,
	    "one table, public.employees, on kafka.cdc_topic, with the rules group's rules");
	cfg_free(cfg);

	is_str(load_err("t1.conf", TBASE "cdc = { tables = (\n"
	    "  { source = \"sales.\\\"Order Items\\\"\"; exclude = [\"card\"];\n"
	    "    rules = [ \"qty >= 1\", \"note <> 'x y'\", \"Price != 0\",\n"
	    "              \"\\\"My Col\\\" <= 2020-01-01\" ]; },\n"
	    "  { source = \"employees\"; target = \"copy.emp\"; topic = \"e\"; }\n"
	    "); };\n", &cfg), "", "cdc.tables with two tables loads");
	ok(cfg != NULL && cfg->ntables == 2 && cfg->tables_given &&
	    strcmp(cfg->tables[0].topic, "pgrelay.sales.Order Items") == 0 &&
	    strcmp(cfg->tables[0].target, cfg->tables[0].source) == 0 &&
	    cfg->tables[0].exclude != NULL && strcmp(cfg->tables[0].exclude[0], "card") == 0 &&
	    cfg->tables[0].exclude[1] == NULL && cfg->tables[0].include == NULL,
	    "a table's topic is kafka.topic_prefix.schema.table and its target its source");
	ok(cfg != NULL && cfg->tables[0].nrules == 4 &&
	    strcmp(cfg->tables[0].rules[0].name, "qty.min") == 0 &&
	    strcmp(cfg->tables[0].rules[1].op, "<>") == 0 &&
	    strcmp(cfg->tables[0].rules[1].value, "x y") == 0 &&
	    strcmp(cfg->tables[0].rules[1].name, "note.ne") == 0 &&
	    strcmp(cfg->tables[0].rules[2].column, "price") == 0 &&
	    strcmp(cfg->tables[0].rules[2].op, "<>") == 0 &&
	    strcmp(cfg->tables[0].rules[3].column, "My Col") == 0 &&
	    strcmp(cfg->tables[0].rules[3].name, "My Col.max") == 0 &&
	    cfg->tables[0].rules[3].line == 7,
	    "rules: quoted values and names, != as <>, plain names folded, each with its line");
	ok(cfg != NULL && cfg->tables[1].nrules == 3 &&
	    strcmp(cfg->tables[1].topic, "e") == 0 &&
	    strcmp(cfg->tables[1].target, "copy.emp") == 0,
	    "employees without rules of its own takes the rules group's");
	cfg_free(cfg);

	is_str(load_err("tempty.conf", TBASE "cdc = { tables = (); };\n", &cfg), "",
	    "an empty cdc.tables loads");
	ok(cfg != NULL && cfg->ntables == 1 && strcmp(cfg->tables[0].source,
	    "public.employees") == 0, "and is the default table");
	cfg_free(cfg);

	check_error("tnosrc.conf", TBASE "cdc = { tables = ( { topic = \"x\"; } ); };\n",
	    "tnosrc.conf:4: cdc.tables: source: missing key");
	check_error("tkey.conf", TBASE "cdc = { tables = ( { source = \"a\"; colour = 1; } ); };\n",
	    "tkey.conf:4: cdc.tables: colour: unknown key");
	check_error("tname.conf", TBASE "cdc = { tables = ( { source = \"a.b.c\"; } ); };\n",
	    "tname.conf:4: cdc.tables: source: \"a.b.c\" is not a table name");
	check_error("ttwice.conf", TBASE "cdc = { tables = (\n { source = \"a\"; },\n"
	    " { source = \"a\"; topic = \"t2\"; }\n); };\n",
	    "ttwice.conf:6: cdc.tables: source: the same as the table at line 5");
	check_error("ttopic.conf", TBASE "cdc = { tables = (\n { source = \"a\"; topic = \"t\"; },\n"
	    " { source = \"b\"; topic = \"t\"; }\n); };\n",
	    "ttopic.conf:6: cdc.tables: topic: the same as the table at line 5");
	check_error("tdlq.conf", TBASE "cdc = { tables = ( { source = \"a\"; topic = \"pgrelay.dlq\"; } ); };\n",
	    "tdlq.conf:4: cdc.tables: topic: pgrelay.dlq is kafka.dlq_topic");
	check_error("trule.conf", TBASE "cdc = { tables = ( { source = \"a\";\n"
	    "  rules = [ \"x > 1\",\n \"y >> 2\" ]; } ); };\n",
	    "trule.conf:6: cdc.tables: rules: \"y >> 2\" is not a rule");
	check_error("trule2.conf", TBASE "cdc = { tables = ( { source = \"a\"; rules = [ \"x\" ]; } ); };\n",
	    "trule2.conf:4: cdc.tables: rules: \"x\" is not a rule");
	check_error("tlist.conf", TBASE "cdc = { tables = { source = \"a\"; }; };\n",
	    "tlist.conf:4: cdc.tables: expected a list of tables");
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
	test_tables();

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

	/* A DSN libpq cannot parse is refused at load, and libpq's message,
	 * which quotes the offending part (the password here), is masked. */
	{
		const char *e = load_err("dsn.conf", "kafka = {\n  brokers = \"x\";\n};\n"
		    "source = {\n  dsn = \"postgresql://u:Tg7Secret%ZZ@h/db\";\n};\n"
		    "target = { dsn = \"b\"; };\n", &cfg);
		if (!ok(cfg == NULL && strstr(e, "dsn.conf:5: source.dsn: not a valid libpq "
		    "connection string: invalid percent-encoded token: \"***\"") != NULL &&
		    strstr(e, "Tg7Secret") == NULL, "a malformed URI DSN: file:line, masked"))
			printf("#   got '%s'\n", e);
		cfg_free(cfg);
		e = load_err("dsn2.conf", "kafka = {\n  brokers = \"x\";\n};\n"
		    "source = { dsn = \"a\"; };\ntarget = {\n  dsn = \"host=h password=Tg7Secret x\";\n};\n",
		    &cfg);
		if (!ok(cfg == NULL && strstr(e, "dsn2.conf:6: target.dsn: not a valid libpq "
		    "connection string: missing \"=\" after \"***\"") != NULL &&
		    strstr(e, "Tg7Secret") == NULL, "a malformed key=value DSN: file:line, masked"))
			printf("#   got '%s'\n", e);
		cfg_free(cfg);
		setenv("PGRELAY_TARGET_DSN", "postgres://u:Tg7Secret%ZZ@h/db", 1);
		e = load_err("dsn3.conf", BASE, &cfg);
		if (!ok(cfg == NULL && strstr(e, "PGRELAY_TARGET_DSN (overrides target.dsn): "
		    "not a valid libpq connection string") != NULL && strstr(e, "Tg7Secret") == NULL,
		    "a malformed DSN from the environment names the variable, masked"))
			printf("#   got '%s'\n", e);
		cfg_free(cfg);
		unsetenv("PGRELAY_TARGET_DSN");
		load_err("dsn4.conf", "kafka = {\n  brokers = \"x\";\n};\n"
		    "source = { dsn = \"postgresql://u:p%41ss@h:5432/db?sslmode=verify-full\"; };\n"
		    "target = { dsn = \"host=h port=5 dbname=d user=u password='p w'\"; };\n", &cfg);
		ok(cfg != NULL, "well-formed URI and key=value DSNs load");
		cfg_free(cfg);
	}

	/* the topics' settings (kafka.min_insync_replicas, kafka.retention_ms) */
	load_err("topics.conf", BASE, &cfg);
	ok(cfg != NULL && cfg->min_insync_replicas == 1 && cfg->retention_ms == -1,
	    "topic settings default to min.insync.replicas 1, retention.ms -1 (keep all)");
	cfg_free(cfg);
	load_err("topics2.conf", "kafka = {\n  brokers = \"x\";\n  replication_factor = 3;\n"
	    "  min_insync_replicas = 2;\n  retention_ms = 604800000;\n};\n"
	    "source = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n", &cfg);
	ok(cfg != NULL && cfg->min_insync_replicas == 2 && cfg->retention_ms == 604800000,
	    "min_insync_replicas 2 of 3, retention_ms 7 days load");
	cfg_free(cfg);
	check_error("isr.conf", "kafka = {\n  brokers = \"x\";\n  replication_factor = 2;\n"
	    "  min_insync_replicas = 3;\n};\nsource = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "isr.conf:4: kafka.min_insync_replicas: 3 is above kafka.replication_factor 2");
	check_error("ret.conf", "kafka = {\n  brokers = \"x\";\n  retention_ms = 60000;\n};\n"
	    "source = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "ret.conf:3: kafka.retention_ms: 60000 is below one hour");
	check_error("ret2.conf", "kafka = {\n  brokers = \"x\";\n  retention_ms = -2;\n};\n"
	    "source = { dsn = \"a\"; };\ntarget = { dsn = \"b\"; };\n",
	    "ret2.conf:3: kafka.retention_ms:");
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
	check_error("evo.conf", BASE "consumer = {\n  schema_evolution = \"add\";\n};\n",
	    "evo.conf:8: consumer.schema_evolution: \"add\" is not one of none, "
	    "add_columns");
	is_str(load_err("evo2.conf", BASE "consumer = {\n  schema_evolution = \"add_columns\";\n};\n",
	    &cfg), "", "consumer.schema_evolution = \"add_columns\" loads");
	is_str(cfg ? cfg->consumer_schema_evolution : NULL, "add_columns", "and is kept");
	cfg_free(cfg);
	is_str(load_err("pool2.conf", BASE "supervisor = {\n  scale_pool = \"etl_loader\";\n};\n",
	    &cfg), "", "supervisor.scale_pool = \"etl_loader\" loads");
	is_str(cfg ? cfg->sup_scale_pool : NULL, "etl_loader", "and is kept");
	cfg_free(cfg);
	is_str(load_err("pool3.conf", BASE "supervisor = {\n  scale_pool = \"consumer\";\n};\n",
	    &cfg), "", "supervisor.scale_pool = \"consumer\" loads");
	cfg_free(cfg);

	/* etl.max_record_lines and etl.max_record_bytes: defaults, each end of
	 * each range, and one value past it */
	is_str(load_err("rec.conf", BASE, &cfg), "", "a config without the record limits loads");
	is_int(cfg ? cfg->etl_max_record_lines : -1, 10, "etl.max_record_lines default");
	is_int(cfg ? cfg->etl_max_record_bytes : -1, 65536, "etl.max_record_bytes default");
	cfg_free(cfg);
	is_str(load_err("rec2.conf", BASE "etl = {\n  max_record_lines = 1;\n"
	    "  max_record_bytes = 1024;\n};\n", &cfg), "", "the record limits' least values load");
	is_int(cfg ? cfg->etl_max_record_lines : -1, 1, "and set etl.max_record_lines");
	is_int(cfg ? cfg->etl_max_record_bytes : -1, 1024, "and etl.max_record_bytes");
	cfg_free(cfg);
	is_str(load_err("rec3.conf", BASE "etl = {\n  max_record_lines = 100000;\n"
	    "  max_record_bytes = 16777216;\n};\n", &cfg), "",
	    "the record limits' greatest values load");
	cfg_free(cfg);
	check_error("reclines0.conf", BASE "etl = {\n  max_record_lines = 0;\n};\n",
	    "reclines0.conf:8: etl.max_record_lines: 0 is out of range [1, 100000]");
	check_error("reclines1.conf", BASE "etl = {\n  max_record_lines = 100001;\n};\n",
	    "reclines1.conf:8: etl.max_record_lines: 100001 is out of range [1, 100000]");
	check_error("recbytes0.conf", BASE "etl = {\n\n  max_record_bytes = 1023;\n};\n",
	    "recbytes0.conf:9: etl.max_record_bytes: 1023 is out of range [1024, 16777216]");
	check_error("recbytes1.conf", BASE "etl = {\n  max_record_bytes = 16777217;\n};\n",
	    "recbytes1.conf:8: etl.max_record_bytes: 16777217 is out of range [1024, 16777216]");
	check_error("recbytes2.conf", BASE "etl = {\n  max_record_bytes = \"64k\";\n};\n",
	    "recbytes2.conf:8: etl.max_record_bytes: expected an integer, got a string");
	test_kafka_properties();
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

	/* A value quoted in an error keeps the error on one line (found by
	 * tests/fuzz/fuzz_config.c: a string spanning lines was copied as is). */
	check_error("nl.conf", BASE "rules = {\n  min_dob = \"2007-01-01\n\tx\\\"\";\n};\n",
	    "nl.conf:8: rules.min_dob: \"2007-01-01\\n\\tx\\\"\" is not a date");
	check_error("ctl.conf", BASE "log = {\n  level = \"a\\x01b\";\n};\n",
	    "ctl.conf:8: log.level: \"a\\x01b\" is not one of debug, info, warn, error");
	check_error("long.conf", BASE "supervisor = {\n  scale_pool = "
	    "\"0123456789012345678901234567890123456789012345678901234567890123456789\";\n};\n",
	    "long.conf:8: supervisor.scale_pool: "
	    "\"0123456789012345678901234567890123456789012345678901234567890123...\" is not");
	check_error("utf8cut.conf", BASE "log = {\n  level = "
	    "\"012345678901234567890123456789012345678901234567890123456789012\xc3\xa9\";\n};\n",
	    "utf8cut.conf:8: log.level: "
	    "\"012345678901234567890123456789012345678901234567890123456789012...\" is not");

	/* cfg_load_string: the same checks on a text, named as given */
	cfg = cfg_load_string(BASE, "mem.conf", err, sizeof(err));
	ok(cfg != NULL && strcmp(cfg->path, "mem.conf") == 0 &&
	    strcmp(cfg->brokers, "b1:9092") == 0 && cfg->partitions == 8,
	    "cfg_load_string loads a text and names it");
	cfg_free(cfg);
	ok(cfg_load_string(BASE "consumer = {\n  max = 9;\n};\n", "mem.conf", err,
	    sizeof(err)) == NULL && strcmp(err, "mem.conf:8: consumer.max: 9 is above "
	    "kafka.partitions 8 (a consumer beyond the partition count would sit idle)") == 0,
	    "cfg_load_string: an error names the given name and the line");
	ok(cfg_load_string("kafka = {\n  brokers = ;\n};\n", "mem.conf", err,
	    sizeof(err)) == NULL && starts_with(err, "mem.conf:2: syntax error"),
	    "cfg_load_string: a syntax error names the given name and the line");

	/* cfg_schema_key: the list pgrelay.conf(5) is made from.  A file
	 * giving every key its listed default (the required ones a value)
	 * loads: the defaults it documents are valid together. */
	struct cfg_key_info ki;
	char all[8192] = "", *p = all;
	const char *group = "";
	size_t nkeys = 0;
	int bad_info = 0;
	while (cfg_schema_key(nkeys, &ki) == 0) {
		if (ki.group == NULL || ki.name == NULL || ki.type == NULL ||
		    (ki.required && strcmp(ki.type, "string") != 0))
			bad_info++;
		if (strcmp(group, ki.group) != 0)
			p += sprintf(p, "%s%s = {\n", group[0] ? "};\n" : "", ki.group);
		group = ki.group;
		if (ki.required)
			p += sprintf(p, "  %s = \"x\";\n", ki.name);
		else if (strcmp(ki.type, "string") == 0)
			p += sprintf(p, "  %s = \"%s\";\n", ki.name, ki.def_str);
		else if (strcmp(ki.type, "boolean") == 0)
			p += sprintf(p, "  %s = %s;\n", ki.name, ki.def_int ? "true" : "false");
		else if (strcmp(ki.type, "list") == 0)
			p += sprintf(p, "  %s = ();\n", ki.name);
		else
			p += sprintf(p, "  %s = %lldL;\n", ki.name, ki.def_int);
		nkeys++;
	}
	strcat(p, "};\n");
	ok(nkeys >= 45 && bad_info == 0, "cfg_schema_key lists %zu keys, each with "
	    "group, name and type", nkeys);
	ok(cfg_schema_key(nkeys, &ki) == -1, "and -1 past the last");
	cfg_schema_key(0, &ki);
	ok(strcmp(ki.group, "log") == 0 && strcmp(ki.name, "level") == 0 &&
	    strcmp(ki.def_str, "info") == 0, "the first is log.level, default \"info\"");
	cfg_schema_key(1, &ki);
	ok(strcmp(ki.name, "brokers") == 0 && ki.required && ki.env != NULL &&
	    strcmp(ki.env, "PGRELAY_KAFKA_BROKERS") == 0,
	    "kafka.brokers: required, PGRELAY_KAFKA_BROKERS overrides it");
	is_str(load_err("defaults.conf", all, &cfg), "",
	    "a file of every key at its listed default loads");
	cfg_free(cfg);

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
