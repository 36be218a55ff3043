/*
 * target.h - a replicated table as the CDC consumer sees it on B: B's
 * description of the target table (relmap.h), its compiled rules
 * (validation.h), its registration in pgrelay_targets (its version table
 * and truncate horizon; sql/target/005_any_table.sql) and the apply
 * function made for it.  See the NOTES in target.c.
 *
 * Ownership: target_load() fills a struct that target_free() empties; it
 * points into cfg (the table's config), which must outlive it.
 */
#ifndef PGRELAY_TARGET_H
#define PGRELAY_TARGET_H

#include <jansson.h>
#include <libpq-fe.h>
#include <stddef.h>
#include <time.h>

#include "config.h"
#include "err.h"
#include "relmap.h"
#include "validation.h"

struct target {
	const struct cfg_table *cfg;
	struct rel *rel;		/* B's entry for cfg->target */
	struct table_rules rules;
	int reg_id;			/* pgrelay_targets.id; 0 before target_ensure */
	char *version_table;		/* qualified and quoted */
	char *apply_sql;		/* SELECT ... FROM pgrelay_apply_<hash>($1::json) */
	time_t looked_at;		/* when B was last read again for a
					 * column it lacked (consumer.c) */
	json_t *fill;			/* the event's form of the value B's rows
					 * written before a column was added read
					 * as (relmap.h, missing), by column; or
					 * NULL */
};

/* Reads B's description of t->target and compiles t's rules against it.
 * 0; PGR_CONFIG with "FILE:LINE: cdc.tables: ...: why" in err (the table
 * is missing on B or has no key, a rule does not fit it); PGR_RETRY when
 * B failed. */
int target_load(PGconn *db, const struct cfg *cfg, const struct cfg_table *t,
    struct target *out, char *err, size_t errlen);

/* Registers the table in pgrelay_targets (creating its version table) if
 * it is not yet, and creates its apply function if it is missing.  Safe
 * for any number of consumers at once (B's setup lock) and on every
 * connection.  0; PGR_CONFIG (the registered version table no longer
 * fits the table's key); PGR_RETRY. */
int target_ensure(PGconn *db, const struct cfg *cfg, struct target *tg,
    char *err, size_t errlen);

/* Gives each column of tg->fill that row (an event's row) lacks its fill
 * value: a change made on the source before the column existed there
 * leaves B's row as B's older rows read (the column's value when it was
 * added), not null.  -1 when memory runs out. */
int target_fill(const struct target *tg, json_t *row);

void target_free(struct target *tg);

#endif
