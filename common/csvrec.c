/*
 * csvrec.c - CSV records of the ETL pipeline: libcsv's callbacks, the
 * header check, the filter and transform of one record, and their JSON
 * (out of workers/etl_producer.c, so that tests/fuzz/fuzz_csvrec.c
 * reaches them).
 *
 * What it keeps true: a record is handed on only with every field copied
 * (NUL-terminated); a record sent has all five required fields, a real
 * date, a salary that fits an int, and UTF-8 text (JSON, and B, take
 * nothing else); a rejected record's JSON holds every field, bytes that
 * are not UTF-8 shown as U+FFFD; the reader owns the fields and frees them
 * after each record.
 */
#define _POSIX_C_SOURCE 200809L
#include "csvrec.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const csvrec_header[CSVREC_NCOLS] = {
	"Department", "Department-Division", "PCN", "Position Title",
	"FLSA Status", "Initial Hire Date", "Date in Title", "Salary"
};

/* ---- the reader: libcsv's callbacks ----------------------------------- */

static void
record_clear(struct csvrec_record *rec)
{
	for (int i = 0; i < rec->nfields; i++)
		free(rec->fields[i]);
	rec->nfields = 0;
	rec->overflow = 0;
}

static void
on_field(void *data, size_t len, void *opaque)
{
	struct csvrec_reader *r = opaque;
	struct csvrec_record *rec = &r->rec;
	char *copy;

	if (rec->nfields == 0)
		rec->line = r->line;
	if (rec->nfields >= CSVREC_MAX_FIELDS) {
		rec->overflow = 1;
		return;
	}
	copy = strndup(data ? (const char *)data : "", len);
	if (copy == NULL) {
		r->oom = 1;
		return;
	}
	rec->fields[rec->nfields++] = copy;
}

static void
on_record(int term, void *opaque)
{
	struct csvrec_reader *r = opaque;

	(void)term;
	if (!r->oom)
		r->fn(&r->rec, r->opaque);
	record_clear(&r->rec);
}

int
csvrec_reader_init(struct csvrec_reader *r, csvrec_record_fn *fn, void *opaque,
    char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	r->fn = fn;
	r->opaque = opaque;
	if (csv_init(&r->parser, CSV_APPEND_NULL) != 0) {
		snprintf(err, errlen, "cannot set up the CSV parser");
		return -1;
	}
	return 0;
}

int
csvrec_reader_feed(struct csvrec_reader *r, const char *line, size_t len,
    char *err, size_t errlen)
{
	r->line++;
	if (r->line == 1 && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
		line += 3;		/* UTF-8 byte-order mark */
		len -= 3;
	}
	if (csv_parse(&r->parser, line, len, on_field, on_record, r) != len) {
		snprintf(err, errlen, "line %ld: %s", r->line,
		    csv_strerror(csv_error(&r->parser)));
		return -1;
	}
	if (r->oom) {
		snprintf(err, errlen, "line %ld: out of memory", r->line);
		return -1;
	}
	return 0;
}

int
csvrec_reader_finish(struct csvrec_reader *r, char *err, size_t errlen)
{
	/* Without CSV_STRICT_FINI, csv_fini fails only for a NULL parser. */
	if (csv_fini(&r->parser, on_field, on_record, r) != 0 || r->oom) {
		snprintf(err, errlen, "line %ld: %s", r->line, r->oom ? "out of memory" :
		    csv_strerror(csv_error(&r->parser)));
		return -1;
	}
	return 0;
}

void
csvrec_reader_free(struct csvrec_reader *r)
{
	record_clear(&r->rec);
	csv_free(&r->parser);
}

/* ---- one record -------------------------------------------------------- */

int
csvrec_header_ok(const struct csvrec_record *rec)
{
	int ok = rec->nfields == CSVREC_NCOLS && !rec->overflow;

	for (int i = 0; ok && i < CSVREC_NCOLS; i++)
		ok = strcmp(rec->fields[i], csvrec_header[i]) == 0;
	return ok;
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

/* Length of the UTF-8 sequence starting at s (RFC 3629, as jansson checks
 * it: no overlong forms, no surrogates, nothing above U+10FFFF), or 0 if
 * s does not start one.  s is NUL-terminated: a NUL ends any sequence. */
static size_t
utf8_seq(const unsigned char *s)
{
	unsigned lo = 0x80, hi = 0xBF;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xC2 && s[0] <= 0xDF)
		return (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (s[0] >= 0xE0 && s[0] <= 0xEF) {
		if (s[0] == 0xE0)
			lo = 0xA0;		/* overlong */
		if (s[0] == 0xED)
			hi = 0x9F;		/* surrogates */
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
	}
	if (s[0] >= 0xF0 && s[0] <= 0xF4) {
		if (s[0] == 0xF0)
			lo = 0x90;		/* overlong */
		if (s[0] == 0xF4)
			hi = 0x8F;		/* above U+10FFFF */
		return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
		    (s[3] & 0xC0) == 0x80 ? 4 : 0;
	}
	return 0;
}

static int
utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	for (; *p != '\0'; p += n)
		if ((n = utf8_seq(p)) == 0)
			return 0;
	return 1;
}

/* s as a JSON string; each byte that is not part of a UTF-8 sequence
 * becomes U+FFFD, so that jansson takes it.  NULL when out of memory. */
static json_t *
text_json(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	char *buf, *o;
	json_t *j;
	size_t n;

	if (utf8_valid(s))
		return json_string(s);
	buf = malloc(3 * strlen(s) + 1);	/* a byte becomes at most 3 */
	if (buf == NULL)
		return NULL;
	for (o = buf; *p != '\0'; p += n) {
		n = utf8_seq(p);
		if (n == 0) {
			memcpy(o, "\xEF\xBF\xBD", 3);
			o += 3;
			n = 1;
		} else {
			memcpy(o, p, n);
			o += n;
		}
	}
	*o = '\0';
	j = json_string(buf);
	free(buf);
	return j;
}

enum csvrec_verdict
csvrec_transform(const struct csvrec_record *rec, const char *departments,
    int min_hire_year, struct csvrec_row *row, char *why, size_t whylen)
{
	static const int required[] = { CSVREC_COL_DEPT, CSVREC_COL_DIV,
	    CSVREC_COL_TITLE, CSVREC_COL_HIRE, CSVREC_COL_SALARY };
	static const int texts[] = { CSVREC_COL_DEPT, CSVREC_COL_DIV, CSVREC_COL_TITLE };
	char *const *f = rec->fields;

	if (rec->overflow || rec->nfields != CSVREC_NCOLS) {
		snprintf(why, whylen, "wrong column count: %d, want %d",
		    rec->overflow ? CSVREC_MAX_FIELDS : rec->nfields, CSVREC_NCOLS);
		return CSVREC_REJECTED;
	}
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (f[required[i]][0] == '\0') {
			snprintf(why, whylen, "missing field %s", csvrec_header[required[i]]);
			return CSVREC_REJECTED;
		}
	}
	/* Sent as JSON strings: a file in Latin-1, say, must not reach jansson
	 * (it refuses the record, and the file would be retried for ever). */
	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
		if (!utf8_valid(f[texts[i]])) {
			snprintf(why, whylen, "not UTF-8 in %s", csvrec_header[texts[i]]);
			return CSVREC_REJECTED;
		}
	}
	if (parse_hire_date(f[CSVREC_COL_HIRE], row->hire_date, sizeof(row->hire_date),
	    &row->hire_year) < 0) {
		snprintf(why, whylen, "bad date \"%.40s\" in Initial Hire Date "
		    "(want DD-Mon-YYYY)", f[CSVREC_COL_HIRE]);
		return CSVREC_REJECTED;
	}
	if (parse_salary(f[CSVREC_COL_SALARY], &row->salary) < 0) {
		snprintf(why, whylen, "bad number \"%.40s\" in Salary",
		    f[CSVREC_COL_SALARY]);
		return CSVREC_REJECTED;
	}
	if (!department_wanted(departments, f[CSVREC_COL_DEPT]) ||
	    row->hire_year < min_hire_year)
		return CSVREC_FILTERED;
	row->department = f[CSVREC_COL_DEPT];
	row->division = f[CSVREC_COL_DIV];
	row->title = f[CSVREC_COL_TITLE];
	return CSVREC_SEND;
}

json_t *
csvrec_row_json(const struct csvrec_row *row, const char *file, const char *sha256,
    long line)
{
	return json_pack("{s:o, s:s, s:i, s:s, s:s, s:s, s:s, s:i}",
	    "file", text_json(file), "sha256", sha256, "line", (int)line,
	    "department", row->department, "department_division", row->division,
	    "position_title", row->title, "hire_date", row->hire_date,
	    "salary", (int)row->salary);
}

json_t *
csvrec_reject_json(const struct csvrec_record *rec, const char *file,
    const char *sha256)
{
	json_t *fields = json_array();

	for (int i = 0; i < rec->nfields; i++) {
		if (json_array_append_new(fields, text_json(rec->fields[i])) < 0) {
			json_decref(fields);
			return NULL;
		}
	}
	return json_pack("{s:o, s:s, s:i, s:o}", "file", text_json(file),
	    "sha256", sha256, "line", (int)rec->line, "fields", fields);
}
