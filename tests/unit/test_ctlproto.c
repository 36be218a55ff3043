/*
 * test_ctlproto.c - the control socket's request parser: every command,
 * line ends, refusals with their reason, and numbers that would overflow
 * (issue 15 item 7) refused before any arithmetic.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "ctlproto.h"
#include "tap.h"

/* Parses text; returns the error ("" when it parsed). */
static const char *
parse(const char *text, struct ctl_request *req)
{
	static char err[256];

	err[0] = '\0';
	if (ctl_parse_request(text, strlen(text), req, err, sizeof(err)) == 0)
		err[0] = '\0';
	else if (err[0] == '\0')
		snprintf(err, sizeof(err), "(refused without a reason)");
	return err;
}

static void
parses_scale(const char *text, const char *pool, int relative, int number)
{
	struct ctl_request r;
	const char *err = parse(text, &r);

	if (!ok(err[0] == '\0' && r.command == CTL_SCALE && strcmp(r.pool, pool) == 0 &&
	    r.relative == relative && r.number == number, "'%.*s' is scale %s %s%d",
	    (int)strcspn(text, "\n"), text, pool, relative ? "by " : "to ", number))
		printf("#   error '%s', pool '%s', relative %d, number %d\n", err,
		    r.pool, r.relative, r.number);
}

static void
refuses(const char *text, const char *reason)
{
	struct ctl_request r;
	const char *err = parse(text, &r);

	if (!ok(strstr(err, reason) != NULL, "refuses '%.*s': %s",
	    (int)strcspn(text, "\n"), text, reason))
		printf("#   got '%s'\n", err);
}

int
main(void)
{
	struct ctl_request r;

	is_str(parse("status", &r), "", "status parses");
	is_int(r.command, CTL_STATUS, "status is CTL_STATUS");
	is_str(parse("status\n", &r), "", "status with \\n parses");
	is_str(parse("status\r\n", &r), "", "status with \\r\\n parses");
	is_str(parse("status json\n", &r), "", "status json parses");
	is_int(r.command, CTL_STATUS_JSON, "status json is CTL_STATUS_JSON");
	is_str(parse("  status\tjson  \n", &r), "", "spaces and tabs between words");
	is_int(r.command, CTL_STATUS_JSON, "... still CTL_STATUS_JSON");
	is_str(parse("status\nscale consumer 5\n", &r), "", "only the first line is read");
	is_int(r.command, CTL_STATUS, "... and it is status");

	/* The bytes need not end in a NUL; a NUL ends the line. */
	ok(ctl_parse_request("statusXYZ", 6, &r, NULL, 0) == 0 && r.command == CTL_STATUS,
	    "a request without a NUL is read to its length only");
	ok(ctl_parse_request("status\0json", 11, &r, NULL, 0) == 0 && r.command == CTL_STATUS,
	    "a NUL ends the line");

	parses_scale("scale consumer +1\n", "consumer", 1, 1);
	parses_scale("scale consumer -1\n", "consumer", 1, -1);
	parses_scale("scale etl_loader 3", "etl_loader", 0, 3);
	parses_scale("scale consumer 0", "consumer", 0, 0);
	parses_scale("scale consumer +0", "consumer", 1, 0);
	parses_scale("scale consumer 0000000000000000000000000000000000000000007",
	    "consumer", 0, 7);
	parses_scale("scale consumer +1000", "consumer", 1, CTL_SCALE_MAX);
	parses_scale("scale consumer -1000", "consumer", 1, -CTL_SCALE_MAX);
	parses_scale("scale nosuchpool 2", "nosuchpool", 0, 2);

	const char *usage_all = "commands: status | status json | scale";
	const char *usage_scale = "usage: scale consumer|etl_loader +1|-1|N";
	refuses("", usage_all);
	refuses("\n", usage_all);
	refuses("stat", usage_all);
	refuses("statusjson", usage_all);
	refuses("status json extra", usage_all);
	refuses("status --json", usage_all);
	refuses("STATUS", usage_all);
	refuses("scale", usage_scale);
	refuses("scale consumer", usage_scale);
	refuses("scale consumer +1 extra", usage_scale);
	refuses("scale consumerconsumerconsumerconsumer +1", usage_scale);
	refuses("scale consumer +", "not a number");
	refuses("scale consumer -", "not a number");
	refuses("scale consumer 1x", "not a number");
	refuses("scale consumer 0x10", "not a number");
	refuses("scale consumer ++1", "not a number");
	refuses("scale consumer 1.5", "not a number");

	/* issue 15 item 7: these overflowed "want + N" in pgrelayd */
	refuses("scale consumer +9223372036854775807",
	    "+9223372036854775807 is out of range: a pool size or a change of it "
	    "is at most 1000");
	refuses("scale consumer -9223372036854775808", "is out of range");
	refuses("scale consumer 9223372036854775808", "is out of range");
	refuses("scale consumer +2147483647", "is out of range");
	refuses("scale consumer 99999999999999999999999999999999999999999999999999",
	    "is out of range");
	refuses("scale consumer +1001", "is out of range");
	refuses("scale consumer 1001", "is out of range");

	/* The target, at the edges of what the parser lets through. */
	parse("scale consumer +1000", &r);
	is_int(ctl_scale_target(&r, 1000), 2000, "+1000 from 1000 is 2000");
	is_int(ctl_scale_target(&r, INT32_MAX), (int64_t)INT32_MAX + 1000,
	    "+1000 from INT_MAX does not wrap");
	parse("scale consumer -1000", &r);
	is_int(ctl_scale_target(&r, 0), -1000, "-1000 from 0 is -1000 (pgrelayd refuses it)");
	is_int(ctl_scale_target(&r, INT32_MIN), (int64_t)INT32_MIN - 1000,
	    "-1000 from INT_MIN does not wrap");
	parse("scale consumer 4", &r);
	is_int(ctl_scale_target(&r, 2), 4, "an absolute size ignores the current one");
	parse("scale consumer -1", &r);
	is_int(ctl_scale_target(&r, 2), 1, "-1 from 2 is 1");

	return done_testing();
}
