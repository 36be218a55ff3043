/*
 * test_csvrec.c - the ETL producer's CSV records (common/csvrec.c): the
 * crafted file of tests/integration/100_etl.t (BOM, CRLF, quotes, an
 * embedded newline, no final newline) record by record, the header check,
 * each reason a record is rejected, and the shipped data set's counts and
 * salary totals against figures computed independently (Python's csv).
 * Run from the repository's root (data/Employee_Salaries.csv).
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "csvrec.h"
#include "tap.h"

#define DEPTS "ECC,CIT,EMS"
#define MIN_YEAR 2010

/* What the callback saw of each record, as one line of text. */
struct seen {
	char text[64][256];
	int n;
	long sent, filtered, rejected;
	long long total[3];	/* salaries sent, per department of DEPTS */
	int bad_json;
};

static void
on_record(const struct csvrec_record *rec, void *opaque)
{
	struct seen *s = opaque;
	struct csvrec_row row;
	char why[256] = "", *t = s->n < 64 ? s->text[s->n] : NULL;
	json_t *v = NULL;
	int filtered = 0;

	s->n++;
	if (s->n == 1) {
		if (t != NULL)
			snprintf(t, 256, "header %s", csvrec_header_ok(rec) ? "ok" : "bad");
		return;
	}
	switch (csvrec_transform(rec, DEPTS, MIN_YEAR, &row, why, sizeof(why))) {
	case CSVREC_SEND:
		s->sent++;
		s->total[strcmp(row.department, "ECC") == 0 ? 0 :
		    strcmp(row.department, "CIT") == 0 ? 1 : 2] += row.salary;
		v = csvrec_row_json(&row, "f.csv", "sha", rec->line);
		if (t != NULL)
			snprintf(t, 256, "%ld send %s|%s|%s|%s|%d", rec->line, row.department,
			    row.division, row.title, row.hire_date, (int)row.salary);
		break;
	case CSVREC_FILTERED:
		s->filtered++;
		filtered = 1;
		if (t != NULL)
			snprintf(t, 256, "%ld filtered", rec->line);
		break;
	case CSVREC_REJECTED:
		s->rejected++;
		v = csvrec_reject_json(rec, "f.csv", "sha");
		if (t != NULL)
			snprintf(t, 256, "%ld rejected %s", rec->line, why);
		break;
	}
	if (v == NULL && !filtered)
		s->bad_json++;
	json_decref(v);
}

/* Feeds text line by line, as the producer does with getline(). */
static int
feed(const char *text, struct seen *s, char *err, size_t errlen)
{
	struct csvrec_reader r;
	int rc = 0;

	memset(s, 0, sizeof(*s));
	if (csvrec_reader_init(&r, on_record, s, err, errlen) < 0)
		return -1;
	for (const char *p = text; *p != '\0' && rc == 0;) {
		const char *nl = strchr(p, '\n');
		size_t len = nl ? (size_t)(nl - p + 1) : strlen(p);
		rc = csvrec_reader_feed(&r, p, len, err, errlen);
		p += len;
	}
	if (rc == 0)
		rc = csvrec_reader_finish(&r, err, errlen);
	csvrec_reader_free(&r);
	return rc;
}

#define HEADER "Department,Department-Division,PCN,Position Title,FLSA Status," \
	"Initial Hire Date,Date in Title,Salary"

static void
rejects(const char *record, const char *reason)
{
	char text[1024], err[256];
	struct seen s;

	snprintf(text, sizeof(text), HEADER "\n%s\n", record);
	if (feed(text, &s, err, sizeof(err)) < 0 || s.n != 2) {
		ok(0, "rejects %s: fed (%s, %d records)", record, err, s.n);
		return;
	}
	if (!ok(strstr(s.text[1], reason) != NULL && s.rejected == 1,
	    "rejects %.50s: %s", record, reason))
		printf("#   got '%s'\n", s.text[1]);
}

static void
sends(const char *record, const char *want)
{
	char text[1024], err[256];
	struct seen s;

	snprintf(text, sizeof(text), HEADER "\n%s\n", record);
	if (feed(text, &s, err, sizeof(err)) < 0 || s.n != 2) {
		ok(0, "sends %s: fed (%s, %d records)", record, err, s.n);
		return;
	}
	is_str(s.text[1], want, record);
}

int
main(void)
{
	char err[256];
	struct seen s;

	/* tests/integration/100_etl.t's crafted.csv, byte for byte */
	const char *crafted =
	    "\xef\xbb\xbf" HEADER "\r\n"
	    "ECC,\"ECC 001, Ops\",X1,\"Analyst \"\"Senior\"\"\",Exempt,01-Jan-2015,,50000.99\r\n"
	    "ECC,ECC 001,X2,Analyst,Exempt,31-Feb-2015,,50000\r\n"
	    "ECC,ECC 001,X3,Analyst,Exempt,01-Jan-2015,,12x\r\n"
	    "ECC,ECC 001,X4,Analyst\r\n"
	    "CIT,CIT 002,X5,Dev,Exempt,15-Mar-2009,,70000\r\n"
	    "EMS,\"EMS 003\nsecond line\",X6,Medic,Exempt,02-Feb-2020,,60000.5";
	ok(feed(crafted, &s, err, sizeof(err)) == 0, "crafted.csv reads (%s)", err);
	is_int(s.n, 7, "crafted.csv: a header and 6 records");
	is_str(s.text[0], "header ok", "a header after a byte-order mark, with CRLF, is the header");
	is_str(s.text[1], "2 send ECC|ECC 001, Ops|Analyst \"Senior\"|2015-01-01|50000",
	    "quotes, an embedded comma and doubled quotes; the salary rounded down");
	is_str(s.text[2], "3 rejected bad date \"31-Feb-2015\" in Initial Hire Date "
	    "(want DD-Mon-YYYY)", "31 February is a bad date");
	is_str(s.text[3], "4 rejected bad number \"12x\" in Salary", "12x is a bad number");
	is_str(s.text[4], "5 rejected wrong column count: 4, want 8", "4 columns");
	is_str(s.text[5], "6 filtered", "hired 2009: filtered");
	is_str(s.text[6], "7 send EMS|EMS 003\nsecond line|Medic|2020-02-02|60000",
	    "an embedded newline; a last line without a newline");
	is_int(s.bad_json, 0, "every record sent or rejected has its JSON");

	ok(feed("Department,Department-Division\n", &s, err, sizeof(err)) == 0 &&
	    strcmp(s.text[0], "header bad") == 0, "a short header is refused");
	ok(feed(HEADER ",Extra\n", &s, err, sizeof(err)) == 0 &&
	    strcmp(s.text[0], "header bad") == 0, "a header with a ninth column is refused");
	ok(feed("\"Department\",Department-Division,PCN,Position Title,FLSA Status,"
	    "Initial Hire Date,Date in Title,Salary\n", &s, err, sizeof(err)) == 0 &&
	    strcmp(s.text[0], "header ok") == 0, "a quoted header field is the same field");

	rejects(",D,P,T,F,01-Jan-2015,,1", "missing field Department");
	rejects("ECC,,P,T,F,01-Jan-2015,,1", "missing field Department-Division");
	rejects("ECC,D,P,,F,01-Jan-2015,,1", "missing field Position Title");
	rejects("ECC,D,P,T,F,,,1", "missing field Initial Hire Date");
	rejects("ECC,D,P,T,F,01-Jan-2015,,", "missing field Salary");
	rejects("ECC,D,P,T,F,2015-01-01,,1", "bad date");
	rejects("ECC,D,P,T,F,29-Feb-2015,,1", "bad date");
	rejects("ECC,D,P,T,F,01-Foo-2015,,1", "bad date");
	rejects("ECC,D,P,T,F,01-Jan-2015x,,1", "bad date");
	rejects("ECC,D,P,T,F,01-Jan-2015,,-1", "bad number");
	rejects("ECC,D,P,T,F,01-Jan-2015,,1.", "bad number");
	rejects("ECC,D,P,T,F,01-Jan-2015,,.5", "bad number");
	rejects("ECC,D,P,T,F,01-Jan-2015,,2147483648", "bad number");
	rejects("ECC,D,P,T,F,01-Jan-2015,,1,", "wrong column count: 9, want 8");
	/* Text sent must be UTF-8 (a Latin-1 file was retried for ever: jansson
	 * refused the record, the producer stopped the file and began again). */
	rejects("ECC,Caf\xe9,P,T,F,01-Jan-2015,,1", "not UTF-8 in Department-Division");
	rejects("EC\xc3,D,P,T,F,01-Jan-2015,,1", "not UTF-8 in Department");
	rejects("ECC,D,P,\xc0\xafT,F,01-Jan-2015,,1", "not UTF-8 in Position Title");
	rejects("ECC,D,P,\xed\xa0\x80,F,01-Jan-2015,,1", "not UTF-8 in Position Title");
	rejects("ECC,D,P,\xf4\x90\x80\x80,F,01-Jan-2015,,1", "not UTF-8 in Position Title");
	sends("ECC,Caf\xc3\xa9 \xe2\x82\xac,P,Zo\xc3\xab \xf0\x9f\x98\x80,F,01-Jan-2015,,1",
	    "2 send ECC|Caf\xc3\xa9 \xe2\x82\xac|Zo\xc3\xab \xf0\x9f\x98\x80|2015-01-01|1");
	sends("ECC,D,P\xff,T,F\xfe,01-Jan-2015,\xe9,1", "2 send ECC|D|T|2015-01-01|1");

	/* The DLQ's JSON keeps every field, a byte that is not UTF-8 as U+FFFD. */
	{
		struct csvrec_record rec = { .line = 9, .nfields = 3,
		    .fields = { "Caf\xe9", "ok \xc3\xa9", "\xe2\x82" } };
		json_t *v = csvrec_reject_json(&rec, "latin1-\xe9.csv", "abc");
		json_t *fields = json_object_get(v, "fields");
		ok(v != NULL && json_array_size(fields) == 3, "a DLQ value with 3 fields, not UTF-8");
		is_str(json_string_value(json_array_get(fields, 0)), "Caf\xef\xbf\xbd",
		    "Latin-1 e-acute shows as U+FFFD");
		is_str(json_string_value(json_array_get(fields, 1)), "ok \xc3\xa9",
		    "UTF-8 stays as it is");
		is_str(json_string_value(json_array_get(fields, 2)), "\xef\xbf\xbd\xef\xbf\xbd",
		    "a cut sequence: each byte a U+FFFD");
		is_str(json_string_value(json_object_get(v, "file")), "latin1-\xef\xbf\xbd.csv",
		    "so does a file name that is not UTF-8");
		json_decref(v);

		struct csvrec_row row = { .department = "ECC", .division = "D", .title = "T",
		    .hire_date = "2015-01-01", .hire_year = 2015, .salary = 1 };
		v = csvrec_row_json(&row, "latin1-\xe9.csv", "abc", 2);
		ok(v != NULL, "a record of a file named in Latin-1 still has its JSON");
		json_decref(v);
	}

	sends("ECC,D,P,T,F,29-Feb-2016,,2147483647.99",
	    "2 send ECC|D|T|2016-02-29|2147483647");
	sends("CIT,D,P,T,F,31-Dec-2010,,0", "2 send CIT|D|T|2010-12-31|0");

	/* 70 fields: 64 kept, the record rejected as overflowing */
	char wide[512] = HEADER "\n";
	for (int i = 0; i < 70; i++)
		strcat(wide, i ? ",x" : "x");
	ok(feed(wide, &s, err, sizeof(err)) == 0 && s.n == 2 &&
	    strcmp(s.text[1], "2 rejected wrong column count: 64, want 8") == 0,
	    "70 fields: rejected with 64 counted");

	ok(feed(HEADER "\n\"unterminated\n", &s, err, sizeof(err)) == 0 && s.n == 2,
	    "an unterminated quote at the end is one last record");

	/* The shipped data set, read as the producer reads it. */
	FILE *fp = fopen("data/Employee_Salaries.csv", "rb");
	char *all = NULL;
	size_t len = 0;
	if (fp != NULL) {
		FILE *mem = open_memstream(&all, &len);
		int c;
		while (mem != NULL && (c = getc(fp)) != EOF)
			putc(c, mem);
		if (mem != NULL)
			fclose(mem);
		fclose(fp);
	}
	if (ok(all != NULL, "data/Employee_Salaries.csv read (run from the repository's root)")) {
		ok(feed(all, &s, err, sizeof(err)) == 0, "the data set parses (%s)", err);
		is_int(s.n, 6955, "the data set: a header and 6954 records");
		is_str(s.text[0], "header ok", "the data set's header");
		is_int(s.sent, 287, "287 records sent (ECC, CIT, EMS hired from 2010)");
		is_int(s.filtered, 6659, "6659 filtered out");
		is_int(s.rejected, 8, "8 rejected (no salary)");
		ok(s.total[0] == 2042698 && s.total[1] == 9102142 && s.total[2] == 3779570,
		    "salary totals: ECC 2042698, CIT 9102142, EMS 3779570 (got %lld, %lld, %lld)",
		    s.total[0], s.total[1], s.total[2]);
		is_int(s.bad_json, 0, "every record sent or rejected has its JSON");
	}
	free(all);
	return done_testing();
}
