/*
 * message.h: a device's message, parsed and checked before any SQL.
 *
 * Pure C on jansson, without PostgreSQL's headers, so that the fuzz target
 * (test/fuzz/message_fuzz.c) runs exactly this code without a server.
 * protocol.c dispatches a checked message to its handler by type.
 */
#ifndef OFS_MESSAGE_H
#define OFS_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <jansson.h>

typedef enum MessageType
{
	MSG_HELLO,
	MSG_SCHEMA,
	MSG_SUBSCRIBE,
	MSG_UNSUBSCRIBE,
	MSG_PUSH,
	MSG_PULL,
	MSG_LIVE,
	MSG_ACK,
	MSG_REJECTIONS,
	MSG_TYPE_COUNT
} MessageType;

/* A message as protocol.c needs it.  Pointers are into root. */
typedef struct Message
{
	json_t	   *root;			/* owned; NULL when the text is not JSON */
	json_t	   *id;				/* the request's id, or NULL */
	MessageType type;			/* MSG_TYPE_COUNT when not known */
	const char *type_name;
	bool		typed;			/* an object with a good id and a string type */
	/* When the message is refused: the error's code and text. */
	const char *error_code;		/* NULL when the message is good */
	const char *error_sqlstate; /* the SQLSTATE of the refusal, or NULL */
	char		error[256];
	/* The fields of the types that have them. */
	const char *token;			/* hello */
	json_t	   *subscriptions;	/* hello: array, or NULL */
	const char *table;			/* subscribe, unsubscribe */
	const char *filter;			/* subscribe, unsubscribe: or NULL */
	json_t	   *mutations;		/* push */
	const char *cursor;			/* pull, live, ack: or NULL */
	int			max_rows;		/* pull, live: at most the limit given */
	bool		has_confirmed;	/* pull: "confirmed" given (a cursor, or null: none) */
	const char *confirmed;		/* pull: the cursor the device has stored, when it asks ahead */
	bool		live_off;		/* live {"on": false} */
	bool		all_tables;		/* schema {"all": true} */
	json_t	   *clear;			/* rejections: the entries to clear, or NULL */
} Message;

/*
 * MessageParse parses and checks a message; on a refusal m->error_code
 * and m->error say why.  max_rows and max_batch are the protocol's limits.
 * MessageFree must follow either way.
 */
/* The name of a message type ("push"), or NULL past the known ones. */
extern const char *MessageTypeName(int type);
extern void MessageParse(const char *text, size_t len, int max_rows, int max_batch, Message *m);

/* Shapes (table and filter) a device may have, in all. */
#define OFS_MAX_SHAPES 64
extern void MessageFree(Message *m);

/* CursorPlainOk: a cursor of the shape ofs.pull makes, numbers in range. */
extern bool CursorPlainOk(const char *text, size_t len);

#endif							/* OFS_MESSAGE_H */
