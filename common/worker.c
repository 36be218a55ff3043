/*
 * worker.c - set-up and small services shared by the worker processes.
 */
#define _POSIX_C_SOURCE 200809L
#include "worker.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "kafka.h"
#include "log.h"

volatile sig_atomic_t worker_stop;

static void
handle_stop_signal(int sig)
{
	(void)sig;
	worker_stop = 1;
}

struct cfg *
worker_setup(const char *kind, const char *path)
{
	char err[1024];
	struct cfg *cfg;
	struct sigaction sa;
	enum log_level lvl;

	log_init(kind);
	cfg = cfg_load(path, err, sizeof(err));
	if (cfg == NULL || kfk_conf_check(cfg, 0, err, sizeof(err)) < 0) {
		log_error("configuration error: %s; fix the file and start again", err);
		exit(CFG_EXIT_CONFIG);
	}
	if (log_level_parse(cfg->log_level, &lvl) == 0)
		log_set_level(lvl);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);	/* the supervisor restarts us on reload */
	/* pgrelayd starts us with TERM and INT blocked, so that a stop it asks
	 * for before this point waits for the handler instead of killing us */
	sigset_t stops;
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigprocmask(SIG_UNBLOCK, &stops, NULL);
	return cfg;
}

struct cfg *
worker_start(int argc, char **argv, const char *kind, const char *usage,
    int *force)
{
	const char *path = NULL;
	int ch;

	while ((ch = getopt(argc, argv, force ? "c:fh" : "c:h")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'f': *force = 1; break;
		case 'h': printf("%s\n", usage); exit(0);
		default: fprintf(stderr, "%s\n", usage); exit(64);
		}
	}
	if (path == NULL || optind != argc) {
		fprintf(stderr, "%s\n", usage);
		exit(64);
	}
	return worker_setup(kind, path);
}

int
worker_sleep_ms(int ms)
{
	struct timespec ts;

	while (ms > 0 && !worker_stop) {
		int step = ms < 50 ? ms : 50;
		ts.tv_sec = 0;
		ts.tv_nsec = (long)step * 1000000L;
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR && !worker_stop)
			;
		ms -= step;
		worker_notify_alive(NULL);	/* sleeping on purpose is not hung */
	}
	return worker_stop ? 1 : 0;
}

int
worker_backoff_ms(int attempt)
{
	int ms = 250;

	while (attempt-- > 0 && ms < 10000)
		ms *= 2;
	return ms > 10000 ? 10000 : ms;
}

void
worker_notify_ready(const char *status)
{
	if (status != NULL)
		sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	else
		sd_notify(0, "READY=1");
}

static time_t worker_last_alive;

void
worker_notify_now(const char *status)
{
	worker_last_alive = time(NULL);
	sd_notifyf(0, "WATCHDOG=1\nSTATUS=%s", status);
}

void
worker_notify_waiting(const char *why)
{
	char status[512];

	snprintf(status, sizeof(status), "state=waiting error=%s", why);
	worker_notify_now(status);
}

void
worker_notify_alive(const char *status)
{
	time_t now = time(NULL);

	if (now == worker_last_alive)
		return;
	worker_last_alive = now;
	if (status != NULL)
		sd_notifyf(0, "WATCHDOG=1\nSTATUS=%s", status);
	else
		sd_notify(0, "WATCHDOG=1");
}
