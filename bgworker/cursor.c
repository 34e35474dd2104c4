/*
 * cursor.c: pull cursors that a device cannot forge.
 *
 * A cursor tells the origin where a device stands in the feed and in its
 * snapshots, and the origin's bookkeeping of the rows a device holds is
 * keyed by its page numbers: a forged one (a page number near the bigint
 * limit, another device's snapshot) could corrupt that bookkeeping or fail
 * a live round shared with other devices.  So the worker seals every
 * cursor it sends: "c1." + base64(cursor) + "." + base64(HMAC-SHA-256 of
 * the device's name and the cursor, under the key in ofs.cursor_key), and
 * opens what a device sends back.  A cursor that does not open is treated
 * as no cursor: that device alone starts afresh (a snapshot).
 *
 * With the SQL of 1.0 there is no key: cursors travel as ofs.pull makes
 * them, checked here for their shape and ranges only.  A device that
 * kept such a cursor across the upgrade presents it once more; it is
 * honoured only if it is at the page the origin last sent that device
 * (protocol.c), so the upgrade costs no snapshot.
 */
#include "postgres.h"

#include <jansson.h>

#include "common/base64.h"
#include "common/hmac.h"
#include "common/sha2.h"
#include "utils/resowner.h"

#include "worker.h"
#include "message.h"

#define SEAL_PREFIX "c1."
#define TAG_BYTES 16			/* 128 bits of the HMAC */
#define MAX_PLAIN_CURSOR (1024 * 1024)

static uint8 key[32];
static bool have_key = false;

/*
 * WorkerCryptoOwner is the resource owner under which the worker hashes
 * outside transactions: PostgreSQL's cryptohash and HMAC (OpenSSL's)
 * register with the current resource owner, and between transactions there
 * is none.  Each use frees what it made, so it stays empty.
 */
ResourceOwner
WorkerCryptoOwner(void)
{
	static ResourceOwner owner = NULL;

	if (owner == NULL)
		owner = ResourceOwnerCreate(NULL, "ofs sync worker hashing");
	return owner;
}

/* CursorSetKey sets the sealing key (NULL: none, cursors travel plain). */
void
CursorSetKey(const uint8 *bytes, size_t len)
{
	have_key = bytes != NULL && len == sizeof(key);
	if (have_key)
		memcpy(key, bytes, sizeof(key));
	else
		memset(key, 0, sizeof(key));
}

bool
CursorSealing(void)
{
	return have_key;
}

/* Tag computes the HMAC of device and cursor; false if it cannot. */
static bool
Tag(const char *device, const char *cursor, size_t cursor_len, uint8 out[PG_SHA256_DIGEST_LENGTH])
{
	ResourceOwner save = CurrentResourceOwner;
	pg_hmac_ctx *ctx;
	bool		ok;

	CurrentResourceOwner = WorkerCryptoOwner();
	ctx = pg_hmac_create(PG_SHA256);
	ok = ctx != NULL && pg_hmac_init(ctx, key, sizeof(key)) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) device, strlen(device) + 1) == 0 &&
		pg_hmac_update(ctx, (const uint8 *) cursor, cursor_len) == 0 &&
		pg_hmac_final(ctx, out, PG_SHA256_DIGEST_LENGTH) == 0;
	pg_hmac_free(ctx);
	CurrentResourceOwner = save;
	return ok;
}

/*
 * CursorSeal returns the cursor to send device (malloc'd): sealed when
 * there is a key, else as it is.
 */
char *
CursorSeal(const char *device, const char *cursor)
{
	uint8		tag[PG_SHA256_DIGEST_LENGTH];
	int			clen;
	char	   *out;
	int			n;
	int			m;

	if (cursor == NULL)
		return NULL;
	if (!have_key)
		return strdup(cursor);
	clen = strlen(cursor);
	if (!Tag(device, cursor, clen, tag))
		return NULL;
	out = malloc(strlen(SEAL_PREFIX) + pg_b64_enc_len(clen) + 1 + pg_b64_enc_len(TAG_BYTES) + 1);
	if (out == NULL)
		return NULL;
	strcpy(out, SEAL_PREFIX);
	n = strlen(SEAL_PREFIX);
	m = pg_b64_encode(cursor, clen, out + n, pg_b64_enc_len(clen));
	if (m < 0)
	{
		free(out);
		return NULL;
	}
	n += m;
	out[n++] = '.';
	m = pg_b64_encode((const char *) tag, TAG_BYTES, out + n, pg_b64_enc_len(TAG_BYTES));
	if (m < 0)
	{
		free(out);
		return NULL;
	}
	out[n + m] = '\0';
	return out;
}

/*
 * CursorOpen reads a cursor a device sent.  *cursor gets the cursor for
 * ofs.pull (malloc'd) unless the verdict is CURSOR_NONE or CURSOR_FORGED.
 */
CursorVerdict
CursorOpen(const char *device, const char *text, char **cursor)
{
	size_t		len;
	const char *dot;
	char	   *body;
	int			blen;
	char		tag[64];
	int			tlen;
	uint8		want[PG_SHA256_DIGEST_LENGTH];
	int			diff = 0;

	*cursor = NULL;
	if (text == NULL)
		return CURSOR_NONE;
	len = strlen(text);
	if (strncmp(text, SEAL_PREFIX, strlen(SEAL_PREFIX)) != 0)
	{
		if (!CursorPlainOk(text, len))
			return CURSOR_FORGED;
		*cursor = strdup(text);
		return *cursor ? CURSOR_PLAIN : CURSOR_FORGED;
	}
	if (!have_key || len > 4 * MAX_PLAIN_CURSOR)
		return CURSOR_FORGED;
	text += strlen(SEAL_PREFIX);
	dot = strchr(text, '.');
	if (dot == NULL || strchr(dot + 1, '.') != NULL)
		return CURSOR_FORGED;
	tlen = pg_b64_dec_len(strlen(dot + 1));
	if (tlen > (int) sizeof(tag))
		return CURSOR_FORGED;
	tlen = pg_b64_decode(dot + 1, strlen(dot + 1), tag, sizeof(tag));
	if (tlen != TAG_BYTES)
		return CURSOR_FORGED;
	body = malloc(pg_b64_dec_len(dot - text) + 1);
	if (body == NULL)
		return CURSOR_FORGED;
	blen = pg_b64_decode(text, dot - text, body, pg_b64_dec_len(dot - text));
	if (blen < 0 || memchr(body, '\0', blen) != NULL || !Tag(device, body, blen, want))
	{
		free(body);
		return CURSOR_FORGED;
	}
	body[blen] = '\0';
	/* Compare in constant time: the tag is a secret until it matches. */
	for (int i = 0; i < TAG_BYTES; i++)
		diff |= want[i] ^ (uint8) tag[i];
	if (diff != 0 || !CursorPlainOk(body, blen))
	{
		free(body);
		return CURSOR_FORGED;
	}
	*cursor = body;
	return CURSOR_SEALED;
}

/*
 * CursorLoadKey reads the sealing key of the installed SQL (ofs.cursor_key,
 * since 1.1); without it cursors travel plain.  Called whenever the
 * workers read the SQL's version.
 */
void
CursorLoadKey(void)
{
	SqlResult	res;
	uint8		bytes[32];
	bool		ok = false;

	if (ofs_sql_version < 101)
	{
		CursorSetKey(NULL, 0);
		return;
	}
	WorkerSql("SELECT encode(key, 'hex') FROM ofs.cursor_key LIMIT 1", 0, NULL, &res);
	if (res.ok && res.nvalues == 1 && res.values[0] && strlen(res.values[0]) == 64)
	{
		ok = true;
		for (int i = 0; i < 32 && ok; i++)
		{
			unsigned int b;

			ok = sscanf(res.values[0] + 2 * i, "%2x", &b) == 1;
			bytes[i] = (uint8) b;
		}
	}
	if (ok)
		CursorSetKey(bytes, sizeof(bytes));
	else
	{
		ereport(LOG,
				(errmsg("ofs sync worker could not read the cursor key: %s",
						res.ok ? "ofs.cursor_key has no key" : res.message),
				 errhint("Cursors are sent unsealed until it can; ALTER EXTENSION ofs UPDATE creates the key.")));
		CursorSetKey(NULL, 0);
	}
	SqlResultFree(&res);
}
