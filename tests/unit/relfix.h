/*
 * relfix.h - a table's description (struct rel, relmap.h) made by hand,
 * as relmap_load() would read it from B's catalog, for unit tests that
 * need no database.  Header-only, for tests/unit only.
 */
#ifndef PGRELAY_RELFIX_H
#define PGRELAY_RELFIX_H

#include <stdlib.h>
#include <string.h>

#include "relmap.h"

struct fixcol {
	const char *name, *type, *cast;	/* cast NULL: the same as type */
	enum pgt_class cls, elem_cls;
	int key;			/* 1 + its place in the key, or 0 */
};

/* A rel of the columns cols[0..n-1]; free with relmap_free(). */
static struct rel *__attribute__((unused))
fix_rel(const char *schema, const char *table, const struct fixcol *cols, int n)
{
	struct rel *r = calloc(1, sizeof(*r));

	r->schema = strdup(schema);
	r->table = strdup(table);
	r->qname = malloc(strlen(schema) + strlen(table) + 6);
	sprintf(r->qname, "\"%s\".\"%s\"", schema, table);
	r->ncols = n;
	r->cols = calloc((size_t)n + 1, sizeof(*r->cols));
	r->keys = calloc((size_t)n + 1, sizeof(*r->keys));
	for (int i = 0; i < n; i++) {
		r->cols[i].name = strdup(cols[i].name);
		r->cols[i].type = strdup(cols[i].type);
		r->cols[i].cast = strdup(cols[i].cast ? cols[i].cast : cols[i].type);
		r->cols[i].cls = cols[i].cls;
		r->cols[i].elem_cls = cols[i].elem_cls;
		r->cols[i].key = cols[i].key;
		r->cols[i].sent = 1;
		if (cols[i].key) {
			r->keys[cols[i].key - 1] = i;
			r->nkeys++;
		}
	}
	return r;
}

/* employees as 001_employees.sql makes it on B. */
static struct rel *__attribute__((unused))
fix_employees(void)
{
	static const struct fixcol cols[] = {
		{ "emp_id", "integer", NULL, PGT_INT, PGT_NONE, 1 },
		{ "first_name", "character varying(100)", "character varying", PGT_TEXT, PGT_NONE, 0 },
		{ "last_name", "character varying(100)", "character varying", PGT_TEXT, PGT_NONE, 0 },
		{ "dob", "date", NULL, PGT_DATE, PGT_NONE, 0 },
		{ "city", "character varying(100)", "character varying", PGT_TEXT, PGT_NONE, 0 },
		{ "salary", "integer", NULL, PGT_INT, PGT_NONE, 0 },
	};

	return fix_rel("public", "employees", cols, 6);
}

#endif
