/*
 * csvrec.h - the ETL producer's CSV records, without Kafka or B: a file
 * read into bounded records with libcsv, the header check, each record's
 * checks, filter and transform into what the ETL topic carries, and the
 * reason and DLQ value of a record that cannot be loaded.
 * workers/etl_producer.c reads the spool and talks to Kafka and B (the
 * resume point, the counts, the checkpoints); tests/unit/test_csvrec.c
 * and tests/fuzz/fuzz_csvrec.c drive this module alone.  What a record
 * is, and why one is rejected, is told in etl_producer.c's NOTES.
 *
 * The file's columns (data/Employee_Salaries.csv):
 *   Department, Department-Division, PCN, Position Title,
 *   FLSA Status, Initial Hire Date, Date in Title, Salary
 */
#ifndef PGRELAY_CSVREC_H
#define PGRELAY_CSVREC_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CSVREC_NCOLS 8
#define CSVREC_MAX_FIELDS 64	/* kept of a record; more is a wrong column count */
#define CSVREC_DLQ_FIELD_BYTES 16384	/* of a rejected record's fields, all together */
#define CSVREC_DLQ_TEXT_BYTES 4096	/* of the first line of a record rejected whole */

/* What a file is read with (etl.* in the config). */
struct csvrec_limits {
	const char *departments;	/* the codes kept, comma-separated */
	int min_hire_year;		/* employees hired before are filtered out */
	int max_record_lines;		/* a record open after this many lines ... */
	int max_record_bytes;		/* ... or longer is rejected whole (>= 1) */
};

struct csvrec_field {
	const char *s;		/* NUL-terminated; may hold NUL bytes before len */
	size_t len;
};

enum csvrec_verdict {
	CSVREC_SEND,		/* to the ETL topic: csvrec_value(), keyed by department */
	CSVREC_FILTERED,	/* outside departments or hired before min_hire_year */
	CSVREC_REJECTED,	/* a field is wrong: reason; the DLQ gets its fields */
	CSVREC_REJECTED_WHOLE,	/* its bounds or quoting are wrong, so no field of
				 * it can be trusted: reason; the DLQ gets its
				 * first line, and the file is read again from
				 * the line after that one */
};

/* One record of a file, the header excepted, as handed to a csvrec_fn.
 * Every pointer in it is the reader's, valid during the call only. */
struct csvrec {
	long line;		/* its first line (from 1): its identity */
	long last_line;		/* its last line read */
	size_t bytes;		/* of its lines kept (at most max_record_bytes) */
	enum csvrec_verdict verdict;
	const char *reason;	/* REJECTED, REJECTED_WHOLE: why, on one line
				 * (UTF-8, no control character) */
	/* the fields as libcsv read them (none when REJECTED_WHOLE); more
	 * than CSVREC_MAX_FIELDS: the first CSVREC_MAX_FIELDS, overflow set */
	const struct csvrec_field *fields;
	int nfields;
	int overflow;
	/* SEND: the transformed record (department, division and title are
	 * fields[0], [1] and [3]) */
	const char *department;
	const char *division;
	const char *title;
	char hire_date[11];	/* "YYYY-MM-DD" */
	int hire_year;
	int32_t salary;		/* rounded down, >= 0 */
};

/* Called for each record in the order of the file; 0 to go on, -1 to stop
 * reading (the caller keeps its own reason). */
typedef int csvrec_fn(const struct csvrec *rec, void *opaque);
/* Called before each line is read; nonzero to stop reading. */
typedef int csvrec_tick_fn(void *opaque);

enum csvrec_end {
	CSVREC_END = 0,		/* read to its end */
	CSVREC_BAD_HEADER,	/* the first record is not the header: nothing
				 * of the file was handed on */
	CSVREC_STOPPED,		/* fn or tick asked to stop */
	CSVREC_FAILED,		/* a read, seek or memory failure: err says */
};

struct csvrec_file;

/* A reader for one file, named name (valid UTF-8) with content sha256
 * sha256 (both copied into the values built).  Holds a buffer of
 * max_record_bytes.  NULL with the reason in err; csvrec_file_free()
 * frees it. */
struct csvrec_file *csvrec_file_new(const char *name, const char *sha256,
    const struct csvrec_limits *lim, char *err, size_t errlen);
void csvrec_file_free(struct csvrec_file *cf);

/* Reads fp (from its start, a byte-order mark skipped; seeks back into it
 * to read a record rejected whole again) and hands each record after the
 * header to fn, in file order, with its first line strictly above the one
 * before's.  Once per reader.  fp stays the caller's. */
enum csvrec_end csvrec_read(struct csvrec_file *cf, FILE *fp, csvrec_fn *fn,
    csvrec_tick_fn *tick, void *opaque, char *err, size_t errlen);

/* The ETL topic's value for rec (SEND): file, sha256, line, department,
 * department_division, position_title, hire_date, salary.  A new
 * reference, NULL when out of memory. */
json_t *csvrec_value(const struct csvrec_file *cf, const struct csvrec *rec);

/* The DLQ's value for rec: file, sha256 and line, and its fields (its
 * first line as "text" when it was rejected whole), cut to fit
 * (CSVREC_DLQ_FIELD_BYTES, CSVREC_DLQ_TEXT_BYTES; "truncated": true then),
 * bytes that are not UTF-8 as U+FFFD.  Serialized, at most
 * CSVREC_DLQ_JSON_MAX(strlen(name)) bytes.  A new reference, NULL when
 * out of memory. */
json_t *csvrec_dlq_value(const struct csvrec_file *cf, const struct csvrec *rec);

/* A bound on a DLQ value's JSON for a file name of namelen bytes: each
 * byte of text at most 6 (\u0000), each field 3 more, and the keys. */
#define CSVREC_DLQ_JSON_MAX(namelen) \
	(6 * ((size_t)(namelen) + CSVREC_DLQ_FIELD_BYTES) + 3 * CSVREC_MAX_FIELDS + 256)

#endif
