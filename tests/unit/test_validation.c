/*
 * test_validation.c - rules per table: compiled against the target's
 * columns (a missing column, a value that does not parse for the column's
 * class, a class no rule compares, a boolean with < are configuration
 * errors with file:line), then checked on decoded changes by class, each
 * operator at its boundary.  The spec's rules on employees (the default
 * table without cdc.tables, from the rules.* keys) keep their names and
 * reasons exactly: test 30 and the DLQ headers depend on them.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "relfix.h"
#include "tap.h"
#include "validation.h"

static struct rel *emp, *multi;

/* Writes text to a file in a fresh directory, loads it and removes both;
 * NULL (with the reason printed) if it does not load. */
static struct cfg *
load_text(const char *text)
{
	char dir[] = "/tmp/pgrelay-test-validation-XXXXXX";
	char path[64], err[512];
	struct cfg *cfg;
	FILE *f;

	if (mkdtemp(dir) == NULL)
		return NULL;
	snprintf(path, sizeof(path), "%s/rules.conf", dir);
	f = fopen(path, "w");
	if (f == NULL)
		return NULL;
	fputs(text, f);
	fclose(f);
	cfg = cfg_load(path, err, sizeof(err));
	if (cfg == NULL)
		printf("#   %s\n", err);
	unlink(path);
	rmdir(dir);
	return cfg;
}

#define CFG_BASE \
	"kafka = { brokers = \"b:9092\"; };\n" \
	"source = { dsn = \"host=a\"; };\n" \
	"target = { dsn = \"host=b\"; };\n"

/* Checks the change op/row (JSON) against tr: passes, or fails with
 * want_rule and want_reason exactly. */
static void
expect(const struct table_rules *tr, char op, const char *row,
    const char *want_rule, const char *want_reason)
{
	struct change_event e = { .op = op, .change_id = 1 };
	const char *rule = NULL;
	char reason[256] = "";
	json_error_t jerr;

	e.row = row ? json_loads(row, 0, &jerr) : NULL;
	int rc = rule_check(tr, &e, &rule, reason, sizeof(reason));
	if (want_rule == NULL) {
		if (!ok(rc == 0, "op %c %s passes", op, row ? row : "(no row)"))
			printf("#   failed %s: %s\n", rule, reason);
	} else if (!ok(rc == -1 && rule != NULL && strcmp(rule, want_rule) == 0 &&
	    strcmp(reason, want_reason) == 0, "op %c %s fails %s: %s", op, row,
	    want_rule, want_reason)) {
		printf("#   got rc %d rule %s reason '%s'\n", rc, rule ? rule : "(none)",
		    reason);
	}
	codec_event_free(&e);
}

/* A config with one table, target multi, whose rules are the given
 * array body; compiles them against multi. */
static struct cfg *
multi_cfg(const char *rules, struct table_rules *tr, char *err, size_t errlen, int *rc)
{
	char text[2048];
	struct cfg *cfg;

	snprintf(text, sizeof(text), CFG_BASE "cdc = {\n  tables = (\n"
	    "    { source = \"public.multi\";\n"
	    "      rules = [\n%s\n      ];\n    }\n  );\n};\n", rules);
	cfg = load_text(text);
	*rc = cfg ? rules_compile(tr, cfg, &cfg->tables[0], multi, err, errlen) : -2;
	return cfg;
}

static void
config_error(const char *rules, const char *want, const char *what)
{
	struct table_rules tr;
	char err[512] = "";
	int rc;
	struct cfg *cfg = multi_cfg(rules, &tr, err, sizeof(err), &rc);

	if (!ok(rc == -1 && strstr(err, want) != NULL && tr.rules == NULL,
	    "config error, %s: %s", what, want))
		printf("#   rc %d err '%s'\n", rc, err);
	if (rc == 0)
		rules_free(&tr);
	cfg_free(cfg);
}

/* Line 9 is the rules array's: libconfig gives a string element of an
 * array no line of its own, and config.c falls back to the array's, which
 * libconfig reports where the array ends. */
static void
test_config_errors(void)
{
	config_error("\"nope > 1\"", "rules.conf:9: cdc.tables: rules: nope > 1: "
	    "table public.multi has no column \"nope\"", "a missing column, with file:line");
	config_error("\"i8 > 1\", \"i8 > x\"", "rules.conf:9: cdc.tables: rules: i8 > x: "
	    "\"x\" is not a value of column \"i8\" (bigint; want an integer)",
	    "an integer that does not parse");
	config_error("\"i8 > 1.5\"", "\"1.5\" is not a value of column \"i8\"",
	    "a fraction for an integer");
	config_error("\"i8 > 99999999999999999999\"", "is not a value of column \"i8\"",
	    "an integer beyond 64 bits");
	config_error("\"d >= 2007-02-30\"", "\"2007-02-30\" is not a value of column "
	    "\"d\" (date; want a date YYYY-MM-DD)", "a date that does not exist");
	config_error("\"n > 1e5\"", "(numeric(40,21); want a decimal such as -12.50)",
	    "a numeric with an exponent");
	config_error("\"f8 > abc\"", "want a number, NaN, Infinity or -Infinity",
	    "a float that does not parse");
	config_error("\"b > true\"", "b > true: column \"b\" is boolean, which compares "
	    "with = and <> only", "a boolean with >");
	config_error("\"b = yes\"", "\"yes\" is not a value of column \"b\" (boolean; "
	    "want true or false)", "a boolean that is not true or false");
	config_error("\"ts > 5\"", "ts > 5: column \"ts\" has type timestamp without "
	    "time zone, which a rule cannot compare", "a timestamp column");
	config_error("\"ai <> 1\"", "column \"ai\" has type integer[], which a rule "
	    "cannot compare", "an array column");
}

static void
test_classes(void)
{
	struct table_rules tr;
	char err[512];
	int rc;
	struct cfg *cfg = multi_cfg(
	    "\"i8 <= 100\", \"n > -0.5\", \"f8 < 2.5\", \"t <> 'bad'\", \"b = true\", "
	    "\"d < 2020-01-01\", \"k2 >= 0\"", &tr, err, sizeof(err), &rc);

	if (!ok(rc == 0, "rules of every class compile"))
		printf("#   %s\n", err);
	if (rc != 0) {
		cfg_free(cfg);
		return;
	}
#define ROW(rest) "{\"k1\":\"u1\",\"k2\":3" rest "}"
#define GOOD ",\"i8\":100,\"n\":\"-0.4999\",\"f8\":2.4,\"t\":\"good\",\"b\":true,\"d\":18261"
	expect(&tr, 'c', ROW(GOOD), NULL, NULL);
	expect(&tr, 'c', ROW(",\"i8\":101,\"n\":\"1\""), "i8.max", "i8 101 is above 100");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"-0.50\""), "n.min", "n -0.50 is not above -0.5");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"-0.5000000000000000000001\""), "n.min",
	    "n -0.5000000000000000000001 is not above -0.5");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"-0.4999999999999999999999\",\"f8\":2.5"),
	    "f8.max", "f8 2.5 is not below 2.5");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"NaN\",\"f8\":\"NaN\""), "f8.max",
	    "f8 NaN is not below 2.5");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"Infinity\",\"f8\":\"-Infinity\",\"t\":\"bad\""),
	    "t.ne", "t bad is bad");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"1\",\"f8\":0,\"t\":\"bad \",\"b\":false"),
	    "b.eq", "b false is not true");
	expect(&tr, 'u', ROW(",\"i8\":-5,\"n\":\"1\",\"f8\":0,\"t\":\"\",\"b\":true,\"d\":18262"),
	    "d.max", "d 2020-01-01 is not before 2020-01-01");
	expect(&tr, 'r', ROW(",\"i8\":-5,\"n\":\"1\",\"f8\":0,\"t\":\"\",\"b\":true"),
	    "d.required", "d is missing for k1 u1, k2 3");
	expect(&tr, 'c', ROW(",\"i8\":null"), "i8.required", "i8 is missing for k1 u1, k2 3");
	expect(&tr, 'c', "{\"k1\":\"u1\",\"k2\":-1" GOOD "}", "k2.min", "k2 -1 is below 0");
	/* a delete: the rules on key columns only */
	expect(&tr, 'd', "{\"k1\":\"u1\",\"k2\":3}", NULL, NULL);
	expect(&tr, 'd', "{\"k1\":\"u1\",\"k2\":-3,\"i8\":1000}", "k2.min", "k2 -3 is below 0");
	expect(&tr, 't', NULL, NULL, NULL);
#undef ROW
#undef GOOD
	rules_free(&tr);
	cfg_free(cfg);

	/* the operators' verbs, on dates and on numbers */
	cfg = multi_cfg("\"d > 2020-01-01\", \"d <= 2030-01-01\", \"d >= 2021-01-01\", "
	    "\"t < m\", \"t = 'a b'\"", &tr, err, sizeof(err), &rc);
	ok(rc == 0, "date and text rules compile");
	if (rc == 0) {
		expect(&tr, 'c', "{\"k1\":\"x\",\"k2\":1,\"d\":18262}", "d.min",
		    "d 2020-01-01 is not after 2020-01-01");
		expect(&tr, 'c', "{\"k1\":\"x\",\"k2\":1,\"d\":21916}", "d.max",
		    "d 2030-01-02 is after 2030-01-01");
		expect(&tr, 'c', "{\"k1\":\"x\",\"k2\":1,\"d\":18627}", "d.min",
		    "d 2020-12-31 is before 2021-01-01");
		expect(&tr, 'c', "{\"k1\":\"x\",\"k2\":1,\"d\":18628,\"t\":\"m\"}", "t.max",
		    "t m is not below m");
		/* bytes, not a collation: 'B' (0x42) sorts before 'a' */
		expect(&tr, 'c', "{\"k1\":\"x\",\"k2\":1,\"d\":18628,\"t\":\"B\"}", "t.eq",
		    "t B is not a b");
		expect(&tr, 'c', "{\"k1\":\"x\",\"k2\":1,\"d\":18628,\"t\":\"a b\"}", NULL, NULL);
		rules_free(&tr);
	}
	cfg_free(cfg);
}

static void
test_numeric_cmp(void)
{
	static const struct { const char *a, *b; int want; } cases[] = {
		{ "1", "1.000", 0 }, { "-0", "0.0", 0 }, { "007.50", "7.5", 0 },
		{ "0.1", "0.10000000000000000000000000001", -1 },
		{ "123456789012345678901234567890", "123456789012345678901234567891", -1 },
		{ "-2", "-10", 1 }, { "-0.01", "0", -1 }, { "10", "9.999", 1 },
		{ ".5", "0.5", 0 }, { "NaN", "Infinity", 1 }, { "NaN", "NaN", 0 },
		{ "-Infinity", "-99999999999999999999", -1 }, { "Infinity", "1e", 1 },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int c = rule_numeric_cmp(cases[i].a, cases[i].b);
		c = (c > 0) - (c < 0);
		is_int(c, cases[i].want, "numeric %s against %s", cases[i].a, cases[i].b);
	}
}

/* The spec's rules on employees, from the rules.* keys: the names and
 * reasons of the DLQ headers, exactly as before cdc.tables. */
static void
test_employees(const char *conf, const char *what, long min_id, const char *min_dob,
    long min_salary)
{
	struct table_rules tr;
	char err[512], row[256], reason[128], below[64];
	struct cfg *cfg = load_text(conf);
	int32_t d;

	ok(cfg != NULL, "%s: loads", what);
	if (cfg == NULL)
		return;
	if (!ok(rules_compile(&tr, cfg, &cfg->tables[0], emp, err, sizeof(err)) == 0,
	    "%s: the default table's rules compile against employees", what)) {
		printf("#   %s\n", err);
		cfg_free(cfg);
		return;
	}
	cfg_parse_date(min_dob, &d);
	snprintf(row, sizeof(row), "{\"emp_id\":%ld,\"dob\":%d,\"salary\":%ld}",
	    min_id, (int)d, min_salary + 1);
	expect(&tr, 'c', row, NULL, NULL);
	snprintf(row, sizeof(row), "{\"emp_id\":%ld,\"dob\":%d,\"salary\":%ld}",
	    min_id - 1, (int)d, min_salary + 1);
	snprintf(reason, sizeof(reason), "emp_id %ld is below %ld", min_id - 1, min_id);
	expect(&tr, 'c', row, "emp_id.min", reason);
	snprintf(row, sizeof(row), "{\"emp_id\":%ld,\"dob\":%d,\"salary\":%ld}",
	    min_id, (int)d - 1, min_salary + 1);
	codec_days_to_date(d - 1, below, sizeof(below));
	snprintf(reason, sizeof(reason), "dob %s is before %s", below, min_dob);
	expect(&tr, 'u', row, "dob.min", reason);
	snprintf(row, sizeof(row), "{\"emp_id\":%ld,\"dob\":%d,\"salary\":%ld}",
	    min_id, (int)d, min_salary);
	snprintf(reason, sizeof(reason), "salary %ld is not above %ld", min_salary, min_salary);
	expect(&tr, 'r', row, "salary.min", reason);
	rules_free(&tr);
	cfg_free(cfg);
}

int
main(void)
{
	static const struct fixcol mcols[] = {
		{ "k1", "uuid", NULL, PGT_TEXT, PGT_NONE, 1 },
		{ "k2", "integer", NULL, PGT_INT, PGT_NONE, 2 },
		{ "i8", "bigint", NULL, PGT_INT, PGT_NONE, 0 },
		{ "n", "numeric(40,21)", "numeric", PGT_NUMERIC, PGT_NONE, 0 },
		{ "f8", "double precision", NULL, PGT_FLOAT, PGT_NONE, 0 },
		{ "b", "boolean", NULL, PGT_BOOL, PGT_NONE, 0 },
		{ "t", "text", NULL, PGT_TEXT, PGT_NONE, 0 },
		{ "d", "date", NULL, PGT_DATE, PGT_NONE, 0 },
		{ "ts", "timestamp without time zone", NULL, PGT_TIMESTAMP, PGT_NONE, 0 },
		{ "ai", "integer[]", NULL, PGT_ARRAY, PGT_INT, 0 },
	};
	struct table_rules tr;
	char err[512];

	emp = fix_employees();
	multi = fix_rel("public", "multi", mcols, (int)(sizeof(mcols) / sizeof(mcols[0])));

	/* The spec's defaults, then rules.* set in the file. */
	struct cfg *cfg = load_text(CFG_BASE);
	ok(cfg != NULL && cfg->ntables == 1 && cfg->tables[0].nrules == 3,
	    "without cdc.tables: one table with the three rules.* rules");
	if (cfg != NULL && rules_compile(&tr, cfg, &cfg->tables[0], emp, err,
	    sizeof(err)) == 0) {
		int32_t d2007, d2006;

		cfg_parse_date("2007-01-01", &d2007);
		cfg_parse_date("2006-12-31", &d2006);
		char good[128], row[128];
		snprintf(good, sizeof(good), "{\"emp_id\":1,\"dob\":%d,\"salary\":10001}", (int)d2007);
		expect(&tr, 'c', good, NULL, NULL);
		snprintf(row, sizeof(row), "{\"emp_id\":0,\"dob\":%d,\"salary\":10001}", (int)d2007);
		expect(&tr, 'c', row, NULL, NULL);
		snprintf(row, sizeof(row), "{\"emp_id\":1,\"dob\":%d,\"salary\":20000}", (int)d2006);
		expect(&tr, 'c', row, "dob.min", "dob 2006-12-31 is before 2007-01-01");
		snprintf(row, sizeof(row), "{\"emp_id\":1,\"dob\":%d,\"salary\":10000}", (int)d2007);
		expect(&tr, 'u', row, "salary.min", "salary 10000 is not above 10000");
		snprintf(row, sizeof(row), "{\"emp_id\":1,\"dob\":%d,\"salary\":-5}", (int)d2007);
		expect(&tr, 'r', row, "salary.min", "salary -5 is not above 10000");
		snprintf(row, sizeof(row), "{\"emp_id\":-1,\"dob\":%d,\"salary\":20000}", (int)d2007);
		expect(&tr, 'c', row, "emp_id.min", "emp_id -1 is below 0");
		expect(&tr, 'c', "{\"emp_id\":4,\"dob\":null,\"salary\":20000}",
		    "dob.required", "dob is missing for emp_id 4");
		snprintf(row, sizeof(row), "{\"emp_id\":5,\"dob\":%d}", (int)d2007);
		expect(&tr, 'u', row, "salary.required", "salary is missing for emp_id 5");
		snprintf(row, sizeof(row), "{\"emp_id\":6,\"dob\":%d,\"salary\":1}", (int)d2006);
		expect(&tr, 'd', row, NULL, NULL);
		expect(&tr, 'd', "{\"emp_id\":-6}", "emp_id.min", "emp_id -6 is below 0");
		expect(&tr, 't', NULL, NULL, NULL);
		/* emp_id is checked first: one change, one reason */
		snprintf(row, sizeof(row), "{\"emp_id\":-2,\"dob\":%d,\"salary\":1}", (int)d2006);
		expect(&tr, 'c', row, "emp_id.min", "emp_id -2 is below 0");
		rules_free(&tr);
	} else {
		ok(0, "the default rules compile against employees");
	}
	cfg_free(cfg);
	test_employees(CFG_BASE, "the spec's defaults", 0, "2007-01-01", 10000);
	test_employees(CFG_BASE "rules = {\n  min_dob = \"1990-06-15\";\n"
	    "  min_salary = -5;\n  min_emp_id = -100;\n};\n", "every rules.* key set",
	    -100, "1990-06-15", -5);
	test_employees(CFG_BASE "rules = { min_salary = 50000; };\n", "min_salary 50000",
	    0, "2007-01-01", 50000);

	/* The default table's rules against an employees on B without salary. */
	static const struct fixcol nosal[] = {
		{ "emp_id", "integer", NULL, PGT_INT, PGT_NONE, 1 },
		{ "dob", "date", NULL, PGT_DATE, PGT_NONE, 0 },
	};
	struct rel *small = fix_rel("public", "employees", nosal, 2);
	cfg = load_text(CFG_BASE);
	if (cfg != NULL) {
		int rc = rules_compile(&tr, cfg, &cfg->tables[0], small, err, sizeof(err));
		if (!ok(rc == -1 && strstr(err, "rules.conf: the default table's rules "
		    "(rules.*): cdc.tables: rules: salary > 10000: table public.employees "
		    "has no column \"salary\"") != NULL,
		    "a default rule on a column B lacks: an error naming the rules.* keys"))
			printf("#   %s\n", err);
		cfg_free(cfg);
	}
	relmap_free(small);

	test_config_errors();
	test_classes();
	test_numeric_cmp();
	relmap_free(emp);
	relmap_free(multi);
	return done_testing();
}
