/*
 * log.c - formats one line per call and writes it with a single write(2).
 * Keeps no state but the process kind and the level threshold.
 */
#define _POSIX_C_SOURCE 200809L
#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *log_kind = "pgrelay";
static enum log_level log_threshold = LOG_LVL_INFO;

static const char *const level_names[] = { "DEBUG", "INFO", "WARN", "ERROR" };
static const int level_syslog[] = { 7, 6, 4, 3 };

void
log_init(const char *kind)
{
	log_kind = kind;
}

void
log_set_level(enum log_level level)
{
	log_threshold = level;
}

int
log_level_parse(const char *name, enum log_level *out)
{
	static const char *const names[] = { "debug", "info", "warn", "error" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcasecmp(name, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return -1;
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[4096];
	size_t n = 0;
	int w;

	if (level < log_threshold)
		return;

	if (getenv("JOURNAL_STREAM") != NULL) {
		w = snprintf(line, sizeof(line), "<%d>%s[%ld] %s: ",
		    level_syslog[level], log_kind, (long)getpid(),
		    level_names[level]);
	} else {
		struct timespec ts;
		struct tm tm;
		char stamp[32];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		w = snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld] %s: ",
		    stamp, ts.tv_nsec / 1000000L, log_kind, (long)getpid(),
		    level_names[level]);
	}
	if (w < 0)
		return;
	n = (size_t)w < sizeof(line) ? (size_t)w : sizeof(line) - 1;

	w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (w > 0)
		n += (size_t)w < sizeof(line) - n ? (size_t)w : sizeof(line) - n - 1;

	/* One line, one newline: strip trailing newlines libpq likes to add. */
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (n >= sizeof(line) - 1)
		n = sizeof(line) - 2;
	for (size_t i = 0; i < n; i++)	/* keep multi-line libpq errors on one line */
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';

	for (size_t off = 0; off < n;) {
		ssize_t r = write(STDERR_FILENO, line + off, n - off);
		if (r <= 0)
			break;
		off += (size_t)r;
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}
