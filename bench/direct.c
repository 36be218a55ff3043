/*
 * direct.c - the direct-apply limit: A's changes applied to B with no Kafka
 * in between, for the benchmark's "pgrelay / direct" ratios.
 *
 *   direct -s SOURCE_DSN -t TARGET_DSN -p POSFILE [-b BATCH] [-i MS]   stream
 *   direct -s SOURCE_DSN -t TARGET_DSN -S                      snapshot
 *
 * Stream: the producer's own window query on pgrelay_changes (every
 * change of employees visible in the current snapshot and not in the
 * position, so no late commit is skipped), each change's row json turned
 * back into employees' columns by json_populate_record, fetched as one
 * JSON array per chunk, and applied to B in one statement per chunk: the
 * newest change of each row, deletes then one batched upsert.  The
 * position (a pg_snapshot) goes to POSFILE after B commits.  The capture
 * sends no NOTIFY: it polls like the producer (workers/producer.c,
 * run_round): a round whose snapshot is the position itself (no
 * transaction ended since) ends after that one query, and a round that
 * applied less than BATCH changes is followed by a wait of MS
 * milliseconds (default 10, producer.poll_interval_ms's default).
 * TRUNCATEs are not applied.  No versions, no offsets, no DLQ: a crash may
 * apply a chunk twice.  It is a yardstick, not a replica.
 *
 * Snapshot: COPY employees out of A straight into COPY employees on B.
 *
 * SIGTERM/SIGINT: finishes the chunk in hand and exits 0.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile sig_atomic_t stop;

static void
on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static PGconn *
connect_or_die(const char *dsn, const char *what)
{
	PGconn *c = PQconnectdb(dsn);

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "direct: %s: %s", what, PQerrorMessage(c));
		exit(1);
	}
	return c;
}

/* Runs a statement; exits on failure (a benchmark tool: no retries). */
static PGresult *
run(PGconn *c, const char *sql, int n, const char *const *params)
{
	PGresult *res = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType st = PQresultStatus(res);

	if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
		fprintf(stderr, "direct: %s", PQerrorMessage(c));
		exit(1);
	}
	return res;
}

static int
snapshot(PGconn *a, PGconn *b)
{
	PGresult *res;
	char *buf;
	int n;
	long rows = 0;
	double t0 = now_s();

	PQclear(run(b, "BEGIN", 0, NULL));
	res = PQexec(a, "COPY (SELECT emp_id, first_name, last_name, dob, city, salary "
	    "FROM employees) TO STDOUT");
	if (PQresultStatus(res) != PGRES_COPY_OUT) {
		fprintf(stderr, "direct: COPY out of A: %s", PQerrorMessage(a));
		return 1;
	}
	PQclear(res);
	res = PQexec(b, "COPY employees (emp_id, first_name, last_name, dob, city, salary) "
	    "FROM STDIN");
	if (PQresultStatus(res) != PGRES_COPY_IN) {
		fprintf(stderr, "direct: COPY into B: %s", PQerrorMessage(b));
		return 1;
	}
	PQclear(res);
	while ((n = PQgetCopyData(a, &buf, 0)) > 0) {
		if (PQputCopyData(b, buf, n) != 1) {
			fprintf(stderr, "direct: COPY into B: %s", PQerrorMessage(b));
			return 1;
		}
		PQfreemem(buf);
		rows++;
	}
	if (n == -2) {
		fprintf(stderr, "direct: COPY out of A: %s", PQerrorMessage(a));
		return 1;
	}
	PQclear(PQgetResult(a));
	if (PQputCopyEnd(b, NULL) != 1) {
		fprintf(stderr, "direct: COPY into B: %s", PQerrorMessage(b));
		return 1;
	}
	res = PQgetResult(b);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "direct: COPY into B: %s", PQerrorMessage(b));
		return 1;
	}
	PQclear(res);
	PQclear(run(b, "COMMIT", 0, NULL));
	printf("%ld rows in %.2f s\n", rows, now_s() - t0);
	return 0;
}

/* $5: employees' rel (pgrelay_tables.id).  The row json becomes columns
 * after the LIMIT, once per change of the chunk. */
static const char FETCH_SQL[] =
    "SELECT count(*), max(change_id), json_agg(x ORDER BY change_id) FROM ("
    "  SELECT c.change_id, c.action, e.emp_id, e.first_name, e.last_name,"
    "         e.dob, e.city, e.salary"
    "    FROM (SELECT change_id, action, row FROM pgrelay_changes"
    "           WHERE rel = $5::int AND action <> 't'"
    "             AND txid >= pg_snapshot_xmin($1::pg_snapshot)"
    "             AND txid < pg_snapshot_xmax($2::pg_snapshot)"
    "             AND pg_visible_in_snapshot(txid, $2::pg_snapshot)"
    "             AND NOT pg_visible_in_snapshot(txid, $1::pg_snapshot)"
    "             AND change_id > $3"
    "           ORDER BY change_id LIMIT $4) c,"
    "         json_populate_record(NULL::employees, c.row) e) x";

static const char APPLY_SQL[] =
    "WITH c AS ("
    "  SELECT * FROM json_to_recordset($1::json) AS c(change_id bigint, action text,"
    "      emp_id integer, first_name text, last_name text, dob date, city text,"
    "      salary integer)"
    "), last AS ("
    "  SELECT DISTINCT ON (emp_id) * FROM c ORDER BY emp_id, change_id DESC"
    "), del AS ("
    "  DELETE FROM employees e USING last"
    "   WHERE last.action = 'd' AND e.emp_id = last.emp_id"
    ")"
    "INSERT INTO employees AS e (emp_id, first_name, last_name, dob, city, salary)"
    "SELECT emp_id, first_name, last_name, dob, city, salary FROM last"
    " WHERE action <> 'd'"
    "ON CONFLICT (emp_id) DO UPDATE SET first_name = EXCLUDED.first_name,"
    "    last_name = EXCLUDED.last_name, dob = EXCLUDED.dob, city = EXCLUDED.city,"
    "    salary = EXCLUDED.salary";

static int
save_pos(const char *path, const char *snap)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((f = fopen(tmp, "w")) == NULL || fprintf(f, "%s\n", snap) < 0 ||
	    fclose(f) != 0 || rename(tmp, path) < 0) {
		fprintf(stderr, "direct: writing %s: %s\n", path, strerror(errno));
		return -1;
	}
	return 0;
}

static char *
load_pos(const char *path, PGconn *a)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;
	size_t cap = 0;

	if (f != NULL) {
		ssize_t n = getline(&line, &cap, f);
		fclose(f);
		if (n > 1) {
			line[strcspn(line, "\n")] = '\0';
			return line;
		}
	}
	free(line);
	/* no position yet: every change in pgrelay_changes is still to apply */
	PGresult *res = run(a, "SELECT (coalesce(min(txid), pg_snapshot_xmin("
	    "pg_current_snapshot())) || ':' || coalesce(min(txid), "
	    "pg_snapshot_xmin(pg_current_snapshot())) || ':')::text FROM pgrelay_changes",
	    0, NULL);
	line = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return line;
}

/* Sleeps ms milliseconds (a signal ends it early). */
static void
sleep_ms(int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

static int
stream(PGconn *a, PGconn *b, const char *posfile, int batch, int interval_ms)
{
	char *lo = load_pos(posfile, a), limit[16], rel[16];
	long total = 0;
	PGresult *r = run(a, "SELECT id FROM pgrelay_tables "
	    "WHERE relid = to_regclass('employees')", 0, NULL);

	if (PQntuples(r) != 1) {
		fprintf(stderr, "direct: employees is not in pgrelay_tables on the source "
		    "(apply sql/source/*.sql)\n");
		return 1;
	}
	snprintf(rel, sizeof(rel), "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	snprintf(limit, sizeof(limit), "%d", batch);
	while (!stop) {
		PGresult *st = run(a, "SELECT pg_current_snapshot()::text", 0, NULL);
		char *hi = strdup(PQgetvalue(st, 0, 0)), last[24] = "0";
		long n = 0;

		PQclear(st);
		/* the producer's idle round: no transaction ended since the
		 * position was taken, so no change has become visible */
		if (strcmp(hi, lo) == 0) {
			free(hi);
			sleep_ms(interval_ms);
			continue;
		}
		for (;;) {
			const char *params[5] = { lo, hi, last, limit, rel };
			PGresult *res = run(a, FETCH_SQL, 5, params);
			long rows = strtol(PQgetvalue(res, 0, 0), NULL, 10);

			if (rows > 0) {
				const char *p[1] = { PQgetvalue(res, 0, 2) };
				PQclear(run(b, APPLY_SQL, 1, p));
				snprintf(last, sizeof(last), "%s", PQgetvalue(res, 0, 1));
			}
			PQclear(res);
			n += rows;
			if (rows < batch)
				break;
		}
		if (save_pos(posfile, hi) < 0)
			return 1;
		free(lo);
		lo = hi;
		total += n;
		if (n < batch)
			sleep_ms(interval_ms);
	}
	free(lo);
	fprintf(stderr, "direct: stopping: %ld changes applied\n", total);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *src = NULL, *tgt = NULL, *posfile = NULL;
	int opt, snap = 0, batch = 5000, interval_ms = 10;
	struct sigaction sa = { .sa_handler = on_signal };

	while ((opt = getopt(argc, argv, "s:t:p:b:i:S")) != -1) {
		switch (opt) {
		case 's': src = optarg; break;
		case 't': tgt = optarg; break;
		case 'p': posfile = optarg; break;
		case 'b': batch = atoi(optarg); break;
		case 'i': interval_ms = atoi(optarg); break;
		case 'S': snap = 1; break;
		default: goto usage;
		}
	}
	if (src == NULL || tgt == NULL || (!snap && posfile == NULL) || batch < 1 ||
	    interval_ms < 1)
		goto usage;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	PGconn *a = connect_or_die(src, "source");
	PGconn *b = connect_or_die(tgt, "target");
	int rc = snap ? snapshot(a, b) : stream(a, b, posfile, batch, interval_ms);
	PQfinish(a);
	PQfinish(b);
	return rc;
usage:
	fprintf(stderr, "usage: direct -s SOURCE_DSN -t TARGET_DSN -p POSFILE [-b BATCH] [-i MS]\n"
	    "       direct -s SOURCE_DSN -t TARGET_DSN -S\n");
	return 64;
}
