/*
 * tap.h - the few Test Anything Protocol helpers the C unit tests use;
 * prove reads their output.  Header-only, for tests/unit only.
 */
#ifndef PGRELAY_TAP_H
#define PGRELAY_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

#define ok(cond, ...) tap_ok(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define is_str(got, want, what) tap_is_str((got), (want), __FILE__, __LINE__, (what))
#define is_int(got, want, ...) \
	tap_is_int((long long)(got), (long long)(want), __FILE__, __LINE__, __VA_ARGS__)

static int __attribute__((format(printf, 4, 5), unused))
tap_ok(int pass, const char *file, int line, const char *fmt, ...)
{
	va_list ap;

	tap_n++;
	printf("%sok %d - ", pass ? "" : "not ", tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!pass) {
		tap_failed++;
		printf("#   failed at %s line %d\n", file, line);
	}
	return pass;
}

static int __attribute__((unused))
tap_is_str(const char *got, const char *want, const char *file, int line,
    const char *what)
{
	if (tap_ok(got != NULL && strcmp(got, want) == 0, file, line, "%s", what))
		return 1;
	printf("#   got: '%s'\n#   expected: '%s'\n", got ? got : "(null)", want);
	return 0;
}

#define tap_is_int(got, want, file, line, ...) \
	(tap_ok((got) == (want), file, line, __VA_ARGS__) ? 1 : \
	 (printf("#   got: %lld\n#   expected: %lld\n", (got), (want)), 0))

static int __attribute__((unused))
done_testing(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
