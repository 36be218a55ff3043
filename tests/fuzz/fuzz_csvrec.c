/*
 * fuzz_csvrec.c - libFuzzer target for the ETL producer's CSV records
 * (common/csvrec.c): the input is a CSV file, fed line by line to libcsv
 * as workers/etl_producer.c feeds it (a byte-order mark on line 1 is
 * skipped), each record checked and transformed with the shipped filter
 * (ECC, CIT, EMS; hired from 2010).  Every record is transformed, the
 * header too, so that a mutated header does not hide the rest.
 *
 * A record handed on has at most CSVREC_MAX_FIELDS fields, all set, and a
 * line within the lines fed.  A record sent has its five required fields,
 * a department of the filter, a "YYYY-MM-DD" date from 2010 on, a salary
 * >= 0, and a JSON value for the ETL topic.  A record rejected has a
 * reason and a JSON value for the DLQ holding every field.  A broken
 * invariant calls abort().
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csvrec.h"

#define DEPTS "ECC,CIT,EMS"
#define MIN_YEAR 2010

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int
is_digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

static void
check_sent(const struct csvrec_record *rec, const struct csvrec_row *row)
{
	const char *d = row->hire_date;
	json_t *v;

	if (row->department == NULL || row->division == NULL || row->title == NULL ||
	    !row->department[0] || !row->division[0] || !row->title[0])
		abort();
	if (strcmp(row->department, "ECC") != 0 && strcmp(row->department, "CIT") != 0 &&
	    strcmp(row->department, "EMS") != 0)
		abort();
	if (strlen(d) != 10 || !is_digits(d, 4) || d[4] != '-' || !is_digits(d + 5, 2) ||
	    d[7] != '-' || !is_digits(d + 8, 2) || atoi(d) != row->hire_year ||
	    row->hire_year < MIN_YEAR)
		abort();
	if (row->salary < 0)
		abort();
	v = csvrec_row_json(row, "fuzz.csv", "0123abcd", rec->line);
	if (v == NULL)
		abort();		/* a record sent must have its JSON */
	json_decref(v);
}

static void
check_rejected(const struct csvrec_record *rec, const char *why)
{
	json_t *v;

	if (why[0] == '\0')
		abort();
	v = csvrec_reject_json(rec, "fuzz.csv", "0123abcd");
	if (v == NULL || json_array_size(json_object_get(v, "fields")) != (size_t)rec->nfields)
		abort();		/* the DLQ gets every field */
	json_decref(v);
}

struct run {
	struct csvrec_reader *reader;
	long records;
};

static void
on_record(const struct csvrec_record *rec, void *opaque)
{
	struct run *run = opaque;
	struct csvrec_row row;
	char why[256] = "";

	run->records++;
	if (rec->nfields < 0 || rec->nfields > CSVREC_MAX_FIELDS || rec->line < 1 ||
	    rec->line > run->reader->line)
		abort();
	for (int i = 0; i < rec->nfields; i++)
		if (rec->fields[i] == NULL)
			abort();
	if (run->records == 1)
		(void)csvrec_header_ok(rec);
	switch (csvrec_transform(rec, DEPTS, MIN_YEAR, &row, why, sizeof(why))) {
	case CSVREC_SEND:
		check_sent(rec, &row);
		break;
	case CSVREC_REJECTED:
		check_rejected(rec, why);
		break;
	case CSVREC_FILTERED:
		break;
	default:
		abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct csvrec_reader reader;
	struct run run = { .reader = &reader };
	const char *p = (const char *)data, *end = p + size;
	char err[256];
	int rc = 0;

	if (csvrec_reader_init(&reader, on_record, &run, err, sizeof(err)) < 0)
		abort();
	/* line by line, as getline() hands them to the producer */
	while (p < end && rc == 0) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		rc = csvrec_reader_feed(&reader, p, len, err, sizeof(err));
		p += len;
	}
	if (rc == 0)
		rc = csvrec_reader_finish(&reader, err, sizeof(err));
	csvrec_reader_free(&reader);
	return 0;
}
