/*
 * loadgen.c - writes inserts, updates and deletes to A at a fixed rate (or
 * flat out) from several concurrent writers, and records when each change
 * committed, so that latency to visibility on B can be measured.
 *
 *   loadgen -d DSN [-r RATE] [-s SECONDS] [-w WRITERS] [-m INS:UPD:DEL]
 *           [-x PREFIX] [-t N] [-a] -o FILE
 *
 * RATE is changes per second over all writers (0: as fast as possible).
 * A transaction holds N changes (-t, default 1: each change commits on
 * its own) and is sent in libpq's pipeline mode, one round trip per
 * transaction.  Every change is one statement that writes a unique marker
 * into city ("[PREFIX]w<writer>-<n>"; a delete is marked by its emp_id), and FILE
 * gets one CSV line per change: marker,op,emp_id,commit_unix_us,version.
 * The time is taken right after the server acknowledged the commit of its
 * transaction.  version is the row's salary after the change: an insert
 * writes 50000 and every update adds 1 under the row's lock, so it orders a
 * row's changes as they committed, which the times of two writers, read
 * on two clocks of scheduling, need not.  Every row written is
 * valid under the default rules.
 *
 * Two writers' transactions can deadlock on the rows they update and
 * delete.  The server then rolls one back (SQLSTATE 40P01); its changes
 * are not logged, and the writer goes on with a new transaction, as an
 * application would.  The count goes to stderr at the end.
 *
 * -a: the writers commit with synchronous_commit = off, so that A's WAL
 * flush rate (a few hundred fsyncs a second on a slow disk) does not cap
 * the load.  A commit is visible to other sessions, the producer among
 * them, when it returns either way.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void
sleep_until_us(int64_t t)
{
	int64_t d = t - now_us();
	struct timespec ts;

	if (d <= 0)
		return;
	ts.tv_sec = d / 1000000;
	ts.tv_nsec = (long)(d % 1000000) * 1000;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static const char *prefix = "";
static int async_commit;
static int per_txn = 1;

/* One change of a transaction: what was sent, so the result can be logged. */
struct change {
	char op;
	char marker[64];
};

static int
fail(int w, PGconn *c, PGresult *r, FILE *f)
{
	fprintf(stderr, "loadgen: writer %d: %s", w,
	    r != NULL ? PQresultErrorMessage(r) : PQerrorMessage(c));
	PQclear(r);
	if (f != NULL)
		fclose(f);
	PQfinish(c);
	return 1;
}

/*
 * send_change: queues one change in the pipeline.  A delete or update picks
 * a random id up to the highest one this writer has seen; if that row is
 * gone, RETURNING gives no row and the change is not logged.
 */
static int
send_change(PGconn *c, struct change *ch, int w, int64_t n, int64_t max_id,
    const int mix[3], unsigned *seed)
{
	int total = mix[0] + mix[1] + mix[2];
	int pick = (int)(rand_r(seed) % (unsigned)total);
	char id[24];
	const char *params[2] = { ch->marker, id };

	snprintf(ch->marker, sizeof(ch->marker), "%.30sw%d-%" PRId64, prefix, w, n);
	snprintf(id, sizeof(id), "%" PRId64, 1 + (max_id > 0 ? (int64_t)(rand_r(seed) % (uint64_t)max_id) : 0));
	if (pick < mix[0] || max_id == 0) {
		ch->op = 'c';
		return PQsendQueryParams(c, "INSERT INTO employees (first_name, last_name, dob, "
		    "city, salary) VALUES ('load', 'gen', DATE '2008-01-01', $1, 50000) "
		    "RETURNING emp_id, salary", 1, NULL, params, NULL, NULL, 0);
	}
	if (pick < mix[0] + mix[1]) {
		ch->op = 'u';
		return PQsendQueryParams(c, "UPDATE employees SET city = $1, salary = salary + 1 "
		    "WHERE emp_id = $2::int RETURNING emp_id, salary", 2, NULL, params, NULL, NULL, 0);
	}
	ch->op = 'd';
	return PQsendQueryParams(c, "DELETE FROM employees WHERE emp_id = $1::int "
	    "RETURNING emp_id, salary", 1, NULL, params + 1, NULL, NULL, 0);
}

/* next_result: the result of the next query of the pipeline; NULL (an
 * error to the caller) if it is not followed by the NULL that ends it */
static PGresult *
next_result(PGconn *c)
{
	PGresult *r = PQgetResult(c), *extra;

	if (r != NULL && (extra = PQgetResult(c)) != NULL) {
		PQclear(extra);
		PQclear(r);
		return NULL;
	}
	return r;
}

/* command_ok: the next result of the pipeline is a command's (BEGIN, COMMIT) */
static int
command_ok(int w, PGconn *c, FILE *f)
{
	PGresult *r = next_result(c);

	if (PQresultStatus(r) != PGRES_COMMAND_OK)
		return fail(w, c, r, f);
	PQclear(r);
	return 0;
}

/* sync_ok: the next result of the pipeline is its sync */
static int
sync_ok(int w, PGconn *c, FILE *f)
{
	PGresult *r = PQgetResult(c);

	if (PQresultStatus(r) != PGRES_PIPELINE_SYNC)
		return fail(w, c, r, f);
	PQclear(r);
	return 0;
}

/* retryable: a deadlock or serialization failure; the server rolled the
 * transaction back and an application runs one again */
static int
retryable(const PGresult *r)
{
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);

	return s != NULL && (strcmp(s, "40P01") == 0 || strcmp(s, "40001") == 0);
}

/* abandon: after a retryable error, reads the rest of the pipeline (the
 * aborted statements) up to its sync, then rolls the failed transaction
 * block back.  0, or 1 after reporting. */
static int
abandon(int w, PGconn *c, FILE *f)
{
	PGresult *r;
	int ends = 0;

	while ((r = PQgetResult(c)) == NULL || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
		if (r == NULL && ++ends > 2 * per_txn + 4) {
			fprintf(stderr, "loadgen: writer %d: the pipeline has no sync\n", w);
			return fail(w, c, NULL, f);
		}
		PQclear(r);
	}
	PQclear(r);
	if (per_txn == 1)
		return 0;	/* no transaction block: the sync ended it */
	if (!PQsendQueryParams(c, "ROLLBACK", 0, NULL, NULL, NULL, NULL, 0) ||
	    !PQpipelineSync(c))
		return fail(w, c, NULL, f);
	return command_ok(w, c, f) != 0 ? 1 : sync_ok(w, c, f);
}

static int
writer(int w, const char *dsn, double rate, int seconds, const int mix[3],
    const char *out)
{
	PGconn *c = PQconnectdb(dsn);
	char path[4096];
	struct change chs[per_txn];
	FILE *f;
	int64_t start, end, n = 0, max_id = 0, retried = 0;
	unsigned seed = (unsigned)(w * 7919 + getpid());
	PGresult *r;

	if (PQstatus(c) != CONNECTION_OK)
		return fail(w, c, NULL, NULL);
	if (async_commit) {
		r = PQexec(c, "SET synchronous_commit = off");
		if (PQresultStatus(r) != PGRES_COMMAND_OK)
			return fail(w, c, r, NULL);
		PQclear(r);
	}
	r = PQexec(c, "SELECT coalesce(max(emp_id), 0) FROM employees");
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		return fail(w, c, r, NULL);
	max_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	snprintf(path, sizeof(path), "%s.%d", out, w);
	f = fopen(path, "w");
	if (f == NULL) {
		fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
		PQfinish(c);
		return 1;
	}
	/*
	 * Pipeline mode: a transaction of per_txn changes (BEGIN, the changes,
	 * COMMIT) goes out in one flight and costs one round trip, as an
	 * application that batches its writes would do it.
	 */
	if (!PQenterPipelineMode(c))
		return fail(w, c, NULL, f);
	start = now_us();
	end = start + (int64_t)seconds * 1000000;
	for (;;) {
		if (rate > 0)
			sleep_until_us(start + (int64_t)((double)n * 1e6 / rate));
		if (now_us() >= end)
			break;
		if (per_txn > 1 && !PQsendQueryParams(c, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
			return fail(w, c, NULL, f);
		for (int i = 0; i < per_txn; i++)
			if (!send_change(c, &chs[i], w, n + i, max_id, mix, &seed))
				return fail(w, c, NULL, f);
		if ((per_txn > 1 && !PQsendQueryParams(c, "COMMIT", 0, NULL, NULL, NULL, NULL, 0)) ||
		    !PQpipelineSync(c))
			return fail(w, c, NULL, f);
		if (per_txn > 1 && command_ok(w, c, f) != 0)	/* BEGIN */
			return 1;
		const char *eid[per_txn], *version[per_txn];
		PGresult *res[per_txn];
		int aborted = 0;
		for (int i = 0; i < per_txn; i++) {
			res[i] = next_result(c);
			if (PQresultStatus(res[i]) != PGRES_TUPLES_OK) {
				for (int j = 0; j < i; j++)
					PQclear(res[j]);
				if (!retryable(res[i]))
					return fail(w, c, res[i], f);
				PQclear(res[i]);
				aborted = 1;
				break;
			}
			eid[i] = PQntuples(res[i]) == 1 ? PQgetvalue(res[i], 0, 0) : NULL;
			version[i] = eid[i] != NULL ? PQgetvalue(res[i], 0, 1) : NULL;
		}
		if (aborted) {
			if (abandon(w, c, f) != 0)
				return 1;
			retried++;
			n += per_txn;	/* markers stay unique */
			continue;
		}
		if (per_txn > 1 && command_ok(w, c, f) != 0)	/* COMMIT */
			return 1;	/* the writer's process ends: no need to clear res */
		if (sync_ok(w, c, f) != 0)
			return 1;
		int64_t t = now_us();	/* the server acknowledged the commit */
		for (int i = 0; i < per_txn; i++) {
			if (eid[i] != NULL) {
				int64_t v = strtoll(eid[i], NULL, 10);
				if (chs[i].op == 'c' && v > max_id)
					max_id = v;
				fprintf(f, "%s,%c,%s,%" PRId64 ",%s\n",
				    chs[i].op == 'd' ? eid[i] : chs[i].marker, chs[i].op, eid[i], t,
				    version[i]);
			}
			PQclear(res[i]);
		}
		n += per_txn;
	}
	if (fclose(f) != 0) {
		fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
		PQfinish(c);
		return 1;
	}
	if (retried > 0)
		fprintf(stderr, "loadgen: writer %d: %" PRId64 " transactions rolled back "
		    "by a deadlock, not logged, and followed by new ones\n", w, retried);
	PQfinish(c);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dsn = getenv("PGRELAY_SOURCE_DSN"), *out = NULL;
	double rate = 1000;
	int seconds = 10, writers = 2, mix[3] = { 60, 30, 10 }, ch, failed = 0;

	while ((ch = getopt(argc, argv, "d:r:s:w:m:o:x:t:ah")) != -1) {
		switch (ch) {
		case 'd': dsn = optarg; break;
		case 'r': rate = atof(optarg); break;
		case 's': seconds = atoi(optarg); break;
		case 'w': writers = atoi(optarg); break;
		case 'm':
			if (sscanf(optarg, "%d:%d:%d", &mix[0], &mix[1], &mix[2]) != 3 ||
			    mix[0] + mix[1] + mix[2] <= 0) {
				fprintf(stderr, "loadgen: -m wants INSERT:UPDATE:DELETE weights\n");
				return 64;
			}
			break;
		case 'o': out = optarg; break;
		case 'x': prefix = optarg; break;
		case 'a': async_commit = 1; break;
		case 't':
			per_txn = atoi(optarg);
			if (per_txn < 1 || per_txn > 1000) {
				fprintf(stderr, "loadgen: -t wants 1 to 1000 changes per transaction\n");
				return 64;
			}
			break;
		default:
			fprintf(stderr, "usage: loadgen -d DSN [-r RATE] [-s SECONDS] "
			    "[-w WRITERS] [-m INS:UPD:DEL] [-x PREFIX] [-t N] [-a] -o FILE\n");
			return ch == 'h' ? 0 : 64;
		}
	}
	if (dsn == NULL || out == NULL || writers < 1 || seconds < 1) {
		fprintf(stderr, "loadgen: -d DSN (or PGRELAY_SOURCE_DSN) and -o FILE are required\n");
		return 64;
	}
	for (int w = 0; w < writers; w++) {
		pid_t pid = fork();
		if (pid == 0)
			_exit(writer(w, dsn, rate / writers, seconds, mix, out));
		if (pid < 0) {
			perror("loadgen: fork");
			return 1;
		}
	}
	for (int w = 0; w < writers; w++) {
		int st;
		if (wait(&st) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
			failed = 1;
	}
	return failed;
}
