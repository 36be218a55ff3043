/*
 * csvrec.c - the ETL producer's CSV records (see csvrec.h): a file fed to
 * libcsv a line at a time, each record bounded, checked, filtered and
 * transformed, or rejected with its reason and DLQ value.  Moved out of
 * workers/etl_producer.c (at bb5a2ca) so that the fuzz target runs the
 * code that ships, then fixed where fuzz_csvrec found it wrong: a line
 * ends at a CR alone too; a reason shows a field escaped.
 * etl_producer.c's NOTES (Bad records, Unbalanced quotes) say what a
 * record is and why one is rejected.
 *
 * What it keeps true: a record is handed on with its first line, its
 * identity, which no other record begins on (a line ends wherever libcsv
 * may end a record); no record holds more than max_record_lines lines or
 * max_record_bytes bytes (the memory a file takes); a record sent has 8
 * fields, the 5 required ones set, no NUL byte, a real date, a salary that
 * fits an int and UTF-8 text; a DLQ value fits its bound.
 */
#define _POSIX_C_SOURCE 200809L
#include "csvrec.h"

#include <csv.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "utf8.h"

#define NCOLS CSVREC_NCOLS
#define MAX_FIELDS CSVREC_MAX_FIELDS
#define DLQ_FIELD_BYTES CSVREC_DLQ_FIELD_BYTES
#define DLQ_TEXT_BYTES CSVREC_DLQ_TEXT_BYTES

static const char *const header[NCOLS] = {
	"Department", "Department-Division", "PCN", "Position Title",
	"FLSA Status", "Initial Hire Date", "Date in Title", "Salary"
};
enum { COL_DEPT = 0, COL_DIV = 1, COL_TITLE = 3, COL_HIRE = 5, COL_SALARY = 7 };

struct field {
	char *s;		/* NUL-terminated; may hold NUL bytes before len */
	size_t len;
};

/* One file's parse state, fed to libcsv's callbacks. */
struct csvrec_file {
	char *name;
	char sha[65];
	struct csvrec_limits lim;	/* departments points to ours */
	char *departments;	/* a copy of the caller's */
	FILE *fp;
	struct csv_parser parser;
	int parser_set;		/* csv_init done: csv_free to do */
	int used;		/* csvrec_read called */
	csvrec_fn *fn;
	void *opaque;
	long line;		/* physical lines read */
	off_t off;		/* file offset of the next line */
	long records;		/* records seen, the header included */
	/* the record being read */
	int rec_open;		/* it has begun and not ended */
	long rec_line;		/* its first line: its identity */
	off_t rec_next;		/* offset of the line after its first */
	char *raw;		/* its bytes, max_record_bytes at most */
	size_t raw_len;
	size_t first_len;	/* of its first line, in raw */
	struct field fields[MAX_FIELDS];
	struct csvrec_field shown[MAX_FIELDS];	/* fields, as handed on */
	int nfields;
	int overflow;		/* more fields than fit */
	int nul_field;		/* the first field holding a NUL byte, or -1 */
	int reread;		/* rejected whole: read again from rec_next */
	int bad_header;
	int stopped;		/* fn or tick asked to stop */
	int error;		/* a read, seek or memory failure: stop the file */
	char err[512];
};

struct csvrec_file *
csvrec_file_new(const char *name, const char *sha256, const struct csvrec_limits *lim,
    char *err, size_t errlen)
{
	struct csvrec_file *cf = calloc(1, sizeof(*cf));

	if (cf == NULL || (cf->name = strdup(name)) == NULL ||
	    (cf->departments = strdup(lim->departments)) == NULL) {
		snprintf(err, errlen, "out of memory");
		csvrec_file_free(cf);
		return NULL;
	}
	if (lim->max_record_lines < 1 || lim->max_record_bytes < 1) {
		snprintf(err, errlen, "a record's bounds must be at least 1 line and 1 "
		    "byte (got %d and %d)", lim->max_record_lines, lim->max_record_bytes);
		csvrec_file_free(cf);
		return NULL;
	}
	cf->lim.departments = cf->departments;
	cf->lim.min_hire_year = lim->min_hire_year;
	cf->lim.max_record_lines = lim->max_record_lines;
	cf->lim.max_record_bytes = lim->max_record_bytes;
	snprintf(cf->sha, sizeof(cf->sha), "%s", sha256);
	cf->nul_field = -1;
	if ((cf->raw = malloc((size_t)lim->max_record_bytes)) == NULL) {
		snprintf(err, errlen, "out of memory for a record of etl.max_record_bytes "
		    "(%d)", lim->max_record_bytes);
		csvrec_file_free(cf);
		return NULL;
	}
	return cf;
}

static void
free_fields(struct csvrec_file *cf)
{
	for (int i = 0; i < cf->nfields; i++)
		free(cf->fields[i].s);
	cf->nfields = 0;
	cf->overflow = 0;
	cf->nul_field = -1;
}

void
csvrec_file_free(struct csvrec_file *cf)
{
	if (cf == NULL)
		return;
	free_fields(cf);
	if (cf->parser_set)
		csv_free(&cf->parser);
	free(cf->raw);
	free(cf->departments);
	free(cf->name);
	free(cf);
}

/* ---- one record -------------------------------------------------------- */

/* "10-Sep-1984" (slen bytes, exactly DD-Mon-YYYY: no sign, no space, no
 * NUL inside) -> "1984-09-10"; -1 if it is not such a date. */
static int
parse_hire_date(const char *s, size_t slen, char *out, size_t len, int *year)
{
	static const char *const mon[] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	int d, y, n = 0, m = -1;
	char ms[4];

	if (slen != 11 || strlen(s) != 11 || s[2] != '-' || s[6] != '-')
		return -1;
	for (int i = 0; i < 11; i++)
		if (i != 2 && i != 6 && !(i >= 3 && i <= 5) && (s[i] < '0' || s[i] > '9'))
			return -1;
	if (sscanf(s, "%2d-%3[A-Za-z]-%4d%n", &d, ms, &y, &n) != 3 || n != 11)
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

static int
department_wanted(const char *departments, const char *dept)
{
	const char *p = departments;
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

/* A record handed on: its first and last line, its size, its fields. */
static void
record_init(const struct csvrec_file *cf, struct csvrec *rec, int with_fields)
{
	*rec = (struct csvrec){ .line = cf->rec_line, .last_line = cf->line,
	    .bytes = cf->raw_len };
	if (with_fields) {
		rec->fields = cf->shown;
		rec->nfields = cf->nfields;
		rec->overflow = cf->overflow;
	}
}

static void
hand_on(struct csvrec_file *cf, const struct csvrec *rec)
{
	if (cf->fn(rec, cf->opaque) < 0)
		cf->stopped = 1;
}

/* Checks, filters and transforms one record of the file, and hands it on;
 * the first is the header, checked and kept to ourselves. */
static void
process_record(struct csvrec_file *cf)
{
	char why[512], shown[64];
	struct csvrec rec;

	cf->records++;
	if (cf->records == 1) {
		int ok = cf->nfields == NCOLS && !cf->overflow;
		for (int i = 0; ok && i < NCOLS; i++)
			ok = strcmp(cf->fields[i].s, header[i]) == 0;
		cf->bad_header = !ok;
		return;
	}
	record_init(cf, &rec, 1);
	rec.verdict = CSVREC_REJECTED;
	rec.reason = why;
	if (cf->overflow || cf->nfields != NCOLS) {
		snprintf(why, sizeof(why), "wrong column count: %d, want %d",
		    cf->overflow ? MAX_FIELDS : cf->nfields, NCOLS);
		goto out;
	}
	if (cf->nul_field >= 0) {
		snprintf(why, sizeof(why), "NUL byte in %s", header[cf->nul_field]);
		goto out;
	}
	static const int required[] = { COL_DEPT, COL_DIV, COL_TITLE, COL_HIRE, COL_SALARY };
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (cf->fields[required[i]].len == 0) {
			snprintf(why, sizeof(why), "missing field %s", header[required[i]]);
			goto out;
		}
	}
	if (parse_hire_date(cf->fields[COL_HIRE].s, cf->fields[COL_HIRE].len,
	    rec.hire_date, sizeof(rec.hire_date),
	    &rec.hire_year) < 0) {
		/* the field shown on one line (a header, a log line): no NUL
		 * byte in it by now; control characters and bytes that are not
		 * UTF-8 as \xNN, 40 bytes at most */
		snprintf(why, sizeof(why), "bad date \"%s\" in Initial Hire Date "
		    "(want DD-Mon-YYYY)", utf8_escape(cf->fields[COL_HIRE].s, shown, 41));
		goto out;
	}
	if (parse_salary(cf->fields[COL_SALARY].s, &rec.salary) < 0) {
		snprintf(why, sizeof(why), "bad number \"%s\" in Salary",
		    utf8_escape(cf->fields[COL_SALARY].s, shown, 41));
		goto out;
	}
	rec.reason = NULL;
	if (!department_wanted(cf->lim.departments, cf->fields[COL_DEPT].s) ||
	    rec.hire_year < cf->lim.min_hire_year) {
		rec.verdict = CSVREC_FILTERED;
		goto out;
	}
	/* What is sent must be UTF-8: the JSON on the topic, B's text. */
	static const int sent_text[] = { COL_DEPT, COL_DIV, COL_TITLE };
	for (size_t i = 0; i < sizeof(sent_text) / sizeof(sent_text[0]); i++) {
		const struct field *fd = &cf->fields[sent_text[i]];
		long at = utf8_invalid_at(fd->s, fd->len);
		if (at >= 0) {
			snprintf(why, sizeof(why), "%s is not valid UTF-8 (byte 0x%02X at "
			    "offset %ld)", header[sent_text[i]], (unsigned char)fd->s[at], at);
			rec.reason = why;
			goto out;
		}
	}
	rec.verdict = CSVREC_SEND;
	rec.department = cf->fields[COL_DEPT].s;
	rec.division = cf->fields[COL_DIV].s;
	rec.title = cf->fields[COL_TITLE].s;
out:
	hand_on(cf, &rec);
}

/* Rejects the current record whole (its bounds or its quoting are wrong,
 * so no field of it can be trusted), and asks for the file to be read
 * again from the line after its first. */
static void
reject_whole(struct csvrec_file *cf, const char *reason)
{
	struct csvrec rec;

	cf->reread = 1;
	if (cf->records == 0) {
		cf->bad_header = 1;	/* the header itself */
		return;
	}
	cf->records++;
	record_init(cf, &rec, 0);
	rec.verdict = CSVREC_REJECTED_WHOLE;
	rec.reason = reason;
	hand_on(cf, &rec);
}

json_t *
csvrec_value(const struct csvrec_file *cf, const struct csvrec *rec)
{
	return json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:i}",
	    "file", cf->name, "sha256", cf->sha, "line", (json_int_t)rec->line,
	    "department", rec->department, "department_division", rec->division,
	    "position_title", rec->title, "hire_date", rec->hire_date,
	    "salary", (int)rec->salary);
}

json_t *
csvrec_dlq_value(const struct csvrec_file *cf, const struct csvrec *rec)
{
	static char buf[DLQ_FIELD_BYTES + 1];
	json_t *v, *fields;
	int cut = 0;

	v = json_pack("{s:s, s:s, s:I}", "file", cf->name, "sha256", cf->sha,
	    "line", (json_int_t)rec->line);
	if (v == NULL)
		return NULL;
	if (rec->verdict == CSVREC_REJECTED_WHOLE) {
		size_t n = cf->first_len;
		while (n > 0 && (cf->raw[n - 1] == '\n' || cf->raw[n - 1] == '\r'))
			n--;
		n = utf8_sanitize(cf->raw, n, buf, DLQ_TEXT_BYTES + 1, &cut);
		if (json_object_set_new(v, "text", json_stringn(buf, n)) < 0)
			goto oom;
	} else {
		size_t left = sizeof(buf);
		if ((fields = json_array()) == NULL ||
		    json_object_set_new(v, "fields", fields) < 0)
			goto oom;
		for (int i = 0; i < rec->nfields; i++) {
			size_t n = utf8_sanitize(rec->fields[i].s, rec->fields[i].len, buf,
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

/* ---- the file: libcsv, a line at a time -------------------------------- */

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

static size_t
csv_blk_size(const struct csvrec_file *cf)
{
	/* libcsv grows a field's buffer by this much at a time: 128 bytes by
	 * default, and a 2 MB field took minutes of realloc under ASan */
	size_t blk = (size_t)cf->lim.max_record_bytes / 16;
	return blk < 4096 ? 4096 : blk;
}

static void
on_field(void *data, size_t len, void *opaque)
{
	struct csvrec_file *cf = opaque;
	const char *s = data ? (const char *)data : "";

	if (cf->reread)
		return;		/* the rest of a line read again */
	if (cf->nfields >= MAX_FIELDS) {
		cf->overflow = 1;
		return;
	}
	if (cf->nul_field < 0 && memchr(s, '\0', len) != NULL)
		cf->nul_field = cf->nfields;
	cf->fields[cf->nfields].s = malloc(len + 1);
	if (cf->fields[cf->nfields].s == NULL) {
		snprintf(cf->err, sizeof(cf->err), "line %ld: out of memory", cf->line);
		cf->error = 1;
		return;
	}
	memcpy(cf->fields[cf->nfields].s, s, len);
	cf->fields[cf->nfields].s[len] = '\0';
	cf->fields[cf->nfields].len = len;
	cf->shown[cf->nfields] = (struct csvrec_field){ cf->fields[cf->nfields].s, len };
	cf->nfields++;
}

static void
on_record(int term, void *opaque)
{
	struct csvrec_file *cf = opaque;
	char why[256];

	(void)term;
	if (cf->reread)
		return;
	cf->rec_open = 0;
	if (cf->error || cf->stopped || cf->bad_header) {
		free_fields(cf);
		return;
	}
	if (cf->records > 0 && cf->line > cf->rec_line) {
		/* over several lines: a stray quote may have swallowed them */
		int strict = 1;
		if (cf->overflow || cf->nfields != NCOLS)
			snprintf(why, sizeof(why), "wrong column count: %d, want %d, "
			    "in a record over lines %ld-%ld: an unbalanced quote?",
			    cf->overflow ? MAX_FIELDS : cf->nfields, NCOLS, cf->rec_line,
			    cf->line);
		else if ((strict = strictly_quoted(cf->raw, cf->raw_len,
		    csv_blk_size(cf))) == 0)
			snprintf(why, sizeof(why), "a quote neither doubled nor closing "
			    "its field, in a record over lines %ld-%ld: an unbalanced "
			    "quote?", cf->rec_line, cf->line);
		if (strict < 0) {
			snprintf(cf->err, sizeof(cf->err), "line %ld: out of memory", cf->line);
			cf->error = 1;
		} else if (cf->overflow || cf->nfields != NCOLS || !strict) {
			reject_whole(cf, why);
		} else {
			process_record(cf);
		}
	} else {
		process_record(cf);
	}
	free_fields(cf);
}

/* Reads one line from fp, through its end: "\n", "\r\n", or a "\r" alone
 * (libcsv ends a record at a CR or an LF: were a lone CR inside a line,
 * two records would begin on one line and share an identity; Python's
 * csv counts lines so too), or to the end of the file; keeps its first
 * cap bytes in buf (*kept of them).  Returns the line's length, 0 at the
 * end of the file, -1 on a read error. */
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
		if (c == '\r') {
			if ((c = getc_unlocked(fp)) == '\n') {
				if (*kept < cap)
					buf[(*kept)++] = (char)c;
				n++;
			} else if (c != EOF && ungetc(c, fp) == EOF) {
				return -1;
			}
			break;
		}
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

static void
parser_init(struct csvrec_file *cf)
{
	/* csv_init fails for a NULL parser only */
	(void)csv_init(&cf->parser, CSV_APPEND_NULL);
	csv_set_blk_size(&cf->parser, csv_blk_size(cf));
	cf->parser_set = 1;
}

/* Drops the record being read and the parser's state, and goes back to
 * the line after the record's first. */
static int
read_again(struct csvrec_file *cf)
{
	free_fields(cf);
	csv_free(&cf->parser);
	parser_init(cf);
	if (fseeko(cf->fp, cf->rec_next, SEEK_SET) < 0) {
		snprintf(cf->err, sizeof(cf->err), "seek to line %ld: %s", cf->rec_line + 1,
		    strerror(errno));
		cf->error = 1;
		return -1;
	}
	cf->off = cf->rec_next;
	cf->line = cf->rec_line;
	cf->rec_open = 0;
	cf->reread = 0;
	return 0;
}

/* Feeds the file to libcsv a line at a time, keeping each record's first
 * line, its bytes and where the line after its first begins, and bounds
 * each record (see Unbalanced quotes in etl_producer.c's NOTES).  Stops
 * at the end, or on an error, a bad header or a stop. */
static void
parse_file(struct csvrec_file *cf, csvrec_tick_fn *tick)
{
	const size_t cap = (size_t)cf->lim.max_record_bytes;
	char why[160];

	while (!cf->error && !cf->stopped && !cf->bad_header) {
		size_t kept;
		if (tick != NULL && tick(cf->opaque) != 0) {
			cf->stopped = 1;
			return;
		}
		if (!cf->rec_open)
			cf->raw_len = 0;
		char *s = cf->raw + cf->raw_len;
		off_t n = read_line(cf->fp, s, cap - cf->raw_len, &kept);
		if (n < 0) {
			snprintf(cf->err, sizeof(cf->err), "read after line %ld: %s", cf->line,
			    strerror(errno));
			cf->error = 1;
			return;
		}
		if (n == 0) {		/* the end of the file */
			/* a record without a final newline, or a quote open;
			 * csv_fini fails for a NULL parser or CSV_STRICT_FINI only */
			(void)csv_fini(&cf->parser, on_field, on_record, cf);
			if (cf->reread && read_again(cf) == 0)
				continue;
			return;
		}
		cf->line++;
		cf->off += n;
		int whole_line = (off_t)kept == n;
		if (cf->line == 1 && kept >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) {
			memmove(s, s + 3, kept - 3);	/* UTF-8 byte-order mark */
			kept -= 3;
		}
		if (!cf->rec_open) {
			if (whole_line && blank(s, kept))
				continue;	/* libcsv skips it too */
			cf->rec_open = 1;
			cf->rec_line = cf->line;
			cf->rec_next = cf->off;
			cf->first_len = kept;
		}
		if (!whole_line) {
			snprintf(why, sizeof(why), "record longer than %d bytes "
			    "(etl.max_record_bytes)%s", cf->lim.max_record_bytes,
			    cf->line > cf->rec_line ? ": an unbalanced quote?" : "");
			cf->raw_len += kept;	/* for what is handed on */
			reject_whole(cf, why);
			if (read_again(cf) < 0)
				return;
			continue;
		}
		cf->raw_len += kept;
		if (csv_parse(&cf->parser, s, kept, on_field, on_record, cf) != kept &&
		    !cf->reread) {
			snprintf(cf->err, sizeof(cf->err), "line %ld: %s", cf->line,
			    csv_strerror(csv_error(&cf->parser)));
			cf->error = 1;
			return;
		}
		if (!cf->reread && cf->rec_open &&
		    cf->line - cf->rec_line + 1 >= cf->lim.max_record_lines) {
			snprintf(why, sizeof(why), "record not closed within %d lines "
			    "(etl.max_record_lines): an unbalanced quote?",
			    cf->lim.max_record_lines);
			reject_whole(cf, why);
		}
		if (cf->reread && read_again(cf) < 0)
			return;
	}
}

enum csvrec_end
csvrec_read(struct csvrec_file *cf, FILE *fp, csvrec_fn *fn, csvrec_tick_fn *tick,
    void *opaque, char *err, size_t errlen)
{
	if (cf->used) {
		snprintf(err, errlen, "csvrec_read: a reader reads one file, once");
		return CSVREC_FAILED;
	}
	cf->used = 1;
	cf->fp = fp;
	cf->fn = fn;
	cf->opaque = opaque;
	parser_init(cf);
	parse_file(cf, tick);
	free_fields(cf);
	if (cf->bad_header)
		return CSVREC_BAD_HEADER;
	if (cf->error) {
		snprintf(err, errlen, "%s", cf->err);
		return CSVREC_FAILED;
	}
	return cf->stopped ? CSVREC_STOPPED : CSVREC_END;
}
