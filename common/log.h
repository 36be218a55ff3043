/*
 * log.h - the one logging module of pgrelay.
 *
 * Every line names the process kind and pid, a level, and the message:
 *   2026-11-23T06:00:00.123Z consumer[4242] ERROR: target database: ... ; retrying in 1s
 * Under systemd (JOURNAL_STREAM set) the timestamp is dropped and the line
 * starts with a syslog priority prefix "<3>" that journald understands.
 *
 * Lines go to stderr with one write(2) each, so lines of several processes
 * sharing a descriptor do not interleave.  Messages must never carry secrets:
 * callers log DSNs only through db_dsn_redact().
 */
#ifndef PGRELAY_LOG_H
#define PGRELAY_LOG_H

#include <stdarg.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR };

/* Sets the process kind shown in every line ("producer", "pgrelayd", ...).
 * kind must stay valid for the life of the process (a string literal). */
void log_init(const char *kind);

/* Lines below this level are dropped.  Default: LOG_LVL_INFO. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn", "error"; returns -1 on anything else. */
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void log_vmsg(enum log_level level, const char *fmt, va_list ap);

#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)

#endif
