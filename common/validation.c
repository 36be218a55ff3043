/*
 * validation.c - checks a decoded change against the configured rules.
 */
#define _POSIX_C_SOURCE 200809L
#include "validation.h"

#include <stdio.h>

void
rule_init(struct rules *r, const struct cfg *cfg)
{
	r->min_dob_days = cfg->rule_min_dob_days;
	r->min_salary = cfg->rule_min_salary;
	r->min_emp_id = cfg->rule_min_emp_id;
}

int
rule_check(const struct rules *r, const struct change *c, const char **rule,
    char *reason, size_t len)
{
	const struct emp_row *row = codec_change_row(c);
	char a[16], b[16];

	if (c->op == 't')
		return 0;	/* a TRUNCATE: the rules are about a row's values */
	if (row->emp_id < r->min_emp_id) {
		*rule = "emp_id.min";
		snprintf(reason, len, "emp_id %ld is below %lld", (long)row->emp_id,
		    (long long)r->min_emp_id);
		return -1;
	}
	if (c->op == 'd')
		return 0;
	if (!row->has_dob) {
		*rule = "dob.required";
		snprintf(reason, len, "dob is missing for emp_id %ld", (long)row->emp_id);
		return -1;
	}
	if (row->dob_days < r->min_dob_days) {
		*rule = "dob.min";
		codec_days_to_date(row->dob_days, a, sizeof(a));
		codec_days_to_date(r->min_dob_days, b, sizeof(b));
		snprintf(reason, len, "dob %s is before %s", a, b);
		return -1;
	}
	if (!row->has_salary) {
		*rule = "salary.required";
		snprintf(reason, len, "salary is missing for emp_id %ld",
		    (long)row->emp_id);
		return -1;
	}
	if (row->salary <= r->min_salary) {
		*rule = "salary.min";
		snprintf(reason, len, "salary %ld is not above %lld",
		    (long)row->salary, (long long)r->min_salary);
		return -1;
	}
	return 0;
}
