/*
 * ofs.h: what every file of the ofs extension shares: its SQLSTATEs, its
 * version, and the initialisation each concern does from _PG_init.
 *
 * The extension is one shared library: origin primitives in src/ and the
 * sync worker in bgworker/.  Each concern has its own header next to its
 * file (shmem.h, hlc.h, internal_tables.h, rowjson.h, capture.h, writer.h,
 * merge.h, plan_cache.h, mutation.h, feed_batch.h, send_rule.h, transition.h;
 * bgworker/worker.h, bgworker/message.h); a file includes what it uses.
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
#define ERRCODE_OFS_CURSOR_BEHIND		MAKE_SQLSTATE('O','F','0','1','1')
#define ERRCODE_OFS_DEPENDENT			MAKE_SQLSTATE('O','F','0','2','0')

/*
 * The version of this shared library: the newest SQL version it knows, which
 * is ofs.control's default_version.  It works with the SQL of every version
 * from OFS_OLDEST_SQL_VERSION on (users install a new library first and run
 * ALTER EXTENSION ofs UPDATE after; docs/DESIGN.md, "Versions and upgrades").
 */
#define OFS_LIBRARY_VERSION		"1.1"
#define OFS_OLDEST_SQL_VERSION	"1.0"

/* src/ofs.c */
extern void _PG_init(void);
extern int	OfsVersionNum(const char *version);

/*
 * OfsErrorIsTransient: does an error say nothing of the request that met
 * it (a cancel, a timeout, a deadlock, a serialization failure, a lock not
 * available, running out of resources)?  Such an error fails the whole
 * transaction, to be tried again; any other is the request's own.
 */
extern bool OfsErrorIsTransient(int sqlerrcode);

/*
 * OfsTrySubtransaction runs fn(arg) in a subtransaction of its own: NULL
 * when it succeeded, else its error (the subtransaction rolled back), which
 * the caller may raise again with ReThrowError.
 */
extern ErrorData *OfsTrySubtransaction(void (*fn) (void *), void *arg);

/* What _PG_init runs, one call per concern. */
extern void WorkerInit(void);	/* bgworker/worker.c: GUCs, the workers */
extern void CaptureInit(void);	/* src/capture.c: waking the workers at commit */
extern void ApplyInit(void);	/* src/apply.c: ofs.max_clock_skew, the writer */

#endif							/* OFS_H */
