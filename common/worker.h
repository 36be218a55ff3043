/*
 * worker.h - what every pgrelay worker process does the same way: load the
 * config (exit 78 on error), set up logging, turn SIGTERM/SIGINT into a
 * stop flag, sleep without missing that flag, and report liveness to the
 * supervisor (sd_notify; a no-op when NOTIFY_SOCKET is unset).
 *
 * Signal handlers only set worker_stop; each worker's loop checks it.
 */
#ifndef PGRELAY_WORKER_H
#define PGRELAY_WORKER_H

#include <signal.h>

#include "config.h"

extern volatile sig_atomic_t worker_stop;

/* Loads path (exits 78 with the error on stderr when it is wrong), sets
 * the log kind and level, installs the stop handlers.  Returns the config,
 * owned by the caller (cfg_free). */
struct cfg *worker_setup(const char *kind, const char *path);

/* The common command line of a worker: -c CONFIG, -h, and -f when force
 * is not NULL (*force set to 1 when given).  Prints usage (a text ending
 * without a newline) and exits 64 on a bad command line, 0 on -h; then
 * worker_setup(). */
struct cfg *worker_start(int argc, char **argv, const char *kind,
    const char *usage, int *force);

/* Sleeps up to ms milliseconds; returns early (1) when a stop is asked. */
int worker_sleep_ms(int ms);

/* Doubling back-off for reconnects: 250 ms up to 10 s. */
int worker_backoff_ms(int attempt);

/* Tells the supervisor "READY=1" once, and "WATCHDOG=1" at most once a
 * second; status is shown by pgrelayctl (may be NULL). */
void worker_notify_ready(const char *status);
void worker_notify_alive(const char *status);

/* "WATCHDOG=1" and status at once, however recently the last went: for a
 * change of state that must not wait (a producer that stands down). */
void worker_notify_now(const char *status);

/* worker_notify_now("state=waiting error=" why): a worker that retries
 * says why in pgrelayctl status (what it waits for, or what to fix). */
void worker_notify_waiting(const char *why);

#endif
