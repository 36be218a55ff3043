/*
 * db.c - libpq helpers: connect, run a parameterized statement, report.
 */
#define _POSIX_C_SOURCE 200809L
#include "db.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
result_error(PGconn *conn, const PGresult *res, char *err, size_t errlen)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : NULL;

	if (msg == NULL || msg[0] == '\0')
		msg = PQerrorMessage(conn);
	snprintf(err, errlen, "%s%s%s", state ? "SQLSTATE " : "",
	    state ? state : "", state ? ": " : "");
	size_t n = strlen(err);
	snprintf(err + n, errlen - n, "%s", msg);
	/* libpq ends messages with a newline: keep log lines whole. */
	n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
}

int
db_dsn_check(const char *dsn, char *why, size_t whylen)
{
	char *msg = NULL;
	PQconninfoOption *opts;
	size_t n = 0;
	int quoted = 0;

	/* db_connect() gives dsn as dbname with expand_dbname: a string with
	 * no "=" and no URI prefix is a plain database name */
	if (strchr(dsn, '=') == NULL && strncmp(dsn, "postgresql://", 13) != 0 &&
	    strncmp(dsn, "postgres://", 11) != 0)
		return 0;
	opts = PQconninfoParse(dsn, &msg);
	if (opts != NULL) {
		PQconninfoFree(opts);
		return 0;
	}
	/* "invalid percent-encoded token: \"Tg7Secret%ZZ\"" -> "...: \"***\"";
	 * only a quoted "=" (missing "=" after ...) is shown: an unquoted
	 * password with a space in it is what libpq quotes next */
	for (const char *p = msg ? msg : "out of memory"; *p != '\0' && n + 5 < whylen; p++) {
		if (*p == '"' && !quoted && p[1] == '=' && p[2] == '"') {
			memcpy(why + n, p, 3);
			n += 3;
			p += 2;
		} else if (*p == '"') {
			quoted = !quoted;
			if (quoted) {
				memcpy(why + n, "\"***", 4);
				n += 4;
			} else {
				why[n++] = '"';
			}
		} else if (!quoted && *p != '\n') {
			why[n++] = *p;
		}
	}
	why[n] = '\0';
	PQfreemem(msg);
	return -1;
}

PGconn *
db_connect(const char *dsn, const char *appname, char *err, size_t errlen)
{
	const char *const keys[] = { "dbname", "application_name", NULL };
	const char *const vals[] = { dsn, appname, NULL };
	char why[256];
	PGconn *conn;

	/* libpq's own error for a malformed string can quote the password */
	if (db_dsn_check(dsn, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "not a valid connection string: %s", why);
		return NULL;
	}
	conn = PQconnectdbParams(keys, vals, 1);

	if (conn == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		result_error(conn, NULL, err, errlen);
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

PGresult *
db_query_cls(PGconn *conn, const char *sql, int nparams,
    const char *const *params, enum pgr_err *cls, char *err, size_t errlen)
{
	PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL,
	    NULL, 0);
	ExecStatusType st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	const char *state;

	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	result_error(conn, res, err, errlen);
	if (cls != NULL) {
		/* classes 22 (data exception) and 23 (integrity constraint
		 * violation): the values are refused, not the connection */
		state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		*cls = state != NULL && (strncmp(state, "22", 2) == 0 ||
		    strncmp(state, "23", 2) == 0) ? PGR_DATA : PGR_RETRY;
	}
	PQclear(res);
	return NULL;
}

PGresult *
db_query_ticking(PGconn *conn, const char *sql, int nparams,
    const char *const *params, void (*tick)(void *), void *arg, char *err,
    size_t errlen)
{
	PGresult *res = NULL, *next;
	ExecStatusType st;

	if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0)) {
		result_error(conn, NULL, err, errlen);
		return NULL;
	}
	while (PQisBusy(conn)) {
		struct pollfd pfd = { .fd = PQsocket(conn), .events = POLLIN };

		if (poll(&pfd, 1, 1000) < 0 && errno != EINTR) {
			snprintf(err, errlen, "poll: %s", strerror(errno));
			return NULL;
		}
		if (tick != NULL)
			tick(arg);
		if (!PQconsumeInput(conn)) {
			result_error(conn, NULL, err, errlen);
			return NULL;
		}
	}
	/* one statement: one result, then NULL; keep the first */
	while ((next = PQgetResult(conn)) != NULL) {
		if (res == NULL)
			res = next;
		else
			PQclear(next);
	}
	st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;
	result_error(conn, res, err, errlen);
	PQclear(res);
	return NULL;
}

PGresult *
db_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
    char *err, size_t errlen)
{
	return db_query_cls(conn, sql, nparams, params, NULL, err, errlen);
}

int
db_exec(PGconn *conn, const char *sql, int nparams, const char *const *params,
    char *err, size_t errlen)
{
	enum pgr_err cls = PGR_RETRY;
	PGresult *res = db_query_cls(conn, sql, nparams, params, &cls, err, errlen);

	if (res == NULL)
		return cls;
	PQclear(res);
	return 0;
}

int
db_require_schema(PGconn *conn, const char *component, int version,
    char *err, size_t errlen)
{
	const char *params[1] = { component };
	PGresult *res = db_query(conn, "SELECT version FROM pgrelay_schema_version "
	    "WHERE component = $1", 1, params, err, errlen);
	int have;

	if (res == NULL)
		return -1;
	if (PQntuples(res) != 1) {
		PQclear(res);
		snprintf(err, errlen, "schema component '%s' not installed", component);
		return -1;
	}
	have = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (have < version) {
		snprintf(err, errlen, "schema component '%s' is at version %d, "
		    "this pgrelay needs %d", component, have, version);
		return -1;
	}
	return 0;
}

int
db_broken(const PGconn *conn)
{
	return conn == NULL || PQstatus(conn) != CONNECTION_OK;
}

const char *
db_dsn_redact(const char *dsn, char *buf, size_t len)
{
	static const char *const shown[] = { "host", "hostaddr", "port", "dbname", "user" };
	PQconninfoOption *opts = PQconninfoParse(dsn, NULL);
	size_t n = 0;

	buf[0] = '\0';
	if (opts == NULL) {
		snprintf(buf, len, "(unparsable connection string)");
		return buf;
	}
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
			if (strcmp(o->keyword, shown[i]) == 0 && n < len) {
				int w = snprintf(buf + n, len - n, "%s%s=%s",
				    n ? " " : "", o->keyword, o->val);
				if (w > 0)
					n += (size_t)w;
			}
		}
	}
	PQconninfoFree(opts);
	return buf;
}

char *
db_quote(PGconn *conn, const char *s, int ident)
{
	char *q = ident ? PQescapeIdentifier(conn, s, strlen(s)) :
	    PQescapeLiteral(conn, s, strlen(s));
	char *r = q ? strdup(q) : NULL;

	PQfreemem(q);
	return r;
}
