/*
 * csvrec.h - the ETL producer's CSV records, without I/O: a file fed to
 * libcsv line by line, each record handed to a callback with its fields
 * and first line; the header check; a record filtered, validated and
 * transformed into what the ETL topic carries, or the reason it is
 * rejected; the JSON of both.  workers/etl_producer.c reads the files and
 * talks to Kafka and B; tests/fuzz/fuzz_csvrec.c drives this module alone.
 *
 * The file's columns (data/Employee_Salaries.csv):
 *   Department, Department-Division, PCN, Position Title, FLSA Status,
 *   Initial Hire Date, Date in Title, Salary
 */
#ifndef PGRELAY_CSVREC_H
#define PGRELAY_CSVREC_H

#include <csv.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define CSVREC_NCOLS 8
#define CSVREC_MAX_FIELDS 64	/* fields kept of one record; more set overflow */

extern const char *const csvrec_header[CSVREC_NCOLS];

enum {
	CSVREC_COL_DEPT = 0, CSVREC_COL_DIV = 1, CSVREC_COL_TITLE = 3,
	CSVREC_COL_HIRE = 5, CSVREC_COL_SALARY = 7
};

/* One record as libcsv delivered it.  The fields are NUL-terminated and
 * owned by the reader: valid during the callback only. */
struct csvrec_record {
	long line;			/* physical line the record starts on, from 1 */
	char *fields[CSVREC_MAX_FIELDS];
	int nfields;
	int overflow;			/* it had more than CSVREC_MAX_FIELDS */
};

typedef void csvrec_record_fn(const struct csvrec_record *rec, void *opaque);

/* Feeds libcsv (RFC 4180 quoting, embedded commas, quotes and newlines,
 * CRLF) and skips a UTF-8 byte-order mark on line 1. */
struct csvrec_reader {
	struct csv_parser parser;
	long line;			/* physical lines fed so far */
	struct csvrec_record rec;	/* the record being built */
	csvrec_record_fn *fn;
	void *opaque;
	int oom;			/* a field could not be copied */
};

/* 0, or -1 with the reason in err.  Free with csvrec_reader_free(). */
int csvrec_reader_init(struct csvrec_reader *r, csvrec_record_fn *fn, void *opaque,
    char *err, size_t errlen);

/* Feeds one physical line (with its line end, as getline() reads it);
 * calls fn for each record it completes.  0, or -1 with "line N: reason"
 * in err: the rest of the file cannot be read. */
int csvrec_reader_feed(struct csvrec_reader *r, const char *line, size_t len,
    char *err, size_t errlen);

/* Ends the input: a last record without a final newline is handed to fn.
 * 0, or -1 with the reason in err. */
int csvrec_reader_finish(struct csvrec_reader *r, char *err, size_t errlen);

void csvrec_reader_free(struct csvrec_reader *r);

/* 1 if rec is the expected header, exactly. */
int csvrec_header_ok(const struct csvrec_record *rec);

enum csvrec_verdict {
	CSVREC_SEND,		/* row is filled */
	CSVREC_FILTERED,	/* outside the departments or hire years: counted */
	CSVREC_REJECTED,	/* malformed: the reason is in why, for the DLQ */
};

/* A record as the ETL topic carries it.  The strings point into the
 * record's fields. */
struct csvrec_row {
	const char *department;
	const char *division;
	const char *title;
	char hire_date[16];	/* "YYYY-MM-DD" */
	int hire_year;
	int32_t salary;		/* rounded down */
};

/* Checks rec (column count, required fields, UTF-8 in the texts sent,
 * date, number), then keeps
 * departments listed in departments (comma-separated codes) and hire years
 * from min_hire_year on. */
enum csvrec_verdict csvrec_transform(const struct csvrec_record *rec,
    const char *departments, int min_hire_year, struct csvrec_row *row,
    char *why, size_t whylen);

/* The ETL topic's value for row, read from file (name, sha256) at line:
 * a new reference, or NULL when out of memory. */
json_t *csvrec_row_json(const struct csvrec_row *row, const char *file,
    const char *sha256, long line);

/* The DLQ's value for a rejected record: file, sha256, line and every
 * field as read, a byte that is not UTF-8 as U+FFFD.  A new reference, or
 * NULL when out of memory. */
json_t *csvrec_reject_json(const struct csvrec_record *rec, const char *file,
    const char *sha256);

#endif
