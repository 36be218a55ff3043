/*
 * utf8.c - checks and repairs UTF-8 (see utf8.h); the table of
 * well-formed sequences is Unicode's (Table 3-7 of the standard).
 */
#include "utf8.h"

#include <stdio.h>
#include <string.h>

/* Length of the well-formed sequence at s (1 to 4), or 0 if there is none. */
static size_t
seq_len(const unsigned char *s, size_t len)
{
	unsigned char c = s[0], lo = 0x80, hi = 0xBF;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c < 0xC2)
		return 0;	/* a continuation byte, or an overlong 2-byte form */
	if (c < 0xE0)
		n = 2;
	else if (c < 0xF0) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;	/* overlong */
		else if (c == 0xED)
			hi = 0x9F;	/* surrogates */
	} else if (c < 0xF5) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;	/* overlong */
		else if (c == 0xF4)
			hi = 0x8F;	/* above U+10FFFF */
	} else
		return 0;
	if (len < n || s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xBF)
			return 0;
	return n;
}

long
utf8_invalid_at(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		size_t n = seq_len(u + i, len - i);
		if (n == 0)
			return (long)i;
		i += n;
	}
	return -1;
}

size_t
utf8_sanitize(const char *s, size_t len, char *out, size_t outlen, int *cut)
{
	static const char replacement[] = "\xEF\xBF\xBD";	/* U+FFFD */
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < len) {
		size_t n = seq_len(u + i, len - i);
		const char *from = n ? s + i : replacement;
		size_t w = n ? n : 3;

		if (o + w >= outlen) {
			*cut = 1;
			break;
		}
		memcpy(out + o, from, w);
		o += w;
		i += n ? n : 1;
	}
	out[o] = '\0';
	return o;
}

const char *
utf8_escape(const char *s, char *out, size_t outlen)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t len = strlen(s), i = 0, o = 0;

	while (i < len) {
		size_t n = seq_len(u + i, len - i);
		if (n == 0 || u[i] < 0x20 || u[i] == 0x7F) {
			if (o + 4 >= outlen)
				break;
			snprintf(out + o, 5, "\\x%02x", u[i]);
			o += 4;
			i++;
		} else {
			if (o + n >= outlen)
				break;
			memcpy(out + o, s + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	return out;
}
