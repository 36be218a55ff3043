/*
 * ctlproto.c - parses a control-socket request into a struct ctl_request.
 *
 * The line is split into at most CTL_MAX_WORDS words in place of a copy;
 * a number is read digit by digit and refused as soon as it passes
 * CTL_SCALE_MAX, so no value the client sends can overflow anything.
 */
#define _POSIX_C_SOURCE 200809L
#include "ctlproto.h"

#include <stdio.h>
#include <string.h>

#define CTL_MAX_WORDS 4		/* one more than any request has */

static const char ctl_usage_scale[] = "usage: scale consumer|etl_loader +1|-1|N";
static const char ctl_usage_all[] =
    "commands: status | status json | scale consumer|etl_loader +1|-1|N";

struct ctl_word {
	const char *s;
	size_t len;
};

static int
word_is(const struct ctl_word *w, const char *s)
{
	return w->len == strlen(s) && memcmp(w->s, s, w->len) == 0;
}

/* Splits the first line of buf into words; returns their count, at most
 * CTL_MAX_WORDS (the rest are not looked at). */
static int
split_words(const char *buf, size_t len, struct ctl_word *words)
{
	size_t i = 0;
	int n = 0;

	for (;;) {
		while (i < len && (buf[i] == ' ' || buf[i] == '\t'))
			i++;
		if (i == len || buf[i] == '\n' || buf[i] == '\r' || buf[i] == '\0')
			return n;
		if (n == CTL_MAX_WORDS)
			return n;
		words[n].s = buf + i;
		while (i < len && buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\n' &&
		    buf[i] != '\r' && buf[i] != '\0')
			i++;
		words[n].len = (size_t)(buf + i - words[n].s);
		n++;
	}
}

/* "+N", "-N" or "N" with N decimal digits, |value| <= CTL_SCALE_MAX. */
static int
parse_number(const struct ctl_word *w, int *relative, int *out, char *err,
    size_t errlen)
{
	size_t i = 0;
	int sign = 1, v = 0;

	*relative = 0;
	if (w->s[0] == '+' || w->s[0] == '-') {
		*relative = 1;
		sign = w->s[0] == '-' ? -1 : 1;
		i = 1;
	}
	if (i == w->len) {
		snprintf(err, errlen, "not a number");
		return -1;
	}
	for (; i < w->len; i++) {
		if (w->s[i] < '0' || w->s[i] > '9') {
			snprintf(err, errlen, "not a number");
			return -1;
		}
	}
	for (i = *relative ? 1 : 0; i < w->len; i++) {
		v = v * 10 + (w->s[i] - '0');	/* v <= CTL_SCALE_MAX before: no overflow */
		if (v > CTL_SCALE_MAX) {
			snprintf(err, errlen, "%.*s is out of range: a pool size or a "
			    "change of it is at most %d", w->len > 40 ? 40 : (int)w->len,
			    w->s, CTL_SCALE_MAX);
			return -1;
		}
	}
	*out = sign * v;
	return 0;
}

int
ctl_parse_request(const char *buf, size_t len, struct ctl_request *req,
    char *err, size_t errlen)
{
	struct ctl_word w[CTL_MAX_WORDS];
	int n = split_words(buf, len, w);

	memset(req, 0, sizeof(*req));
	if (n == 1 && word_is(&w[0], "status")) {
		req->command = CTL_STATUS;
		return 0;
	}
	if (n == 2 && word_is(&w[0], "status") && word_is(&w[1], "json")) {
		req->command = CTL_STATUS_JSON;
		return 0;
	}
	if (n < 1 || !word_is(&w[0], "scale")) {
		snprintf(err, errlen, "%s", ctl_usage_all);
		return -1;
	}
	if (n != 3 || w[1].len >= sizeof(req->pool)) {
		snprintf(err, errlen, "%s", ctl_usage_scale);
		return -1;
	}
	if (parse_number(&w[2], &req->relative, &req->number, err, errlen) < 0)
		return -1;
	req->command = CTL_SCALE;
	memcpy(req->pool, w[1].s, w[1].len);
	req->pool[w[1].len] = '\0';
	return 0;
}

int64_t
ctl_scale_target(const struct ctl_request *req, int current)
{
	/* |number| <= CTL_SCALE_MAX and current is an int: the sum fits */
	return req->relative ? (int64_t)current + req->number : (int64_t)req->number;
}
