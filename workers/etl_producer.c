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
 * Exactly once.  Every record is sent with its identity (sha256, the
 * number of its first line); the loader inserts it only if that identity
 * is new, and only then adds its salary to the department's total.  A
 * line ends at LF, CRLF or a CR alone, where libcsv ends a record (and
 * as Python's csv counts lines), so no two records begin on one line.  The
 * producer records the last line Kafka acknowledged after every
 * etl.batch_size records, so a restart in the middle of a file resumes
 * there; records sent again are no-ops.  Which lines make a record depends
 * on etl.max_record_lines and etl.max_record_bytes (below): change them
 * between files, not while one is half loaded.
 *
 * Counts.  etl_files.rows_sent counts the records Kafka acknowledged: a
 * record is counted once produce accepted it, and the counts reach
 * etl_files only at a checkpoint, after Kafka acknowledged every message
 * before it (a failed one stops the file before its counts are written).
 *
 * Transform.  Keep departments in etl.departments, keep employees hired in
 * or after etl.min_hire_year, round the salary down to an integer.
 *
 * Bad records.  The CSV is parsed by libcsv (RFC 4180 quoting, embedded
 * commas, quotes and newlines, CRLF); a UTF-8 byte-order mark is skipped.
 * A record that cannot be loaded goes to etl.dlq_topic with the file, line
 * and reason, and the file goes on: a wrong column count, a bad date or
 * number, a missing field, a NUL byte in any field (C and PostgreSQL would
 * cut the field there), a wanted record whose text is not UTF-8 (the JSON
 * on the topic and B's text must be; a record the filter drops is not
 * sent, so its bytes do not matter), a record Kafka refuses (over the
 * producer's message.max.bytes).  A DLQ message carries at most 16 KB of
 * a record's fields (4 KB of a line), bytes that are not UTF-8 as U+FFFD,
 * so it fits where the record did not.
 *
 * Unbalanced quotes.  One stray quote makes libcsv read the lines after it
 * as one quoted field, up to the next quote in the file.  So a record is
 * bounded: one still open after etl.max_record_lines lines, or longer than
 * etl.max_record_bytes, is rejected whole with its first line, and reading
 * starts again at the line after that one (each record's first line and
 * the offset of the next are kept for that).  A record over several lines
 * that closed within the bounds is rejected and read again the same way
 * when it has the wrong column count or is not strict RFC 4180 (a quote in
 * a quoted field neither doubled nor closing it: the stray quote's field
 * ended at the opening quote of a later one).  Strictness is asked only of
 * such records: in a one-line record a quote inside an unquoted field is a
 * character, as before.  The cost: the later lines of a multi-line quoted
 * field that is malformed for such a reason are read again as records and
 * rejected in their turn; two stray quotes that pair up are not found.
 * The memory a file takes stays within etl.max_record_bytes.
 *
 * Bad files.  A file whose header is not the expected one is moved to
 * spool_dir/failed/ untouched.  B records a file's name as text (in
 * etl_files and on each row): a name that is not valid UTF-8, or that B
 * refuses as data (PGR_DATA), cannot be recorded, so the file is moved to
 * failed/ without loading any of it, and the reason is logged
 * with the name's odd bytes as \xNN.  Renamed and dropped again, it loads.
 *
 * Where.  Reading a file into records, their bounds, checks, filter and
 * transform, and the values sent (to the topic and the DLQ) are
 * common/csvrec.c's, which tests/unit/test_csvrec.c and the fuzz target
 * tests/fuzz/fuzz_csvrec.c drive alone; this file finds the files, keeps
 * B's record of them (identity, resume point, counts) and talks to Kafka.
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
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "csvrec.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "utf8.h"
#include "worker.h"

struct etl {
	struct cfg *cfg;
	PGconn *db;
	rd_kafka_t *rk;
	struct kfk_acks acks;	/* of the current file */
};

/* One file being loaded: what Kafka and B need of it; its records are
 * read by common/csvrec.c. */
struct file_ctx {
	struct etl *e;
	const char *name;
	char sha[65];
	const struct csvrec_file *cf;	/* its reader */
	long resume_after;	/* records at or before this line were sent */
	int error;		/* a Kafka or database failure: stop the file */
	long sent, filtered, rejected, since_checkpoint, last_line;
	char err[512];
};

enum produce_rc { PRODUCE_OK = 0, PRODUCE_FAILED = -1, PRODUCE_REFUSED = -2 };

/* Sends value (serialized here) to topic.  hdrs is owned by the message
 * (or destroyed here on failure).  PRODUCE_REFUSED: Kafka refuses this
 * message for itself (too large), err says why; the caller may go on. */
static enum produce_rc
produce_json(struct etl *e, const char *topic, const char *key, json_t *value,
    rd_kafka_headers_t *hdrs, char *err, size_t errlen)
{
	char *val = json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER);
	size_t len;
	int rc;

	if (val == NULL) {
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);
		snprintf(err, errlen, "cannot encode a record as JSON: out of memory");
		return PRODUCE_FAILED;
	}
	len = strlen(val);
	rc = kfk_produce(e->rk, topic, RD_KAFKA_PARTITION_UA, key, strlen(key), val,
	    len, RD_KAFKA_MSG_F_FREE, hdrs, err, errlen);
	if (rc < 0) {
		free(val);
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);
		if (rc == PGR_DATA) {
			snprintf(err, errlen, "Kafka refuses the record: %s (%zu bytes of "
			    "JSON, over the producer's message.max.bytes)",
			    rd_kafka_err2str(RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE), len);
			return PRODUCE_REFUSED;
		}
		return PRODUCE_FAILED;
	}
	e->acks.sent++;
	return PRODUCE_OK;
}

/* Sends rec to the DLQ topic with why it cannot be loaded: its fields,
 * or, when it was rejected whole (no field of it can be trusted), its
 * first line (common/csvrec.c builds that value). */
static void
reject(struct file_ctx *f, const char *stage, const struct csvrec *rec,
    const char *reason)
{
	char line[24];
	json_t *v;
	rd_kafka_headers_t *h;
	rd_kafka_resp_err_t x = RD_KAFKA_RESP_ERR_NO_ERROR;

	snprintf(line, sizeof(line), "%ld", rec->line);
	const char *const hdr[4][2] = {
		{ "__pgrelay.errors.stage", stage }, { "__pgrelay.errors.reason", reason },
		{ "__pgrelay.errors.file", f->name }, { "__pgrelay.errors.line", line },
	};
	h = rd_kafka_headers_new(4);
	for (int i = 0; i < 4 && x == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
		x = rd_kafka_header_add(h, hdr[i][0], -1, hdr[i][1], -1);
	if (x != RD_KAFKA_RESP_ERR_NO_ERROR || (v = csvrec_dlq_value(f->cf, rec)) == NULL) {
		rd_kafka_headers_destroy(h);
		snprintf(f->err, sizeof(f->err), "line %ld: cannot build its DLQ message: %s",
		    rec->line, x ? rd_kafka_err2str(x) : "out of memory");
		f->error = 1;
		return;
	}
	if (produce_json(f->e, f->e->cfg->etl_dlq_topic, f->sha, v, h, f->err,
	    sizeof(f->err)) != PRODUCE_OK)
		f->error = 1;
	json_decref(v);
	if (f->error)
		return;
	f->rejected++;
	log_warn("%s line %ld: %s; sent to %s", f->name, rec->line, reason,
	    f->e->cfg->etl_dlq_topic);
}

/* Waits for Kafka's acknowledgement of every message of the file so far,
 * then records the progress and counts in etl_files. */
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

/* rec is dealt with (sent, filtered or rejected): counts it, and
 * checkpoints every etl.batch_size records. */
static void
record_done(struct file_ctx *f, const struct csvrec *rec)
{
	f->last_line = rec->line;
	if (++f->since_checkpoint >= f->e->cfg->etl_batch_size && !f->error &&
	    checkpoint(f) < 0)
		f->error = 1;
}

/* Sends rec to the ETL topic, keyed by department; to the DLQ when Kafka
 * refuses it. */
static void
send_record(struct file_ctx *f, const struct csvrec *rec)
{
	char why[sizeof(f->err)];
	json_t *v = csvrec_value(f->cf, rec);

	if (v == NULL) {
		snprintf(f->err, sizeof(f->err), "line %ld: cannot encode the record as "
		    "JSON (out of memory?)", rec->line);
		f->error = 1;
		return;
	}
	switch (produce_json(f->e, f->e->cfg->etl_topic, rec->department, v, NULL,
	    f->err, sizeof(f->err))) {
	case PRODUCE_OK:
		f->sent++;	/* in etl_files once acknowledged (checkpoint) */
		break;
	case PRODUCE_REFUSED:
		snprintf(why, sizeof(why), "%s", f->err);
		f->err[0] = '\0';
		reject(f, "produce", rec, why);
		break;
	case PRODUCE_FAILED:
		f->error = 1;
		break;
	}
	json_decref(v);
}

/* csvrec_read's csvrec_fn: sends, filters out or rejects one record of the
 * file; nothing for a record handled before a restart (at or before
 * resume_after).  -1 stops the file on a Kafka or database failure. */
static int
on_record(const struct csvrec *rec, void *opaque)
{
	struct file_ctx *f = opaque;

	if (rec->line <= f->resume_after)
		return 0;
	switch (rec->verdict) {
	case CSVREC_SEND:
		send_record(f, rec);
		if (f->error)
			return -1;
		break;
	case CSVREC_FILTERED:
		f->filtered++;
		break;
	case CSVREC_REJECTED:
	case CSVREC_REJECTED_WHOLE:
		reject(f, "parse", rec, rec->reason);
		break;
	}
	record_done(f, rec);
	return f->error ? -1 : 0;
}

/* csvrec_read's tick, before each line: serves Kafka's callbacks, tells
 * pgrelayd the producer is alive, stops on a stop. */
static int
on_line(void *opaque)
{
	struct file_ctx *f = opaque;

	rd_kafka_poll(f->e->rk, 0);
	worker_notify_alive(NULL);
	return worker_stop != 0;
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

/* A hint for a file stopped by a message the broker refused as too large
 * (the record was within the producer's limit, so the topic's is lower). */
static const char *
size_hint(const struct etl *e)
{
	if (e->acks.failed > 0 && e->acks.last_err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
		return " (the broker refused a batch as too large: the topic's "
		    "max.message.bytes is below the producer's message.max.bytes, "
		    "librdkafka's default 1000000; raise it)";
	return "";
}

/* Moves path into spool_dir/SUB/, keeping its name (suffixed if taken). */
static void
move_to(const struct cfg *cfg, const char *path, const char *name, const char *sub)
{
	char dir[4096], dst[8192], shown[1024], shown2[1024];
	struct stat st;

	snprintf(dir, sizeof(dir), "%s/%s", cfg->etl_spool_dir, sub);
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		log_error("cannot create %s: %s; %s stays in the spool", dir,
		    strerror(errno), utf8_escape(name, shown, sizeof(shown)));
		return;
	}
	snprintf(dst, sizeof(dst), "%s/%s", dir, name);
	if (stat(dst, &st) == 0)
		snprintf(dst, sizeof(dst), "%s/%s.%ld", dir, name, (long)time(NULL));
	if (rename(path, dst) < 0)
		log_error("cannot move %s to %s: %s", utf8_escape(path, shown, sizeof(shown)),
		    utf8_escape(dst, shown2, sizeof(shown2)), strerror(errno));
}

/* Records the file in etl_files (or finds it there).  1 when it was
 * loaded before (moved to done/), 0 to load it (f->resume_after set), -1
 * to retry later, -2 when B refuses to record it (moved to failed/). */
static int
record_file(struct file_ctx *f, const char *path, long size)
{
	const struct cfg *cfg = f->e->cfg;
	char err[1024], size_s[24], shown[1024];
	const char *params[3] = { f->sha, f->name, size_s };
	PGresult *res;
	enum pgr_err cls = PGR_RETRY;

	snprintf(size_s, sizeof(size_s), "%ld", size);
	res = db_query_cls(f->e->db, "INSERT INTO etl_files (sha256, name, size_bytes, "
	    "state) VALUES ($1, $2, $3::bigint, 'loading') ON CONFLICT (sha256) DO "
	    "UPDATE SET sha256 = EXCLUDED.sha256 RETURNING state, last_line, name",
	    3, params, &cls, err, sizeof(err));
	if (res == NULL && cls == PGR_DATA) {
		/* a data exception: the name, the only text, is at fault */
		log_error("%s: the target database refuses to record this file: %s; "
		    "moved to failed/ without loading it: rename it and move it into "
		    "the spool again", utf8_escape(f->name, shown, sizeof(shown)), err);
		move_to(cfg, path, f->name, "failed");
		return -2;
	}
	if (res == NULL) {
		log_error("target database: %s; %s is retried", err,
		    utf8_escape(f->name, shown, sizeof(shown)));
		return -1;
	}
	if (strcmp(PQgetvalue(res, 0, 0), "done") == 0) {
		log_info("%s has the same content as %s, loaded before (sha256 %.12s); "
		    "not loading it again", f->name, PQgetvalue(res, 0, 2), f->sha);
		PQclear(res);
		move_to(cfg, path, f->name, "done");
		return 1;
	}
	f->resume_after = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (f->resume_after > 0)
		log_info("%s: resuming after line %ld", f->name, f->resume_after);
	else
		log_info("%s: loading (sha256 %.12s, %ld bytes)", f->name, f->sha, size);
	return 0;
}

/* Loads one file.  0 when done (or skipped, or moved to failed/), -1 to
 * retry later. */
static int
process_file(struct etl *e, const char *name)
{
	const struct cfg *cfg = e->cfg;
	char path[4096], err[1024], shown[1024];
	struct file_ctx f = { .e = e, .name = name };
	enum csvrec_end end;
	long size, bad;
	PGresult *res;
	int rc;

	snprintf(path, sizeof(path), "%s/%s", cfg->etl_spool_dir, name);
	if ((bad = utf8_invalid_at(name, strlen(name))) >= 0) {
		log_error("%s: the file's name is not valid UTF-8 (byte 0x%02X at offset "
		    "%ld), and the target database records a file's name as text; moved "
		    "to failed/ without loading it: give it a UTF-8 name and move it "
		    "into the spool again", utf8_escape(name, shown, sizeof(shown)),
		    (unsigned char)name[bad], bad);
		move_to(cfg, path, name, "failed");
		return 0;
	}
	if (file_sha256(path, f.sha, &size, err, sizeof(err)) < 0) {
		log_error("%s", err);
		return -1;
	}
	if ((rc = record_file(&f, path, size)) != 0)
		return rc == -1 ? -1 : 0;

	FILE *fp = fopen(path, "rb");
	if (fp == NULL) {
		log_error("%s: %s", path, strerror(errno));
		return -1;
	}
	const struct csvrec_limits lim = {
		.departments = cfg->etl_departments, .min_hire_year = cfg->etl_min_hire_year,
		.max_record_lines = cfg->etl_max_record_lines,
		.max_record_bytes = cfg->etl_max_record_bytes,
	};
	struct csvrec_file *cf = csvrec_file_new(name, f.sha, &lim, err, sizeof(err));
	if (cf == NULL) {
		log_error("%s: %s; retried", name, err);
		fclose(fp);
		return -1;
	}
	f.cf = cf;
	e->acks = (struct kfk_acks){ 0 };
	end = csvrec_read(cf, fp, on_record, on_line, &f, f.err, sizeof(f.err));
	f.cf = NULL;
	csvrec_file_free(cf);
	fclose(fp);
	if (end == CSVREC_FAILED)
		f.error = 1;	/* the reason in f.err */

	if (end == CSVREC_BAD_HEADER) {
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
			log_error("%s: %s; the file resumes from its last checkpoint%s", name,
			    f.err, size_hint(e));
		else
			checkpoint(&f);
		return -1;
	}
	if (checkpoint(&f) < 0) {
		log_error("%s: %s; the file resumes from its last checkpoint%s", name, f.err,
		    size_hint(e));
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
	log_info("%s: done: %s records sent, %s filtered out, %s rejected (in the DLQ)",
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
