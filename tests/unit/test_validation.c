/*
 * test_validation.c - the rules at their boundaries, with the spec's
 * defaults: dob before 2007-01-01, salary of 10000 or less, and a negative
 * emp_id fail; a missing value a rule needs fails with its own reason.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

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
	/* emp_id is checked first: one change, one reason. */
	expect('c', ROW(-2, d2006, 1), "emp_id.min", "emp_id -2 is below 0");

	rules.min_salary = 50000;
	expect('c', ROW(1, d2007, 50000), "salary.min", "salary 50000 is not above 50000");
	expect('c', ROW(1, d2007, 50001), NULL, NULL);
	return done_testing();
}
