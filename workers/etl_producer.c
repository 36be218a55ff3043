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
 * spool_dir/failed/ untouched.  The parsing, the checks and the transform
 * of a record are common/csvrec.c's (no I/O there: it is fuzzed); this
 * file reads the files and talks to Kafka and B.
 */
#define _GNU_SOURCE
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
#include "csvrec.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "worker.h"

struct etl {
	struct cfg *cfg;
	PGconn *db;
	rd_kafka_t *rk;
	struct kfk_acks acks;	/* of the current file */
};

/* One file's state, for csvrec's record callback. */
struct file_ctx {
	struct etl *e;
	const char *name;
	char sha[65];
	long records;		/* records seen, the header included */
	long resume_after;	/* records at or before this line were sent */
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

static void
reject(struct file_ctx *f, const struct csvrec_record *rec, const char *reason)
{
	char line[24];
	json_t *v = csvrec_reject_json(rec, f->name, f->sha);
	rd_kafka_headers_t *h = rd_kafka_headers_new(5);

	snprintf(line, sizeof(line), "%ld", rec->line);
	rd_kafka_header_add(h, "__pgrelay.errors.stage", -1, "parse", -1);
	rd_kafka_header_add(h, "__pgrelay.errors.reason", -1, reason, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.file", -1, f->name, -1);
	rd_kafka_header_add(h, "__pgrelay.errors.line", -1, line, -1);
	if (v == NULL || produce_json(f->e, f->e->cfg->etl_dlq_topic, f->sha, v, h, f->err,
	    sizeof(f->err)) < 0)
		f->error = 1;
	json_decref(v);
	f->rejected++;
	log_warn("%s line %ld: %s; sent to %s", f->name, rec->line, reason,
	    f->e->cfg->etl_dlq_topic);
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
process_record(struct file_ctx *f, const struct csvrec_record *rec)
{
	const struct cfg *cfg = f->e->cfg;
	struct csvrec_row row;
	char why[256];

	f->records++;
	if (f->records == 1) {
		f->bad_header = !csvrec_header_ok(rec);
		return;
	}
	if (rec->line <= f->resume_after)
		return;		/* sent and acknowledged before a restart */
	f->last_line = rec->line;
	f->since_checkpoint++;
	switch (csvrec_transform(rec, cfg->etl_departments, cfg->etl_min_hire_year,
	    &row, why, sizeof(why))) {
	case CSVREC_REJECTED:
		reject(f, rec, why);
		break;
	case CSVREC_FILTERED:
		f->filtered++;
		break;
	case CSVREC_SEND: {
		json_t *v = csvrec_row_json(&row, f->name, f->sha, rec->line);
		if (v == NULL || produce_json(f->e, cfg->etl_topic, row.department, v, NULL,
		    f->err, sizeof(f->err)) < 0)
			f->error = 1;
		json_decref(v);
		f->sent++;
		break;
	}
	}
	if (!f->error && f->since_checkpoint >= cfg->etl_batch_size && checkpoint(f) < 0)
		f->error = 1;
}

/* csvrec's callback, for each record of the file. */
static void
on_record(const struct csvrec_record *rec, void *opaque)
{
	struct file_ctx *f = opaque;

	if (!f->error && !f->bad_header)
		process_record(f, rec);
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
	struct csvrec_reader reader;
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
	if (csvrec_reader_init(&reader, on_record, &f, err, sizeof(err)) < 0) {
		log_error("%s: %s", path, err);
		fclose(fp);
		return -1;
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	e->acks = (struct kfk_acks){ 0 };
	while (!f.error && !f.bad_header && !worker_stop &&
	    (n = getline(&line, &cap, fp)) > 0) {
		if (csvrec_reader_feed(&reader, line, (size_t)n, f.err, sizeof(f.err)) < 0)
			f.error = 1;
		rd_kafka_poll(e->rk, 0);
	}
	if (!f.error && !f.bad_header && !worker_stop &&
	    csvrec_reader_finish(&reader, f.err, sizeof(f.err)) < 0)	/* no final newline */
		f.error = 1;
	csvrec_reader_free(&reader);
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
	if (e.rk == NULL) {
		log_error("%s", err);
		return 1;
	}
	while (!worker_stop && (kfk_ensure_topic(e.rk, cfg->etl_topic, cfg->etl_partitions,
	    cfg->replication_factor, err, sizeof(err)) < 0 ||
	    kfk_ensure_topic(e.rk, cfg->etl_dlq_topic, 1, cfg->replication_factor,
	    err, sizeof(err)) < 0)) {
		log_error("%s; retrying", err);
		worker_sleep_ms(worker_backoff_ms(attempt++));
	}
	attempt = 0;
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
