/*
 * supervisor.c - pgrelayd: forks, watches and restarts pgrelay's workers.
 *
 * NOTES
 *
 * Processes.  One slot per child in a fixed table; slots belong to pools
 * (snapshot, producer, consumer).  The snapshot pool runs once: its exit 0
 * means "done" and lets the producer pool start.  Each child is the worker
 * program (pgrelay-KIND next to pgrelayd) exec'd after fork, so it starts
 * clean: no librdkafka handle, libpq connection or descriptor of ours.
 *
 * One wait.  All signals are blocked and read from a signalfd; the loop
 * waits in one poll() on the signalfd, the notify socket and the control
 * socket, then handles, in this order: shutdown, reload, child exits,
 * scaling, due restarts, watchdog, status.  No signal handler exists.
 *
 * Exit codes are a contract.  0: the child was asked to stop (or, for the
 * snapshot, is done): not a crash.  78 (EX_CONFIG): never restarted; the
 * pool stops.  Anything else, or a signal: a crash, restarted with a
 * doubling back-off plus jitter per slot; more than restart_intensity
 * crashes within restart_period_s stop the pool (an OTP supervisor's
 * intensity), and pgrelayd exits 1 when the pipeline can no longer run, so
 * that systemd's Restart= takes over.
 *
 * Liveness.  Children speak the sd_notify protocol to a datagram socket of
 * pgrelayd's (NOTIFY_SOCKET in their environment; SO_PASSCRED names the
 * sender).  A child silent for watchdog_s is killed and restarted; time
 * pgrelayd itself did not run (stopped, or its host paused) does not count
 * as silence.  Towards
 * systemd pgrelayd sends READY=1, STATUS=, WATCHDOG=1 (only while every
 * pool is healthy), RELOADING=1 and STOPPING=1.
 *
 * Config.  The file is validated and copied to runtime_dir/active.conf;
 * children read that copy.  SIGHUP validates the file again: a bad file is
 * rejected with its error and the running copy stays; a good one replaces
 * the copy and every child is restarted gracefully, one pool at a time.
 * The consumer count scaled by SIGUSR1/SIGUSR2 survives a reload unless the
 * file's consumer.count itself changed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "cdc.h"
#include "config.h"
#include "db.h"
#include "ctlproto.h"
#include "err.h"
#include "kafka.h"
#include "log.h"

#define MAX_SLOTS 64
#define STATUS_LEN 512

enum pool_id {
	POOL_SNAPSHOT, POOL_PRODUCER, POOL_CONSUMER, POOL_ETL_PRODUCER, POOL_ETL_LOADER,
	NPOOLS
};

/* The pool's name is also its program's: pgrelay-NAME. */
static const char *const pool_names[NPOOLS] = {
	"snapshot", "producer", "consumer", "etl_producer", "etl_loader"
};

static int
pool_by_name(const char *name)
{
	for (int p = 0; p < NPOOLS; p++)
		if (strcmp(pool_names[p], name) == 0)
			return p;
	return -1;
}

/* Pools whose size is scaled (SIGUSR1/2, pgrelayctl scale, reload). */
static int
pool_scalable(int p)
{
	return p == POOL_CONSUMER || p == POOL_ETL_LOADER;
}

enum slot_state {
	SLOT_FREE = 0,
	SLOT_RUNNING,		/* pid is alive */
	SLOT_BACKOFF,		/* waiting for restart_at */
	SLOT_DONE,		/* finished for good (snapshot done, pool stopped) */
};

struct slot {
	enum slot_state state;
	enum pool_id pool;
	int index;		/* within the pool, 0-based, for names */
	pid_t pid;
	int exiting;		/* asked to stop: do not restart */
	int ready;		/* sent READY=1 */
	int reloading;		/* asked to stop for a reload: restart at once */
	double started;		/* monotonic seconds */
	double last_alive;
	double restart_at;
	double term_sent;
	int restarts;
	int crashes_in_row;	/* for the back-off; reset after a good run */
	char status[STATUS_LEN];
};

struct pool {
	int want;		/* how many slots should run */
	int min, max;
	int stopped;		/* given up on: too many crashes or a config error */
	double crash_times[1000];	/* ring of recent crash times */
	int ncrash;
};

#define MAX_CLIENTS 16
#define CTL_IDLE_S 2.0

struct client {
	int fd;
	double since;		/* accepted at (monotonic) */
	char buf[256];		/* the request so far */
	size_t len;
};

struct sup {
	struct cfg *cfg;
	const char *conf_path;
	char active_conf[PATH_MAX];
	char bin_dir[PATH_MAX];
	char notify_path[PATH_MAX];
	char control_path[PATH_MAX];
	int sfd, nfd, cfd;
	struct client clients[MAX_CLIENTS];	/* control clients; fd -1: free */
	int lockfd;		/* flock of runtime_dir/pgrelayd.lock */
	int locked_out;		/* another pgrelayd holds it */
	sigset_t oldmask;
	struct slot slots[MAX_SLOTS];
	struct pool pools[NPOOLS];
	int shutting_down;
	double shutdown_at;
	int exit_code;
	int ready_sent;
	double last_status;
	double last_watchdog;
	double last_loop;		/* when the loop last ran (excuse_own_pause) */
	double last_extend;
	uint64_t watchdog_usec;
	int pending_reload, pending_usr1, pending_usr2, pending_stop;
	int snapshot_done_once;	/* the first snapshot finished: the producer runs */
	int resnapshot;		/* run the snapshot again: a reload may have
				 * added tables, which it copies alone */
	pid_t self;
};

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- configuration copy ------------------------------------------------ */

/* Copies src to dst atomically: a new temporary of a name no one can
 * guess or plant a link at beforehand (mkstemp: O_EXCL, 0600), renamed
 * over dst. */
static int
copy_file(const char *src, const char *dst, char *err, size_t errlen)
{
	char tmp[PATH_MAX + 8], buf[8192];
	int in, out;
	ssize_t n;

	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", dst);
	in = open(src, O_RDONLY | O_CLOEXEC);
	if (in < 0) {
		snprintf(err, errlen, "%s: %s", src, strerror(errno));
		return -1;
	}
	out = mkostemp(tmp, O_CLOEXEC);
	if (out < 0) {
		snprintf(err, errlen, "%.400s: %s", tmp, strerror(errno));
		close(in);
		return -1;
	}
	while ((n = read(in, buf, sizeof(buf))) > 0) {
		if (write(out, buf, (size_t)n) != n) {
			snprintf(err, errlen, "%.400s: %s", tmp, strerror(errno));
			close(in);
			close(out);
			unlink(tmp);
			return -1;
		}
	}
	close(in);
	if (n < 0 || close(out) < 0 || rename(tmp, dst) < 0) {
		snprintf(err, errlen, "%s: %s", dst, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/* The runtime directory holds the active config copy (with the DSNs)
 * and the sockets: it is created 0700, and an existing one is used only
 * if it is a directory (not a link) of pgrelayd's user that no one else
 * can write to.  PGR_CONFIG with err otherwise. */
static int
runtime_dir_ready(const char *conf_path, const char *dir, char *err, size_t errlen)
{
	struct stat st;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "%s:1: supervisor.runtime_dir: cannot create "
		    "%s: %s", conf_path, dir, strerror(errno));
		return PGR_CONFIG;
	}
	if (lstat(dir, &st) < 0) {
		snprintf(err, errlen, "%s:1: supervisor.runtime_dir: %s: %s",
		    conf_path, dir, strerror(errno));
		return PGR_CONFIG;
	}
	if (!S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s:1: supervisor.runtime_dir: %s is not a "
		    "directory (a link?); refusing to keep the config copy there",
		    conf_path, dir);
		return PGR_CONFIG;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 022) != 0) {
		snprintf(err, errlen, "%s:1: supervisor.runtime_dir: %s belongs to "
		    "uid %ld with mode %04o; it must belong to pgrelayd's user (uid "
		    "%ld) and be writable by no one else, since it holds the "
		    "config copy with the DSNs", conf_path, dir, (long)st.st_uid,
		    (unsigned)(st.st_mode & 07777), (long)geteuid());
		return PGR_CONFIG;
	}
	return 0;
}

/* One pgrelayd per runtime directory: an flock on pgrelayd.lock in it,
 * held (by the descriptor, close-on-exec) until pgrelayd exits; the file
 * holds the holder's pid for the error of the next one. */
static int
lock_runtime_dir(const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX], pid[24] = "";
	int fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/pgrelayd.lock", dir);
	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(err, errlen, "%.400s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = read(fd, pid, sizeof(pid) - 1);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		snprintf(err, errlen, "another pgrelayd (pid %s) runs with the "
		    "runtime directory %s; stop it first, or give this one its own "
		    "supervisor.runtime_dir", pid[0] ? pid : "unknown", dir);
		close(fd);
		return -1;
	}
	n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
		snprintf(err, errlen, "%.400s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;		/* kept open: the lock lives as long as pgrelayd */
}

/* Runs "pgrelayd -t" on the new config in a child (it connects to the
 * source to check the tables; pgrelayd itself never talks to a database)
 * and waits for it, at most 15 s.  0 to go on with the reload, -1 when
 * it refused the config (err: see its log line). */
static int
check_tables_child(struct sup *s, char *err, size_t errlen)
{
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	pid_t pid;
	int status;

	if (n <= 0)
		return 0;
	self[n] = '\0';
	int pfd[2];
	char out[2048];
	size_t got = 0;

	if (pipe2(pfd, O_CLOEXEC) < 0) {
		log_warn("reload: cannot run the table check: %s; the workers "
		    "check the tables", strerror(errno));
		return 0;
	}
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		log_warn("reload: cannot fork the table check: %s; the workers "
		    "check the tables", strerror(errno));
		close(pfd[0]);
		close(pfd[1]);
		return 0;
	}
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		sigprocmask(SIG_SETMASK, &s->oldmask, NULL);
		if (devnull >= 0)
			dup2(devnull, STDOUT_FILENO);	/* "configuration is valid" */
		dup2(pfd[1], STDERR_FILENO);		/* its log lines, for err */
		execl(self, "pgrelayd", "-t", "-c", s->conf_path, (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	for (int waited = 0; ; waited += 50) {
		pid_t r = waitpid(pid, &status, WNOHANG);
		ssize_t rd;

		while (got < sizeof(out) - 1 &&
		    (rd = read(pfd[0], out + got, sizeof(out) - 1 - got)) > 0)
			got += (size_t)rd;
		if (r == pid)
			break;
		if (r < 0 || waited >= 15000) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			log_warn("reload: the table check did not finish in 15 s; the "
			    "workers check the tables");
			close(pfd[0]);
			return 0;
		}
		usleep(50 * 1000);
	}
	close(pfd[0]);
	out[got] = '\0';
	if (WIFEXITED(status) && WEXITSTATUS(status) == CFG_EXIT_CONFIG) {
		/* its line "... ERROR: configuration error: FILE:LINE: ..." */
		const char *why = strstr(out, "configuration error: ");
		size_t len;

		why = why ? why + strlen("configuration error: ") : out;
		len = strcspn(why, "\n");
		snprintf(err, errlen, "%.*s", (int)len, why);
		return -1;
	}
	if (strstr(out, "WARN") != NULL)
		log_warn("reload: %.*s", (int)strcspn(out, "\n"), out);
	return 0;
}

/* Sizes the pools from a new config.  A scalable pool keeps its scaled
 * size unless the config's count for it changed (gunicorn loses it: its
 * issue #716); sizes are clamped to the new min/max. */
static void
set_pool_sizes(struct sup *s, const struct cfg *n)
{
	const struct cfg *o = s->cfg;
	int etl = n->etl_enabled;
	struct { int p, count, min, max, old_count; } sz[] = {
		{ POOL_CONSUMER, n->consumer_count, n->consumer_min, n->consumer_max,
		  o ? o->consumer_count : -1 },
		{ POOL_ETL_LOADER, etl ? n->etl_loader_count : 0, etl ? n->etl_loader_min : 0,
		  etl ? n->etl_loader_max : 0,
		  o ? (o->etl_enabled ? o->etl_loader_count : 0) : -1 },
	};

	s->pools[POOL_SNAPSHOT] = (struct pool){ .want = 1, .min = 1, .max = 1,
	    .stopped = s->pools[POOL_SNAPSHOT].stopped };
	s->pools[POOL_PRODUCER].want = s->pools[POOL_PRODUCER].min =
	    s->pools[POOL_PRODUCER].max = 1;
	s->pools[POOL_ETL_PRODUCER].want = s->pools[POOL_ETL_PRODUCER].max = etl;
	s->pools[POOL_ETL_PRODUCER].min = etl;
	for (size_t i = 0; i < sizeof(sz) / sizeof(sz[0]); i++) {
		struct pool *pl = &s->pools[sz[i].p];
		int want = (o == NULL || sz[i].count != sz[i].old_count) ? sz[i].count : pl->want;
		if (want < sz[i].min)
			want = sz[i].min;
		if (want > sz[i].max)
			want = sz[i].max;
		if (o != NULL && want != pl->want)
			log_info("%s pool: %d -> %d (min %d, max %d)", pool_names[sz[i].p],
			    pl->want, want, sz[i].min, sz[i].max);
		pl->want = want;
		pl->min = sz[i].min;
		pl->max = sz[i].max;
	}
}

/* Validates path and makes it the active copy.  New config or NULL. */
static struct cfg *
load_config(struct sup *s, char *err, size_t errlen)
{
	struct cfg *cfg = cfg_load(s->conf_path, err, errlen);

	if (cfg == NULL)
		return NULL;
	/* kafka.properties against librdkafka's configuration only: no
	 * handle is made here, before a fork */
	if (kfk_conf_check(cfg, 0, err, errlen) < 0) {
		cfg_free(cfg);
		return NULL;
	}
	/* a reload: the tables against the source's catalog, before the
	 * new config becomes the active copy */
	if (s->active_conf[0] != '\0' && check_tables_child(s, err, errlen) < 0) {
		cfg_free(cfg);
		return NULL;
	}
	if (s->active_conf[0] == '\0') {
		/* first load: the directory is checked and locked before
		 * anything in it is written */
		if (runtime_dir_ready(s->conf_path, cfg->runtime_dir, err, errlen) < 0) {
			cfg_free(cfg);
			return NULL;
		}
		s->lockfd = lock_runtime_dir(cfg->runtime_dir, err, errlen);
		if (s->lockfd < 0) {
			s->locked_out = 1;
			cfg_free(cfg);
			return NULL;
		}
		snprintf(s->active_conf, sizeof(s->active_conf), "%s/active.conf",
		    cfg->runtime_dir);
	}
	if (copy_file(s->conf_path, s->active_conf, err, errlen) < 0) {
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

/* ---- sockets ------------------------------------------------------------ */

static int
bind_unix(int type, const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen, "socket path too long: %s", path);
		return -1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, errlen, "bind %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	chmod(path, 0600);
	return fd;
}

static int
open_sockets(struct sup *s, char *err, size_t errlen)
{
	int one = 1;

	snprintf(s->notify_path, sizeof(s->notify_path), "%s/notify.sock",
	    s->cfg->runtime_dir);
	snprintf(s->control_path, sizeof(s->control_path), "%s/pgrelayd.sock",
	    s->cfg->runtime_dir);
	s->nfd = bind_unix(SOCK_DGRAM, s->notify_path, err, errlen);
	if (s->nfd < 0)
		return -1;
	if (setsockopt(s->nfd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		snprintf(err, errlen, "SO_PASSCRED: %s", strerror(errno));
		return -1;
	}
	s->cfd = bind_unix(SOCK_STREAM, s->control_path, err, errlen);
	if (s->cfd < 0)
		return -1;
	if (listen(s->cfd, 16) < 0) {
		snprintf(err, errlen, "listen %.400s: %s", s->control_path, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- slots and pools ---------------------------------------------------- */

static int
pool_running(const struct sup *s, enum pool_id p)
{
	int n = 0;

	for (int i = 0; i < MAX_SLOTS; i++)
		if (s->slots[i].pool == p && s->slots[i].state != SLOT_FREE &&
		    s->slots[i].state != SLOT_DONE && !s->slots[i].exiting)
			n++;
	return n;
}

static struct slot *
slot_alloc(struct sup *s, enum pool_id p)
{
	int used[MAX_SLOTS] = { 0 };

	for (int i = 0; i < MAX_SLOTS; i++)
		if (s->slots[i].state != SLOT_FREE && s->slots[i].pool == p)
			used[s->slots[i].index] = 1;
	for (int i = 0; i < MAX_SLOTS; i++) {
		if (s->slots[i].state == SLOT_FREE) {
			struct slot *sl = &s->slots[i];
			memset(sl, 0, sizeof(*sl));
			sl->pool = p;
			while (used[sl->index])
				sl->index++;
			return sl;
		}
	}
	return NULL;
}

static void
spawn(struct sup *s, struct slot *sl)
{
	char prog[PATH_MAX + 32], notify[PATH_MAX + 16];
	pid_t pid;

	snprintf(prog, sizeof(prog), "%s/pgrelay-%s", s->bin_dir, pool_names[sl->pool]);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		log_error("fork for %s %d: %s; retrying", pool_names[sl->pool],
		    sl->index, strerror(errno));
		sl->state = SLOT_BACKOFF;
		sl->restart_at = mono_now() + 1.0;
		return;
	}
	if (pid == 0) {
		/* Child: default signal dispositions, our env, exec.
		 * If pgrelayd dies (even by kill -9) the child is asked to stop,
		 * so no worker outlives its supervisor. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != s->self)
			_exit(0);
		for (int sig = 1; sig < NSIG; sig++)
			signal(sig, SIG_DFL);
		/* TERM and INT stay blocked through exec until the worker's
		 * handlers are in place (worker.c): a graceful stop sent right
		 * after the fork (SIGUSR2, a reload) is then handled as one,
		 * not a death by signal 15 */
		sigset_t mask = s->oldmask;
		sigaddset(&mask, SIGTERM);
		sigaddset(&mask, SIGINT);
		sigprocmask(SIG_SETMASK, &mask, NULL);
		snprintf(notify, sizeof(notify), "%s", s->notify_path);
		setenv("NOTIFY_SOCKET", notify, 1);
		unsetenv("WATCHDOG_USEC");
		unsetenv("WATCHDOG_PID");
		execl(prog, prog, "-c", s->active_conf, (char *)NULL);
		log_error("exec %s: %s; is pgrelay installed completely?", prog,
		    strerror(errno));
		_exit(127);
	}
	sl->pid = pid;
	sl->state = SLOT_RUNNING;
	sl->started = sl->last_alive = mono_now();
	sl->exiting = sl->reloading = sl->ready = 0;
	sl->term_sent = 0;
	sl->status[0] = '\0';
	log_info("started %s %d (pid %ld)", pool_names[sl->pool], sl->index, (long)pid);
}

static void
signal_slot(struct slot *sl, int sig)
{
	if (sl->state == SLOT_RUNNING && sl->pid > 0) {
		kill(sl->pid, sig);
		if (sig == SIGTERM)
			sl->term_sent = mono_now();
	}
}

/* Stops the newest running slot of pool p gracefully. */
static void
stop_newest(struct sup *s, enum pool_id p)
{
	struct slot *newest = NULL;

	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *sl = &s->slots[i];
		if (sl->pool == p && sl->state != SLOT_FREE && sl->state != SLOT_DONE &&
		    !sl->exiting && (newest == NULL || sl->index > newest->index))
			newest = sl;
	}
	if (newest == NULL)
		return;
	newest->exiting = 1;
	if (newest->state == SLOT_RUNNING) {
		log_info("stopping %s %d (pid %ld) gracefully", pool_names[p],
		    newest->index, (long)newest->pid);
		signal_slot(newest, SIGTERM);
	} else {
		newest->state = SLOT_FREE;
	}
}

/* Brings every pool to its wanted size. */
static void
reconcile(struct sup *s)
{
	if (s->shutting_down)
		return;
	for (int p = 0; p < NPOOLS; p++) {
		struct pool *pl = &s->pools[p];
		int want = pl->stopped ? 0 : pl->want;

		if (p == POOL_PRODUCER) {
			/* The producer starts once the first snapshot is done
			 * (a later run copies added tables while it streams). */
			for (int i = 0; i < MAX_SLOTS && !s->snapshot_done_once; i++)
				if (s->slots[i].pool == POOL_SNAPSHOT &&
				    s->slots[i].state != SLOT_FREE &&
				    s->slots[i].state != SLOT_DONE)
					want = 0;
		}
		if (p == POOL_SNAPSHOT) {
			int done = 0;
			for (int i = 0; i < MAX_SLOTS; i++) {
				struct slot *sl = &s->slots[i];

				if (sl->pool != POOL_SNAPSHOT || sl->state != SLOT_DONE)
					continue;
				if (s->resnapshot)
					sl->state = SLOT_FREE;	/* run it again */
				else
					done = 1;
			}
			s->resnapshot = 0;
			if (done)
				continue;
		}
		while (pool_running(s, (enum pool_id)p) < want) {
			struct slot *sl = slot_alloc(s, (enum pool_id)p);
			if (sl == NULL) {
				log_error("no free slot for %s; raise MAX_SLOTS", pool_names[p]);
				break;
			}
			spawn(s, sl);
		}
		while (pool_running(s, (enum pool_id)p) > want)
			stop_newest(s, (enum pool_id)p);
	}
}

/* ---- child exits --------------------------------------------------------- */

static void
describe_exit(int status, char *buf, size_t len)
{
	if (WIFEXITED(status))
		snprintf(buf, len, "exited with code %d", WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(buf, len, "was killed by signal %d (%s)%s", WTERMSIG(status),
		    strsignal(WTERMSIG(status)),
		    WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(buf, len, "ended with status 0x%x", status);
}

static double
backoff_s(const struct sup *s, int crashes)
{
	double ms = s->cfg->sup_backoff_initial_ms;

	for (int i = 1; i < crashes && ms < s->cfg->sup_backoff_max_ms; i++)
		ms *= 2;
	if (ms > s->cfg->sup_backoff_max_ms)
		ms = s->cfg->sup_backoff_max_ms;
	/* +-20% jitter so that restarts across hosts do not line up */
	ms *= 0.8 + 0.4 * ((double)rand() / RAND_MAX);
	return ms / 1000.0;
}

/* Records a crash; 1 if the pool has now crashed too often. */
static int
pool_crash(struct sup *s, struct pool *pl, double now)
{
	int recent = 0;

	pl->crash_times[pl->ncrash++ % 1000] = now;
	for (int i = 0; i < pl->ncrash && i < 1000; i++)
		if (now - pl->crash_times[i] <= s->cfg->sup_restart_period_s)
			recent++;
	return recent > s->cfg->sup_restart_intensity;
}

static void
handle_exit(struct sup *s, struct slot *sl, int status)
{
	char how[160], end[128];
	double now = mono_now();
	struct pool *pl = &s->pools[sl->pool];
	const char *name = pool_names[sl->pool];

	/* "(pid N) was killed by signal 9 (Killed)": the pid names which
	 * process of the slot ended (a slot runs one after another) */
	describe_exit(status, end, sizeof(end));
	snprintf(how, sizeof(how), "(pid %ld) %s", (long)sl->pid, end);
	sl->pid = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		log_info("%s %d %s", name, sl->index, how);
		if (sl->pool == POOL_SNAPSHOT && !sl->exiting) {
			sl->state = SLOT_DONE;
			if (!s->snapshot_done_once)
				log_info("snapshot done; starting the producer");
			s->snapshot_done_once = 1;
			return;
		}
		if (sl->exiting || s->shutting_down) {
			sl->state = SLOT_FREE;
			return;
		}
		if (sl->reloading) {
			sl->state = SLOT_BACKOFF;
			sl->restart_at = now;
			return;
		}
		log_warn("%s %d stopped without being asked; restarting it", name,
		    sl->index);
		sl->state = SLOT_BACKOFF;
		sl->restart_at = now + s->cfg->sup_backoff_initial_ms / 1000.0;
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == CFG_EXIT_CONFIG) {
		log_error("%s %d %s: a configuration error; the %s pool is stopped "
		    "and not restarted; fix the config and reload", name, sl->index,
		    how, name);
		sl->state = SLOT_DONE;
		pl->stopped = 1;
		return;
	}
	if (s->shutting_down || sl->exiting) {
		log_info("%s %d %s while stopping", name, sl->index, how);
		sl->state = SLOT_FREE;
		return;
	}
	if (now - sl->started > 60)
		sl->crashes_in_row = 0;
	sl->crashes_in_row++;
	sl->restarts++;
	if (pool_crash(s, pl, now)) {
		log_error("%s %d %s; more than %d crashes of the %s pool within %ds: "
		    "the pool is stopped; look at the errors above, fix the cause and "
		    "restart pgrelayd", name, sl->index, how,
		    s->cfg->sup_restart_intensity, name, s->cfg->sup_restart_period_s);
		pl->stopped = 1;
		sl->state = SLOT_DONE;
		return;
	}
	sl->state = SLOT_BACKOFF;
	sl->restart_at = now + backoff_s(s, sl->crashes_in_row);
	log_warn("%s %d %s (crash %d in a row); restarting in %.1fs", name,
	    sl->index, how, sl->crashes_in_row, sl->restart_at - now);
}

static void
reap_children(struct sup *s)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (int i = 0; i < MAX_SLOTS; i++) {
			if (s->slots[i].state == SLOT_RUNNING && s->slots[i].pid == pid) {
				handle_exit(s, &s->slots[i], status);
				break;
			}
		}
	}
}

/* ---- signals ------------------------------------------------------------- */

static void
read_signals(struct sup *s)
{
	struct signalfd_siginfo si;

	while (read(s->sfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT: s->pending_stop = 1; break;
		case SIGHUP: s->pending_reload = 1; break;
		case SIGUSR1: s->pending_usr1++; break;
		case SIGUSR2: s->pending_usr2++; break;
		case SIGCHLD: break;	/* reaped every round */
		default: break;
		}
	}
}

static void
process_shutdown(struct sup *s)
{
	if (!s->pending_stop || s->shutting_down)
		return;
	s->shutting_down = 1;
	s->shutdown_at = mono_now();
	sd_notify(0, "STOPPING=1\nSTATUS=draining");
	log_info("stopping: asking every worker to finish (up to %ds)",
	    s->cfg->sup_drain_timeout_s);
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *sl = &s->slots[i];
		if (sl->state == SLOT_RUNNING) {
			sl->exiting = 1;
			signal_slot(sl, SIGTERM);
		} else if (sl->state == SLOT_BACKOFF) {
			sl->state = SLOT_FREE;
		}
	}
}

static void
process_reload(struct sup *s)
{
	char err[1024];
	struct cfg *ncfg;

	if (!s->pending_reload || s->shutting_down)
		return;
	s->pending_reload = 0;
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64,
	    (uint64_t)(mono_now() * 1e6));
	ncfg = load_config(s, err, sizeof(err));
	if (ncfg == NULL) {
		log_error("reload rejected, the running configuration stays: %s", err);
		sd_notify(0, "READY=1\nSTATUS=reload rejected: config error");
		return;
	}
	set_pool_sizes(s, ncfg);
	log_info("reloaded %s; restarting the workers gracefully", s->conf_path);
	/* the snapshot copies any table the new config adds */
	s->resnapshot = s->snapshot_done_once;
	cfg_free(s->cfg);
	s->cfg = ncfg;
	for (int p = 0; p < NPOOLS; p++)
		s->pools[p].stopped = 0;	/* a reload is the operator's retry */
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *sl = &s->slots[i];
		if (sl->state == SLOT_RUNNING && !sl->exiting) {
			sl->reloading = 1;
			signal_slot(sl, SIGTERM);
		} else if (sl->state == SLOT_DONE && sl->pool != POOL_SNAPSHOT) {
			sl->state = SLOT_FREE;
		}
	}
	sd_notify(0, "READY=1");
}

static void
process_scaling(struct sup *s)
{
	int sp = pool_by_name(s->cfg->sup_scale_pool);
	struct pool *cp = &s->pools[sp < 0 ? POOL_CONSUMER : sp];
	const char *name = pool_names[sp < 0 ? POOL_CONSUMER : sp];

	for (; s->pending_usr1 > 0; s->pending_usr1--) {
		if (s->shutting_down)
			continue;
		if (cp->want >= cp->max) {
			log_warn("SIGUSR1: the %s pool is already at its max %d", name, cp->max);
			continue;
		}
		cp->want++;
		log_info("SIGUSR1: scaling the %s pool up to %d", name, cp->want);
	}
	for (; s->pending_usr2 > 0; s->pending_usr2--) {
		if (s->shutting_down)
			continue;
		if (cp->want <= cp->min) {
			log_warn("SIGUSR2: the %s pool is already at its min %d", name, cp->min);
			continue;
		}
		cp->want--;
		log_info("SIGUSR2: scaling the %s pool down to %d", name, cp->want);
	}
}

static void
process_restarts(struct sup *s)
{
	double now = mono_now();

	if (s->shutting_down)
		return;
	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *sl = &s->slots[i];
		if (sl->state == SLOT_BACKOFF && now >= sl->restart_at) {
			if (s->pools[sl->pool].stopped || sl->exiting)
				sl->state = SLOT_FREE;
			else
				spawn(s, sl);
		}
	}
}

/* A pgrelayd that did not run for a while (SIGSTOP, a paused VM, a hung
 * host) heard nothing from its children meanwhile, frozen with it or not:
 * that time is not held against them, or the watchdog would kill every
 * child the moment the host wakes (the producer before it could see that
 * another host took over, and stand by).  A child that really hangs is
 * still caught watchdog_s after pgrelayd is back. */
static void
excuse_own_pause(struct sup *s)
{
	double now = mono_now(), gap = now - s->last_loop;

	if (s->last_loop > 0 && gap > 2.0) {
		log_warn("pgrelayd did not run for %.1fs (it was stopped, or its "
		    "host paused): its children's silence in that time is not "
		    "taken for a hang", gap);
		for (int i = 0; i < MAX_SLOTS; i++) {
			struct slot *sl = &s->slots[i];
			if (sl->state != SLOT_RUNNING)
				continue;
			/* a keep-alive read just now already counts */
			sl->last_alive = sl->last_alive + gap < now ?
			    sl->last_alive + gap : now;
			if (sl->term_sent > 0)
				sl->term_sent = sl->term_sent + gap < now ?
				    sl->term_sent + gap : now;
		}
	}
	s->last_loop = now;
}

static void
process_watchdog(struct sup *s)
{
	double now = mono_now();

	for (int i = 0; i < MAX_SLOTS; i++) {
		struct slot *sl = &s->slots[i];
		if (sl->state != SLOT_RUNNING)
			continue;
		if (sl->term_sent > 0 && now - sl->term_sent > s->cfg->sup_drain_timeout_s) {
			log_warn("%s %d (pid %ld) did not stop within %ds; killing it",
			    pool_names[sl->pool], sl->index, (long)sl->pid,
			    s->cfg->sup_drain_timeout_s);
			kill(sl->pid, SIGKILL);
			sl->term_sent = now;
		} else if (sl->term_sent == 0 && now - sl->last_alive >
		    (sl->ready ? s->cfg->sup_watchdog_s : s->cfg->sup_start_timeout_s)) {
			log_error("%s %d (pid %ld) sent no keep-alive for %ds: hung; "
			    "killing and restarting it", pool_names[sl->pool], sl->index,
			    (long)sl->pid, sl->ready ? s->cfg->sup_watchdog_s :
			    s->cfg->sup_start_timeout_s);
			kill(sl->pid, SIGKILL);
			/* reaped as a crash (signal 9) */
			sl->last_alive = now;
		}
	}
}

/* ---- notify socket ------------------------------------------------------- */

static void
read_notifications(struct sup *s)
{
	char buf[1024];
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} ctl;

	for (;;) {
		struct iovec iov = { buf, sizeof(buf) - 1 };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
		    .msg_control = &ctl, .msg_controllen = sizeof(ctl) };
		ssize_t n = recvmsg(s->nfd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		struct ucred *cred = NULL;

		if (n < 0)
			return;
		buf[n] = '\0';
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
				cred = (struct ucred *)CMSG_DATA(c);
		if (cred == NULL)
			continue;
		for (int i = 0; i < MAX_SLOTS; i++) {
			struct slot *sl = &s->slots[i];
			if (sl->state != SLOT_RUNNING || sl->pid != cred->pid)
				continue;
			sl->last_alive = mono_now();
			if (strstr(buf, "READY=1") != NULL)
				sl->ready = 1;
			char *st = strstr(buf, "STATUS=");
			if (st != NULL) {
				st += 7;
				size_t len = strcspn(st, "\n");
				if (len >= sizeof(sl->status))
					len = sizeof(sl->status) - 1;
				memcpy(sl->status, st, len);
				sl->status[len] = '\0';
			}
			break;
		}
	}
}

/* ---- status ---------------------------------------------------------------- */

/* Sums "key=N" over the children's status texts. */
static long long
status_sum(const struct sup *s, const char *key)
{
	long long sum = 0;
	size_t kl = strlen(key);

	for (int i = 0; i < MAX_SLOTS; i++) {
		const char *p = s->slots[i].status;
		if (s->slots[i].state != SLOT_RUNNING)
			continue;
		while ((p = strstr(p, key)) != NULL) {
			if ((p == s->slots[i].status || p[-1] == ' ') && p[kl] == '=') {
				sum += strtoll(p + kl + 1, NULL, 10);
				break;
			}
			p += kl;
		}
	}
	return sum;
}

static const char *
slot_state_name(const struct slot *sl)
{
	switch (sl->state) {
	case SLOT_RUNNING: return sl->exiting ? "stopping" : "running";
	case SLOT_BACKOFF: return "restarting";
	case SLOT_DONE: return sl->pool == POOL_SNAPSHOT ? "done" : "stopped";
	default: return "free";
	}
}

static json_t *
status_json(const struct sup *s)
{
	json_t *children = json_array();
	json_t *pools = json_object();
	double now = mono_now();

	for (int i = 0; i < MAX_SLOTS; i++) {
		const struct slot *sl = &s->slots[i];
		if (sl->state == SLOT_FREE)
			continue;
		json_array_append_new(children, json_pack("{s:s, s:i, s:I, s:s, s:f, s:i, s:s}",
		    "kind", pool_names[sl->pool], "index", sl->index,
		    "pid", (json_int_t)(sl->state == SLOT_RUNNING ? sl->pid : 0),
		    "state", slot_state_name(sl),
		    "uptime_s", sl->state == SLOT_RUNNING ? now - sl->started : 0.0,
		    "restarts", sl->restarts, "status", sl->status));
	}
	for (int p = 0; p < NPOOLS; p++)
		json_object_set_new(pools, pool_names[p], json_pack("{s:i, s:i, s:i, s:i, s:b}",
		    "want", s->pools[p].want, "running", pool_running(s, (enum pool_id)p),
		    "min", s->pools[p].min, "max", s->pools[p].max,
		    "stopped", s->pools[p].stopped));
	return json_pack("{s:I, s:o, s:o, s:I, s:I, s:I, s:b}",
	    "pid", (json_int_t)getpid(), "pools", pools, "children", children,
	    "consumer_lag", (json_int_t)status_sum(s, "lag"),
	    "dlq", (json_int_t)status_sum(s, "dlq"),
	    "partitions_stopped", (json_int_t)status_sum(s, "gaps"),
	    "stopping", s->shutting_down);
}

static void
status_text(const struct sup *s, char *buf, size_t len)
{
	size_t n = 0;
	double now = mono_now();

	n += (size_t)snprintf(buf + n, len - n, "pgrelayd pid %ld%s\n", (long)getpid(),
	    s->shutting_down ? " (stopping)" : "");
	for (int p = 0; p < NPOOLS && n < len; p++)
		n += (size_t)snprintf(buf + n, len - n, "pool %-9s want %d running %d "
		    "(min %d max %d)%s\n", pool_names[p], s->pools[p].want,
		    pool_running(s, (enum pool_id)p), s->pools[p].min, s->pools[p].max,
		    s->pools[p].stopped ? " STOPPED" : "");
	for (int i = 0; i < MAX_SLOTS && n < len; i++) {
		const struct slot *sl = &s->slots[i];
		if (sl->state == SLOT_FREE)
			continue;
		n += (size_t)snprintf(buf + n, len - n, "%-9s %2d pid %-7ld %-10s up %6.0fs "
		    "restarts %d  %s\n", pool_names[sl->pool], sl->index,
		    (long)(sl->state == SLOT_RUNNING ? sl->pid : 0), slot_state_name(sl),
		    sl->state == SLOT_RUNNING ? now - sl->started : 0.0, sl->restarts,
		    sl->status);
	}
	if (n < len)
		snprintf(buf + n, len - n, "consumer lag %lld, dlq %lld, partitions "
		    "stopped below the log start %lld%s\n", status_sum(s, "lag"),
		    status_sum(s, "dlq"), status_sum(s, "gaps"),
		    status_sum(s, "gaps") > 0 ? " (CHANGES LOST: re-snapshot)" : "");
}

static void
notify_status(struct sup *s)
{
	double now = mono_now();
	int healthy = 1;

	if (now - s->last_status >= s->cfg->sup_status_interval_s) {
		s->last_status = now;
		long long gaps = status_sum(s, "gaps");
		char lost[160] = "";

		if (gaps > 0)
			snprintf(lost, sizeof(lost), ", CHANGES LOST: %lld partitions "
			    "stopped below the log start, re-snapshot (see the log)",
			    gaps);
		sd_notifyf(0, "STATUS=producer %d, consumers %d/%d, etl loaders %d/%d, "
		    "lag %lld, dlq %lld%s%s",
		    pool_running(s, POOL_PRODUCER), pool_running(s, POOL_CONSUMER),
		    s->pools[POOL_CONSUMER].want, pool_running(s, POOL_ETL_LOADER),
		    s->pools[POOL_ETL_LOADER].want, status_sum(s, "lag"),
		    status_sum(s, "dlq"), lost, s->shutting_down ? ", stopping" : "");
	}
	for (int p = 0; p < NPOOLS; p++)
		if (s->pools[p].stopped)
			healthy = 0;
	/* READY=1 once streaming: the snapshot is done and the producer runs.
	 * Until then a long snapshot extends systemd's start timeout. */
	if (!s->ready_sent) {
		if (pool_running(s, POOL_PRODUCER) > 0) {
			sd_notify(0, "READY=1");
			s->ready_sent = 1;
		} else if (pool_running(s, POOL_SNAPSHOT) > 0 &&
		    now - s->last_extend >= 5) {
			sd_notifyf(0, "EXTEND_TIMEOUT_USEC=%d", 30 * 1000000);
			s->last_extend = now;
		}
	}
	if (s->watchdog_usec > 0 && healthy &&
	    (now - s->last_watchdog) * 1e6 >= (double)s->watchdog_usec / 2) {
		sd_notify(0, "WATCHDOG=1");
		s->last_watchdog = now;
	}
}

/* ---- control socket ------------------------------------------------------ */

static void
control_reply(int fd, const char *text)
{
	size_t len = strlen(text), off = 0;

	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
}

/* Answers one request and closes the client.  The reply (16 KB at most)
 * fits a unix socket's send buffer; a client that does not read it within
 * 200 ms loses it, and pgrelayd waits no longer. */
static void
answer_control(struct sup *s, int fd, const char *line, size_t n)
{
	char out[MAX_SLOTS * (STATUS_LEN + 96) + 2048], why[160];	/* a line a slot */
	struct timeval tv = { 0, 200000 };
	struct ctl_request req;
	int flags = fcntl(fd, F_GETFL);

	if (flags >= 0)
		fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (ctl_parse_request(line, n, &req, why, sizeof(why)) < 0) {
		snprintf(out, sizeof(out), "error: %s\n", why);
		control_reply(fd, out);
	} else if (req.command == CTL_STATUS) {
		status_text(s, out, sizeof(out));
		control_reply(fd, out);
	} else if (req.command == CTL_STATUS_JSON) {
		json_t *j = status_json(s);
		char *txt = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		control_reply(fd, txt ? txt : "{}");
		control_reply(fd, "\n");
		free(txt);
		json_decref(j);
	} else {
		int pid = pool_by_name(req.pool);
		if (pid < 0 || !pool_scalable(pid)) {
			control_reply(fd, "error: usage: scale consumer|etl_loader +1|-1|N\n");
		} else {
			struct pool *cp = &s->pools[pid];
			/* the parser bounded the number: no overflow (issue 15) */
			int64_t target = ctl_scale_target(&req, cp->want);
			if (target < cp->min || target > cp->max) {
				snprintf(out, sizeof(out), "error: %" PRId64 " is outside "
				    "[min %d, max %d]\n", target, cp->min, cp->max);
				control_reply(fd, out);
			} else {
				log_info("control: scaling the %s pool %d -> %" PRId64,
				    req.pool, cp->want, target);
				cp->want = (int)target;
				snprintf(out, sizeof(out), "ok: %s %" PRId64 "\n", req.pool,
				    target);
				control_reply(fd, out);
			}
		}
	}
	close(fd);
}

/* Control clients: each is read without blocking, in the one poll(), until
 * its request's newline (or EOF, or a full buffer); one that sends nothing
 * for CTL_IDLE_S is dropped.  So idle or slow clients never stall the
 * loop (they used to hold it 200 ms each). */
static void
accept_control(struct sup *s)
{
	int fd;

	while ((fd = accept4(s->cfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
		int i = 0;

		while (i < MAX_CLIENTS && s->clients[i].fd >= 0)
			i++;
		if (i == MAX_CLIENTS) {
			control_reply(fd, "error: too many control clients at once\n");
			close(fd);
			continue;
		}
		s->clients[i] = (struct client){ .fd = fd, .since = mono_now() };
	}
}

static void
read_control(struct sup *s, struct client *c)
{
	ssize_t n = read(c->fd, c->buf + c->len, sizeof(c->buf) - 1 - c->len);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0)
		c->len += (size_t)n;
	if (n > 0 && memchr(c->buf, '\n', c->len) == NULL &&
	    c->len < sizeof(c->buf) - 1)
		return;		/* more to come */
	answer_control(s, c->fd, c->buf, c->len);
	c->fd = -1;
}

static void
expire_control(struct sup *s)
{
	double now = mono_now();

	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &s->clients[i];
		if (c->fd >= 0 && now - c->since > CTL_IDLE_S) {
			close(c->fd);
			c->fd = -1;
		}
	}
}

/* ---- main loop ------------------------------------------------------------ */

static int
all_stopped(const struct sup *s)
{
	for (int i = 0; i < MAX_SLOTS; i++)
		if (s->slots[i].state == SLOT_RUNNING)
			return 0;
	return 1;
}

/* The pipeline cannot run when the producer or every consumer is given up. */
static int
pipeline_dead(const struct sup *s)
{
	return s->pools[POOL_SNAPSHOT].stopped || s->pools[POOL_PRODUCER].stopped ||
	    (s->pools[POOL_CONSUMER].stopped && s->pools[POOL_CONSUMER].want > 0);
}

static int
supervise(struct sup *s)
{
	struct pollfd pfd[3 + MAX_CLIENTS] = {
		{ .fd = s->sfd, .events = POLLIN },
		{ .fd = s->nfd, .events = POLLIN },
		{ .fd = s->cfd, .events = POLLIN },
	};

	for (int i = 0; i < MAX_CLIENTS; i++)
		s->clients[i].fd = -1;
	reconcile(s);
	for (;;) {
		for (int i = 0; i < MAX_CLIENTS; i++)
			pfd[3 + i] = (struct pollfd){ .fd = s->clients[i].fd, .events = POLLIN };
		int r = poll(pfd, 3 + MAX_CLIENTS, 200);

		if (r < 0 && errno != EINTR) {
			log_error("poll: %s", strerror(errno));
			return 1;
		}
		if (pfd[0].revents & POLLIN)
			read_signals(s);
		if (pfd[1].revents & POLLIN)
			read_notifications(s);

		process_shutdown(s);
		process_reload(s);
		reap_children(s);
		process_scaling(s);
		process_restarts(s);
		reconcile(s);
		excuse_own_pause(s);
		process_watchdog(s);
		notify_status(s);
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (pfd[3 + i].fd >= 0 && pfd[3 + i].revents != 0 &&
			    s->clients[i].fd == pfd[3 + i].fd)
				read_control(s, &s->clients[i]);
		if (pfd[2].revents & POLLIN)
			accept_control(s);
		expire_control(s);

		if (!s->shutting_down && pipeline_dead(s)) {
			log_error("the pipeline cannot run with a stopped pool; stopping "
			    "everything and exiting 1 so that the service manager can "
			    "restart pgrelayd");
			s->pending_stop = 1;
			s->exit_code = 1;
		}
		if (s->shutting_down) {
			if (all_stopped(s))
				return s->exit_code;
			if (mono_now() - s->shutdown_at > s->cfg->sup_drain_timeout_s + 5) {
				log_error("workers still running after the drain timeout; "
				    "killing them");
				for (int i = 0; i < MAX_SLOTS; i++)
					if (s->slots[i].state == SLOT_RUNNING)
						kill(s->slots[i].pid, SIGKILL);
				s->shutdown_at = mono_now();
			}
		}
	}
}

static int
find_bin_dir(char *buf, size_t len)
{
	const char *env = getenv("PGRELAY_BIN_DIR");
	char exe[PATH_MAX];
	ssize_t n;

	if (env != NULL && env[0] != '\0') {
		snprintf(buf, len, "%s", env);
		return 0;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return -1;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (slash == NULL)
		return -1;
	*slash = '\0';
	snprintf(buf, len, "%s", exe);
	return 0;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: pgrelayd -c CONFIG [-t]\n"
	    "Runs the pgrelay pipeline in the foreground: snapshot, producer and\n"
	    "consumers, restarting them on crash.  -t only checks the config.\n"
	    "Signals: HUP reload, USR1 one more consumer, USR2 one less,\n"
	    "TERM/INT drain and stop.\n");
}

int
main(int argc, char **argv)
{
	struct sup s = { .sfd = -1, .nfd = -1, .cfd = -1, .lockfd = -1 };
	char err[1024];
	int ch, check_only = 0, rc;
	sigset_t all;
	const char *wd;

	while ((ch = getopt(argc, argv, "c:th")) != -1) {
		switch (ch) {
		case 'c': s.conf_path = optarg; break;
		case 't': check_only = 1; break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	if (s.conf_path == NULL) {
		usage(stderr);
		return 64;
	}
	/* Descriptors pgrelayd did not open (left by whatever started it)
	 * would reach every worker: close them all but stdin, out and err. */
	if (close_range(3, ~0U, 0) < 0)
		for (int fd = 3; fd < 1024; fd++)
			close(fd);
	log_init("pgrelayd");
	if (check_only) {
		/* -t forks nothing: it also creates a producer and a consumer
		 * (with no brokers), as the workers will */
		struct cfg *cfg = cfg_load(s.conf_path, err, sizeof(err));
		if (cfg == NULL || kfk_conf_check(cfg, 1, err, sizeof(err)) < 0) {
			log_error("configuration error: %s", err);
			cfg_free(cfg);
			return CFG_EXIT_CONFIG;
		}
		/* the tables, against the source's catalog: a table pgrelay
		 * cannot replicate is a config error; a source out of reach
		 * is not (the workers check again when they connect) */
		if (getenv("PGCONNECT_TIMEOUT") == NULL)
			setenv("PGCONNECT_TIMEOUT", "10", 1);
		PGconn *db = db_connect(cfg->source_dsn, "pgrelayd", err, sizeof(err));
		int trc = db == NULL ? PGR_RETRY : cdc_tables_check(db, cfg, err,
		    sizeof(err));
		PQfinish(db);
		if (trc == PGR_CONFIG) {
			log_error("configuration error: %s", err);
			cfg_free(cfg);
			return CFG_EXIT_CONFIG;
		}
		if (trc < 0)
			log_warn("could not check the tables on the source: %s; the "
			    "workers check them when they connect", err);
		printf("%s: configuration is valid\n", s.conf_path);
		cfg_free(cfg);
		return 0;
	}
	s.cfg = load_config(&s, err, sizeof(err));
	if (s.cfg == NULL && s.locked_out) {
		log_error("%s; nothing started", err);
		return 1;
	}
	if (s.cfg == NULL) {
		log_error("configuration error: %s; nothing started", err);
		return CFG_EXIT_CONFIG;
	}
	enum log_level lvl;
	if (log_level_parse(s.cfg->log_level, &lvl) == 0)
		log_set_level(lvl);
	if (find_bin_dir(s.bin_dir, sizeof(s.bin_dir)) < 0) {
		log_error("cannot find the worker programs; set PGRELAY_BIN_DIR");
		return 1;
	}

	sigfillset(&all);
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigprocmask(SIG_BLOCK, &all, &s.oldmask);
	sigemptyset(&all);
	sigaddset(&all, SIGTERM);
	sigaddset(&all, SIGINT);
	sigaddset(&all, SIGHUP);
	sigaddset(&all, SIGUSR1);
	sigaddset(&all, SIGUSR2);
	sigaddset(&all, SIGCHLD);
	s.sfd = signalfd(-1, &all, SFD_NONBLOCK | SFD_CLOEXEC);
	if (s.sfd < 0) {
		log_error("signalfd: %s", strerror(errno));
		return 1;
	}
	if (open_sockets(&s, err, sizeof(err)) < 0) {
		log_error("%s; check supervisor.runtime_dir", err);
		return 1;
	}
	wd = getenv("WATCHDOG_USEC");
	if (wd != NULL)
		s.watchdog_usec = strtoull(wd, NULL, 10);
	srand((unsigned)getpid() ^ (unsigned)time(NULL));
	s.self = getpid();

	struct cfg *first = s.cfg;
	s.cfg = NULL;
	set_pool_sizes(&s, first);
	s.cfg = first;
	log_info("starting: config %s, workers from %s, control socket %s",
	    s.conf_path, s.bin_dir, s.control_path);

	rc = supervise(&s);

	log_info("stopped (exit %d)", rc);
	unlink(s.notify_path);
	unlink(s.control_path);
	close(s.sfd);
	close(s.nfd);
	close(s.cfd);
	cfg_free(s.cfg);
	return rc;
}
