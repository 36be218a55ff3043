/*
 * fuzz_codec.c - libFuzzer target for the change-event decoder
 * (codec_decode_event and codec_check_row_forms, common/codec.c): what a
 * consumer does with every message value it fetches from a CDC topic,
 * here against employees as B has it and against a table of every class
 * with a composite key.
 *
 * Beyond "no crash, no leak, no undefined behaviour" (ASan, UBSan,
 * LeakSanitizer), a decoded change must be one pgrelay can apply: op one
 * of c, u, d, r, t; change_id > 0 (0 allowed for a snapshot row); a row (an object) exactly when op is
 * not t; after the row check, every key column present and of its form,
 * and every text of a varchar(100) within 100 characters once its
 * trailing spaces are dropped (PostgreSQL stores a longer string whose
 * excess is spaces, without them).  Its key text
 * and apply element must be made.  A refusal must carry a reason.  A
 * broken invariant calls abort(), which libFuzzer reports as a crash with
 * the input.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "../unit/relfix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct rel *emp, *multi;

/* characters of s, its trailing spaces not counted */
static size_t
utf8_chars_trimmed(const char *s)
{
	size_t n = 0, len = strlen(s);

	while (len > 0 && s[len - 1] == ' ')
		len--;
	for (size_t i = 0; i < len; i++)
		n += ((unsigned char)s[i] & 0xC0) != 0x80;
	return n;
}

static void
check_against(const struct rel *r, const struct change_event *e)
{
	char err[256] = "";
	char *key;
	json_t *el;

	if (codec_check_row_forms(r, e, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();
		return;
	}
	if (e->op == 't')
		return;
	for (int k = 0; k < r->nkeys; k++) {
		json_t *v = json_object_get(e->row, r->cols[r->keys[k]].name);
		if (v == NULL || json_is_null(v))
			abort();
	}
	if (r == emp) {
		const char *texts[] = { "first_name", "last_name", "city" };
		for (size_t i = 0; i < 3; i++) {
			json_t *v = json_object_get(e->row, texts[i]);
			if (json_is_string(v) && utf8_chars_trimmed(json_string_value(v)) > 100)
				abort();
		}
		if (!json_is_integer(json_object_get(e->row, "emp_id")))
			abort();
	}
	key = codec_key_text(r, e->row);
	el = codec_apply_elem(e);
	if (key == NULL || el == NULL)
		abort();
	free(key);
	json_decref(el);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct fixcol mcols[] = {
		{ "k1", "uuid", NULL, PGT_TEXT, PGT_NONE, 1 },
		{ "k2", "smallint", NULL, PGT_INT, PGT_NONE, 2 },
		{ "n", "numeric", NULL, PGT_NUMERIC, PGT_NONE, 0 },
		{ "f", "double precision", NULL, PGT_FLOAT, PGT_NONE, 0 },
		{ "b", "boolean", NULL, PGT_BOOL, PGT_NONE, 0 },
		{ "c", "character(3)", "character", PGT_TEXT, PGT_NONE, 0 },
		{ "d", "date", NULL, PGT_DATE, PGT_NONE, 0 },
		{ "tm", "time without time zone", NULL, PGT_TIME, PGT_NONE, 0 },
		{ "j", "jsonb", NULL, PGT_JSON, PGT_NONE, 0 },
		{ "a", "date[]", NULL, PGT_ARRAY, PGT_DATE, 0 },
	};
	struct change_event e;
	char err[256] = "";

	if (emp == NULL) {
		emp = fix_employees();
		multi = fix_rel("public", "multi", mcols,
		    (int)(sizeof(mcols) / sizeof(mcols[0])));
	}
	if (codec_decode_event(data, size, &e, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();		/* a refusal names its reason */
		return 0;
	}
	/* strchr finds the terminating NUL: test it apart */
	if (e.op == '\0' || strchr("cudrt", e.op) == NULL ||
	    e.change_id < (e.op == 'r' ? 0 : 1))
		abort();
	if ((e.row == NULL) != (e.op == 't') || (e.row != NULL && !json_is_object(e.row)))
		abort();
	check_against(emp, &e);
	check_against(multi, &e);
	codec_event_free(&e);
	return 0;
}
