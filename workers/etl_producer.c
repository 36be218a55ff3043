/*
 * etl_producer.c - pgrelay-etl_producer: the ETL pipeline's extract and
 * transform step.  Watches etl.spool_dir for CSV files of employee
 * salaries, filters and transforms each record, and sends it to the ETL
 * topic; the loader (etl_loader.c) writes it to department_employee.
 *
 * NOTES
 *
 * Identity.  A file is identified by the sha256 of its content, recorded
 * in B's etl_files: the same file dropped twice, or renamed, is loaded
 * once.  A file whose name ends in .csv and does not start with "." is
 * picked up (write to a temporary name and rename into the spool).  A done
 * file is moved to spool_dir/done/.
 *
 * Exactly once.  Every record is sent with its identity (sha256, line);
 * the loader inserts it only if that identity is new, and only then adds
 * its salary to the department's total.  The producer records the last
 * line Kafka acknowledged after every etl.batch_size records, so a restart
 * in the middle of a file resumes there; records sent again are no-ops.
 *
 * Transform.  Keep departments in etl.departments, keep employees hired in
 * or after etl.min_hire_year, round the salary down to an integer.
 *
 * Bad input.  The CSV is parsed by libcsv (RFC 4180 quoting, embedded
 * commas, quotes and newlines, CRLF); a UTF-8 byte-order mark is skipped.
 * A malformed record (wrong column count, bad date, bad number, missing
 * field) goes to etl.dlq_topic with the file, line and reason, and the file
 * goes on.  A file whose header is not the expected one is moved to
 * spool_dir/failed/ untouched.
 */
#define _GNU_SOURCE
#include <csv.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "worker.h"

#define NCOLS 8
static const char *const header[NCOLS] = {
	"Department", "Department-Division", "PCN", "Position Title",
	"FLSA Status", "Initial Hire Date", "Date in Title", "Salary"
};
enum { COL_DEPT = 0, COL_DIV = 1, COL_TITLE = 3, COL_HIRE = 5, COL_SALARY = 7 };

struct etl {
	struct cfg *cfg;
	PGconn *db;
	rd_kafka_t *rk;
	struct kfk_acks acks;	/* of the current file */
};

/* One file's parse state, fed to libcsv's callbacks. */
struct file_ctx {
	struct etl *e;
	const char *name;
	char sha[65];
	long line;		/* physical line being fed */
	long rec_line;		/* first line of the record being built */
	long records;		/* records seen, the header included */
	long resume_after;	/* records at or before this line were sent */
	char *fields[64];
	int nfields;
	int overflow;		/* more fields than fit */
	int bad_header;
	int error;		/* a Kafka or database failure: stop the file */
	long sent, filtered, rejected, since_checkpoint, last_line;
	char err[512];
};

static int
produce_json(struct etl *e, const char *topic, const char *key, json_t *value,
    rd_kafka_headers_t *hdrs, char *err, size_t errlen)
{
	char *val = json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER);
	rd_kafka_resp_err_t x;

	if (val == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	while ((x = rd_kafka_producev(e->rk, RD_KAFKA_V_TOPIC(topic),
	    RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, strlen(val)),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
	    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(e->rk, 50);
	if (x != RD_KAFKA_RESP_ERR_NO_ERROR) {
		free(val);
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);
		snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(x));
		return -1;
	}
	e->acks.sent++;
	return 0;
}

/* "10-Sep-1984" -> "1984-09-10"; -1 if it is not such a date. */
static int
parse_hire_date(const char *s, char *out, size_t len, int *year)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int d, y, n = 0, m = -1;
	char ms[4];

	if (sscanf(s, "%2d-%3[A-Za-z]-%4d%n", &d, ms, &y, &n) != 3 || s[n] != '\0' ||
	    strlen(s) != 11)
		return -1;
	for (int i = 0; i < 12; i++)
		if (strcmp(ms, mon[i]) == 0)
			m = i;
	if (m < 0 || d < 1 || d > mdays[m] || y < 1 ||
	    (m == 1 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
		return -1;
	snprintf(out, len, "%04d-%02d-%02d", y % 10000, (m + 1) % 100, d % 100);
	*year = y;
	return 0;
}

/* "59947.94" -> 59947 (rounded down); -1 if not a non-negative decimal
 * that fits an int. */
static int
parse_salary(const char *s, int32_t *out)
{
	int64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (*p - '0');
		if (v > INT32_MAX)
			return -1;
	}
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p != '\0')
		return -1;
	*out = (int32_t)v;
	return 0;
}

static void
reject(struct file_ctx *f, const char *reason)
{
	char line[24];
	json_t *fields = json_array(), *v;
	rd_kafka_headers_t *h = rd_kafka_headers_new(5);

	for (int i = 0; i < f->nfields; i++)
		json_array_append_new(fields, json_string(f->fields[i]));
	v = json_pack("{s:s, s:s, s:i, s:o}", "file", f->name, "sha256", f->sha,
	    "line", (int)f->rec_line, "fields", fields);
	snprintf(line, sizeof(line), "%ld", f->rec_line);
	rd_kafka_header_add(h, "__pgrelay.errors.stage", -1, "parse", -1);
	rd_kafka_header_add(h, "__pgrelay.errors.reason", -1, reason, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.file", -1, f->name, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.line", -1, line, -1);
	if (v == NULL || produce_json(f->e, f->e->cfg->etl_dlq_topic, f->sha, v, h, f->err,
	    sizeof(f->err)) < 0)
		f->error = 1;
	json_decref(v);
	f->rejected++;
	log_warn("%s line %ld: %s; sent to %s", f->name, f->rec_line, reason,
	    f->e->cfg->etl_dlq_topic);
}

static int
department_wanted(const struct cfg *cfg, const char *dept)
{
	const char *p = cfg->etl_departments;
	size_t n = strlen(dept);

	while (*p) {
		size_t len = strcspn(p, ",");
		if (len == n && strncmp(p, dept, n) == 0)
			return 1;
		p += len;
		if (*p == ',')
			p++;
	}
	return 0;
}

static int
checkpoint(struct file_ctx *f)
{
	struct etl *e = f->e;
	char last[24], sent[24], filt[24], rej[24];
	const char *params[5] = { f->sha, last, sent, filt, rej };

	if (kfk_acks_wait(e->rk, &e->acks, &worker_stop, f->err, sizeof(f->err)) < 0)
		return -1;
	snprintf(last, sizeof(last), "%ld", f->last_line);
	snprintf(sent, sizeof(sent), "%ld", f->sent);
	snprintf(filt, sizeof(filt), "%ld", f->filtered);
	snprintf(rej, sizeof(rej), "%ld", f->rejected);
	if (db_exec(e->db, "UPDATE etl_files SET last_line = GREATEST(last_line, $2::int), "
	    "rows_sent = rows_sent + $3::bigint, rows_filtered = rows_filtered + "
	    "$4::bigint, rows_rejected = rows_rejected + $5::bigint WHERE sha256 = $1",
	    5, params, f->err, sizeof(f->err)) < 0)
		return -1;
	f->sent = f->filtered = f->rejected = 0;
	f->since_checkpoint = 0;
	return 0;
}

static void
process_record(struct file_ctx *f)
{
	const struct cfg *cfg = f->e->cfg;
	char date[16], why[256];
	int year;
	int32_t salary;

	f->records++;
	if (f->records == 1) {
		int ok = f->nfields == NCOLS && !f->overflow;
		for (int i = 0; ok && i < NCOLS; i++)
			ok = strcmp(f->fields[i], header[i]) == 0;
		f->bad_header = !ok;
		return;
	}
	if (f->rec_line <= f->resume_after)
		return;		/* sent and acknowledged before a restart */
	f->last_line = f->rec_line;
	f->since_checkpoint++;
	if (f->overflow || f->nfields != NCOLS) {
		snprintf(why, sizeof(why), "wrong column count: %d, want %d",
		    f->overflow ? 64 : f->nfields, NCOLS);
		reject(f, why);
		goto out;
	}
	static const int required[] = { COL_DEPT, COL_DIV, COL_TITLE, COL_HIRE, COL_SALARY };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (f->fields[required[i]][0] == '\0') {
			snprintf(why, sizeof(why), "missing field %s", header[required[i]]);
			reject(f, why);
			goto out;
		}
	}
	if (parse_hire_date(f->fields[COL_HIRE], date, sizeof(date), &year) < 0) {
		snprintf(why, sizeof(why), "bad date \"%.40s\" in Initial Hire Date "
		    "(want DD-Mon-YYYY)", f->fields[COL_HIRE]);
		reject(f, why);
		goto out;
	}
	if (parse_salary(f->fields[COL_SALARY], &salary) < 0) {
		snprintf(why, sizeof(why), "bad number \"%.40s\" in Salary",
		    f->fields[COL_SALARY]);
		reject(f, why);
		goto out;
	}
	if (!department_wanted(cfg, f->fields[COL_DEPT]) || year < cfg->etl_min_hire_year) {
		f->filtered++;
		goto out;
	}
	json_t *v = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:i}",
	    "file", f->name, "sha256", f->sha, "line", (int)f->rec_line,
	    "department", f->fields[COL_DEPT], "department_division", f->fields[COL_DIV],
	    "position_title", f->fields[COL_TITLE], "hire_date", date, "salary", (int)salary);
	if (v == NULL || produce_json(f->e, cfg->etl_topic, f->fields[COL_DEPT], v, NULL,
	    f->err, sizeof(f->err)) < 0)
		f->error = 1;
	json_decref(v);
	f->sent++;
out:
	if (!f->error && f->since_checkpoint >= cfg->etl_batch_size && checkpoint(f) < 0)
		f->error = 1;
}

static void
on_field(void *data, size_t len, void *opaque)
{
	struct file_ctx *f = opaque;

	if (f->nfields == 0)
		f->rec_line = f->line;
	if (f->nfields >= (int)(sizeof(f->fields) / sizeof(f->fields[0]))) {
		f->overflow = 1;
		return;
	}
	f->fields[f->nfields] = strndup(data ? (const char *)data : "", len);
	f->nfields++;
}

static void
on_record(int term, void *opaque)
{
	struct file_ctx *f = opaque;

	(void)term;
	if (!f->error && !f->bad_header)
		process_record(f);
	for (int i = 0; i < f->nfields; i++)
		free(f->fields[i]);
	f->nfields = 0;
	f->overflow = 0;
}

static int
file_sha256(const char *path, char out[65], long *size, char *err, size_t errlen)
{
	unsigned char buf[65536], md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	FILE *fp = fopen(path, "rb");
	EVP_MD_CTX *ctx;
	size_t n;

	if (fp == NULL) {
		snprintf(err, errlen, "%.900s: %s", path, strerror(errno));
		return -1;
	}
	ctx = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
	*size = 0;
	while ((n = fread(buf, 1, sizeof(buf), fp)) > 0) {
		EVP_DigestUpdate(ctx, buf, n);
		*size += (long)n;
	}
	EVP_DigestFinal_ex(ctx, md, &mdlen);
	EVP_MD_CTX_free(ctx);
	fclose(fp);
	for (unsigned i = 0; i < mdlen && i < 32; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	return 0;
}

/* Moves path into spool_dir/SUB/, keeping its name (suffixed if taken). */
static void
move_to(const struct cfg *cfg, const char *path, const char *name, const char *sub)
{
	char dir[4096], dst[8192];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/%s", cfg->etl_spool_dir, sub);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		log_error("cannot create %s: %s; %s stays in the spool", dir,
		    strerror(errno), name);
		return;
	}
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	if (stat(dst, &st) == 0)
		snprintf(dst, sizeof(dst), "%s/%s.%ld", dir, name, (long)time(NULL));
	if (rename(path, dst) < 0)
		log_error("cannot move %s to %s: %s", path, dst, strerror(errno));
}

/* Loads one file.  0 when done (or skipped), -1 to retry later. */
static int
process_file(struct etl *e, const char *name)
{
	const struct cfg *cfg = e->cfg;
	char path[4096], err[1024], size_s[24];
	struct file_ctx f = { .e = e, .name = name };
	struct csv_parser p;
	long size;
	PGresult *res;

	snprintf(path, sizeof(path), "%s/%s", cfg->etl_spool_dir, name);
	if (file_sha256(path, f.sha, &size, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	snprintf(size_s, sizeof(size_s), "%ld", size);
	const char *params[3] = { f.sha, name, size_s };
	res = db_query(e->db, "INSERT INTO etl_files (sha256, name, size_bytes, state) "
	    "VALUES ($1, $2, $3::bigint, 'loading') ON CONFLICT (sha256) DO UPDATE "
	    "SET sha256 = EXCLUDED.sha256 RETURNING state, last_line, name",
	    3, params, err, sizeof(err));
	if (res == NULL) {
		log_error("target database: %s", err);
		return -1;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "done") == 0) {
		log_info("%s has the same content as %s, loaded before (sha256 %.12s); "
		    "not loading it again", name, PQgetvalue(res, 0, 2), f.sha);
		PQclear(res);
		move_to(cfg, path, name, "done");
		return 0;
	}
	f.resume_after = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (f.resume_after > 0)
		log_info("%s: resuming after line %ld", name, f.resume_after);
	else
		log_info("%s: loading (sha256 %.12s, %ld bytes)", name, f.sha, size);

	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		log_error("%s: %s", path, strerror(errno));
		return -1;
	}
	csv_init(&p, CSV_APPEND_NULL);
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	e->acks = (struct kfk_acks){ 0 };
	while (!f.error && !f.bad_header && !worker_stop &&
	    (n = getline(&line, &cap, fp)) > 0) {
		char *s = line;
		f.line++;
		if (f.line == 1 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
			s += 3;		/* UTF-8 byte-order mark */
			n -= 3;
		}
		if (csv_parse(&p, s, (size_t)n, on_field, on_record, &f) != (size_t)n) {
			snprintf(f.err, sizeof(f.err), "line %ld: %s", f.line,
			    csv_strerror(csv_error(&p)));
			f.error = 1;
		}
		rd_kafka_poll(e->rk, 0);
	}
	if (!f.error && !f.bad_header && !worker_stop)
		csv_fini(&p, on_field, on_record, &f);	/* no final newline */
	for (int i = 0; i < f.nfields; i++)
		free(f.fields[i]);
	csv_free(&p);
	free(line);
	fclose(fp);

	if (f.bad_header) {
		log_error("%s: the header is not the expected \"Department,"
		    "Department-Division,...,Salary\"; moved to failed/", name);
		const char *del[1] = { f.sha };
		db_exec(e->db, "DELETE FROM etl_files WHERE sha256 = $1 AND last_line = 0",
		    1, del, err, sizeof(err));
		move_to(cfg, path, name, "failed");
		return 0;
	}
	if (f.error || worker_stop) {
		if (f.error)
			log_error("%s: %s; the file resumes from its last checkpoint", name, f.err);
		else
			checkpoint(&f);
		return -1;
	}
	if (checkpoint(&f) < 0) {
		log_error("%s: %s; the file resumes from its last checkpoint", name, f.err);
		return -1;
	}
	const char *done[1] = { f.sha };
	res = db_query(e->db, "UPDATE etl_files SET state = 'done', done_at = now() "
	    "WHERE sha256 = $1 RETURNING rows_sent, rows_filtered, rows_rejected",
	    1, done, err, sizeof(err));
	if (res == NULL) {
		log_error("%s: %s", name, err);
		return -1;
	}
	log_info("%s: done: %s records sent, %s filtered out, %s malformed (in the DLQ)",
	    name, PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2));
	PQclear(res);
	move_to(cfg, path, name, "done");
	return 0;
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Loads every ready file in the spool, oldest name first. */
static void
scan_spool(struct etl *e)
{
	DIR *d = opendir(e->cfg->etl_spool_dir);
	struct dirent *de;
	char *names[1024];
	int n = 0;

	if (d == NULL) {
		log_error("etl.spool_dir %s: %s; create it or fix the config",
		    e->cfg->etl_spool_dir, strerror(errno));
		return;
	}
	while ((de = readdir(d)) != NULL && n < 1024) {
		size_t len = strlen(de->d_name);
		if (de->d_name[0] == '.' || len < 5 || strcmp(de->d_name + len - 4, ".csv") != 0)
			continue;
		char path[4096];
		struct stat st;
		snprintf(path, sizeof(path), "%s/%s", e->cfg->etl_spool_dir, de->d_name);
		if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
			names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), name_cmp);
	for (int i = 0; i < n; i++) {
		if (!worker_stop && process_file(e, names[i]) < 0)
			worker_sleep_ms(1000);
		free(names[i]);
	}
}

static int
etl_producer_main(struct cfg *cfg)
{
	struct etl e = { .cfg = cfg };
	char err[1024], where[256];
	int attempt = 0;

	e.rk = kfk_producer_new(cfg, "pgrelay-etl_producer", kfk_acks_report, &e.acks,
	    err, sizeof(err));
	if (e.rk == NULL) {	/* librdkafka refuses the configuration */
		log_error("%s", err);
		return CFG_EXIT_CONFIG;
	}
	const struct kfk_topic topics[] = {
		{ cfg->etl_topic, cfg->etl_partitions, "etl.partitions" },
		{ cfg->etl_dlq_topic, 1, NULL },
	};
	if (kfk_topics_wait(e.rk, topics, 2, cfg) == PGR_CONFIG) {
		rd_kafka_destroy(e.rk);
		return CFG_EXIT_CONFIG;
	}
	worker_notify_ready("state=watching");
	log_info("watching %s", cfg->etl_spool_dir);
	while (!worker_stop && !kfk_fatal()) {
		if (db_broken(e.db)) {
			if (e.db != NULL)
				PQfinish(e.db);
			e.db = db_connect(cfg->target_dsn, "pgrelay-etl_producer", err,
			    sizeof(err));
			if (e.db == NULL) {
				log_error("target database: %s; retrying", err);
				worker_sleep_ms(worker_backoff_ms(attempt++));
				continue;
			}
			attempt = 0;
			log_info("connected to target %s",
			    db_dsn_redact(cfg->target_dsn, where, sizeof(where)));
		}
		scan_spool(&e);
		worker_notify_alive("state=watching");
		worker_sleep_ms(cfg->etl_poll_interval_ms);
	}
	rd_kafka_flush(e.rk, 10000);
	rd_kafka_destroy(e.rk);
	if (e.db != NULL)
		PQfinish(e.db);
	return kfk_fatal() ? 1 : 0;
}

int
main(int argc, char **argv)
{
	struct cfg *cfg = worker_start(argc, argv, "etl_producer",
	    "usage: pgrelay-etl_producer -c CONFIG\n"
	    "Loads CSV files from etl.spool_dir into the ETL topic.", NULL);
	int rc = etl_producer_main(cfg);

	cfg_free(cfg);
	return rc;
}
