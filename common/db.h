/*
 * db.h - a thin layer over one libpq connection.
 *
 * Every statement is parameterized (PQexecParams, text format); no SQL is
 * ever built by pasting values.  Functions return 0 / -1 or a pointer / NULL
 * and on failure fill the caller's (err, errlen) with one line that names
 * the SQLSTATE when the server gave one.
 *
 * Ownership: db_connect() returns a connection the caller closes with
 * PQfinish(); db_query() returns a result the caller frees with PQclear().
 */
#ifndef PGRELAY_DB_H
#define PGRELAY_DB_H

#include <libpq-fe.h>
#include <stddef.h>

#include "err.h"

/* Opens a connection to dsn (a libpq connection string) with
 * application_name set to appname.  NULL and err on failure. */
PGconn *db_connect(const char *dsn, const char *appname, char *err, size_t errlen);

/* Runs sql with nparams text parameters (NULL entries are SQL NULLs).
 * Returns the result on PGRES_TUPLES_OK / PGRES_COMMAND_OK, else NULL. */
PGresult *db_query(PGconn *conn, const char *sql, int nparams,
    const char *const *params, char *err, size_t errlen);

/* db_query() that also says, on failure, whether the statement's data is
 * at fault (*cls = PGR_DATA: SQLSTATE class 22 or 23) or anything else
 * (PGR_RETRY: the connection, the server, a lock, ...). */
PGresult *db_query_cls(PGconn *conn, const char *sql, int nparams,
    const char *const *params, enum pgr_err *cls, char *err, size_t errlen);

/* db_query() for a statement that may take long (a window of millions of
 * changes): waits for the answer in poll() slices of at most a second and
 * calls tick(arg) (if tick is not NULL) after each, so that the worker can
 * report that it is alive while A works (the supervisor's watchdog would
 * otherwise take a long statement for a hung worker, kill it, and loop)
 * and do what must go on meanwhile (the producer renews its lease). */
PGresult *db_query_ticking(PGconn *conn, const char *sql, int nparams,
    const char *const *params, void (*tick)(void *), void *arg, char *err,
    size_t errlen);

/* db_query() for statements whose rows are not wanted: 0, PGR_DATA or
 * PGR_RETRY, as db_query_cls() classes them. */
int db_exec(PGconn *conn, const char *sql, int nparams,
    const char *const *params, char *err, size_t errlen);

/* Checks that pgrelay_schema_version holds component at version or
 * later.  0, or -1 with err saying what is missing (the schema, or a
 * version this pgrelay is too new for; the caller names the files to
 * apply) or why the query failed. */
int db_require_schema(PGconn *conn, const char *component, int version,
    char *err, size_t errlen);

/* s quoted for SQL text by conn's libpq: an identifier ("a""b") when
 * ident, else a string literal.  malloc'd (free()), or NULL when out of
 * memory.  For names in generated SQL (relation maps, capture); a value
 * always goes as a parameter. */
char *db_quote(PGconn *conn, const char *s, int ident);

/* 1 if the connection is gone and must be reopened. */
int db_broken(const PGconn *conn);

/* Checks that dsn parses as a libpq connection string (key=value or URI).
 * 0, or -1 with why: libpq's reason with every quoted token masked, since
 * libpq quotes the offending part, which can be the password. */
int db_dsn_check(const char *dsn, char *why, size_t whylen);

/* Writes "host=... port=... dbname=... user=..." of dsn into buf, leaving
 * out the password and every other key, for log lines.  Returns buf. */
const char *db_dsn_redact(const char *dsn, char *buf, size_t len);

#endif
