/*
 * pgrelayctl.c - talks to a running pgrelayd over its control socket
 * (runtime_dir/pgrelayd.sock): no pid needed.
 *
 *   pgrelayctl [-c CONFIG | -s SOCKET] status [--json]
 *   pgrelayctl [-c CONFIG | -s SOCKET] scale consumer|etl_loader +1|-1|N
 *   pgrelayctl -c CONFIG capture-sql
 *
 * capture-sql needs no pgrelayd: it reads the tables of CONFIG from the
 * source database's catalog and prints the SQL that installs their
 * capture (and drops the capture of tables CONFIG no longer lists), for an
 * administrator to run where pgrelay's user may not change the tables.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "cdc.h"
#include "config.h"
#include "db.h"

static void
usage(FILE *f)
{
	fprintf(f, "usage: pgrelayctl [-c CONFIG | -s SOCKET] status [--json]\n"
	    "       pgrelayctl [-c CONFIG | -s SOCKET] scale consumer|etl_loader +1|-1|N\n"
	    "       pgrelayctl -c CONFIG capture-sql\n"
	    "The socket defaults to $RUNTIME_DIRECTORY/pgrelayd.sock, else\n"
	    "supervisor.runtime_dir of CONFIG, else /run/pgrelay/pgrelayd.sock.\n");
}

/* Prints the capture script of conf's tables (cdc.h).  The exit code. */
static int
capture_sql(const char *conf)
{
	char err[1024];
	struct cfg *cfg = cfg_load_no_secrets(conf, err, sizeof(err));
	PGconn *db;
	char *script;

	if (cfg == NULL) {
		fprintf(stderr, "pgrelayctl: configuration error: %s\n", err);
		return CFG_EXIT_CONFIG;
	}
	db = db_connect(cfg->source_dsn, "pgrelayctl", err, sizeof(err));
	if (db == NULL) {
		fprintf(stderr, "pgrelayctl: source database: %s\n", err);
		cfg_free(cfg);
		return 1;
	}
	script = cdc_capture_script(db, cfg, err, sizeof(err));
	PQfinish(db);
	cfg_free(cfg);
	if (script == NULL) {
		fprintf(stderr, "pgrelayctl: %s\n", err);
		return 1;
	}
	fputs(script, stdout);
	free(script);
	return 0;
}

int
main(int argc, char **argv)
{
	char path[PATH_MAX] = "", cmd[256], err[1024], buf[4096];
	const char *conf = NULL;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ch, fd, failed = 0;
	ssize_t n;

	while ((ch = getopt(argc, argv, "+c:s:h")) != -1) {
		switch (ch) {
		case 'c': conf = optarg; break;
		case 's': snprintf(path, sizeof(path), "%s", optarg); break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 64;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 1 && strcmp(argv[0], "capture-sql") == 0) {
		if (conf == NULL) {
			usage(stderr);
			return 64;
		}
		return capture_sql(conf);
	}
	if (argc >= 1 && strcmp(argv[0], "status") == 0 && argc <= 2) {
		int json = argc == 2 && strcmp(argv[1], "--json") == 0;
		if (argc == 2 && !json) {
			usage(stderr);
			return 64;
		}
		snprintf(cmd, sizeof(cmd), "%s\n", json ? "status json" : "status");
	} else if (argc == 3 && strcmp(argv[0], "scale") == 0) {
		snprintf(cmd, sizeof(cmd), "scale %s %s\n", argv[1], argv[2]);
	} else {
		usage(stderr);
		return 64;
	}

	if (path[0] == '\0' && conf != NULL) {
		/* only runtime_dir: the service's secrets are not ours to read */
		struct cfg *cfg = cfg_load_no_secrets(conf, err, sizeof(err));
		if (cfg == NULL) {
			fprintf(stderr, "pgrelayctl: configuration error: %s\n", err);
			return CFG_EXIT_CONFIG;
		}
		snprintf(path, sizeof(path), "%s/pgrelayd.sock", cfg->runtime_dir);
		cfg_free(cfg);
	}
	if (path[0] == '\0') {
		const char *rd = getenv("RUNTIME_DIRECTORY");
		snprintf(path, sizeof(path), "%s/pgrelayd.sock", rd ? rd : "/run/pgrelay");
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "pgrelayctl: socket path too long: %s\n", path);
		return 1;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "pgrelayctl: cannot reach pgrelayd at %s: %s; is it "
		    "running?\n", path, strerror(errno));
		return 1;
	}
	if (write(fd, cmd, strlen(cmd)) < 0) {
		fprintf(stderr, "pgrelayctl: %s: %s\n", path, strerror(errno));
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		if (strncmp(buf, "error:", 6) == 0)
			failed = 1;
		fwrite(buf, 1, (size_t)n, stdout);
	}
	close(fd);
	return failed ? 1 : 0;
}
