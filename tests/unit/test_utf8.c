/*
 * test_utf8.c - utf8_invalid_at against the well-formed sequences of
 * Unicode's Table 3-7 at each of their edges (what PostgreSQL and jansson
 * accept), utf8_sanitize's replacement and cut, utf8_escape.
 */
#include <string.h>

#include "tap.h"
#include "utf8.h"

#define AT(lit) utf8_invalid_at(lit, sizeof(lit) - 1)

int
main(void)
{
	char out[16];
	int cut;

	is_int(AT(""), -1, "empty is well-formed");
	is_int(AT("Department, 42"), -1, "ASCII is");
	is_int(AT("a\0b"), -1, "NUL is (callers check it themselves)");
	is_int(AT("d\xC3\xA9l\xC3\xA9gu\xC3\xA9"), -1, "2-byte e-acute is");
	is_int(AT("\xE2\x82\xAC"), -1, "3-byte euro sign is");
	is_int(AT("\xF0\x9F\x98\x80"), -1, "4-byte emoji is");
	is_int(AT("\xC2\x80\xDF\xBF"), -1, "U+0080 and U+07FF are");
	is_int(AT("\xE0\xA0\x80\xED\x9F\xBF\xEE\x80\x80\xEF\xBF\xBF"), -1,
	    "U+0800, U+D7FF, U+E000 and U+FFFF are");
	is_int(AT("\xF0\x90\x80\x80\xF4\x8F\xBF\xBF"), -1, "U+10000 and U+10FFFF are");

	is_int(AT("Analyste d\xE9l\xE9gu\xE9"), 10, "Latin-1 e-acute: its offset");
	is_int(AT("\x80"), 0, "a lone continuation byte is not");
	is_int(AT("\xC0\x80"), 0, "overlong NUL (C0 80) is not");
	is_int(AT("\xC1\xBF"), 0, "overlong C1 is not");
	is_int(AT("\xE0\x9F\xBF"), 0, "overlong 3-byte form is not");
	is_int(AT("\xF0\x8F\xBF\xBF"), 0, "overlong 4-byte form is not");
	is_int(AT("ab\xED\xA0\x80"), 2, "a surrogate (U+D800) is not");
	is_int(AT("\xED\xBF\xBF"), 0, "U+DFFF is not");
	is_int(AT("\xF4\x90\x80\x80"), 0, "above U+10FFFF is not");
	is_int(AT("\xF5\x80\x80\x80"), 0, "F5 is not");
	is_int(AT("\xFF"), 0, "FF is not");
	is_int(AT("x\xE2\x82"), 1, "a sequence cut by the end is not");
	is_int(AT("x\xE2\x82y"), 1, "nor one cut by an ASCII byte");

	cut = 0;
	is_int(utf8_sanitize("ab\xE9" "c", 4, out, sizeof(out), &cut), 6,
	    "sanitize: one bad byte becomes U+FFFD (3 bytes)");
	is_str(out, "ab\xEF\xBF\xBD" "c", "sanitize: the text");
	is_int(cut, 0, "sanitize: nothing cut");
	cut = 0;
	is_int(utf8_sanitize("\xC3\xA9\xC3\xA9\xC3\xA9", 6, out, 6, &cut), 4,
	    "sanitize: a character that does not fit is left out whole");
	is_int(cut, 1, "sanitize: and the cut is told");
	cut = 0;
	is_int(utf8_sanitize("a\0b", 3, out, sizeof(out), &cut), 3, "sanitize: NUL is kept");
	ok(memcmp(out, "a\0b", 4) == 0, "sanitize: NUL-terminated after it");

	is_str(utf8_escape("caf\xE9.csv", out, sizeof(out)), "caf\\xe9.csv",
	    "escape: a bad byte as \\xNN");
	is_str(utf8_escape("a\tb\xC3\xA9", out, sizeof(out)), "a\\x09b\xC3\xA9",
	    "escape: a control character too, well-formed text kept");
	is_str(utf8_escape("\xFF\xFF\xFF\xFF", out, 9), "\\xff\\xff",
	    "escape: cut to fit, never inside an escape");
	return done_testing();
}
