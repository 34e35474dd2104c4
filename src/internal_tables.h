/*
 * internal_tables.h: ofs's own tables as the C code writes them directly.
 *
 * The tables written for every captured row, state change, issued number
 * and applied mutation are written as heap tuples (internal_tables.c), so
 * the C code must know their columns.  Their attribute numbers live here,
 * in pg_cron's style (Anum_<table>_<column>, counted from 1), and nowhere
 * else.
 *
 * Users install a new shared library first and run ALTER EXTENSION ofs
 * UPDATE after, so the library meets tables of every version it can be
 * upgraded from.  The rules that keep that working:
 *   - an upgrade adds columns at the end of these tables, never drops,
 *     renames or reorders one (the full script declares them in the same
 *     order, and test/scripts/upgrade.sh compares attribute numbers);
 *   - a column added after 1.0 is optional: its Natts_<table>_min says how
 *     many columns the oldest supported layout has, and a writer that meets
 *     such a layout leaves the newer columns out (OfsOpenOwnTable);
 *   - a reader of a newer column checks OfsOwnTableNatts first and uses a
 *     default when the table predates it.
 * A SQL-callable C function whose SQL signature changes keeps its old
 * symbol and gets a new one (ofs_name_1_2, as pg_stat_statements does), so the
 * SQL of every supported version finds the entry point it declares.
 */
#ifndef OFS_INTERNAL_TABLES_H
#define OFS_INTERNAL_TABLES_H

#include "postgres.h"

#include "storage/itemptr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"

/* ofs.change_log: one row per captured row change (capture.c). */
#define Anum_change_log_seq				1
#define Anum_change_log_xid				2
#define Anum_change_log_tbl				3
#define Anum_change_log_pk				4
#define Anum_change_log_op				5
#define Anum_change_log_data			6
#define Anum_change_log_changed			7
#define Anum_change_log_hlc				8
#define Anum_change_log_site			9
#define Anum_change_log_operation_id	10
#define Anum_change_log_versions		11
#define Anum_change_log_captured_at		12
#define Anum_change_log_as_sent			13	/* 1.1 */
#define Natts_change_log				13
#define Natts_change_log_min			12

/* ofs.applied_op: the claim and result of each mutation (apply_mutation.c). */
#define Anum_applied_op_device			1
#define Anum_applied_op_operation_id	2
#define Anum_applied_op_status			3
#define Anum_applied_op_result			4
#define Anum_applied_op_applied_at		5
#define Natts_applied_op				5
#define Natts_applied_op_min			5

/* ofs.transition_log: one row per state change (transition.c). */
#define Anum_transition_log_id				1
#define Anum_transition_log_table_name		2
#define Anum_transition_log_tbl				3
#define Anum_transition_log_pk				4
#define Anum_transition_log_constraint_name	5
#define Anum_transition_log_col				6
#define Anum_transition_log_from_state		7
#define Anum_transition_log_to_state		8
#define Anum_transition_log_role			9
#define Anum_transition_log_changed_at		10
#define Anum_transition_log_xid				11
#define Anum_transition_log_device			12
#define Anum_transition_log_operation_id	13
#define Natts_transition_log				13
#define Natts_transition_log_min			13

/* ofs.gapless_issued: the audit of every issued number (gapless.c). */
#define Anum_gapless_issued_sequence_name	1
#define Anum_gapless_issued_sequence_id		2
#define Anum_gapless_issued_period			3
#define Anum_gapless_issued_value			4
#define Anum_gapless_issued_formatted		5
#define Anum_gapless_issued_issued_at		6
#define Anum_gapless_issued_xid				7
#define Natts_gapless_issued				7
#define Natts_gapless_issued_min			7

/* The tables above, for OfsOpenOwnTable. */
typedef enum OfsOwnTable
{
	OFS_CHANGE_LOG,
	OFS_APPLIED_OP,
	OFS_TRANSITION_LOG,
	OFS_GAPLESS_ISSUED,
	OFS_OWN_TABLE_COUNT
} OfsOwnTable;

/*
 * OfsOpenOwnTable opens one of the tables above after checking that its
 * columns are the ones this library knows, in their places, or a prefix of
 * them no shorter than the oldest supported layout.  Arrays of values for
 * OfsInsertDirect are sized Natts_<table>; entries past the table's own
 * column count are not written.
 */
extern Relation OfsOpenOwnTable(OfsOwnTable which, LOCKMODE lockmode);
/* OfsOwnTableNatts: how many of the known columns an opened table has. */
extern int	OfsOwnTableNatts(Relation rel);

/* Running as the extension's owner, for ofs's own tables. */
extern void OfsRunAsOwner(Oid *save_uid, int *save_sec);
extern void OfsRestoreUser(Oid save_uid, int save_sec);

/* Names and lookups. */
extern Oid	OfsRelid(const char *relname);
extern char *OfsQualifiedName(Oid relid);
extern void OfsSpiExec(const char *sql, int expected);
extern void OfsRequireKeyedTable(Oid relid, const char *not_table_detail,
								 const char *no_key_detail, const char *no_key_hint);

/* Writing a row of one of ofs's own tables as a heap tuple. */
extern ItemPointerData OfsInsertDirect(Relation rel, Datum *values, bool *nulls);
extern void OfsUpdateDirect(Relation rel, ItemPointer tid, Datum *values, bool *nulls);

#endif							/* OFS_INTERNAL_TABLES_H */
