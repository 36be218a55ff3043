/*
 * test_csvrec.c - the ETL producer's CSV records (common/csvrec.c), read
 * as the producer reads them, record by record: tests/integration/
 * 100_etl.t's crafted file (BOM, CRLF, quotes, an embedded newline, no
 * final newline); each poison file of 105_etl_poison.t, built as that test
 * builds it (a record not in UTF-8, NUL bytes, stray quotes, a 2 MB
 * record, the resume past a stray quote), with what it asserts: the
 * record's line and reason, the lines sent, the DLQ value and its size;
 * the shipped data set's counts and salary totals against figures computed
 * independently (Python's csv), and test 100's 20 copies of it.  What
 * test 100 and 105 check of Kafka and B (the DLQ's headers, the counts in
 * etl_files, the totals on B) is the producer's, and theirs.
 * Run from the repository's root (data/Employee_Salaries.csv).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvrec.h"
#include "tap.h"

#define HEADER "Department,Department-Division,PCN,Position Title,FLSA Status," \
	"Initial Hire Date,Date in Title,Salary"

/* The defaults of etl.* (config.c). */
static const struct csvrec_limits defaults = {
	.departments = "ECC,CIT,EMS", .min_hire_year = 2010,
	.max_record_lines = 10, .max_record_bytes = 65536,
};

/* What was handed on of one record. */
struct seen_rec {
	long line, last_line;
	enum csvrec_verdict verdict;
	char reason[256];
	char row[256];		/* SEND: department|division|title|date|salary */
	char *json;		/* SEND: the topic's value; REJECTED*: the DLQ's */
	size_t json_len;
	long long salary;
	char dept[8];
};

struct seen {
	const struct csvrec_file *cf;
	struct seen_rec *r;
	int n, cap;
	long resume_after;	/* as the producer: nothing at or before it */
	int bad_json;		/* a value that could not be built */
	int order;		/* a first line not above the one before */
};

static void
seen_free(struct seen *s)
{
	for (int i = 0; i < s->n; i++)
		free(s->r[i].json);
	free(s->r);
	memset(s, 0, sizeof(*s));
}

static int
on_record(const struct csvrec *rec, void *opaque)
{
	struct seen *s = opaque;
	struct seen_rec *r;
	json_t *v;

	if (s->n > 0 && rec->line <= s->r[s->n - 1].line)
		s->order++;
	if (rec->line <= s->resume_after)
		return 0;
	if (s->n == s->cap) {
		struct seen_rec *more = realloc(s->r, (size_t)(s->cap * 2 + 16) * sizeof(*more));
		if (more == NULL)
			return -1;
		s->r = more;
		s->cap = s->cap * 2 + 16;
	}
	r = &s->r[s->n++];
	memset(r, 0, sizeof(*r));
	r->line = rec->line;
	r->last_line = rec->last_line;
	r->verdict = rec->verdict;
	snprintf(r->reason, sizeof(r->reason), "%s", rec->reason ? rec->reason : "");
	if (rec->verdict == CSVREC_SEND) {
		snprintf(r->row, sizeof(r->row), "%s|%s|%s|%s|%d", rec->department,
		    rec->division, rec->title, rec->hire_date, (int)rec->salary);
		snprintf(r->dept, sizeof(r->dept), "%s", rec->department);
		r->salary = rec->salary;
		v = csvrec_value(s->cf, rec);
	} else if (rec->verdict == CSVREC_FILTERED) {
		return 0;
	} else {
		v = csvrec_dlq_value(s->cf, rec);
	}
	r->json = v ? json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	if (r->json == NULL)
		s->bad_json++;
	else
		r->json_len = strlen(r->json);
	json_decref(v);
	return 0;
}

/* Reads len bytes of text as the file "f.csv" with lim, into s. */
static enum csvrec_end
read_text(const char *text, size_t len, const struct csvrec_limits *lim, long resume,
    struct seen *s)
{
	char err[256] = "";
	enum csvrec_end end;
	struct csvrec_file *cf;
	FILE *fp;

	memset(s, 0, sizeof(*s));
	s->resume_after = resume;
	if ((fp = fmemopen((void *)text, len, "rb")) == NULL)
		return CSVREC_FAILED;
	if ((cf = csvrec_file_new("f.csv", "0123abcd", lim, err, sizeof(err))) == NULL) {
		fclose(fp);
		return CSVREC_FAILED;
	}
	s->cf = cf;
	end = csvrec_read(cf, fp, on_record, NULL, s, err, sizeof(err));
	if (end == CSVREC_FAILED)
		printf("# csvrec_read: %s\n", err);
	s->cf = NULL;
	csvrec_file_free(cf);
	fclose(fp);
	return end;
}

static const struct seen_rec *
at_line(const struct seen *s, long line)
{
	for (int i = 0; i < s->n; i++)
		if (s->r[i].line == line)
			return &s->r[i];
	return NULL;
}

/* The first lines of the records sent, as "2 3 5 ". */
static void
sent_lines(const struct seen *s, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (int i = 0; i < s->n && o < len; i++)
		if (s->r[i].verdict == CSVREC_SEND)
			o += (size_t)snprintf(out + o, len - o, "%ld ", s->r[i].line);
}

/* The lines rejected (either way), as "4 13 ". */
static void
rejected_lines(const struct seen *s, char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (int i = 0; i < s->n && o < len; i++)
		if (s->r[i].verdict == CSVREC_REJECTED || s->r[i].verdict == CSVREC_REJECTED_WHOLE)
			o += (size_t)snprintf(out + o, len - o, "%ld ", s->r[i].line);
}

/* ---- test 105's files, built as its helpers build them ------------------ */

struct poison {
	char *text;
	size_t len, cap;
	long nlines;		/* NLINES[file] */
	char want[4096];	/* the lines that must load, as "2 3 5 " */
};

static void
p_add(struct poison *p, const char *s, size_t len)
{
	if (p->len + len + 1 > p->cap) {
		size_t cap = (p->len + len + 1) * 2;
		char *t = realloc(p->text, cap);
		if (t == NULL) {
			perror("realloc");
			exit(1);
		}
		p->text = t;
		p->cap = cap;
	}
	memcpy(p->text + p->len, s, len);
	p->len += len;
	p->text[p->len] = '\0';
}

static void
want_line(struct poison *p, long line)
{
	size_t o = strlen(p->want);
	snprintf(p->want + o, sizeof(p->want) - o, "%ld ", line);
}

/* new_file */
static void
p_new(struct poison *p)
{
	memset(p, 0, sizeof(*p));
	p_add(p, HEADER "\n", strlen(HEADER) + 1);
	p->nlines = 1;
}

/* good FILE DEPT SALARY YEAR */
static void
p_good(struct poison *p, const char *d, int salary, int year)
{
	char line[256];
	long n = p->nlines + 1;
	int len = snprintf(line, sizeof(line), "%s,%s 001,P%ld,Analyst %ld,Exempt,"
	    "01-Jan-%d,,%d.75\n", d, d, n, n, year, salary);

	p_add(p, line, (size_t)len);
	p->nlines = n;
	if ((strcmp(d, "ECC") == 0 || strcmp(d, "CIT") == 0 || strcmp(d, "EMS") == 0) &&
	    year >= 2010)
		want_line(p, n);
}

/* goods FILE N */
static void
p_goods(struct poison *p, int n)
{
	for (int i = 1; i <= n; i++) {
		if (i % 3 == 0)
			p_good(p, "POL", 40000 + i, 2015);
		else if (i % 3 == 1)
			p_good(p, "ECC", 50000 + i, 2012);
		else
			p_good(p, "CIT", 60000 + i, 2020);
	}
}

/* raw FILE LINES TEXT (a literal here: it may hold a NUL byte) */
#define p_raw(p, lines, lit) p_raw_((p), (lines), (lit), sizeof(lit) - 1)
static void
p_raw_(struct poison *p, long lines, const char *s, size_t len)
{
	p_add(p, s, len);
	p->nlines += lines;
}

/* check_file's checks that are the reader's: the record at line is
 * rejected with reason (part of it), in a DLQ value of at most 64 KB, and
 * the wanted lines, and no others, are sent. */
static void
check_poison(const char *name, const struct seen *s, const struct poison *p,
    long line, const char *reason)
{
	const struct seen_rec *r = at_line(s, line);
	char got[4096], what[128];

	if (!ok(r != NULL && (r->verdict == CSVREC_REJECTED ||
	    r->verdict == CSVREC_REJECTED_WHOLE) && strstr(r->reason, reason) != NULL,
	    "%s: line %ld is rejected with '%s'", name, line, reason))
		printf("#   got: %s\n", r ? r->reason : "no record at that line");
	ok(r != NULL && r->json != NULL && r->json_len <= 65536,
	    "%s: its DLQ value fits (%zu bytes)", name, r && r->json ? r->json_len : 0);
	sent_lines(s, got, sizeof(got));
	snprintf(what, sizeof(what), "%s: the wanted lines are sent, no others", name);
	is_str(got, p->want, what);
	is_int(s->order, 0, "%s: each record's first line above the one before", name);
}

/* For the kafka.csv check: the DLQ value of the record at line 5, as
 * the producer builds it when Kafka refuses the record. */
struct dlq_check {
	const struct csvrec_file *cf;
	size_t field3, len;
	int cut;
};

static int
dlq_of_line5(const struct csvrec *rec, void *opaque)
{
	struct dlq_check *d = opaque;
	json_t *v;
	char *s;

	if (rec->line != 5)
		return 0;
	if ((v = csvrec_dlq_value(d->cf, rec)) == NULL)
		return -1;
	d->field3 = strlen(json_string_value(json_array_get(json_object_get(v, "fields"), 3)));
	d->cut = json_is_true(json_object_get(v, "truncated"));
	if ((s = json_dumps(v, JSON_COMPACT)) != NULL)
		d->len = strlen(s);
	free(s);
	json_decref(v);
	return 0;
}

static void
test_crafted(void)
{
	/* tests/integration/100_etl.t's crafted.csv, byte for byte */
	static const char crafted[] =
	    "\xef\xbb\xbf" HEADER "\r\n"
	    "ECC,\"ECC 001, Ops\",X1,\"Analyst \"\"Senior\"\"\",Exempt,01-Jan-2015,,50000.99\r\n"
	    "ECC,ECC 001,X2,Analyst,Exempt,31-Feb-2015,,50000\r\n"
	    "ECC,ECC 001,X3,Analyst,Exempt,01-Jan-2015,,12x\r\n"
	    "ECC,ECC 001,X4,Analyst\r\n"
	    "CIT,CIT 002,X5,Dev,Exempt,15-Mar-2009,,70000\r\n"
	    "EMS,\"EMS 003\nsecond line\",X6,Medic,Exempt,02-Feb-2020,,60000.5";
	struct seen s;

	is_int(read_text(crafted, sizeof(crafted) - 1, &defaults, 0, &s), CSVREC_END,
	    "crafted.csv: read to its end, the header after a BOM with CRLF accepted");
	is_int(s.n, 6, "crafted.csv: 6 records");
	if (s.n == 6) {
		is_int(s.r[0].line, 2, "line 2");
		is_int(s.r[0].verdict, CSVREC_SEND, "line 2 is sent");
		is_str(s.r[0].row, "ECC|ECC 001, Ops|Analyst \"Senior\"|2015-01-01|50000",
		    "quotes, an embedded comma and doubled quotes; the salary rounded down");
		is_str(s.r[0].json, "{\"file\":\"f.csv\",\"sha256\":\"0123abcd\",\"line\":2,"
		    "\"department\":\"ECC\",\"department_division\":\"ECC 001, Ops\","
		    "\"position_title\":\"Analyst \\\"Senior\\\"\",\"hire_date\":\"2015-01-01\","
		    "\"salary\":50000}", "its value on the ETL topic");
		is_int(s.r[1].line, 3, "line 3");
		is_str(s.r[1].reason, "bad date \"31-Feb-2015\" in Initial Hire Date "
		    "(want DD-Mon-YYYY)", "line 3: 31 February is a bad date");
		is_str(s.r[1].json, "{\"file\":\"f.csv\",\"sha256\":\"0123abcd\",\"line\":3,"
		    "\"fields\":[\"ECC\",\"ECC 001\",\"X2\",\"Analyst\",\"Exempt\","
		    "\"31-Feb-2015\",\"\",\"50000\"]}", "its DLQ value: every field");
		is_int(s.r[2].line, 4, "line 4");
		is_str(s.r[2].reason, "bad number \"12x\" in Salary", "line 4: 12x is a bad number");
		is_int(s.r[3].line, 5, "line 5");
		is_str(s.r[3].reason, "wrong column count: 4, want 8", "line 5: 4 columns");
		is_int(s.r[3].verdict, CSVREC_REJECTED, "rejected by its fields, not whole");
		is_int(s.r[4].line, 6, "line 6");
		is_int(s.r[4].verdict, CSVREC_FILTERED, "line 6: hired in 2009, filtered out");
		is_int(s.r[5].line, 7, "line 7");
		is_int(s.r[5].last_line, 8, "over lines 7-8");
		is_str(s.r[5].row, "EMS|EMS 003\nsecond line|Medic|2020-02-02|60000",
		    "an embedded newline in a quoted field; a last line without a newline");
	}
	is_int(s.bad_json, 0, "crafted.csv: every value built");
	seen_free(&s);
}

static void
test_poison(void)
{
	struct poison p;
	struct seen s;
	const struct seen_rec *r;
	char got[256];

	/* 1. a wanted record with a byte that is not UTF-8; one outside the
	 * filter with such a byte is not rejected */
	p_new(&p);
	p_goods(&p, 4);
	p_raw(&p, 1, "ECC,ECC 001,P6,Analyste d\351l\351gu\351,Exempt,01-Jan-2015,,50000\n");
	p_raw(&p, 1, "POL,POL 001 Pr\351fecture,P7,Agent,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 30);
	is_int(read_text(p.text, p.len, &defaults, 0, &s), CSVREC_END, "utf8.csv: read");
	check_poison("utf8.csv", &s, &p, 6, "Position Title is not valid UTF-8");
	r = at_line(&s, 6);
	is_str(r ? r->reason : "", "Position Title is not valid UTF-8 (byte 0xE9 at offset 10)",
	    "utf8.csv: the reason names the byte and its offset");
	ok(r != NULL && r->json != NULL && strstr(r->json, "\"Analyste d\xef\xbf\xbdl\xef\xbf\xbd"
	    "gu\xef\xbf\xbd\"") != NULL, "utf8.csv: the DLQ shows the bytes as U+FFFD");
	r = at_line(&s, 7);
	ok(r != NULL && r->verdict == CSVREC_FILTERED,
	    "utf8.csv: a filtered record with such a byte is not rejected");
	seen_free(&s);
	free(p.text);

	/* 2. a NUL byte inside a field, in a wanted record and in one outside
	 * the filter: both rejected */
	p_new(&p);
	p_goods(&p, 2);
	p_raw(&p, 1, "ECC,ECC 001,P4,Ana\000lyst,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 5);
	p_raw(&p, 1, "POL,POL\000 001,P10,Agent,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 3);
	is_int(read_text(p.text, p.len, &defaults, 0, &s), CSVREC_END, "nul.csv: read");
	check_poison("nul.csv", &s, &p, 4, "NUL byte in Position Title");
	r = at_line(&s, 10);
	is_str(r ? r->reason : "", "NUL byte in Department-Division",
	    "nul.csv: a NUL byte in a record outside the filter is rejected too");
	ok(r != NULL && r->json != NULL && strstr(r->json, "\"POL\\u0000 001\"") != NULL,
	    "nul.csv: the DLQ shows the NUL byte as \\u0000");
	rejected_lines(&s, got, sizeof(got));
	is_str(got, "4 10 ", "nul.csv: only lines 4 and 10 are rejected");
	seen_free(&s);
	free(p.text);

	/* 3. a stray quote followed by 150 lines without one: rejected whole
	 * after 10 lines, reading resumes at its next line */
	p_new(&p);
	p_goods(&p, 3);
	p_raw(&p, 1, "ECC,\"ECC 001,P5,Analyst,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 150);
	is_int(read_text(p.text, p.len, &defaults, 0, &s), CSVREC_END, "quote.csv: read");
	check_poison("quote.csv", &s, &p, 5, "record not closed within 10 lines");
	r = at_line(&s, 5);
	ok(r != NULL && r->verdict == CSVREC_REJECTED_WHOLE && r->last_line == 14,
	    "quote.csv: rejected whole at its 10th line (14)");
	ok(r != NULL && r->json != NULL && strstr(r->json, "\"text\":\"ECC,\\\"ECC 001,P5,"
	    "Analyst,Exempt,01-Jan-2015,,50000\"") != NULL && strstr(r->json, "truncated") == NULL,
	    "quote.csv: its DLQ value holds its first line, without its newline");
	rejected_lines(&s, got, sizeof(got));
	is_str(got, "5 ", "quote.csv: only line 5 is rejected");
	seen_free(&s);
	free(p.text);

	/* 4. a stray quote that a quoted field closes 3 lines later, and one
	 * left open at the end of the file */
	p_new(&p);
	p_goods(&p, 2);
	p_raw(&p, 1, "ECC,\"ECC 001,P4,Analyst,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 2);
	p_raw(&p, 1, "CIT,\"CIT 001, Ops\",P7,Developer,Exempt,01-Jan-2018,,70000.5\n");
	want_line(&p, 7);
	p_goods(&p, 5);
	p_raw(&p, 1, "EMS,\"EMS 001,P13,Medic,Exempt,01-Jan-2019,,40000\n");
	p_goods(&p, 3);
	is_int(read_text(p.text, p.len, &defaults, 0, &s), CSVREC_END, "quote2.csv: read");
	check_poison("quote2.csv", &s, &p, 4, "an unbalanced quote?");
	r = at_line(&s, 4);
	is_str(r ? r->reason : "", "a quote neither doubled nor closing its field, in a "
	    "record over lines 4-7: an unbalanced quote?",
	    "quote2.csv: lines 4-7 rejected whole (8 fields, the quote at 7 not strict)");
	r = at_line(&s, 13);
	is_str(r ? r->reason : "", "wrong column count: 2, want 8, in a record over lines "
	    "13-16: an unbalanced quote?",
	    "quote2.csv: a quote left open at the end of the file: line 13 rejected whole");
	r = at_line(&s, 7);
	is_str(r ? r->row : "", "CIT|CIT 001, Ops|Developer|2018-01-01|70000",
	    "quote2.csv: line 7, read again, is sent");
	rejected_lines(&s, got, sizeof(got));
	is_str(got, "4 13 ", "quote2.csv: only lines 4 and 13 are rejected");
	seen_free(&s);
	free(p.text);

	/* 6. a record of 2 MB, over etl.max_record_bytes (64 KB) */
	p_new(&p);
	p_goods(&p, 3);
	p_add(&p, "ECC,ECC 001,P5,", 15);
	{
		char x[1024];
		memset(x, 'x', sizeof(x));
		for (int i = 0; i < 2048; i++)	/* head -c 2097152 /dev/zero | tr '\0' x */
			p_add(&p, x, sizeof(x));
	}
	p_add(&p, ",Exempt,01-Jan-2015,,50000\n", 27);
	p.nlines = 5;
	p_goods(&p, 30);
	is_int(read_text(p.text, p.len, &defaults, 0, &s), CSVREC_END, "huge.csv: read");
	check_poison("huge.csv", &s, &p, 5, "record longer than 65536 bytes");
	r = at_line(&s, 5);
	json_t *v = r && r->json ? json_loads(r->json, 0, NULL) : NULL;
	const char *text = json_string_value(json_object_get(v, "text"));
	ok(text != NULL && strlen(text) == 4096 && json_is_true(json_object_get(v, "truncated")),
	    "huge.csv: the DLQ value holds the line's first 4 KB, marked truncated");
	json_decref(v);
	seen_free(&s);

	/* 7. the same with etl.max_record_bytes at 4 MB: the record is read
	 * and sent (Kafka refuses it: the producer then sends this DLQ value,
	 * a prefix of the 2 MB field, marked truncated) */
	struct csvrec_limits big = defaults;
	big.max_record_bytes = 4194304;
	memset(strstr(p.text, ",P5,") + 4, 'y', 2097152);	/* kafka.csv: y, not x */
	is_int(read_text(p.text, p.len, &big, 0, &s), CSVREC_END, "kafka.csv: read");
	r = at_line(&s, 5);
	ok(r != NULL && r->verdict == CSVREC_SEND && r->json_len > 2097152,
	    "kafka.csv: the 2 MB record is within 4 MB, wanted: sent");
	sent_lines(&s, got, sizeof(got));
	ok(strncmp(got, "2 3 5 6 7 ", 10) == 0, "kafka.csv: with the lines around it");
	seen_free(&s);
	{
		/* the DLQ value of that record, as the producer builds it when Kafka
		 * refuses it (its fields, from the reader, during the callback) */
		struct dlq_check d = { 0 };
		char err[256];
		FILE *fp = fmemopen(p.text, p.len, "rb");
		struct csvrec_file *cf = fp ? csvrec_file_new("kafka.csv", "0123abcd", &big, err,
		    sizeof(err)) : NULL;
		d.cf = cf;
		ok(cf != NULL && csvrec_read(cf, fp, dlq_of_line5, NULL, &d, err, sizeof(err)) == CSVREC_END,
		    "kafka.csv: read again for its DLQ value");
		ok(d.field3 == 16384 - 3 - 7 - 2 && d.cut && d.len <= 65536,
		    "kafka.csv: the DLQ value holds the first %zu bytes of the 2 MB field "
		    "(16 KB of fields in all), marked truncated, %zu bytes", d.field3, d.len);
		csvrec_file_free(cf);
		if (fp != NULL)
			fclose(fp);
	}
	free(p.text);

	/* 8. a restart after line 12 in a file with stray quotes at 5 and 26:
	 * the producer hands on nothing at or before 12 (resume_after); the
	 * reader reads the file from its start, so the records are the same */
	p_new(&p);
	p_goods(&p, 3);
	p_raw(&p, 1, "ECC,\"ECC 001,P5,Analyst,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 20);
	p_raw(&p, 1, "CIT,\"CIT 001,P26,Analyst,Exempt,01-Jan-2015,,50000\n");
	p_goods(&p, 14);
	{
		/* awk '$1 != "resume.csv" || $2 > 12' */
		char want[4096] = "", *save = NULL;
		for (char *t = strtok_r(p.want, " ", &save); t; t = strtok_r(NULL, " ", &save))
			if (atol(t) > 12)
				snprintf(want + strlen(want), sizeof(want) - strlen(want), "%s ", t);
		snprintf(p.want, sizeof(p.want), "%s", want);
	}
	is_int(read_text(p.text, p.len, &defaults, 12, &s), CSVREC_END, "resume.csv: read");
	check_poison("resume.csv", &s, &p, 26, "record not closed within 10 lines");
	ok(at_line(&s, 5) == NULL, "resume.csv: the stray quote before line 12 is not rejected again");
	rejected_lines(&s, got, sizeof(got));
	is_str(got, "26 ", "resume.csv: only line 26 is rejected");
	seen_free(&s);
	read_text(p.text, p.len, &defaults, 0, &s);
	r = at_line(&s, 5);
	ok(r != NULL && r->verdict == CSVREC_REJECTED_WHOLE,
	    "resume.csv: read from the start, line 5 is the one rejected before the restart");
	seen_free(&s);
	free(p.text);
}

static char *
slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb"), *mem;
	char *all = NULL;
	int c;

	*len = 0;
	if (fp == NULL)
		return NULL;
	if ((mem = open_memstream(&all, len)) != NULL) {
		while ((c = getc(fp)) != EOF)
			putc(c, mem);
		fclose(mem);
	}
	fclose(fp);
	return all;
}

static void
test_shipped(void)
{
	/* Computed with Python's csv module (csv.reader over the file opened
	 * with newline='' and encoding='utf-8-sig'), the same rules written
	 * again: 8 columns, Department, Department-Division, Position Title,
	 * Initial Hire Date and Salary set, the date by strptime('%d-%b-%Y'),
	 * the salary ^[0-9]+(\.[0-9]+)?$ rounded down; sent when the
	 * department is ECC, CIT or EMS and the year 2010 or later; the lines
	 * are csv.reader's line_num.  Test 100 gets the same from SQL over
	 * COPY. */
	static const char *const dept[3] = { "CIT", "ECC", "EMS" };
	static const long want_count[3] = { 112, 48, 127 };
	static const long long want_total[3] = { 9102142, 2042698, 3779570 };
	static const char want_rejected[] = "1457 1460 1462 1468 1470 6323 6324 6325 ";
	long count[3] = { 0 }, sent = 0, rejected = 0;
	long long total[3] = { 0 };
	char got[4096];
	size_t len;
	char *all = slurp("data/Employee_Salaries.csv", &len);
	struct seen s;

	if (!ok(all != NULL, "data/Employee_Salaries.csv read (run from the repository's root)"))
		return;
	is_int(read_text(all, len, &defaults, 0, &s), CSVREC_END, "the data set reads to its end");
	is_int(s.r[s.n - 1].line, 6955, "its last record is at line 6955");
	for (int i = 0; i < s.n; i++) {
		if (s.r[i].verdict == CSVREC_REJECTED)
			rejected++;
		if (s.r[i].verdict != CSVREC_SEND)
			continue;
		sent++;
		for (int d = 0; d < 3; d++)
			if (strcmp(s.r[i].dept, dept[d]) == 0) {
				count[d]++;
				total[d] += s.r[i].salary;
			}
	}
	is_int(sent, 287, "287 records sent (ECC, CIT, EMS hired from 2010)");
	is_int(rejected, 8, "8 rejected");
	for (int d = 0; d < 3; d++) {
		is_int(count[d], want_count[d], "%s: %ld records sent", dept[d], want_count[d]);
		is_int(total[d], want_total[d], "%s: salaries total %lld", dept[d], want_total[d]);
	}
	rejected_lines(&s, got, sizeof(got));
	is_str(got, want_rejected, "the rejected records are the 8 lines without a salary");
	ok(s.n > 1456 && strcmp(at_line(&s, 1457)->reason, "missing field Salary") == 0,
	    "with the reason 'missing field Salary'");
	is_int(s.bad_json, 0, "every value built");
	is_int(s.order, 0, "each record's first line above the one before");

	/* Test 100's big.csv: the header, then the rows 20 times, each copy
	 * ending with a newline (the file has none at its end): each copy's
	 * records are the first's, 6954 lines further on. */
	struct seen one = s;
	char *big = NULL;
	size_t blen = 0;
	FILE *mem = open_memstream(&big, &blen);
	const char *rows = strchr(all, '\n') + 1;
	if (mem != NULL) {
		fwrite(all, 1, (size_t)(rows - all), mem);
		for (int k = 0; k < 20; k++) {
			fwrite(rows, 1, len - (size_t)(rows - all), mem);
			fputc('\n', mem);
		}
		fclose(mem);
	}
	is_int(read_text(big, blen, &defaults, 0, &s), CSVREC_END, "big.csv reads to its end");
	int same = s.n == 20 * one.n;
	for (int i = 0; same && i < s.n; i++) {
		const struct seen_rec *a = &s.r[i], *b = &one.r[i % one.n];
		same = a->line == b->line + 6954L * (i / one.n) && a->verdict == b->verdict &&
		    strcmp(a->reason, b->reason) == 0 && strcmp(a->row, b->row) == 0;
	}
	ok(same, "big.csv: 20 times the shipped file's records, each copy 6954 lines on "
	    "(%d records)", s.n);
	seen_free(&s);
	seen_free(&one);
	free(big);
	free(all);
}

/* A line ends at "\n", "\r\n" or a "\r" alone, where libcsv ends a record:
 * with lines ended at "\n" only, a CR alone inside a line began a second
 * record on it, sent with the first's line, its identity, and the loader
 * (ON CONFLICT (source_sha256, source_line) DO NOTHING) kept only the
 * first (found by fuzz_csvrec; tests/fuzz/corpus/csvrec/regress_lone_cr.csv).
 * The lines expected are those of Python's csv.reader, line_num. */
static void
test_line_ends(void)
{
	static const char two[] = HEADER "\n"
	    "ECC,ECC 001,P2,Analyst,Exempt,01-Jan-2015,,50000\r"
	    "CIT,CIT 001,P3,Dev,Exempt,01-Jan-2016,,60000\n"
	    "EMS,EMS 001,P4,Medic,Exempt,01-Jan-2017,,70000\n";
	static const char mac[] = HEADER "\r"
	    "ECC,ECC 001,P2,Analyst,Exempt,01-Jan-2015,,50000\r"
	    "CIT,CIT 001,P3,Dev,Exempt,01-Jan-2016,,60000\r";
	static const char quoted[] = HEADER "\n"
	    "EMS,\"EMS 003\rsecond line\",P2,Medic,Exempt,02-Feb-2020,,60000.5\n"
	    "CIT,CIT 001,P4,Dev,Exempt,01-Jan-2016,,60000\r\n"
	    "\r"
	    "ECC,\"ECC\r\n001\",P6,Analyst,Exempt,01-Jan-2015,,1\r";
	static const char open_cr[] = HEADER "\n"
	    "ECC,\"ECC 001\r\rx\rx\rx\rx\rx\rx\rx\rx\rx\rx,P2,Analyst,Exempt,01-Jan-2015,,1\n"
	    "CIT,CIT 001,P14,Dev,Exempt,01-Jan-2016,,60000\n";
	char got[256];
	struct seen s;

	ok(read_text(two, sizeof(two) - 1, &defaults, 0, &s) == CSVREC_END && s.order == 0,
	    "a CR alone between two records: read, first lines ascending");
	sent_lines(&s, got, sizeof(got));
	is_str(got, "2 3 4 ", "each of the 3 records sent with its own line (they were 2, 2, 3)");
	is_str(s.n == 3 ? s.r[1].row : "", "CIT|CIT 001|Dev|2016-01-01|60000",
	    "the record after the CR is the CIT one");
	seen_free(&s);

	ok(read_text(mac, sizeof(mac) - 1, &defaults, 0, &s) == CSVREC_END,
	    "a file whose lines end in CR alone: its header accepted");
	sent_lines(&s, got, sizeof(got));
	is_str(got, "2 3 ", "its records at lines 2 and 3 (they were both at line 1)");
	seen_free(&s);

	ok(read_text(quoted, sizeof(quoted) - 1, &defaults, 0, &s) == CSVREC_END &&
	    s.order == 0, "a CR alone in a quoted field: read");
	ok(s.n == 3 && s.r[0].line == 2 && s.r[0].last_line == 3 &&
	    strcmp(s.r[0].row, "EMS|EMS 003\rsecond line|Medic|2020-02-02|60000") == 0,
	    "it is a record over lines 2-3 (strict, sent), the CR kept in its field");
	ok(s.n == 3 && s.r[1].line == 4 && s.r[2].line == 6 && s.r[2].last_line == 7 &&
	    strcmp(s.r[2].row, "ECC|ECC\r\n001|Analyst|2015-01-01|1") == 0,
	    "CRLF is one line end, in a field too; a blank CR line skipped");
	seen_free(&s);

	ok(read_text(open_cr, sizeof(open_cr) - 1, &defaults, 0, &s) == CSVREC_END,
	    "a stray quote before lines ended by CR alone: read");
	ok(s.n >= 2 && s.r[0].line == 2 && s.r[0].verdict == CSVREC_REJECTED_WHOLE &&
	    strstr(s.r[0].reason, "record not closed within 10 lines") != NULL,
	    "the record is bounded by those lines too: rejected whole at line 2");
	sent_lines(&s, got, sizeof(got));
	is_str(got, "14 ", "and the record after them, at line 14, sent");
	seen_free(&s);
}

/* A reason is one line of UTF-8 without control characters (a Kafka
 * header, a log line): a bad date or number is shown with its control
 * characters and bytes that are not UTF-8 as \xNN.  It was shown as read,
 * a newline of a quoted field, or of a quote left open on the last line,
 * and all (found by fuzz_csvrec; corpus/csvrec/regress_reason_newline.csv). */
static void
test_reason_one_line(void)
{
	static const char text[] = HEADER "\n"
	    "ECC,ECC 001,P2,Analyst,Exempt,\"01-Jan\n-2015\",,1\n"
	    "ECC,ECC 001,P4,Analyst,Exempt,01-Jan-2015,,\"1\r\n2\"\n"
	    "ECC,ECC 001,P6,Analyst,Exempt,01-J\xe9n-2015,,1\n"
	    "ECC,ECC 001,P7,Analyst,Exempt,01-Jan-2015,,\x1b[31m\n"
	    "ECC,ECC 001,P8,Analyst,Exempt,01-Jan-2015,,\"\"40006.75\n";
	struct seen s;

	ok(read_text(text, sizeof(text) - 1, &defaults, 0, &s) == CSVREC_END && s.n == 5,
	    "five bad dates and numbers: read");
	is_str(s.n > 0 ? s.r[0].reason : "", "bad date \"01-Jan\\x0a-2015\" in Initial Hire "
	    "Date (want DD-Mon-YYYY)", "a newline in a date: \\x0a in the reason");
	is_str(s.n > 1 ? s.r[1].reason : "", "bad number \"1\\x0d\\x0a2\" in Salary",
	    "CRLF in a number: \\x0d\\x0a");
	is_str(s.n > 2 ? s.r[2].reason : "", "bad date \"01-J\\xe9n-2015\" in Initial Hire "
	    "Date (want DD-Mon-YYYY)", "a byte that is not UTF-8: \\xe9");
	is_str(s.n > 3 ? s.r[3].reason : "", "bad number \"\\x1b[31m\" in Salary",
	    "an escape sequence: \\x1b");
	is_str(s.n > 4 ? s.r[4].reason : "", "bad number \"\"40006.75\\x0a\" in Salary",
	    "a quote left open on the last line: its newline \\x0a");
	ok(s.n == 5 && s.r[4].json != NULL && strstr(s.r[4].json, "\"\\\"40006.75\\n\"") != NULL,
	    "the DLQ value keeps the field as read");
	seen_free(&s);
}

static void
test_header(void)
{
	static const char *const bad[] = {
		"Department,Department-Division\nECC,D,P,T,F,01-Jan-2015,,1\n",
		HEADER ",Extra\nECC,D,P,T,F,01-Jan-2015,,1\n",
		"\"" HEADER "\nECC,D,P,T,F,01-Jan-2015,,1\n",
	};
	struct seen s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ok(read_text(bad[i], strlen(bad[i]), &defaults, 0, &s) == CSVREC_BAD_HEADER &&
		    s.n == 0, "a wrong header (%zu): nothing handed on", i);
		seen_free(&s);
	}
	static const char quoted[] = "\"Department\",Department-Division,PCN,Position Title,"
	    "FLSA Status,Initial Hire Date,Date in Title,Salary\n\n  \nECC,D,P,T,F,01-Jan-2015,,1\n";
	ok(read_text(quoted, strlen(quoted), &defaults, 0, &s) == CSVREC_END && s.n == 1 &&
	    s.r[0].line == 4, "a quoted header field is the same field; blank lines skipped");
	seen_free(&s);
}

int
main(void)
{
	test_crafted();
	test_poison();
	test_shipped();
	test_header();
	test_line_ends();
	test_reason_one_line();
	return done_testing();
}
