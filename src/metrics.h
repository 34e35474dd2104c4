/*
 * metrics.h: what the sync workers count for /metrics (bgworker/http.c,
 * docs/monitoring.md) beyond ofs.stats' counters: messages by type,
 * connections closed by code, errors by code, devices live, and
 * histograms of push, pull and delivery times.  In shared memory: every
 * worker adds to the same figures and any worker answers a scrape.  They
 * start at zero when PostgreSQL starts, as ofs.stats' counters do.
 */
#ifndef OFS_METRICS_H
#define OFS_METRICS_H

#include "postgres.h"

#include "port/atomics.h"

/* Messages by type: the sync worker's message types, and one slot for messages of no known type. */
#define OFS_METRIC_TYPES 16

typedef enum OfsHistogramKind
{
	OFS_HIST_PUSH,				/* a push, received to answered */
	OFS_HIST_PULL,				/* a pull's page, asked to answered */
	OFS_HIST_DELIVERY,			/* a change's commit to its live page's sending */
	OFS_HIST_COUNT
} OfsHistogramKind;

#define OFS_HIST_BUCKETS 15
extern const double ofs_hist_bounds[OFS_HIST_BUCKETS];	/* seconds, upper bounds */
extern const char *const ofs_hist_names[OFS_HIST_COUNT];

typedef struct OfsHistogram
{
	pg_atomic_uint64 buckets[OFS_HIST_BUCKETS + 1];	/* not cumulative; the last: above every bound */
	pg_atomic_uint64 sum_us;
} OfsHistogram;

/* Close codes and error codes are counted by the entries of these lists, the rest as "other". */
#define OFS_CLOSE_KINDS 14
#define OFS_ERROR_KINDS 16
extern const int ofs_close_codes[OFS_CLOSE_KINDS];	/* 0: closed by the device or the network; -1: other */
extern const char *const ofs_error_codes[OFS_ERROR_KINDS];	/* the last: "other" */

typedef struct OfsMetrics
{
	pg_atomic_uint64 messages[OFS_METRIC_TYPES];
	pg_atomic_uint64 closes[OFS_CLOSE_KINDS];
	pg_atomic_uint64 errors[OFS_ERROR_KINDS];
	pg_atomic_uint64 live;		/* devices live now */
	pg_atomic_uint64 worker_starts;	/* sync workers started */
	OfsHistogram hist[OFS_HIST_COUNT];
} OfsMetrics;

extern void OfsMetricsInit(OfsMetrics *m);
extern void OfsMetricMessage(int type);
extern void OfsMetricClose(int code);
extern void OfsMetricError(const char *code);
extern void OfsMetricLive(int delta);
extern void OfsMetricObserve(OfsHistogramKind kind, double seconds);

#endif							/* OFS_METRICS_H */
