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

/* src/ofs.c */
extern void _PG_init(void);

/*
 * The device and operation id of the sync intent being applied, or NULL for
 * work done on the origin itself.  The write path sets them around each
 * mutation; the transition log and the changes feed record them.
 */
extern char *ofs_sync_device;
extern char *ofs_sync_operation;

#endif							/* OFS_H */
