/*
 * fuzz_codec.c - libFuzzer target for the change-event decoder
 * (codec_decode_change, common/codec.c): what a consumer does with every
 * message value it fetches from the CDC topic.
 *
 * Beyond "no crash, no leak, no undefined behaviour" (ASan, UBSan,
 * LeakSanitizer), a decoded change must be one pgrelay can apply: op one
 * of c, u, d, r; change_id >= 0; the row it is about present (before for
 * a delete, after otherwise) and the other absent; texts within
 * CODEC_TEXT_MAX characters; dob within CODEC_DOB_MIN/MAX_DAYS.  It must
 * encode again and decode back to the same change.  A refusal must carry
 * a reason.  A broken invariant calls abort(), which libFuzzer reports as
 * a crash with the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t
utf8_chars(const char *s)
{
	size_t n = 0;

	for (; *s; s++)
		n += ((unsigned char)*s & 0xC0) != 0x80;
	return n;
}

static void
check_row(const struct emp_row *r)
{
	const char *texts[] = { r->first_name, r->last_name, r->city };

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		if (texts[i] != NULL && utf8_chars(texts[i]) > CODEC_TEXT_MAX)
			abort();
	if (r->has_dob && (r->dob_days < CODEC_DOB_MIN_DAYS || r->dob_days > CODEC_DOB_MAX_DAYS))
		abort();
}

static int
same_text(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

static int
same_row(const struct emp_row *a, const struct emp_row *b)
{
	return a->emp_id == b->emp_id && same_text(a->first_name, b->first_name) &&
	    same_text(a->last_name, b->last_name) && same_text(a->city, b->city) &&
	    a->has_dob == b->has_dob && (!a->has_dob || a->dob_days == b->dob_days) &&
	    a->has_salary == b->has_salary && (!a->has_salary || a->salary == b->salary);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct change c, back;
	const struct change *one[1] = { &c };
	char err[256] = "";
	char *json, *rows;
	size_t len;

	if (codec_decode_change(data, size, &c, err, sizeof(err)) != 0) {
		if (err[0] == '\0')
			abort();		/* a refusal names its reason */
		return 0;
	}
	/* strchr finds the terminating NUL: test it apart */
	if (c.op == '\0' || strchr("cudrt", c.op) == NULL || c.change_id < 0)
		abort();
	/* a TRUNCATE (t) is about no row: neither side */
	if (c.has_before != (c.op == 'd') || c.has_after != (c.op != 'd' && c.op != 't'))
		abort();
	if (c.op != 't')
		check_row(codec_change_row(&c));

	json = codec_encode_change(&c, "fuzz", &len);
	if (json == NULL || len != strlen(json))
		abort();
	if (codec_decode_change(json, len, &back, err, sizeof(err)) != 0)
		abort();		/* what pgrelay encodes, it decodes */
	if (back.op != c.op || back.change_id != c.change_id || back.txid != c.txid ||
	    back.ts_ms != c.ts_ms || !same_row(codec_change_row(&back), codec_change_row(&c)))
		abort();
	rows = codec_encode_apply_rows(one, 1);
	if (rows == NULL)
		abort();
	free(rows);
	free(json);
	codec_change_free(&back);
	codec_change_free(&c);
	return 0;
}
