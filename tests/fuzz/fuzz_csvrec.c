/*
 * fuzz_csvrec.c - libFuzzer target for the ETL producer's CSV records
 * (common/csvrec.c, the code workers/etl_producer.c runs).  The input is
 * a file, read through csvrec_read as the producer reads a file of the
 * spool, with the shipped filter (ECC, CIT, EMS; hired from 2010) and
 * small bounds, twice: 4 lines and 512 bytes, then 2 lines and 96 bytes,
 * so that records over several lines, over the bounds and read again are
 * common.  When it holds DEL bytes (0x7F, 12 at most) it is read a third
 * time with each as 4 KB of 'x' and bounds of 4 lines and 32 KB, so that
 * DLQ values are cut (16 KB of fields, 4 KB of a line) by inputs small
 * enough to mutate fast.  The input's lines are found here, apart from
 * the reader.  A broken invariant calls abort().
 *
 * Every record: its first line within the file, above the one before's
 * and after the last line of the last record not rejected whole; its
 * last line at most max_record_lines on; at most max_record_bytes kept;
 * a reason, when rejected, that is one line of UTF-8 without control
 * characters.
 * Sent: 8 fields, no NUL byte, a wanted department, a real date
 * ("YYYY-MM-DD", the day, month and year the field names, from 2010 on),
 * a salary >= 0 that is the field's integer part, a topic value that is
 * valid UTF-8 JSON holding exactly those, and a DLQ value as a rejected
 * record's (the producer sends it when Kafka refuses the record).
 * Filtered: 8 fields, a real date, the department not wanted or the year
 * before 2010.
 * Rejected: a reason, and a DLQ value within CSVREC_DLQ_JSON_MAX holding
 * each field (rejected whole: the record's first line as the file has
 * it, without its line end), bytes that are not UTF-8 as U+FFFD, cut only
 * when marked truncated, and then to 16 KB of fields (4 KB of the line).
 * The file: in one without a quote every line but blank ones and the
 * header's is a record handed on (none lost); a bad header hands nothing
 * on; the read never fails (fmemopen cannot) and reads a line at most
 * (max_record_lines + 1) times.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvrec.h"
#include "utf8.h"

#define NAME "fuzz.csv"
#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct line {
	const char *s;
	size_t len;		/* through its end */
};

struct run {
	const struct csvrec_file *cf;
	const struct csvrec_limits *lim;
	const struct line *lines;
	long nlines;
	long prev;		/* the last record's first line (the header's: 1 or more) */
	long prev_end;		/* the last line of the last record not rejected whole */
	char *handed;		/* [line]: a record began there */
	long ticks;
	long records;
	char *buf;		/* for utf8_sanitize */
	size_t buflen;
};

static const char *const months[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* s sanitized whole: every byte that is not UTF-8 as U+FFFD. */
static const char *
sanitized(struct run *run, const char *s, size_t len, size_t *outlen)
{
	int cut = 0;

	if (run->buflen < 3 * len + 1) {
		free(run->buf);
		run->buflen = 3 * len + 1;
		if ((run->buf = malloc(run->buflen)) == NULL)
			abort();
	}
	*outlen = utf8_sanitize(s, len, run->buf, run->buflen, &cut);
	if (cut)
		abort();
	return run->buf;
}

static int
wanted(const char *departments, const char *dept)
{
	size_t n = strlen(dept);

	for (const char *p = departments; *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		if (len == n && memcmp(p, dept, n) == 0)
			return 1;
		p += len + (comma != NULL);
	}
	return 0;
}

static int
digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* "YYYY-MM-DD", a day of the Gregorian calendar, matching the field
 * ("DD-Mon-YYYY" as the producer reads it). */
static void
check_date(const struct csvrec *rec)
{
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	const char *d = rec->hire_date, *f = rec->fields[5].s;
	int y, m, day;

	if (strlen(d) != 10 || !digits(d, 4) || d[4] != '-' || !digits(d + 5, 2) ||
	    d[7] != '-' || !digits(d + 8, 2))
		abort();
	y = atoi(d);
	m = atoi(d + 5);
	day = atoi(d + 8);
	if (y < 1 || m < 1 || m > 12 || day < 1 || day > mdays[m - 1] ||
	    (m == 2 && day == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
		abort();
	if (y != rec->hire_year)
		abort();
	if (rec->fields[5].len != 11 || f[2] != '-' || f[6] != '-' ||
	    memcmp(f + 3, months[m - 1], 3) != 0 || atoi(f) != day || atoi(f + 7) != y)
		abort();
}

/* The field's integer part, 123 of "0123.45"; -1 if it is not a
 * non-negative decimal, -2 if it is above INT32_MAX. */
static long long
salary_of(const struct csvrec_field *f)
{
	long long v = 0;
	size_t i = 0;

	if (f->len == 0 || f->s[0] < '0' || f->s[0] > '9')
		return -1;
	for (; i < f->len && f->s[i] >= '0' && f->s[i] <= '9'; i++)
		if ((v = v * 10 + (f->s[i] - '0')) > INT32_MAX)
			return -2;
	if (i < f->len && (f->s[i] != '.' || i + 1 == f->len ||
	    !digits(f->s + i + 1, f->len - i - 1)))
		return -1;
	return v;
}

static void
check_sent(struct run *run, const struct csvrec *rec)
{
	json_t *v, *back;
	char *dump;
	long long salary = salary_of(&rec->fields[7]);

	if (rec->nfields != CSVREC_NCOLS || rec->overflow)
		abort();
	for (int i = 0; i < rec->nfields; i++)
		if (memchr(rec->fields[i].s, '\0', rec->fields[i].len) != NULL)
			abort();
	if (rec->department != rec->fields[0].s || rec->division != rec->fields[1].s ||
	    rec->title != rec->fields[3].s || !wanted(run->lim->departments, rec->department))
		abort();
	check_date(rec);
	if (rec->hire_year < run->lim->min_hire_year)
		abort();
	if (rec->salary < 0 || salary != rec->salary)
		abort();
	if ((v = csvrec_value(run->cf, rec)) == NULL ||
	    (dump = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
		abort();
	if (utf8_invalid_at(dump, strlen(dump)) >= 0 ||
	    (back = json_loads(dump, 0, NULL)) == NULL)
		abort();
	if (strcmp(json_string_value(json_object_get(back, "file")), NAME) != 0 ||
	    strcmp(json_string_value(json_object_get(back, "sha256")), SHA) != 0 ||
	    json_integer_value(json_object_get(back, "line")) != rec->line ||
	    strcmp(json_string_value(json_object_get(back, "department")),
	    rec->fields[0].s) != 0 ||
	    strcmp(json_string_value(json_object_get(back, "department_division")),
	    rec->fields[1].s) != 0 ||
	    strcmp(json_string_value(json_object_get(back, "position_title")),
	    rec->fields[3].s) != 0 ||
	    strcmp(json_string_value(json_object_get(back, "hire_date")),
	    rec->hire_date) != 0 ||
	    json_integer_value(json_object_get(back, "salary")) != rec->salary ||
	    json_object_size(back) != 8)
		abort();
	json_decref(back);
	free(dump);
	json_decref(v);
}

static void
check_filtered(struct run *run, const struct csvrec *rec)
{
	if (rec->nfields != CSVREC_NCOLS || rec->overflow)
		abort();
	check_date(rec);
	if (wanted(run->lim->departments, rec->fields[0].s) &&
	    rec->hire_year >= run->lim->min_hire_year)
		abort();
}

/* got (a JSON string) is want[0, wantlen): whole, or, when cut, a prefix
 * of it.  Returns 1 when it is shorter. */
static int
same_or_prefix(const json_t *got, const char *want, size_t wantlen, int cut)
{
	size_t len = json_string_length(got);

	if (!json_is_string(got) || len > wantlen ||
	    memcmp(json_string_value(got), want, len) != 0)
		abort();
	if (len < wantlen && !cut)
		abort();
	return len < wantlen;
}

/* rec's DLQ value: of a record rejected, or of one sent that Kafka
 * refuses (the producer then sends this). */
static void
check_dlq(struct run *run, const struct csvrec *rec)
{
	json_t *v, *fields, *text;
	int cut;
	char *dump;
	size_t n;
	const char *s;

	if ((v = csvrec_dlq_value(run->cf, rec)) == NULL ||
	    (dump = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL)
		abort();
	if (strlen(dump) > CSVREC_DLQ_JSON_MAX(strlen(NAME)) ||
	    utf8_invalid_at(dump, strlen(dump)) >= 0)
		abort();
	free(dump);
	if (json_integer_value(json_object_get(v, "line")) != rec->line)
		abort();
	cut = json_is_true(json_object_get(v, "truncated"));
	fields = json_object_get(v, "fields");
	text = json_object_get(v, "text");
	if (rec->verdict != CSVREC_REJECTED_WHOLE) {
		size_t total = 0;
		int shorter = 0;
		if (text != NULL || json_array_size(fields) != (size_t)rec->nfields)
			abort();
		for (int i = 0; i < rec->nfields; i++) {
			s = sanitized(run, rec->fields[i].s, rec->fields[i].len, &n);
			shorter |= same_or_prefix(json_array_get(fields, i), s, n, cut);
			total += json_string_length(json_array_get(fields, i));
		}
		if (total > CSVREC_DLQ_FIELD_BYTES || (cut && !shorter))
			abort();
	} else {
		/* its first line as the file has it (not line 1, the header's:
		 * no byte-order mark), its line end off, and no more of it than
		 * the reader keeps */
		const struct line *l = &run->lines[rec->line - 1];
		const char *p = l->s;
		size_t len = l->len;
		if (len > (size_t)run->lim->max_record_bytes)
			len = (size_t)run->lim->max_record_bytes;
		while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
			len--;
		if (fields != NULL || rec->nfields != 0)
			abort();
		s = sanitized(run, p, len, &n);
		if (same_or_prefix(text, s, n, cut) != cut ||
		    json_string_length(text) > CSVREC_DLQ_TEXT_BYTES)
			abort();
	}
	json_decref(v);
}

static void
check_rejected(struct run *run, const struct csvrec *rec)
{
	if (rec->reason == NULL || rec->reason[0] == '\0')
		abort();
	check_dlq(run, rec);
}

static int
on_record(const struct csvrec *rec, void *opaque)
{
	struct run *run = opaque;
	size_t total = 0;

	run->records++;
	if (rec->line <= run->prev || rec->line > run->nlines || rec->last_line < rec->line ||
	    rec->last_line > run->nlines ||
	    rec->last_line - rec->line + 1 > run->lim->max_record_lines ||
	    rec->bytes > (size_t)run->lim->max_record_bytes)
		abort();
	run->prev = rec->line;
	/* a record read to its end holds its lines: the next begins after */
	if (rec->line <= run->prev_end)
		abort();
	if (rec->verdict != CSVREC_REJECTED_WHOLE)
		run->prev_end = rec->last_line;
	run->handed[rec->line] = 1;
	if (rec->nfields < 0 || rec->nfields > CSVREC_MAX_FIELDS ||
	    (rec->overflow && rec->nfields != CSVREC_MAX_FIELDS))
		abort();
	for (int i = 0; i < rec->nfields; i++) {
		if (rec->fields[i].s == NULL || rec->fields[i].s[rec->fields[i].len] != '\0')
			abort();
		total += rec->fields[i].len;
	}
	if (total > rec->bytes)
		abort();
	if (rec->reason != NULL) {
		/* one line of UTF-8: a Kafka header, a log line */
		if (utf8_invalid_at(rec->reason, strlen(rec->reason)) >= 0)
			abort();
		for (const char *p = rec->reason; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7F)
				abort();
	}
	switch (rec->verdict) {
	case CSVREC_SEND:
		check_sent(run, rec);
		check_dlq(run, rec);
		break;
	case CSVREC_FILTERED:
		check_filtered(run, rec);
		break;
	case CSVREC_REJECTED:
	case CSVREC_REJECTED_WHOLE:
		check_rejected(run, rec);
		break;
	default:
		abort();
	}
	return 0;
}

static int
on_tick(void *opaque)
{
	struct run *run = opaque;

	/* each line is read at most once for each record that may begin in
	 * the max_record_lines lines up to it, the end once after each */
	if (++run->ticks > (run->nlines + 1) * (run->lim->max_record_lines + 1) + 1)
		abort();
	return 0;
}

static void
read_input(const char *data, size_t size, const struct csvrec_limits *lim,
    const struct line *lines, long nlines)
{
	struct run run = { .lim = lim, .lines = lines, .nlines = nlines, .prev = 1 };
	long header = 0;
	char err[256];
	struct csvrec_file *cf;
	enum csvrec_end end;
	FILE *fp;

	/* glibc's fmemopen takes no empty buffer: read a byte of one and stop */
	if ((fp = fmemopen((void *)(size ? data : "\n"), size ? size : 1, "rb")) == NULL)
		abort();
	if (size == 0 && getc(fp) != '\n')
		abort();
	if ((cf = csvrec_file_new(NAME, SHA, lim, err, sizeof(err))) == NULL ||
	    (run.handed = calloc((size_t)nlines + 2, 1)) == NULL)
		abort();
	run.cf = cf;
	end = csvrec_read(cf, fp, on_record, on_tick, &run, err, sizeof(err));
	if (end != CSVREC_END && end != CSVREC_BAD_HEADER)
		abort();
	if (end == CSVREC_BAD_HEADER && run.records != 0)
		abort();
	/* Without a quote a record is a line: each line but blank ones (as
	 * libcsv skips them) and the header's is handed on, none is lost. */
	if (end == CSVREC_END && memchr(data, '"', size) == NULL) {
		for (long i = 1; i <= nlines; i++) {
			const struct line *l = &lines[i - 1];
			size_t j = i == 1 && l->len >= 3 && memcmp(l->s, "\xEF\xBB\xBF", 3) == 0 ?
			    3 : 0;
			int blank = 1;
			for (; j < l->len && blank; j++)
				blank = l->s[j] == ' ' || l->s[j] == '\t' || l->s[j] == '\r' ||
				    l->s[j] == '\n';
			if (blank)
				continue;
			if (header == 0)
				header = i;
			else if (!run.handed[i])
				abort();
		}
	}
	csvrec_file_free(cf);
	fclose(fp);
	free(run.buf);
	free(run.handed);
}

/* Reads the file s[0, size) with each of lim, learning its lines first. */
static void
read_file(const char *s, size_t size, const struct csvrec_limits *lim, size_t nlim)
{
	const char *end = s + size;
	struct line *lines;
	long n = 0;

	/* the file's lines, each through its end, "\n", "\r\n" or "\r" (the
	 * last may have none): where libcsv may end a record */
	if ((lines = malloc((size + 1) * sizeof(*lines))) == NULL)
		abort();
	for (const char *p = s; p < end; n++) {
		const char *e = p;
		while (e < end && *e != '\n' && *e != '\r')
			e++;
		if (e < end)
			e += (*e == '\r' && e + 1 < end && e[1] == '\n') ? 2 : 1;
		lines[n] = (struct line){ p, (size_t)(e - p) };
		p = e;
	}
	for (size_t i = 0; i < nlim; i++)
		read_input(s, size, &lim[i], lines, n);
	free(lines);
}

#define GROW 4096		/* bytes of 'x' a DEL byte becomes, third pass */
#define GROW_MAX 12		/* DEL bytes grown at most: 48 KB */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct csvrec_limits small[] = {
		{ .departments = "ECC,CIT,EMS", .min_hire_year = 2010,
		  .max_record_lines = 4, .max_record_bytes = 512 },
		{ .departments = "ECC,CIT,EMS", .min_hire_year = 2010,
		  .max_record_lines = 2, .max_record_bytes = 96 },
	};
	static const struct csvrec_limits large = {
		.departments = "ECC,CIT,EMS", .min_hire_year = 2010,
		.max_record_lines = 4, .max_record_bytes = 32768,
	};
	const char *s = (const char *)data;
	size_t dels = 0;

	read_file(s, size, small, 2);
	for (size_t i = 0; i < size; i++)
		dels += data[i] == 0x7F;
	if (dels == 0 || dels > GROW_MAX)
		return 0;
	char *big = malloc(size + dels * (GROW - 1)), *o = big;
	if (big == NULL)
		abort();
	for (size_t i = 0; i < size; i++) {
		if (data[i] == 0x7F) {
			memset(o, 'x', GROW);
			o += GROW;
		} else {
			*o++ = s[i];
		}
	}
	read_file(big, (size_t)(o - big), &large, 1);
	free(big);
	return 0;
}
