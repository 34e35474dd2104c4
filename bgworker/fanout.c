/*
 * fanout.c: what the sync worker does for many sessions at once.
 *
 * A commit that captured changes makes a live round: the live devices that
 * may have something new are pulled for together (ofs_internal.pull_live reads the
 * feed and the rows once for all of them), and each gets its share.  A
 * commit that changed devices, and every few seconds, makes an authority
 * sweep: every session whose credential no longer holds is closed.  The
 * sessions themselves belong to session.c; this file asks it for the ones
 * it needs.
 *
 * This file includes jansson, so it must not include utils/builtins.h
 * (protocol.c says why).
 */
#include "postgres.h"

#include <jansson.h>

#include "ofs.h"
#include "worker.h"
#include "message.h"
#include "shmem.h"
#include "utils/timestamp.h"

static void FanoutLiveBatch(Session **list, int n);

/* One device's share of a live round, kept until the round's check. */
typedef struct LiveShare
{
	char	   *body;			/* malloc'd: the result without its cursor */
	char	   *cursor;			/* malloc'd */
	int			rows;
	bool		more;
	char	   *error;			/* malloc'd: the device's own failure, or NULL */
	char		sqlstate[6];
	bool		too_large;		/* over OFS_MAX_PAGE_BYTES: pulled again alone */
} LiveShare;

typedef struct LiveBatch
{
	Session   **list;
	int			n;
	LiveShare  *shares;
	bool	   *lost;			/* authority gone: results dropped */
	char	   *texts[4];		/* devices, token hashes, roles, role OIDs (JSON) */
} LiveBatch;

/* KeepLiveResult keeps a row of ofs_internal.pull_live until the round is checked. */
static void
KeepLiveResult(void *arg, char **cols, int ncols)
{
	LiveBatch  *b = (LiveBatch *) arg;
	int			ord = ncols >= 7 && cols[0] ? atoi(cols[0]) : 0;
	LiveShare  *sh;

	if (ord < 1 || ord > b->n || cols[1] == NULL || b->shares[ord - 1].body != NULL)
		return;
	/* What the round needs is read in SQL: the rows are never parsed here. */
	sh = &b->shares[ord - 1];
	sh->body = strdup(cols[1]);
	sh->cursor = cols[2] ? strdup(cols[2]) : NULL;
	sh->rows = cols[3] ? atoi(cols[3]) : 0;
	sh->more = cols[4] && strcmp(cols[4], "t") == 0;
	sh->error = cols[5] ? strdup(cols[5]) : NULL;
	strlcpy(sh->sqlstate, cols[6] ? cols[6] : "", sizeof(sh->sqlstate));
}

/*
 * CheckLiveBatch: whose authority no longer holds, after the round, and
 * whether a device's share is over a page's bytes: then the round is
 * rolled back, and made again without those devices, which are pulled
 * alone with fewer rows.
 */
static void
CheckLiveBatch(void *arg, SqlResult *res)
{
	LiveBatch  *b = (LiveBatch *) arg;
	bool		too_large = false;

	SqlLostAuthorities(b->texts[0], b->texts[1], b->texts[2], b->texts[3], b->n, b->lost);
	if (b->shares == NULL)
		return;
	for (int i = 0; i < b->n; i++)
	{
		size_t		bytes = b->shares[i].body ? strlen(b->shares[i].body) : 0;

		if ((bytes > OFS_MAX_PAGE_BYTES && b->shares[i].rows > 1) || bytes > OFS_MAX_MESSAGE_OUT)
			too_large = b->shares[i].too_large = true;
	}
	if (too_large)
		ereport(ERROR,
				(errcode(MAKE_SQLSTATE('O', 'F', '0', '3', '1')),
				 errmsg("a live round has a page over %d bytes", OFS_MAX_PAGE_BYTES)));
}

/* SendLiveShare sends one device's share of a live round. */
static void
SendLiveShare(Session *s, LiveShare *share)
{
	if (share->error)
	{
		OfsRecordError(share->error);
		if (strcmp(share->sqlstate, "28000") == 0)
			ProtocolRevoked(s, share->error);
		else
			ProtocolSendError(s, NULL, "server_error", share->error, share->sqlstate[0] ? share->sqlstate : NULL, true);
		s->live_pending = false;
		return;
	}
	if (share->rows > 0)
	{
		if (!ProtocolReplyChanges(s, NULL, share->cursor, share->body, share->more))
			return;
		OfsCount(OFS_STAT_ROWS_SENT, share->rows);
		/* From the latest commit that woke the workers to this page's sending. */
		if (ofs_shared)
		{
			TimestampTz at = (TimestampTz) pg_atomic_read_u64(&ofs_shared->feed_commit_at);

			if (at > 0)
				OfsMetricObserve(OFS_HIST_DELIVERY, (GetCurrentTimestamp() - at) / 1e6);
		}
		/* Small pages let the next ones grow back. */
		if (s->page_rows > 0 && strlen(share->body) < OFS_MAX_PAGE_BYTES / 4)
			s->page_rows = s->page_rows * 2 >= OFS_MAX_ROWS ? 0 : s->page_rows * 2;
	}
	SessionSetString(&s->cursor, share->cursor);
	s->live_pending = share->more;
}

/*
 * A round's results are sent only after a check, in the same transaction,
 * that every device's authority still holds.  A round that fails as a
 * whole is run again device by device, so that one device's failure
 * reaches that device only.
 */
static void LiveBatchRows(Session **list, int n, int max_rows);

/*
 * FanoutLiveBatch pulls for many live devices in one call of
 * ofs_internal.pull_live, which reads the feed and the rows once for all of them.
 */
static void
FanoutLiveBatch(Session **list, int n)
{
	Session   **common = calloc(n, sizeof(Session *));
	int			ncommon = 0;

	/* Devices whose rows are large go alone, with the rows that fit a page. */
	for (int i = 0; i < n; i++)
		if (list[i]->page_rows > 0 || common == NULL)
			LiveBatchRows(&list[i], 1, list[i]->page_rows > 0 ? list[i]->page_rows : OFS_MAX_ROWS);
		else
			common[ncommon++] = list[i];
	if (ncommon > 0)
		LiveBatchRows(common, ncommon, OFS_MAX_ROWS);
	free(common);
}

/* LiveAlone pulls for one live device whose share was too large, with fewer rows. */
static void
LiveAlone(Session *s, int rows, size_t bytes)
{
	if (rows <= 1)
	{
		char		message[160];

		snprintf(message, sizeof(message),
				 "the next row has %zu bytes as JSON; the origin sends rows of up to %d bytes",
				 bytes, OFS_MAX_MESSAGE_OUT);
		OfsRecordError(message);
		ProtocolSendError(s, NULL, "server_error", message, OFS_PAGE_TOO_LARGE, false);
		SessionSetLive(s, false);
		return;
	}
	s->page_rows = ProtocolPageRows(rows, bytes);
	LiveBatchRows(&s, 1, s->page_rows);
}

/*
 * LiveRound10 is the live round under 1.0's SQL: ofs.pull_live is called
 * with the devices and cursors as JSON arrays.  false: out of memory.
 */
static bool
LiveRound10(Session **list, int n, int max_rows, LiveBatch *b, SqlResult *res)
{
	json_t	   *arrays[2] = {json_array(), json_array()};
	char	   *texts[2];
	char		maxtext[16];
	const char *args[4];
	bool		ok;

	for (int i = 0; i < n; i++)
	{
		json_array_append_new(arrays[0], list[i]->cursor ? json_string(list[i]->cursor) : json_null());
		json_array_append_new(arrays[1], list[i]->acked ? json_string(list[i]->acked) : json_null());
	}
	texts[0] = json_dumps(arrays[0], JSON_COMPACT);
	texts[1] = json_dumps(arrays[1], JSON_COMPACT);
	json_decref(arrays[0]);
	json_decref(arrays[1]);
	ok = texts[0] != NULL && texts[1] != NULL;
	if (ok)
	{
		snprintf(maxtext, sizeof(maxtext), "%d", max_rows);
		args[0] = b->texts[0];
		args[1] = texts[0];
		args[2] = texts[1];
		args[3] = maxtext;
		WorkerSqlTx("SELECT ord, (result - 'cursor')::text, result->>'cursor',"
					"       coalesce(jsonb_array_length(result->'changes'), 0), (result->>'more')::boolean,"
					"       result->>'error', result->>'sqlstate' FROM ofs.pull_live("
					"ARRAY(SELECT jsonb_array_elements_text($1::jsonb)),"
					"ARRAY(SELECT jsonb_array_elements_text($2::jsonb)),"
					"ARRAY(SELECT jsonb_array_elements_text($3::jsonb)), $4::int)",
					4, args, KeepLiveResult, CheckLiveBatch, b, res);
	}
	free(texts[0]);
	free(texts[1]);
	return ok;
}

/*
 * LiveRound11 calls the engine directly (ofs_internal.pull_live's C):
 * no JSON is built for SQL and read again.  false: out of memory.
 */
static bool
LiveRound11(Session **list, int n, int max_rows, LiveBatch *b, SqlResult *res)
{
	char	  **texts = calloc(3 * (size_t) n, sizeof(char *));

	if (texts == NULL)
		return false;
	for (int i = 0; i < n; i++)
	{
		texts[i] = list[i]->device;
		texts[n + i] = list[i]->cursor;
		texts[2 * n + i] = list[i]->acked;
	}
	WorkerLiveTx(n, texts, texts + n, texts + 2 * n, max_rows, KeepLiveResult, CheckLiveBatch, b, res);
	free(texts);
	return true;
}

static void
LiveBatchRows(Session **list, int n, int max_rows)
{
	json_t	   *arrays[4];
	SqlResult	res;
	LiveBatch	b;

	for (int i = 0; i < 4; i++)
		arrays[i] = json_array();
	for (int i = 0; i < n; i++)
	{
		json_array_append_new(arrays[0], json_string(list[i]->device));
		json_array_append_new(arrays[1], json_string(list[i]->token_sha256));
		json_array_append_new(arrays[2], json_string(list[i]->role ? list[i]->role : ""));
		json_array_append_new(arrays[3], json_integer(list[i]->role_oid));
		/* A device with nothing new is not asked again until the next commit. */
		list[i]->live_pending = false;
	}
	b.list = list;
	b.n = n;
	b.shares = calloc(n, sizeof(LiveShare));
	b.lost = calloc(n, sizeof(bool));
	for (int i = 0; i < 4; i++)
	{
		b.texts[i] = json_dumps(arrays[i], JSON_COMPACT);
		json_decref(arrays[i]);
	}
	if (b.shares == NULL || b.lost == NULL || !b.texts[0] || !b.texts[1] || !b.texts[2] || !b.texts[3] ||
		!(ofs_sql_version >= 101 ? LiveRound11 : LiveRound10) (list, n, max_rows, &b, &res))
	{
		OfsRecordError("out of memory in a live round");
		goto done;
	}
	if (!res.ok && strcmp(res.sqlstate, OFS_PAGE_TOO_LARGE) == 0)
	{
		/* The others again together; the large ones alone, with fewer rows. */
		Session   **rest = calloc(n, sizeof(Session *));
		int			nrest = 0;

		for (int i = 0; i < n; i++)
			if (!b.shares[i].too_large && rest)
				rest[nrest++] = list[i];
		if (nrest > 0)
			LiveBatchRows(rest, nrest, max_rows);
		free(rest);
		for (int i = 0; i < n; i++)
			if (b.shares[i].too_large)
				LiveAlone(list[i], b.shares[i].rows, strlen(b.shares[i].body));
	}
	else if (!res.ok)
	{
		OfsRecordError(res.message);
		if (n > 1)
		{
			/* One device may be the cause: each alone, the others unharmed. */
			for (int i = 0; i < n; i++)
				LiveBatchRows(list + i, 1, max_rows);
		}
		else if (!res.retry)
		{
			/* This device's live stream fails on its own: it is told, and it stops. */
			ProtocolSendError(list[0], NULL, "server_error", res.message, res.sqlstate, false);
			SessionSetLive(list[0], false);
		}
	}
	else
		for (int i = 0; i < n; i++)
		{
			if (b.lost[i])
				ProtocolRevoked(list[i], NULL);
			else if (b.shares[i].body)
				SendLiveShare(list[i], &b.shares[i]);
		}
	SqlResultFree(&res);
done:
	if (b.shares)
		for (int i = 0; i < n; i++)
		{
			free(b.shares[i].body);
			free(b.shares[i].cursor);
			free(b.shares[i].error);
		}
	free(b.shares);
	free(b.lost);
	for (int i = 0; i < 4; i++)
		free(b.texts[i]);
}

/* Ready: an authenticated session. */
static bool
Ready(Session *s, void *arg)
{
	return s->device != NULL && s->state == SESSION_READY;
}

/* LiveDue: a live session that may have changes and has sent the last ones. */
static bool
LiveDue(Session *s, void *arg)
{
	return s->live && s->live_pending && s->state == SESSION_READY && s->out_head == NULL;
}

/*
 * FanoutLiveRound pushes new changes to the live devices that may have
 * some, in batches (ofs_internal.pull_live).  A device whose last push is still
 * queued waits: a slow reader is not fed faster than it reads.  Returns
 * whether another round is due at once.
 */
#define LIVE_BATCH 500

bool
FanoutLiveRound(void)
{
	int			n = SessionsCollect(LiveDue, NULL, NULL, 0);
	Session   **due;
	Session    *batch[LIVE_BATCH];
	int			nbatch = 0;
	bool		again = false;

	if (n == 0)
		return false;
	due = calloc(n, sizeof(Session *));
	if (due == NULL)
		return true;
	n = SessionsCollect(LiveDue, NULL, due, n);
	for (int k = 0; k < n; k++)
	{
		bool		dup = false;

		/* A device connected twice is pulled for once per batch. */
		for (int i = 0; i < nbatch && !dup; i++)
			dup = strcmp(batch[i]->device, due[k]->device) == 0;
		if (dup)
		{
			again = true;
			continue;
		}
		batch[nbatch++] = due[k];
		if (nbatch == LIVE_BATCH)
		{
			FanoutLiveBatch(batch, nbatch);
			nbatch = 0;
		}
	}
	if (nbatch > 0)
		FanoutLiveBatch(batch, nbatch);
	free(due);
	return again || SessionsCollect(LiveDue, NULL, NULL, 0) > 0;
}

/*
 * FanoutCheckAuthority closes the connections whose authority no longer
 * holds: a device revoked, given a new token or role, expired, or whose
 * role may no longer act as a device.  The loop calls it when a commit
 * changed devices, and every few seconds.
 */
void
FanoutCheckAuthority(void)
{
	json_t	   *arrays[4];
	char	   *texts[4];
	Session   **list;
	bool	   *lost;
	int			n = 0;
	Session    *s;
	SqlResult	res;

	n = SessionsCollect(Ready, NULL, NULL, 0);
	if (n == 0)
		return;
	list = calloc(n, sizeof(Session *));
	lost = calloc(n, sizeof(bool));
	for (int i = 0; i < 4; i++)
		arrays[i] = json_array();
	n = list && lost ? SessionsCollect(Ready, NULL, list, n) : 0;
	for (int i = 0; i < n; i++)
	{
		s = list[i];
		json_array_append_new(arrays[0], json_string(s->device));
		json_array_append_new(arrays[1], json_string(s->token_sha256));
		json_array_append_new(arrays[2], json_string(s->role ? s->role : ""));
		json_array_append_new(arrays[3], json_integer(s->role_oid));
	}
	for (int i = 0; i < 4; i++)
	{
		texts[i] = json_dumps(arrays[i], JSON_COMPACT);
		json_decref(arrays[i]);
	}
	if (n > 0 && texts[0] && texts[1] && texts[2] && texts[3])
	{
		LiveBatch	b = {.list = list, .n = n, .lost = lost, .texts = {texts[0], texts[1], texts[2], texts[3]}};

		WorkerSqlTx("SELECT 1", 0, NULL, NULL, CheckLiveBatch, &b, &res);
		if (res.ok)
		{
			for (int i = 0; i < n; i++)
				if (lost[i])
					ProtocolRevoked(list[i], psprintf("the credential of device \"%s\" no longer holds: its token was replaced, revoked or expired, or its role changed",
											  list[i]->device));
		}
		else
			OfsRecordError(res.message);
		SqlResultFree(&res);
	}
	for (int i = 0; i < 4; i++)
		free(texts[i]);
	free(list);
	free(lost);
}
