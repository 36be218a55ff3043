/*
 * test_validation.c - the rules at their boundaries, with the spec's
 * defaults: dob before 2007-01-01, salary of 10000 or less, and a negative
 * emp_id fail; a missing value a rule needs fails with its own reason.
 * rule_init: each rule's value is taken from the config, as the consumer
 * does (cfg_load, then rule_init).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"
#include "validation.h"

static struct rules rules;

static void
expect(char op, struct emp_row row, const char *want_rule, const char *want_reason)
{
	struct change c = { .op = op, .change_id = 1 };
	const char *rule = NULL;
	char reason[256] = "";

	if (op == 'd') {
		c.has_before = 1;
		c.before = row;
	} else {
		c.has_after = 1;
		c.after = row;
	}
	int rc = rule_check(&rules, &c, &rule, reason, sizeof(reason));
	if (want_rule == NULL) {
		if (!ok(rc == 0, "op %c emp_id %d passes", op, (int)row.emp_id))
			printf("#   failed %s: %s\n", rule, reason);
		return;
	}
	if (!ok(rc == -1 && rule != NULL && strcmp(rule, want_rule) == 0 &&
	    strcmp(reason, want_reason) == 0, "op %c fails %s: %s", op, want_rule,
	    want_reason))
		printf("#   got rc %d rule %s reason '%s'\n", rc, rule ? rule : "(none)",
		    reason);
}

#define ROW(id, dob, sal) ((struct emp_row){ .emp_id = (id), .has_dob = 1, \
	.dob_days = (dob), .has_salary = 1, .salary = (sal) })

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

/* rule_init has no branch and no error path: it copies three values.
 * These check each value lands in its own field, whole. */
static void
test_rule_init(int32_t d2007)
{
	struct cfg cfg;
	struct rules r;
	int32_t d1990;

	/* Straight from a struct cfg, every field a different value, the
	 * 64-bit ones at the ends of the range config.c allows. */
	memset(&cfg, 0, sizeof(cfg));
	cfg.rule_min_dob_days = -719162;	/* 0001-01-01 */
	cfg.rule_min_salary = INT32_MAX;
	cfg.rule_min_emp_id = INT32_MIN;
	memset(&r, 0x5a, sizeof(r));		/* no field left as it was */
	rule_init(&r, &cfg);
	is_int(r.min_dob_days, -719162, "rule_init: min_dob_days from rule_min_dob_days");
	is_int(r.min_salary, INT32_MAX, "rule_init: min_salary from rule_min_salary");
	is_int(r.min_emp_id, INT32_MIN, "rule_init: min_emp_id from rule_min_emp_id");

	/* From a file with no rules group: the spec's defaults. */
	struct cfg *c = load_text(CFG_BASE);
	ok(c != NULL, "rule_init: a config without rules loads");
	if (c != NULL) {
		memset(&r, 0x5a, sizeof(r));
		rule_init(&r, c);
		is_int(r.min_dob_days, d2007, "rule_init: default min_dob is 2007-01-01");
		is_int(r.min_salary, 10000, "rule_init: default min_salary is 10000");
		is_int(r.min_emp_id, 0, "rule_init: default min_emp_id is 0");
		cfg_free(c);
	}

	/* From a file that sets every rule; then rule_check uses those values. */
	c = load_text(CFG_BASE "rules = {\n  min_dob = \"1990-06-15\";\n"
	    "  min_salary = -5;\n  min_emp_id = -100;\n};\n");
	ok(c != NULL, "rule_init: a config with every rule set loads");
	if (c == NULL)
		return;
	cfg_parse_date("1990-06-15", &d1990);
	memset(&r, 0x5a, sizeof(r));
	rule_init(&r, c);
	is_int(r.min_dob_days, d1990, "rule_init: min_dob 1990-06-15 from the file");
	is_int(r.min_salary, -5, "rule_init: min_salary -5 from the file");
	is_int(r.min_emp_id, -100, "rule_init: min_emp_id -100 from the file");
	cfg_free(c);

	rules = r;
	expect('c', ROW(-100, d1990, -4), NULL, NULL);
	expect('c', ROW(-101, d1990, -4), "emp_id.min", "emp_id -101 is below -100");
	expect('c', ROW(1, d1990 - 1, -4), "dob.min", "dob 1990-06-14 is before 1990-06-15");
	expect('c', ROW(1, d1990, -5), "salary.min", "salary -5 is not above -5");
}

int
main(void)
{
	int32_t d2007, d2006;

	cfg_parse_date("2007-01-01", &d2007);
	cfg_parse_date("2006-12-31", &d2006);
	rules = (struct rules){ .min_dob_days = d2007, .min_salary = 10000, .min_emp_id = 0 };

	expect('c', ROW(1, d2007, 10001), NULL, NULL);
	expect('c', ROW(0, d2007, 10001), NULL, NULL);
	expect('c', ROW(1, d2006, 20000), "dob.min", "dob 2006-12-31 is before 2007-01-01");
	expect('u', ROW(1, d2007, 10000), "salary.min", "salary 10000 is not above 10000");
	expect('r', ROW(1, d2007, -5), "salary.min", "salary -5 is not above 10000");
	expect('c', ROW(-1, d2007, 20000), "emp_id.min", "emp_id -1 is below 0");
	struct emp_row nodob = ROW(4, 0, 20000);
	nodob.has_dob = 0;
	expect('c', nodob, "dob.required", "dob is missing for emp_id 4");
	struct emp_row nosal = ROW(5, d2007, 0);
	nosal.has_salary = 0;
	expect('u', nosal, "salary.required", "salary is missing for emp_id 5");
	expect('d', ROW(6, d2006, 1), NULL, NULL);
	expect('d', ROW(-6, d2007, 20000), "emp_id.min", "emp_id -6 is below 0");
	/* A TRUNCATE carries no row (codec_change_row() gives an empty one,
	 * which would fail dob.required): no rule applies to it. */
	struct change tr = { .op = 't', .change_id = 9 };
	const char *trule = NULL;
	char treason[64] = "";
	ok(rule_check(&rules, &tr, &trule, treason, sizeof(treason)) == 0 &&
	    trule == NULL, "op t passes: the rules are about a row");
	/* emp_id is checked first: one change, one reason. */
	expect('c', ROW(-2, d2006, 1), "emp_id.min", "emp_id -2 is below 0");

	rules.min_salary = 50000;
	expect('c', ROW(1, d2007, 50000), "salary.min", "salary 50000 is not above 50000");
	expect('c', ROW(1, d2007, 50001), NULL, NULL);

	test_rule_init(d2007);
	return done_testing();
}
