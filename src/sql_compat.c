/*
 * sql_compat.c: the C names that the SQL of ofs 1.0 declares.
 *
 * Every C function callable from SQL carries the prefix ofs_, since the
 * library shares one process with PostgreSQL, libwebsockets, jansson and
 * libuv.  ofs 1.0 declared its functions under their bare names ("changes",
 * "sync_table"), and a database keeps those names in pg_proc until ALTER
 * EXTENSION ofs UPDATE: users install a new library first and update after
 * (docs/DESIGN.md, "Versions and upgrades").  So the bare names stay,
 * exported only for that, each forwarding to its ofs_ function.  They go
 * when OFS_OLDEST_SQL_VERSION moves past 1.0.
 */
#include "ofs.h"

#include "fmgr.h"

#define OFS_SQL_1_0_FUNCTIONS(X) \
	X(add_transition_check) \
	X(add_transition_constraint) \
	X(apply_one) \
	X(capture_trigger) \
	X(changes) \
	X(clamp_hlc) \
	X(create_gapless_sequence) \
	X(drop_gapless_sequence) \
	X(drop_transition_check) \
	X(drop_transition_constraint) \
	X(encode_row) \
	X(feed_commits) \
	X(gapless_next) \
	X(gapless_next_at) \
	X(gapless_nextval) \
	X(gapless_nextval_at) \
	X(hlc_now) \
	X(notify_device_change) \
	X(notify_feed_change) \
	X(rebuild_feed) \
	X(refuse_truncate) \
	X(scope_count) \
	X(scope_page) \
	X(scope_rows) \
	X(shape_filter) \
	X(sync_table) \
	X(transition_trigger) \
	X(unsync_table) \
	X(worker_stats)

#define OFS_FORWARD(name) \
	extern Datum ofs_##name(PG_FUNCTION_ARGS); \
	PG_FUNCTION_INFO_V1(name); \
	Datum \
	name(PG_FUNCTION_ARGS) \
	{ \
		return ofs_##name(fcinfo); \
	}

OFS_SQL_1_0_FUNCTIONS(OFS_FORWARD)
