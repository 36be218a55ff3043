/*
 * validation.c - a table's rules, compiled against B's description of the
 * table and checked on each decoded change (validation.h).
 */
#define _POSIX_C_SOURCE 200809L
#include "validation.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where a rule was written, for errors: "FILE:LINE" or, for the default
 * table's rules (made from the rules.* keys), "FILE: rules.KEY". */
static void
rule_where(const struct cfg *cfg, const struct cfg_rule *r, char *buf, size_t len)
{
	if (r->line > 0)
		snprintf(buf, len, "%s:%d", cfg->path, r->line);
	else
		snprintf(buf, len, "%s: the default table's rules (rules.*)", cfg->path);
}

/* The parts of a decimal string: sign, integer digits without leading
 * zeros, fraction digits without trailing zeros; rank -2 -Infinity, 0 a
 * number, 1 Infinity, 2 NaN.  -1 when it is not one. */
struct decimal {
	int rank, neg;
	const char *ip, *fp;
	size_t il, fl;
};

static int
decimal_parse(const char *s, struct decimal *d)
{
	memset(d, 0, sizeof(*d));
	if (strcmp(s, "NaN") == 0) {
		d->rank = 2;
		return 0;
	}
	if (strcmp(s, "Infinity") == 0 || strcmp(s, "+Infinity") == 0) {
		d->rank = 1;
		return 0;
	}
	if (strcmp(s, "-Infinity") == 0) {
		d->rank = -2;
		return 0;
	}
	if (*s == '-' || *s == '+')
		d->neg = *s++ == '-';
	while (*s == '0' && s[1] >= '0' && s[1] <= '9')
		s++;
	d->ip = s;
	while (*s >= '0' && *s <= '9')
		s++;
	d->il = (size_t)(s - d->ip);
	if (*s == '.') {
		d->fp = ++s;
		while (*s >= '0' && *s <= '9')
			s++;
		d->fl = (size_t)(s - d->fp);
	}
	if (*s != '\0' || d->il + d->fl == 0)
		return -1;
	if (d->il == 1 && d->ip[0] == '0')
		d->il = 0;
	while (d->fl > 0 && d->fp[d->fl - 1] == '0')
		d->fl--;
	if (d->il == 0 && d->fl == 0)
		d->neg = 0;		/* -0 is 0 */
	return 0;
}

/* |a| against |b| for two numbers. */
static int
decimal_abs_cmp(const struct decimal *a, const struct decimal *b)
{
	if (a->il != b->il)
		return a->il < b->il ? -1 : 1;
	int c = a->il ? memcmp(a->ip, b->ip, a->il) : 0;
	if (c != 0)
		return c;
	for (size_t k = 0; k < a->fl || k < b->fl; k++) {
		char x = k < a->fl ? a->fp[k] : '0', y = k < b->fl ? b->fp[k] : '0';
		if (x != y)
			return x < y ? -1 : 1;
	}
	return 0;
}

int
rule_numeric_cmp(const char *as, const char *bs)
{
	struct decimal a, b;

	if (decimal_parse(as, &a) < 0 || decimal_parse(bs, &b) < 0)
		return strcmp(as, bs);		/* not reached for checked input */
	if (a.rank != 0 || b.rank != 0)
		return (a.rank > b.rank) - (a.rank < b.rank);
	if (a.neg != b.neg)
		return a.neg ? -1 : 1;
	int c = decimal_abs_cmp(&a, &b);
	return a.neg ? -c : c;
}

/* PostgreSQL's float order: NaN equals NaN and is above every number. */
static int
float_cmp(double a, double b)
{
	if (isnan(a) || isnan(b))
		return isnan(a) - isnan(b);
	return (a > b) - (a < b);
}

/* A float from a rule's text or an event's string form. */
static int
float_parse(const char *s, double *out)
{
	char *end;

	if (strcmp(s, "NaN") == 0) {
		*out = NAN;
		return 0;
	}
	if (strcmp(s, "Infinity") == 0 || strcmp(s, "-Infinity") == 0) {
		*out = s[0] == '-' ? -INFINITY : INFINITY;
		return 0;
	}
	errno = 0;
	*out = strtod(s, &end);
	return end == s || *end != '\0' || errno == ERANGE ? -1 : 0;
}

static int
compile_one(struct rule *ru, const struct cfg_rule *cr, const struct rel *rel,
    char *why, size_t whylen)
{
	const struct rel_col *col = relmap_col(rel, cr->column);
	char *end;

	ru->cfg = cr;
	if (col == NULL) {
		snprintf(why, whylen, "%s %s %s: table %s.%s has no column \"%s\"",
		    cr->column, cr->op, cr->value, rel->schema, rel->table, cr->column);
		return -1;
	}
	ru->col = col;
	ru->cls = col->cls;
	switch (col->cls) {
	case PGT_INT:
		errno = 0;
		ru->i = strtoll(cr->value, &end, 10);
		if (end == cr->value || *end != '\0' || errno == ERANGE)
			goto bad_value;
		break;
	case PGT_FLOAT:
		if (float_parse(cr->value, &ru->f) < 0)
			goto bad_value;
		break;
	case PGT_NUMERIC: {
		struct decimal d;

		if (decimal_parse(cr->value, &d) < 0)
			goto bad_value;
		break;
	}
	case PGT_DATE: {
		int32_t days;

		if (cfg_parse_date(cr->value, &days) < 0)
			goto bad_value;
		ru->i = days;
		break;
	}
	case PGT_TEXT:
		break;
	case PGT_BOOL:
		if (strcmp(cr->op, "=") != 0 && strcmp(cr->op, "<>") != 0) {
			snprintf(why, whylen, "%s %s %s: column \"%s\" is boolean, "
			    "which compares with = and <> only", cr->column, cr->op,
			    cr->value, cr->column);
			return -1;
		}
		if (strcmp(cr->value, "true") == 0)
			ru->i = 1;
		else if (strcmp(cr->value, "false") == 0)
			ru->i = 0;
		else
			goto bad_value;
		break;
	default:
		snprintf(why, whylen, "%s %s %s: column \"%s\" has type %s, which a "
		    "rule cannot compare (rules compare integer, float, numeric, "
		    "date, text and boolean columns)", cr->column, cr->op, cr->value,
		    cr->column, col->type);
		return -1;
	}
	size_t n = strlen(cr->column) + sizeof(".required");
	if ((ru->required = malloc(n)) == NULL) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	snprintf(ru->required, n, "%s.required", cr->column);
	return 0;
bad_value:
	snprintf(why, whylen, "%s %s %s: \"%s\" is not a value of column \"%s\" "
	    "(%s; want %s)", cr->column, cr->op, cr->value, cr->value, cr->column,
	    col->type, col->cls == PGT_INT ? "an integer" :
	    col->cls == PGT_FLOAT ? "a number, NaN, Infinity or -Infinity" :
	    col->cls == PGT_NUMERIC ? "a decimal such as -12.50" :
	    col->cls == PGT_DATE ? "a date YYYY-MM-DD" : "true or false");
	return -1;
}

int
rules_compile(struct table_rules *out, const struct cfg *cfg,
    const struct cfg_table *t, const struct rel *rel, char *err, size_t errlen)
{
	char why[512], where[512];

	memset(out, 0, sizeof(*out));
	out->rel = rel;
	if (t->nrules == 0)
		return 0;
	if ((out->rules = calloc((size_t)t->nrules, sizeof(*out->rules))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", cfg->path);
		return -1;
	}
	for (int i = 0; i < t->nrules; i++) {
		out->n++;
		if (compile_one(&out->rules[i], &t->rules[i], rel, why, sizeof(why)) < 0) {
			rule_where(cfg, &t->rules[i], where, sizeof(where));
			snprintf(err, errlen, "%s: cdc.tables: rules: %s", where, why);
			rules_free(out);
			return -1;
		}
	}
	return 0;
}

void
rules_free(struct table_rules *tr)
{
	for (int i = 0; i < tr->n; i++)
		free(tr->rules[i].required);
	free(tr->rules);
	tr->rules = NULL;
	tr->n = 0;
}

/* What a failed comparison says: the verb for op when the check fails. */
static const char *
failed_verb(const char *op, int dated)
{
	if (strcmp(op, ">=") == 0)
		return dated ? "is before" : "is below";
	if (strcmp(op, ">") == 0)
		return dated ? "is not after" : "is not above";
	if (strcmp(op, "<=") == 0)
		return dated ? "is after" : "is above";
	if (strcmp(op, "<") == 0)
		return dated ? "is not before" : "is not below";
	if (strcmp(op, "=") == 0)
		return "is not";
	return "is";
}

/* Whether c (value against rule, <0 0 >0) satisfies op. */
static int
holds(const char *op, int c)
{
	if (strcmp(op, ">=") == 0)
		return c >= 0;
	if (strcmp(op, ">") == 0)
		return c > 0;
	if (strcmp(op, "<=") == 0)
		return c <= 0;
	if (strcmp(op, "<") == 0)
		return c < 0;
	if (strcmp(op, "=") == 0)
		return c == 0;
	return c != 0;
}

/* Compares v (of the rule's column, in its checked event form) with the
 * rule's value; writes both as the reason shows them. */
static int
compare(const struct rule *ru, json_t *v, char *vs, size_t vl, char *rs, size_t rl)
{
	double f;

	snprintf(rs, rl, "%s", ru->cfg->value);
	switch (ru->cls) {
	case PGT_INT: {
		long long x = (long long)json_integer_value(v);

		snprintf(vs, vl, "%lld", x);
		snprintf(rs, rl, "%lld", (long long)ru->i);
		return (x > ru->i) - (x < ru->i);
	}
	case PGT_DATE: {
		int64_t x = json_integer_value(v);

		codec_days_to_date((int32_t)x, vs, vl);
		codec_days_to_date((int32_t)ru->i, rs, rl);
		return (x > ru->i) - (x < ru->i);
	}
	case PGT_FLOAT:
		if (json_is_string(v)) {
			snprintf(vs, vl, "%s", json_string_value(v));
			float_parse(json_string_value(v), &f);
		} else {
			f = json_number_value(v);
			snprintf(vs, vl, "%.17g", f);
		}
		return float_cmp(f, ru->f);
	case PGT_NUMERIC:
		snprintf(vs, vl, "%s", json_string_value(v));
		return rule_numeric_cmp(json_string_value(v), ru->cfg->value);
	case PGT_BOOL:
		snprintf(vs, vl, "%s", json_is_true(v) ? "true" : "false");
		return json_is_true(v) - (int)ru->i;
	default: {		/* PGT_TEXT */
		int c = strcmp(json_string_value(v), ru->cfg->value);

		snprintf(vs, vl, "%s", json_string_value(v));
		return (c > 0) - (c < 0);
	}
	}
}

int
rule_check(const struct table_rules *tr, const struct change_event *e,
    const char **rule, char *reason, size_t len)
{
	char vs[128], rs[128], key[160];

	if (e->op == 't')
		return 0;	/* a TRUNCATE: the rules are about a row's values */
	for (int i = 0; i < tr->n; i++) {
		const struct rule *ru = &tr->rules[i];
		json_t *v;

		if (e->op == 'd' && !ru->col->key)
			continue;
		v = json_object_get(e->row, ru->col->name);
		if (v == NULL || json_is_null(v)) {
			codec_key_desc(tr->rel, e->row, key, sizeof(key));
			*rule = ru->required;
			snprintf(reason, len, "%s is missing for %s", ru->col->name, key);
			return -1;
		}
		if (holds(ru->cfg->op, compare(ru, v, vs, sizeof(vs), rs, sizeof(rs))))
			continue;
		*rule = ru->cfg->name;
		snprintf(reason, len, "%s %s %s %s", ru->col->name, vs,
		    failed_verb(ru->cfg->op, ru->cls == PGT_DATE), rs);
		return -1;
	}
	return 0;
}
