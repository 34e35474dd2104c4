/*
 * ofs.h: declarations shared by the files of the ofs extension.
 *
 * The extension is one shared library: origin primitives in src/ and the
 * sync worker in bgworker/.  Each file owns one concern; this header holds
 * what crosses between them.
 */
#ifndef OFS_H
#define OFS_H

#include "postgres.h"

/*
 * ofs's own SQLSTATEs live in class "OF" so that clients can tell an ofs
 * refusal from PostgreSQL's own errors.  docs/sql-reference.md lists them.
 */
#define ERRCODE_OFS_TRANSITION_NOT_ALLOWED	MAKE_SQLSTATE('O','F','0','0','1')
#define ERRCODE_OFS_TRANSITION_ROLE_REQUIRED	MAKE_SQLSTATE('O','F','0','0','2')
#define ERRCODE_OFS_TRANSITION_CHECK_FAILED	MAKE_SQLSTATE('O','F','0','0','3')
#define ERRCODE_OFS_INITIAL_STATE_NOT_ALLOWED	MAKE_SQLSTATE('O','F','0','0','4')

#define ERRCODE_OFS_CURSOR_TOO_OLD		MAKE_SQLSTATE('O','F','0','1','0')
#define ERRCODE_OFS_DEPENDENT			MAKE_SQLSTATE('O','F','0','2','0')

/* src/ofs.c */
extern void _PG_init(void);

/*
 * The version of this shared library: the newest SQL version it knows, which
 * is ofs.control's default_version.  It works with the SQL of every version
 * from OFS_OLDEST_SQL_VERSION on (users install a new library first and run
 * ALTER EXTENSION ofs UPDATE after; docs/DESIGN.md, "Versions and upgrades").
 */
#define OFS_LIBRARY_VERSION		"1.1"
#define OFS_OLDEST_SQL_VERSION	"1.0"
extern int	OfsVersionNum(const char *version);

/* bgworker/worker.c */
extern void WorkerInit(void);

/* src/capture.c */
extern void CaptureInit(void);
#include "utils/relcache.h"
extern AttrNumber *PrimaryKeyAtts(Relation rel, int *npk);

/* src/apply.c */
extern int	ofs_max_clock_skew_ms;
extern void ApplyInit(void);
extern int64 ClampHlc(int64 hlc);

/* src/shmem.c: state shared by all backends (when ofs is preloaded) */
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "datatype/timestamp.h"

#define OFS_MAX_WORKER_LATCHES 16

/* Counters of the sync workers, shown by ofs.stats. */
typedef enum OfsCounter
{
	OFS_STAT_CONNECTED,			/* open connections (up and down) */
	OFS_STAT_SESSIONS,			/* devices authenticated, ever */
	OFS_STAT_MESSAGES_IN,
	OFS_STAT_MESSAGES_OUT,
	OFS_STAT_BYTES_IN,
	OFS_STAT_BYTES_OUT,
	OFS_STAT_APPLIED,
	OFS_STAT_DUPLICATES,
	OFS_STAT_REJECTED,
	OFS_STAT_CONFLICTS,
	OFS_STAT_ROWS_SENT,
	OFS_STAT_ERRORS,
	OFS_STAT_COUNT
} OfsCounter;

typedef struct OfsShared
{
	slock_t		mutex;			/* protects hlc_last, latches */
	int64		hlc_last;		/* last HLC handed out */
	int64		hlc_reserved;	/* HLCs up to here are covered by the file */
	pg_atomic_uint64 feed_commits;	/* commits that captured changes */
	Latch	   *latches[OFS_MAX_WORKER_LATCHES];	/* sync workers to wake */
	pg_atomic_uint64 device_changes;	/* commits that revoked devices */
	pg_atomic_uint64 counters[OFS_STAT_COUNT];
	TimestampTz last_error_at;	/* protected by mutex */
	char		last_error[256];
} OfsShared;

extern OfsShared *ofs_shared;	/* NULL unless preloaded */
extern void OfsShmemInit(void);
extern void OfsNotifyFeed(void);
extern void OfsRegisterLatch(Latch *latch);
extern void OfsUnregisterLatch(Latch *latch);
extern void OfsCount(OfsCounter counter, int64 delta);
extern void OfsRecordError(const char *message);

/* src/hlc.c: hybrid logical clock */
extern int64 HlcNow(void);
extern int64 WallHlc(void);
extern void HlcObserve(int64 remote);
extern void HlcShmemStartup(void);

/* src/internal_tables.c: reading and writing ofs's own tables */
#include "utils/relcache.h"
extern void OfsRunAsOwner(Oid *save_uid, int *save_sec);
extern void OfsRestoreUser(Oid save_uid, int save_sec);
extern Oid	OfsRelid(const char *relname);
extern char *OfsQualifiedName(Oid relid);
extern void OfsSpiExec(const char *sql, int expected);
extern void OfsRequireKeyedTable(Oid relid, const char *not_table_detail,
								 const char *no_key_detail, const char *no_key_hint);
#include "storage/itemptr.h"
extern ItemPointerData OfsInsertDirect(Relation rel, Datum *values, bool *nulls);
extern void OfsUpdateDirect(Relation rel, ItemPointer tid, Datum *values, bool *nulls);

/* src/rowjson.c: rows as JSON text */
#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"
extern void RowJsonValue(StringInfo buf, Datum value, bool isnull, Oid typid);
extern char *RowJsonObject(HeapTuple tuple, TupleDesc desc, int natts, const AttrNumber *atts);

#endif							/* OFS_H */
