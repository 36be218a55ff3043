/*
 * fuzz_ctlproto.c - libFuzzer target for the control socket's request
 * parser (ctl_parse_request, common/ctlproto.c): the bytes pgrelayd reads
 * from whoever connects to runtime_dir/pgrelayd.sock.
 *
 * A request parsed is one of the three commands; a scale request has a
 * pool name that is one non-empty word and a number within
 * +-CTL_SCALE_MAX; its target, from any current size an int can hold,
 * is computed without overflow (UBSan aborts on a signed overflow: issue
 * 15 item 7).  A refusal carries a reason.  A broken invariant calls
 * abort().
 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const int currents[] = { INT_MIN, -1, 0, 1, 6, CTL_SCALE_MAX, INT_MAX };
	struct ctl_request req;
	char err[256] = "";

	if (ctl_parse_request((const char *)data, size, &req, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();
		return 0;
	}
	switch (req.command) {
	case CTL_STATUS:
	case CTL_STATUS_JSON:
		return 0;
	case CTL_SCALE:
		break;
	default:
		abort();
	}
	size_t plen = strnlen(req.pool, sizeof(req.pool));
	if (plen == 0 || plen == sizeof(req.pool) || strpbrk(req.pool, " \t\r\n") != NULL)
		abort();
	if (req.number < -CTL_SCALE_MAX || req.number > CTL_SCALE_MAX ||
	    (!req.relative && req.number < 0))
		abort();
	for (size_t i = 0; i < sizeof(currents) / sizeof(currents[0]); i++) {
		int64_t t = ctl_scale_target(&req, currents[i]);
		if (t != (req.relative ? (int64_t)currents[i] + req.number : req.number))
			abort();
	}
	return 0;
}
