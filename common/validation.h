/*
 * validation.h - the rules a change must pass before it is applied to B,
 * per table, from cdc.tables[].rules (config.h, struct cfg_rule): "column
 * op value", op one of >= > <= < = <>.
 *
 * A table's rules are compiled once, at the consumer's start, against B's
 * description of the target table (relmap.h): a rule naming a column the
 * table does not have, a value that does not parse for the column's class,
 * or a class a rule cannot compare is a configuration error.  Classes and
 * how they compare:
 *   integer   as 64-bit integers
 *   float     as doubles, NaN above every number (as PostgreSQL orders it)
 *   numeric   as exact decimals (never through a double); the value a
 *             decimal such as -12.50
 *   date      by day; the value 'YYYY-MM-DD'
 *   text      byte by byte (no collation)
 *   boolean   = and <> only; the value true or false
 *
 * Checking: for ops c, u and r every rule of the table is checked on the
 * row, in the configured order; a value that is null or absent fails as
 * rule "<column>.required" ("<column> is missing for <key>").  A delete is
 * checked against the rules on key columns only (it carries no new
 * values); a TRUNCATE against none.  The failing rule's name is the DLQ
 * header __pgrelay.errors.rule: cfg_rule.name (emp_id.min, dob.min,
 * salary.min with the default table) or <column>.required.
 *
 * Ownership: rules_compile() fills a struct that rules_free() empties; it
 * points into the cfg_table and the rel, which must outlive it.
 */
#ifndef PGRELAY_VALIDATION_H
#define PGRELAY_VALIDATION_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "config.h"
#include "relmap.h"

/* One compiled rule. */
struct rule {
	const struct cfg_rule *cfg;	/* column, op, value, name, line */
	const struct rel_col *col;
	enum pgt_class cls;
	int64_t i;		/* PGT_INT; PGT_DATE (days); PGT_BOOL (0/1) */
	double f;		/* PGT_FLOAT */
	char *required;		/* "<column>.required" */
};

struct table_rules {
	const struct rel *rel;
	struct rule *rules;
	int n;
};

/* Compiles table t's rules against rel (B's entry for t->target).  0, or
 * -1 with "FILE:LINE: cdc.tables: rules: why" in err (cfg->path; a
 * default table's rules name their rules.* keys).  out is empty on
 * failure. */
int rules_compile(struct table_rules *out, const struct cfg *cfg,
    const struct cfg_table *t, const struct rel *rel, char *err, size_t errlen);

void rules_free(struct table_rules *tr);

/* 0 if e (whose row passed codec_check_row_forms() against tr->rel)
 * passes every rule; -1 with *rule set to the failing rule's name (owned
 * by tr) and a readable reason. */
int rule_check(const struct table_rules *tr, const struct change_event *e,
    const char **rule, char *reason, size_t len);

/* Compares two decimal strings ([+-]digits[.digits], or NaN, Infinity,
 * -Infinity) exactly, as PostgreSQL orders numerics: <0, 0 or >0. */
int rule_numeric_cmp(const char *a, const char *b);

#endif
