/*
 * validation.h - the rules a change must pass before it is applied to B.
 *
 * Rule names (they appear in the DLQ header __pgrelay.errors.rule):
 *   emp_id.min       emp_id below rules.min_emp_id (default 0: negative fails)
 *   dob.required     dob is null or absent
 *   dob.min          dob before rules.min_dob (default 2007-01-01)
 *   salary.required  salary is null or absent
 *   salary.min       salary <= rules.min_salary (default 10000)
 * A delete is checked for emp_id.min only: it carries no new values.
 */
#ifndef PGRELAY_VALIDATION_H
#define PGRELAY_VALIDATION_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"

struct rules {
	int32_t min_dob_days;
	int64_t min_salary;
	int64_t min_emp_id;
};

void rule_init(struct rules *r, const struct cfg *cfg);

/* 0 if c passes every rule; -1 with *rule set to the first failing rule's
 * name (a static string) and a readable reason in reason.  A TRUNCATE
 * (op 't') carries no row and always passes. */
int rule_check(const struct rules *r, const struct change *c,
    const char **rule, char *reason, size_t len);

#endif
