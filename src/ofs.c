/*
 * ofs.c: module entry point of the ofs extension, and its version.
 *
 * _PG_init defines the GUCs and, when the library is preloaded, registers the
 * sync worker.  Everything else lives in the file of its concern, apart
 * from two helpers every file may need: which errors are transient, and
 * running a step in a subtransaction of its own.
 */
#include "ofs.h"
#include "shmem.h"

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(ofs_library_version);

void
_PG_init(void)
{
	if (process_shared_preload_libraries_in_progress)
		OfsShmemInit();
	CaptureInit();
	ApplyInit();
	WorkerInit();
}

/*
 * OfsVersionNum turns an extension version "M.N" into M * 100 + N, so that
 * versions compare as numbers; -1 for anything else.
 */
int
OfsVersionNum(const char *version)
{
	int			major = 0;
	int			minor = 0;
	const char *p = version;

	if (p == NULL || *p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9' && major < 10000)
		major = major * 10 + (*p++ - '0');
	if (*p++ != '.' || *p < '0' || *p > '9')
		return -1;
	while (*p >= '0' && *p <= '9' && minor < 100)
		minor = minor * 10 + (*p++ - '0');
	if (*p != '\0' || minor >= 100 || major >= 10000)
		return -1;
	return major * 100 + minor;
}

bool
OfsErrorIsTransient(int sqlerrcode)
{
	return ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_TRANSACTION_ROLLBACK ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_INSUFFICIENT_RESOURCES ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_OPERATOR_INTERVENTION ||
		sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
}

ErrorData *
OfsTrySubtransaction(void (*fn) (void *), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ErrorData  *volatile error = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		fn(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		error = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return error;
}

/* library_version() is the version of the loaded shared library. */
Datum
ofs_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(OFS_LIBRARY_VERSION));
}
