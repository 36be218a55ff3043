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
 * is new, and only then adds its salary to the department's total.  The
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
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "db.h"
#include "kafka.h"
#include "log.h"
#include "utf8.h"
#include "worker.h"

#define NCOLS 8
static const char *const header[NCOLS] = {
	"Department", "Department-Division", "PCN", "Position Title",
	"FLSA Status", "Initial Hire Date", "Date in Title", "Salary"
};
enum { COL_DEPT = 0, COL_DIV = 1, COL_TITLE = 3, COL_HIRE = 5, COL_SALARY = 7 };
#define MAX_FIELDS 64		/* kept of a record; more is a wrong column count */
#define DLQ_FIELD_BYTES 16384	/* of a rejected record's fields, all together */
#define DLQ_TEXT_BYTES 4096	/* of the first line of a record rejected whole */

struct etl {
	struct cfg *cfg;
	PGconn *db;
	rd_kafka_t *rk;
	struct kfk_acks acks;	/* of the current file */
};

struct field {
	char *s;		/* NUL-terminated; may hold NUL bytes before len */
	size_t len;
};

/* One file's parse state, fed to libcsv's callbacks. */
struct file_ctx {
	struct etl *e;
	const char *name;
	char sha[65];
	long line;		/* physical lines read */
	off_t off;		/* file offset of the next line */
	long records;		/* records seen, the header included */
	long resume_after;	/* records at or before this line were sent */
	/* the record being read */
	int rec_open;		/* it has begun and not ended */
	long rec_line;		/* its first line: its identity */
	off_t rec_next;		/* offset of the line after its first */
	char *raw;		/* its bytes, etl.max_record_bytes at most */
	size_t raw_len;
	size_t first_len;	/* of its first line, in raw */
	struct field fields[MAX_FIELDS];
	int nfields;
	int overflow;		/* more fields than fit */
	int nul_field;		/* the first field holding a NUL byte, or -1 */
	int reread;		/* rejected whole: read again from rec_next */
	int bad_header;
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
	rd_kafka_resp_err_t x;
	size_t len;

	if (val == NULL) {
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);
		snprintf(err, errlen, "cannot encode a record as JSON: out of memory");
		return PRODUCE_FAILED;
	}
	len = strlen(val);
	while ((x = rd_kafka_producev(e->rk, RD_KAFKA_V_TOPIC(topic),
	    RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, len),
	    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
	    RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
		rd_kafka_poll(e->rk, 50);
	if (x != RD_KAFKA_RESP_ERR_NO_ERROR) {
		free(val);
		if (hdrs != NULL)
			rd_kafka_headers_destroy(hdrs);
		if (x == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE) {
			snprintf(err, errlen, "Kafka refuses the record: %s (%zu bytes of "
			    "JSON, over the producer's message.max.bytes)",
			    rd_kafka_err2str(x), len);
			return PRODUCE_REFUSED;
		}
		snprintf(err, errlen, "produce to %s: %s", topic, rd_kafka_err2str(x));
		return PRODUCE_FAILED;
	}
	e->acks.sent++;
	return PRODUCE_OK;
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

/* The DLQ message's value for the current record: its file, sha256 and
 * line, and its fields, or (whole) the text of its first line, cut to fit
 * (DLQ_FIELD_BYTES, DLQ_TEXT_BYTES; "truncated": true then), bytes that
 * are not UTF-8 as U+FFFD.  NULL when out of memory. */
static json_t *
reject_value(const struct file_ctx *f, int whole)
{
	static char buf[DLQ_FIELD_BYTES + 1];
	json_t *v, *fields;
	int cut = 0;

	v = json_pack("{s:s, s:s, s:I}", "file", f->name, "sha256", f->sha,
	    "line", (json_int_t)f->rec_line);
	if (v == NULL)
		return NULL;
	if (whole) {
		size_t n = f->first_len;
		while (n > 0 && (f->raw[n - 1] == '\n' || f->raw[n - 1] == '\r'))
			n--;
		n = utf8_sanitize(f->raw, n, buf, DLQ_TEXT_BYTES + 1, &cut);
		if (json_object_set_new(v, "text", json_stringn(buf, n)) < 0)
			goto oom;
	} else {
		size_t left = sizeof(buf);
		if ((fields = json_array()) == NULL ||
		    json_object_set_new(v, "fields", fields) < 0)
			goto oom;
		for (int i = 0; i < f->nfields; i++) {
			size_t n = utf8_sanitize(f->fields[i].s, f->fields[i].len, buf,
			    left, &cut);
			if (json_array_append_new(fields, json_stringn(buf, n)) < 0)
				goto oom;
			left -= n;
		}
	}
	if (cut && json_object_set_new(v, "truncated", json_true()) < 0)
		goto oom;
	return v;
oom:
	json_decref(v);
	return NULL;
}

/* Sends the current record to the DLQ topic with why it cannot be loaded:
 * its fields, or, when it was rejected whole (no field of it can be
 * trusted), its first line.  Nothing for a record handled before a
 * restart (at or before resume_after). */
static void
reject(struct file_ctx *f, const char *stage, int whole, const char *reason)
{
	char line[24];
	json_t *v;
	rd_kafka_headers_t *h;
	rd_kafka_resp_err_t x = RD_KAFKA_RESP_ERR_NO_ERROR;

	if (f->rec_line <= f->resume_after)
		return;
	snprintf(line, sizeof(line), "%ld", f->rec_line);
	const char *const hdr[4][2] = {
		{ "__pgrelay.errors.stage", stage }, { "__pgrelay.errors.reason", reason },
		{ "__pgrelay.errors.file", f->name }, { "__pgrelay.errors.line", line },
	};
	h = rd_kafka_headers_new(4);
	for (int i = 0; i < 4 && x == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
		x = rd_kafka_header_add(h, hdr[i][0], -1, hdr[i][1], -1);
	if (x != RD_KAFKA_RESP_ERR_NO_ERROR || (v = reject_value(f, whole)) == NULL) {
		rd_kafka_headers_destroy(h);
		snprintf(f->err, sizeof(f->err), "line %ld: cannot build its DLQ message: %s",
		    f->rec_line, x ? rd_kafka_err2str(x) : "out of memory");
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

/* The current record is dealt with (sent, filtered or rejected): counts
 * it, and checkpoints every etl.batch_size records. */
static void
record_done(struct file_ctx *f)
{
	f->last_line = f->rec_line;
	if (++f->since_checkpoint >= f->e->cfg->etl_batch_size && !f->error &&
	    checkpoint(f) < 0)
		f->error = 1;
}

/* Rejects the current record whole (its bounds or its quoting are wrong,
 * so no field of it can be trusted), and asks for the file to be read
 * again from the line after its first. */
static void
reject_whole(struct file_ctx *f, const char *reason)
{
	f->reread = 1;
	if (f->records == 0) {
		f->bad_header = 1;	/* the header itself */
		return;
	}
	f->records++;
	if (f->rec_line <= f->resume_after)
		return;		/* rejected before a restart */
	reject(f, "parse", 1, reason);
	record_done(f);
}

/* Sends, filters out or rejects one record of the file. */
static void
process_record(struct file_ctx *f)
{
	const struct cfg *cfg = f->e->cfg;
	char date[16], why[sizeof(f->err)], shown[64];
	int year, cut = 0;
	int32_t salary;

	f->records++;
	if (f->records == 1) {
		int ok = f->nfields == NCOLS && !f->overflow;
		for (int i = 0; ok && i < NCOLS; i++)
			ok = strcmp(f->fields[i].s, header[i]) == 0;
		f->bad_header = !ok;
		return;
	}
	if (f->rec_line <= f->resume_after)
		return;		/* sent and acknowledged before a restart */
	if (f->overflow || f->nfields != NCOLS) {
		snprintf(why, sizeof(why), "wrong column count: %d, want %d",
		    f->overflow ? MAX_FIELDS : f->nfields, NCOLS);
		reject(f, "parse", 0, why);
		goto out;
	}
	if (f->nul_field >= 0) {
		snprintf(why, sizeof(why), "NUL byte in %s", header[f->nul_field]);
		reject(f, "parse", 0, why);
		goto out;
	}
	static const int required[] = { COL_DEPT, COL_DIV, COL_TITLE, COL_HIRE, COL_SALARY };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (f->fields[required[i]].len == 0) {
			snprintf(why, sizeof(why), "missing field %s", header[required[i]]);
			reject(f, "parse", 0, why);
			goto out;
		}
	}
	if (parse_hire_date(f->fields[COL_HIRE].s, date, sizeof(date), &year) < 0) {
		utf8_sanitize(f->fields[COL_HIRE].s, f->fields[COL_HIRE].len, shown, 41, &cut);
		snprintf(why, sizeof(why), "bad date \"%s\" in Initial Hire Date "
		    "(want DD-Mon-YYYY)", shown);
		reject(f, "parse", 0, why);
		goto out;
	}
	if (parse_salary(f->fields[COL_SALARY].s, &salary) < 0) {
		utf8_sanitize(f->fields[COL_SALARY].s, f->fields[COL_SALARY].len, shown, 41,
		    &cut);
		snprintf(why, sizeof(why), "bad number \"%s\" in Salary", shown);
		reject(f, "parse", 0, why);
		goto out;
	}
	if (!department_wanted(cfg, f->fields[COL_DEPT].s) || year < cfg->etl_min_hire_year) {
		f->filtered++;
		goto out;
	}
	/* What is sent must be UTF-8: the JSON on the topic, B's text. */
	static const int sent_text[] = { COL_DEPT, COL_DIV, COL_TITLE };
	for (size_t i = 0; i < sizeof(sent_text) / sizeof(sent_text[0]); i++) {
		const struct field *fd = &f->fields[sent_text[i]];
		long at = utf8_invalid_at(fd->s, fd->len);
		if (at >= 0) {
			snprintf(why, sizeof(why), "%s is not valid UTF-8 (byte 0x%02X at "
			    "offset %ld)", header[sent_text[i]], (unsigned char)fd->s[at], at);
			reject(f, "parse", 0, why);
			goto out;
		}
	}
	json_t *v = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:i}",
	    "file", f->name, "sha256", f->sha, "line", (json_int_t)f->rec_line,
	    "department", f->fields[COL_DEPT].s,
	    "department_division", f->fields[COL_DIV].s,
	    "position_title", f->fields[COL_TITLE].s, "hire_date", date,
	    "salary", (int)salary);
	if (v == NULL) {
		snprintf(f->err, sizeof(f->err), "line %ld: cannot encode the record as "
		    "JSON (out of memory?)", f->rec_line);
		f->error = 1;
		return;
	}
	switch (produce_json(f->e, cfg->etl_topic, f->fields[COL_DEPT].s, v, NULL,
	    f->err, sizeof(f->err))) {
	case PRODUCE_OK:
		f->sent++;	/* in etl_files once acknowledged (checkpoint) */
		break;
	case PRODUCE_REFUSED:
		snprintf(why, sizeof(why), "%s", f->err);
		f->err[0] = '\0';
		reject(f, "produce", 0, why);
		break;
	case PRODUCE_FAILED:
		f->error = 1;
		break;
	}
	json_decref(v);
	if (f->error)
		return;
out:
	record_done(f);
}

/* 1 if raw is strictly RFC 4180 (every quote inside a quoted field
 * doubled or closing it, every quoted field closed), 0 if not, -1 out of
 * memory. */
static int
strictly_quoted(const char *raw, size_t len, size_t blk)
{
	struct csv_parser sp;
	int rc;

	if (csv_init(&sp, CSV_STRICT | CSV_STRICT_FINI) != 0)
		return -1;
	csv_set_blk_size(&sp, blk);
	if (csv_parse(&sp, raw, len, NULL, NULL, NULL) != len)
		rc = csv_error(&sp) == CSV_EPARSE ? 0 : -1;
	else
		rc = csv_fini(&sp, NULL, NULL, NULL) == 0 ? 1 : 0;
	csv_free(&sp);
	return rc;
}

static void
free_fields(struct file_ctx *f)
{
	for (int i = 0; i < f->nfields; i++)
		free(f->fields[i].s);
	f->nfields = 0;
	f->overflow = 0;
	f->nul_field = -1;
}

static size_t
csv_blk_size(const struct cfg *cfg)
{
	/* libcsv grows a field's buffer by this much at a time: 128 bytes by
	 * default, and a 2 MB field took minutes of realloc under ASan */
	size_t blk = (size_t)cfg->etl_max_record_bytes / 16;
	return blk < 4096 ? 4096 : blk;
}

static void
on_field(void *data, size_t len, void *opaque)
{
	struct file_ctx *f = opaque;
	const char *s = data ? (const char *)data : "";

	if (f->reread)
		return;		/* the rest of a line read again */
	if (f->nfields >= MAX_FIELDS) {
		f->overflow = 1;
		return;
	}
	if (f->nul_field < 0 && memchr(s, '\0', len) != NULL)
		f->nul_field = f->nfields;
	f->fields[f->nfields].s = malloc(len + 1);
	if (f->fields[f->nfields].s == NULL) {
		snprintf(f->err, sizeof(f->err), "line %ld: out of memory", f->line);
		f->error = 1;
		return;
	}
	memcpy(f->fields[f->nfields].s, s, len);
	f->fields[f->nfields].s[len] = '\0';
	f->fields[f->nfields].len = len;
	f->nfields++;
}

static void
on_record(int term, void *opaque)
{
	struct file_ctx *f = opaque;
	char why[256];

	(void)term;
	if (f->reread)
		return;
	f->rec_open = 0;
	if (f->error || f->bad_header) {
		free_fields(f);
		return;
	}
	if (f->records > 0 && f->line > f->rec_line) {
		/* over several lines: a stray quote may have swallowed them */
		int strict = 1;
		if (f->overflow || f->nfields != NCOLS)
			snprintf(why, sizeof(why), "wrong column count: %d, want %d, "
			    "in a record over lines %ld-%ld: an unbalanced quote?",
			    f->overflow ? MAX_FIELDS : f->nfields, NCOLS, f->rec_line,
			    f->line);
		else if ((strict = strictly_quoted(f->raw, f->raw_len,
		    csv_blk_size(f->e->cfg))) == 0)
			snprintf(why, sizeof(why), "a quote neither doubled nor closing "
			    "its field, in a record over lines %ld-%ld: an unbalanced "
			    "quote?", f->rec_line, f->line);
		if (strict < 0) {
			snprintf(f->err, sizeof(f->err), "line %ld: out of memory", f->line);
			f->error = 1;
		} else if (f->overflow || f->nfields != NCOLS || !strict) {
			reject_whole(f, why);
		} else {
			process_record(f);
		}
	} else {
		process_record(f);
	}
	free_fields(f);
}

/* Reads one line (through its '\n', or to the end of the file) from fp,
 * keeping its first cap bytes in buf (*kept of them).  Returns the line's
 * length, 0 at the end of the file, -1 on a read error. */
static off_t
read_line(FILE *fp, char *buf, size_t cap, size_t *kept)
{
	off_t n = 0;
	int c;

	*kept = 0;
	while ((c = getc_unlocked(fp)) != EOF) {
		if (*kept < cap)
			buf[(*kept)++] = (char)c;
		n++;
		if (c == '\n')
			break;
	}
	return ferror(fp) ? -1 : n;
}

/* A line libcsv skips between records: spaces, tabs, CR and LF only. */
static int
blank(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
			return 0;
	return 1;
}

/* Drops the record being read and the parser's state, and goes back to
 * the line after the record's first. */
static int
read_again(struct file_ctx *f, FILE *fp, struct csv_parser *p)
{
	free_fields(f);
	csv_free(p);
	csv_init(p, CSV_APPEND_NULL);
	csv_set_blk_size(p, csv_blk_size(f->e->cfg));
	if (fseeko(fp, f->rec_next, SEEK_SET) < 0) {
		snprintf(f->err, sizeof(f->err), "seek to line %ld: %s", f->rec_line + 1,
		    strerror(errno));
		f->error = 1;
		return -1;
	}
	f->off = f->rec_next;
	f->line = f->rec_line;
	f->rec_open = 0;
	f->reread = 0;
	return 0;
}

/* Feeds the file to libcsv a line at a time, keeping each record's first
 * line, its bytes and where the line after its first begins, and bounds
 * each record (see Unbalanced quotes in NOTES).  Stops at the end, or on
 * f->error, f->bad_header or a stop. */
static void
parse_file(struct file_ctx *f, FILE *fp, struct csv_parser *p)
{
	const struct cfg *cfg = f->e->cfg;
	const size_t cap = (size_t)cfg->etl_max_record_bytes;
	char why[160];

	while (!f->error && !f->bad_header && !worker_stop) {
		size_t kept;
		if (!f->rec_open)
			f->raw_len = 0;
		char *s = f->raw + f->raw_len;
		off_t n = read_line(fp, s, cap - f->raw_len, &kept);
		if (n < 0) {
			snprintf(f->err, sizeof(f->err), "read after line %ld: %s", f->line,
			    strerror(errno));
			f->error = 1;
			return;
		}
		if (n == 0) {		/* the end of the file */
			/* a record without a final newline, or a quote open */
			csv_fini(p, on_field, on_record, f);
			if (f->reread && read_again(f, fp, p) == 0)
				continue;
			return;
		}
		f->line++;
		f->off += n;
		int whole_line = (off_t)kept == n;
		if (f->line == 1 && kept >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
			memmove(s, s + 3, kept - 3);	/* UTF-8 byte-order mark */
			kept -= 3;
		}
		if (!f->rec_open) {
			if (whole_line && blank(s, kept))
				continue;	/* libcsv skips it too */
			f->rec_open = 1;
			f->rec_line = f->line;
			f->rec_next = f->off;
			f->first_len = kept;
		}
		if (!whole_line) {
			snprintf(why, sizeof(why), "record longer than %d bytes "
			    "(etl.max_record_bytes)%s", cfg->etl_max_record_bytes,
			    f->line > f->rec_line ? ": an unbalanced quote?" : "");
			reject_whole(f, why);
			read_again(f, fp, p);
			continue;
		}
		f->raw_len += kept;
		if (csv_parse(p, s, kept, on_field, on_record, f) != kept && !f->reread) {
			snprintf(f->err, sizeof(f->err), "line %ld: %s", f->line,
			    csv_strerror(csv_error(p)));
			f->error = 1;
			return;
		}
		if (!f->reread && f->rec_open &&
		    f->line - f->rec_line + 1 >= cfg->etl_max_record_lines) {
			snprintf(why, sizeof(why), "record not closed within %d lines "
			    "(etl.max_record_lines): an unbalanced quote?",
			    cfg->etl_max_record_lines);
			reject_whole(f, why);
		}
		if (f->reread && read_again(f, fp, p) < 0)
			return;
		rd_kafka_poll(f->e->rk, 0);
		worker_notify_alive(NULL);
	}
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
	struct file_ctx f = { .e = e, .name = name, .nul_field = -1 };
	struct csv_parser p;
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
	if ((f.raw = malloc((size_t)cfg->etl_max_record_bytes)) == NULL) {
		log_error("%s: out of memory for a record of etl.max_record_bytes (%d); "
		    "retried", name, cfg->etl_max_record_bytes);
		fclose(fp);
		return -1;
	}
	csv_init(&p, CSV_APPEND_NULL);
	csv_set_blk_size(&p, csv_blk_size(cfg));
	e->acks = (struct kfk_acks){ 0 };
	parse_file(&f, fp, &p);
	free_fields(&f);
	csv_free(&p);
	free(f.raw);
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
