/*
 * metrics.c: the sync workers' labelled counters and histograms (metrics.h).
 */
#include "ofs.h"
#include "metrics.h"
#include "shmem.h"

const double ofs_hist_bounds[OFS_HIST_BUCKETS] = {
	0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30
};

const char *const ofs_hist_names[OFS_HIST_COUNT] = {
	"ofs_push_apply_seconds", "ofs_pull_page_seconds", "ofs_delivery_seconds"
};

const int	ofs_close_codes[OFS_CLOSE_KINDS] = {
	0, 1000, 1001, 1006, 1008, 1009, 1011, 1013, 4001, 4003, 4008, 4009, 4010, -1
};

const char *const ofs_error_codes[OFS_ERROR_KINDS] = {
	"invalid_json", "invalid_message", "unauthenticated", "unauthorized", "revoked", "rate_limited",
	"too_big", "cursor_too_old", "invalid_filter", "not_found", "server_error", "shutting_down",
	"max_shapes", "conflict", "busy", "other"
};

void
OfsMetricsInit(OfsMetrics *m)
{
	for (int i = 0; i < OFS_METRIC_TYPES; i++)
		pg_atomic_init_u64(&m->messages[i], 0);
	for (int i = 0; i < OFS_CLOSE_KINDS; i++)
		pg_atomic_init_u64(&m->closes[i], 0);
	for (int i = 0; i < OFS_ERROR_KINDS; i++)
		pg_atomic_init_u64(&m->errors[i], 0);
	pg_atomic_init_u64(&m->live, 0);
	pg_atomic_init_u64(&m->worker_starts, 0);
	for (int h = 0; h < OFS_HIST_COUNT; h++)
	{
		for (int i = 0; i <= OFS_HIST_BUCKETS; i++)
			pg_atomic_init_u64(&m->hist[h].buckets[i], 0);
		pg_atomic_init_u64(&m->hist[h].sum_us, 0);
	}
}

void
OfsMetricMessage(int type)
{
	if (ofs_shared == NULL)
		return;
	if (type < 0 || type >= OFS_METRIC_TYPES)
		type = OFS_METRIC_TYPES - 1;
	pg_atomic_fetch_add_u64(&ofs_shared->metrics.messages[type], 1);
}

void
OfsMetricClose(int code)
{
	int			i;

	if (ofs_shared == NULL)
		return;
	for (i = 0; i < OFS_CLOSE_KINDS - 1; i++)
		if (ofs_close_codes[i] == code)
			break;
	pg_atomic_fetch_add_u64(&ofs_shared->metrics.closes[i], 1);
}

void
OfsMetricError(const char *code)
{
	int			i;

	if (ofs_shared == NULL)
		return;
	for (i = 0; i < OFS_ERROR_KINDS - 1; i++)
		if (code && strcmp(ofs_error_codes[i], code) == 0)
			break;
	pg_atomic_fetch_add_u64(&ofs_shared->metrics.errors[i], 1);
}

void
OfsMetricLive(int delta)
{
	if (ofs_shared == NULL)
		return;
	if (delta >= 0)
		pg_atomic_fetch_add_u64(&ofs_shared->metrics.live, (uint64) delta);
	else
		pg_atomic_fetch_sub_u64(&ofs_shared->metrics.live, (uint64) -delta);
}

void
OfsMetricObserve(OfsHistogramKind kind, double seconds)
{
	OfsHistogram *h;
	int			i;

	if (ofs_shared == NULL || kind < 0 || kind >= OFS_HIST_COUNT)
		return;
	if (!(seconds >= 0))
		seconds = 0;
	h = &ofs_shared->metrics.hist[kind];
	for (i = 0; i < OFS_HIST_BUCKETS; i++)
		if (seconds <= ofs_hist_bounds[i])
			break;
	pg_atomic_fetch_add_u64(&h->buckets[i], 1);
	pg_atomic_fetch_add_u64(&h->sum_us, (uint64) (seconds * 1e6));
}
