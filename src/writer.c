/*
 * writer.c: who is writing the current change (writer.h).
 *
 * The write path applies each intent in a subtransaction; capture and the
 * transition log, which run inside it as triggers, ask OfsCurrentWriter.
 * The writer is one object in transaction memory with its own transaction
 * and subtransaction callbacks, so that an error anywhere (in a trigger, in
 * the write path, in a cancel) can never leave a device's identity attached
 * to the origin's next write.
 */
#include "writer.h"

#include "access/xact.h"
#include "utils/memutils.h"

static OfsWriter writer;
static bool writing = false;
static SubTransactionId writer_subxact = InvalidSubTransactionId;

static void
WriterReset(void)
{
	memset(&writer, 0, sizeof(writer));
	writing = false;
	writer_subxact = InvalidSubTransactionId;
}

static void
WriterXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			WriterReset();
			break;
		default:
			break;
	}
}

/* A writer begun in a subtransaction ends when that subtransaction aborts. */
static void
WriterSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB && writing && writer_subxact == mySubid)
		WriterReset();
}

void
OfsWriterInit(void)
{
	RegisterXactCallback(WriterXactCallback, NULL);
	RegisterSubXactCallback(WriterSubXactCallback, NULL);
}

void
OfsWriterBegin(const char *device, const char *operation, int64 hlc)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	writer.device = pstrdup(device);
	writer.operation = pstrdup(operation);
	writer.hlc = hlc;
	writer.columns = NIL;
	writer.values = NULL;
	writing = true;
	writer_subxact = GetCurrentSubTransactionId();
	MemoryContextSwitchTo(old);
}

void
OfsWriterSetColumns(List *columns)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	ListCell   *lc;

	Assert(writing);
	writer.columns = NIL;
	foreach(lc, columns)
		writer.columns = lappend(writer.columns, pstrdup((char *) lfirst(lc)));
	MemoryContextSwitchTo(old);
}

void
OfsWriterSetValues(Jsonb *values)
{
	Assert(writing);
	writer.values = values ? (Jsonb *) MemoryContextAllocZero(TopTransactionContext, VARSIZE(values)) : NULL;
	if (values)
		memcpy(writer.values, values, VARSIZE(values));
}

void
OfsWriterEnd(void)
{
	WriterReset();
}

const OfsWriter *
OfsCurrentWriter(void)
{
	return writing ? &writer : NULL;
}
