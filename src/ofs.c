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


void
_PG_init(void)
{
	if (process_shared_preload_libraries_in_progress)
		OfsShmemInit();
	CaptureInit();
	ApplyInit();
	WorkerInit();
}
