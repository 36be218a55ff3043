/*
 * ctlproto.h - the control socket's requests (pgrelayctl -> pgrelayd),
 * parsed by one pure function: no I/O, no supervisor state.
 *
 * A request is one line: words separated by spaces or tabs, ended by \n,
 * \r, a NUL or the end of the bytes read.
 *   status               the children, as text
 *   status json          the same as JSON (pgrelayctl status --json)
 *   scale POOL +N|-N|N   change a pool's size by N, or set it to N
 *
 * Numbers are range-checked here, before any arithmetic: a change or a
 * size is at most CTL_SCALE_MAX in magnitude, so ctl_scale_target() cannot
 * overflow (issue 15 item 7: "scale consumer +9223372036854775807" used to
 * overflow the addition in pgrelayd).  Whether POOL exists and may be
 * scaled, and the pool's own min and max, are pgrelayd's to check.
 */
#ifndef PGRELAY_CTLPROTO_H
#define PGRELAY_CTLPROTO_H

#include <stddef.h>
#include <stdint.h>

#define CTL_POOL_LEN 32		/* bytes of a pool name, with its NUL */
#define CTL_SCALE_MAX 1000	/* the config's largest pool (consumer.max, etl.loader_max) */

enum ctl_command { CTL_STATUS, CTL_STATUS_JSON, CTL_SCALE };

struct ctl_request {
	enum ctl_command command;
	/* CTL_SCALE only: */
	char pool[CTL_POOL_LEN];	/* as given: not checked against the pools */
	int relative;			/* 1: "+N" or "-N", a change of the size */
	int number;			/* the change or the size; |number| <= CTL_SCALE_MAX */
};

/* Parses the request in buf[0, len).  0 on success; -1 with the reason
 * (the text of the reply after "error: ") in err. */
int ctl_parse_request(const char *buf, size_t len, struct ctl_request *req,
    char *err, size_t errlen);

/* The size a CTL_SCALE request asks for, given the pool's current size. */
int64_t ctl_scale_target(const struct ctl_request *req, int current);

#endif
