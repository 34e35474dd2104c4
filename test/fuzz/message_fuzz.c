/*
 * message_fuzz.c: libFuzzer target of the sync worker's message handling,
 * the code every byte a device sends meets before any SQL
 * (bgworker/message.c: parsing, ids, types, fields, limits, and the shape
 * check of unsealed cursors).  Built with clang's -fsanitize=fuzzer,
 * address,undefined by test/fuzz/run.sh; the seed corpus (corpus/) holds
 * the messages of docs/PROTOCOL.md.
 */
#include <stdint.h>
#include <string.h>

#include "message.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Message		m;

	MessageParse((const char *) data, size, 1000, 1000, &m);
	if (m.error_code == NULL)
	{
		/* Everything a handler reads must be there and of its type. */
		if (m.type >= MSG_TYPE_COUNT || m.type_name == NULL)
			__builtin_trap();
		if (m.type == MSG_HELLO && m.token == NULL)
			__builtin_trap();
		if ((m.type == MSG_SUBSCRIBE || m.type == MSG_UNSUBSCRIBE) && m.table == NULL)
			__builtin_trap();
		if (m.type == MSG_PUSH && !json_is_array(m.mutations))
			__builtin_trap();
		if ((m.type == MSG_PULL || m.type == MSG_LIVE) && (m.max_rows < 1 || m.max_rows > 1000))
			__builtin_trap();
		if (m.type == MSG_ACK && m.cursor == NULL)
			__builtin_trap();
		if (m.cursor)
			(void) CursorPlainOk(m.cursor, strlen(m.cursor));
	}
	else if (m.error[0] == '\0' || strlen(m.error) >= sizeof(m.error))
		__builtin_trap();
	MessageFree(&m);
	/* A cursor arrives as any text. */
	(void) CursorPlainOk((const char *) data, size);
	return 0;
}
