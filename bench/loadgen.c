/*
 * loadgen.c - writes inserts, updates and deletes to A at a fixed rate (or
 * flat out) from several concurrent writers, and records when each change
 * committed, so that latency to visibility on B can be measured.
 *
 *   loadgen -d DSN [-r RATE] [-s SECONDS] [-w WRITERS] [-m INS:UPD:DEL]
 *           [-x PREFIX] [-a] -o FILE
 *
 * RATE is changes per second over all writers (0: as fast as possible).
 * Every change is one autocommitted statement that writes a unique marker
 * into city ("[PREFIX]w<writer>-<n>"; a delete is marked by its emp_id), and FILE
 * gets one CSV line per change: marker,op,emp_id,commit_unix_us, taken
 * right after the server acknowledged the commit.  Every row written is
 * valid under the default rules.
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

static int
writer(int w, const char *dsn, double rate, int seconds, const int mix[3],
    const char *out)
{
	PGconn *c = PQconnectdb(dsn);
	char path[4096], marker[64], id[16];
	FILE *f;
	int64_t start, end, n = 0, max_id = 0;
	unsigned seed = (unsigned)(w * 7919 + getpid());
	int total = mix[0] + mix[1] + mix[2];

	if (PQstatus(c) != CONNECTION_OK) {
		fprintf(stderr, "loadgen: writer %d: %s", w, PQerrorMessage(c));
		return 1;
	}
	if (async_commit) {
		PGresult *s = PQexec(c, "SET synchronous_commit = off");
		if (PQresultStatus(s) != PGRES_COMMAND_OK) {
			fprintf(stderr, "loadgen: writer %d: %s", w, PQresultErrorMessage(s));
			PQclear(s);
			PQfinish(c);
			return 1;
		}
		PQclear(s);
	}
	snprintf(path, sizeof(path), "%s.%d", out, w);
	f = fopen(path, "w");
	if (f == NULL) {
		fprintf(stderr, "loadgen: %s: %s\n", path, strerror(errno));
		return 1;
	}
	PGresult *r = PQexec(c, "SELECT coalesce(max(emp_id), 0) FROM employees");
	if (PQresultStatus(r) == PGRES_TUPLES_OK)
		max_id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);

	start = now_us();
	end = start + (int64_t)seconds * 1000000;
	for (;;) {
		int64_t due = rate > 0 ? start + (int64_t)((double)n * 1e6 / rate) : 0;
		if (rate > 0)
			sleep_until_us(due);
		if (now_us() >= end)
			break;
		int pick = (int)(rand_r(&seed) % (unsigned)total);
		const char *op;
		snprintf(marker, sizeof(marker), "%.30sw%d-%" PRId64, prefix, w, n);
		const char *params[2] = { marker, id };
		if (pick < mix[0] || max_id == 0) {
			op = "c";
			r = PQexecParams(c, "INSERT INTO employees (first_name, last_name, dob, "
			    "city, salary) VALUES ('load', 'gen', DATE '2008-01-01', $1, 50000) "
			    "RETURNING emp_id", 1, NULL, params, NULL, NULL, 0);
		} else if (pick < mix[0] + mix[1]) {
			op = "u";
			snprintf(id, sizeof(id), "%" PRId64, 1 + (int64_t)(rand_r(&seed) % (unsigned)max_id));
			r = PQexecParams(c, "UPDATE employees SET city = $1, salary = salary + 1 "
			    "WHERE emp_id = $2::int RETURNING emp_id", 2, NULL, params, NULL, NULL, 0);
		} else {
			op = "d";
			snprintf(id, sizeof(id), "%" PRId64, 1 + (int64_t)(rand_r(&seed) % (unsigned)max_id));
			r = PQexecParams(c, "DELETE FROM employees WHERE emp_id = $1::int "
			    "RETURNING emp_id", 1, NULL, params + 1, NULL, NULL, 0);
		}
		int64_t t = now_us();
		if (PQresultStatus(r) != PGRES_TUPLES_OK) {
			fprintf(stderr, "loadgen: writer %d: %s", w, PQresultErrorMessage(r));
			PQclear(r);
			fclose(f);
			PQfinish(c);
			return 1;
		}
		if (PQntuples(r) == 1) {
			const char *eid = PQgetvalue(r, 0, 0);
			if (op[0] == 'c' && strtoll(eid, NULL, 10) > max_id)
				max_id = strtoll(eid, NULL, 10);
			fprintf(f, "%s,%s,%s,%" PRId64 "\n", op[0] == 'd' ? eid : marker, op,
			    eid, t);
		}
		PQclear(r);
		n++;
	}
	fclose(f);
	PQfinish(c);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *dsn = getenv("PGRELAY_SOURCE_DSN"), *out = NULL;
	double rate = 1000;
	int seconds = 10, writers = 2, mix[3] = { 60, 30, 10 }, ch, failed = 0;

	while ((ch = getopt(argc, argv, "d:r:s:w:m:o:x:ah")) != -1) {
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
		default:
			fprintf(stderr, "usage: loadgen -d DSN [-r RATE] [-s SECONDS] "
			    "[-w WRITERS] [-m INS:UPD:DEL] [-x PREFIX] [-a] -o FILE\n");
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
