/*
 * utf8.h - UTF-8 as PostgreSQL and jansson accept it: well-formed
 * sequences only (RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF).  U+0000 is well-formed here; callers that hand text to
 * PostgreSQL or C strings check for NUL bytes themselves.
 *
 * No function allocates; out buffers belong to the caller.
 */
#ifndef PGRELAY_UTF8_H
#define PGRELAY_UTF8_H

#include <stddef.h>

/* Offset of the first byte of s[0, len) that does not begin a well-formed
 * sequence, or -1 when all of s is well-formed. */
long utf8_invalid_at(const char *s, size_t len);

/* Copies s[0, len) into out (outlen bytes, at least 1; NUL-terminated)
 * with each byte that does not begin a well-formed sequence replaced by
 * U+FFFD, ending before a character that would not fit.  Returns the bytes
 * written, the NUL not counted; *cut is set to 1 when not all of s was
 * copied, and left alone otherwise. */
size_t utf8_sanitize(const char *s, size_t len, char *out, size_t outlen, int *cut);

/* s for a log line, in out (outlen bytes, at least 1; NUL-terminated, cut
 * to fit): bytes that do not begin a well-formed sequence and control
 * characters as \xNN, the rest as it is.  Returns out. */
const char *utf8_escape(const char *s, char *out, size_t outlen);

#endif
