/*
 * ofs.c: module entry point of the ofs extension.
 *
 * _PG_init defines the GUCs and, when the library is preloaded, registers the
 * sync worker.  Everything else lives in the file of its concern.
 */
#include "ofs.h"

#include "fmgr.h"
#include "miscadmin.h"

PG_MODULE_MAGIC;

char	   *ofs_sync_device = NULL;
char	   *ofs_sync_operation = NULL;

void
_PG_init(void)
{
	if (process_shared_preload_libraries_in_progress)
		OfsShmemInit();
	CaptureInit();
}
