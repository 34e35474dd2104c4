-- ofs--1.1.sql: the objects of CREATE EXTENSION ofs (version 1.1), in schema ofs.
--
-- The full script of the default version.  Every change made here is also
-- made in the upgrade script from the previous version (ofs--1.0--1.1.sql);
-- test/scripts/upgrade.sh fails when the two disagree.
\echo Use "CREATE EXTENSION ofs" to load this file. \quit

-------------------------------------------------------------------------------
-- Gap-free sequences
-------------------------------------------------------------------------------

-- One row per gap-free sequence: its definition, as given to
-- create_gapless_sequence.  The id survives a drop in gapless_issued so that a
-- later sequence of the same name never collides with the old audit rows.
CREATE TABLE ofs.gapless_sequence_config (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    format      text NOT NULL,
    reset       text NOT NULL CHECK (reset IN ('never', 'yearly', 'monthly', 'daily')),
    start_value bigint NOT NULL,
    time_zone   text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ofs.gapless_sequence_config IS
    'Definitions of gap-free sequences; write it through ofs.create_gapless_sequence and ofs.drop_gapless_sequence only';

-- One row per sequence and period: the last committed value.  The row lock
-- taken by the UPDATE that advances it is what serializes numbering through
-- commit, and its rollback is what leaves no gap.
CREATE TABLE ofs.gapless_counter (
    sequence_id bigint NOT NULL REFERENCES ofs.gapless_sequence_config (id) ON DELETE CASCADE,
    period      text NOT NULL,
    last_value  bigint NOT NULL,
    PRIMARY KEY (sequence_id, period)
);
COMMENT ON TABLE ofs.gapless_counter IS
    'Last issued value of each gap-free sequence and period';

-- The audit of every number issued by a committed transaction.
CREATE TABLE ofs.gapless_issued (
    sequence_name text NOT NULL,
    sequence_id   bigint NOT NULL,
    period        text NOT NULL,
    value         bigint NOT NULL,
    formatted     text NOT NULL,
    issued_at     timestamptz NOT NULL,
    xid           xid8 NOT NULL,
    PRIMARY KEY (sequence_id, period, value)
);
COMMENT ON TABLE ofs.gapless_issued IS
    'Every number issued by a gap-free sequence: sequence, period, value, formatted text, the timestamp that decided the period, and the issuing transaction';

SELECT pg_catalog.pg_extension_config_dump('ofs.gapless_sequence_config', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.gapless_sequence_config_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.gapless_counter', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.gapless_issued', '');

CREATE FUNCTION ofs.create_gapless_sequence(
    name text,
    format text DEFAULT '{n}',
    reset text DEFAULT 'never',
    start bigint DEFAULT 1,
    time_zone text DEFAULT 'UTC')
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_create_gapless_sequence'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.create_gapless_sequence(text, text, text, bigint, text) IS
    'Create a gap-free sequence: format tokens {YYYY} {YY} {MM} {DD} {n} {n:W}; reset never, yearly, monthly or daily in the given time zone';

CREATE FUNCTION ofs.drop_gapless_sequence(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_drop_gapless_sequence'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.drop_gapless_sequence(text) IS
    'Drop a gap-free sequence and its counters; the numbers it issued stay in ofs.gapless_issued';

CREATE FUNCTION ofs.gapless_nextval(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_gapless_nextval'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_nextval(text) IS
    'Take the next number of a gap-free sequence in the period of the transaction timestamp; the row lock is held until commit, so call it late';

CREATE FUNCTION ofs.gapless_nextval(name text, at timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_gapless_nextval_at'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_nextval(text, timestamptz) IS
    'Take the next number of a gap-free sequence in the period that contains the given timestamp';

CREATE FUNCTION ofs.gapless_next(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_gapless_next'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_next(text) IS
    'Take the next number of a gap-free sequence and return it formatted';

CREATE FUNCTION ofs.gapless_next(name text, at timestamptz)
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_gapless_next_at'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_next(text, timestamptz) IS
    'Take the next number of a gap-free sequence in the period that contains the given timestamp, formatted';

-- Taking numbers is a legal act: only roles granted EXECUTE may do it.
REVOKE ALL ON FUNCTION ofs.create_gapless_sequence(text, text, text, bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.drop_gapless_sequence(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.gapless_nextval(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.gapless_nextval(text, timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.gapless_next(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.gapless_next(text, timestamptz) FROM PUBLIC;

CREATE VIEW ofs.gapless_sequences AS
SELECT c.name,
       c.format,
       c.reset,
       c.start_value,
       c.time_zone,
       (SELECT count(*) FROM ofs.gapless_counter k WHERE k.sequence_id = c.id) AS periods,
       (SELECT k.period FROM ofs.gapless_counter k WHERE k.sequence_id = c.id
         ORDER BY k.period DESC LIMIT 1) AS last_period,
       (SELECT k.last_value FROM ofs.gapless_counter k WHERE k.sequence_id = c.id
         ORDER BY k.period DESC LIMIT 1) AS last_value,
       c.created_at
  FROM ofs.gapless_sequence_config c;
COMMENT ON VIEW ofs.gapless_sequences IS
    'Gap-free sequences with their latest period and the last value committed in it';

GRANT USAGE ON SCHEMA ofs TO PUBLIC;

-- Internal functions (triggers, the engine's helpers, the worker's entry
-- points) live apart from the API, in ofs_internal: \df ofs.* shows what
-- users may call.  They are revoked from PUBLIC, as in ofs.
CREATE SCHEMA ofs_internal;
GRANT USAGE ON SCHEMA ofs_internal TO PUBLIC;
COMMENT ON SCHEMA ofs_internal IS
    'ofs''s internal functions (triggers, the write path''s and the sync engine''s helpers): not an API; the API is schema ofs';
GRANT SELECT ON ofs.gapless_sequences, ofs.gapless_issued TO PUBLIC;

-------------------------------------------------------------------------------
-- Transition constraints and checks
-------------------------------------------------------------------------------

-- One row per transition constraint: a state machine on one column.
CREATE TABLE ofs.transition_constraint_def (
    id          bigserial PRIMARY KEY,
    tbl         regclass NOT NULL,
    name        text NOT NULL,
    col         name NOT NULL,
    transitions text NOT NULL,
    initial     text[],
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tbl, name),
    UNIQUE (tbl, col)
);
COMMENT ON TABLE ofs.transition_constraint_def IS
    'Transition constraints as defined; write it through ofs.add_transition_constraint and ofs.drop_transition_constraint only';

-- The parsed edges of each constraint, in the order they were written.
CREATE TABLE ofs.transition_edge (
    constraint_id bigint NOT NULL REFERENCES ofs.transition_constraint_def (id) ON DELETE CASCADE,
    ord           int NOT NULL,
    from_state    text NOT NULL,
    to_state      text NOT NULL,
    role          name,
    PRIMARY KEY (constraint_id, ord)
);
COMMENT ON TABLE ofs.transition_edge IS
    'Edges of transition constraints, parsed once when the constraint was added';

-- One row per transition check: a boolean expression over OLD and NEW.
CREATE TABLE ofs.transition_check_def (
    id          bigserial PRIMARY KEY,
    tbl         regclass NOT NULL,
    name        text NOT NULL,
    expr        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (tbl, name)
);
COMMENT ON TABLE ofs.transition_check_def IS
    'Transition checks as defined; write it through ofs.add_transition_check and ofs.drop_transition_check only';

-- The audit of state changes.  device and operation_id name the sync intent
-- that made the change; they are NULL for changes made on the origin.
CREATE TABLE ofs.transition_log (
    id              bigserial PRIMARY KEY,
    table_name      text NOT NULL,
    tbl             oid NOT NULL,
    pk              jsonb NOT NULL,
    constraint_name text NOT NULL,
    col             name NOT NULL,
    from_state      text,
    to_state        text,
    role            name NOT NULL,
    changed_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    xid             xid8 NOT NULL,
    device          text,
    operation_id    text
);
-- No index on (tbl, pk) by default: every state change writes this table,
-- and an index there costs more than the rest of the rules.  Add one (a plain
-- btree on columns) if you query the history of single rows often.
COMMENT ON TABLE ofs.transition_log IS
    'One row per state change of a column under a transition constraint: table, primary key, column, from, to, role, time, transaction, and the device and operation when it came through sync';

SELECT pg_catalog.pg_extension_config_dump('ofs.transition_constraint_def', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.transition_constraint_def_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.transition_edge', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.transition_check_def', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.transition_check_def_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.transition_log', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.transition_log_id_seq', '');

CREATE FUNCTION ofs_internal.transition_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_transition_trigger'
LANGUAGE C;
COMMENT ON FUNCTION ofs_internal.transition_trigger() IS
    'Enforces the transition constraints and checks of a table on the final row (an AFTER ROW trigger) and writes ofs.transition_log';

CREATE FUNCTION ofs.add_transition_constraint(
    tbl regclass, name text, col name, transitions text, initial text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_add_transition_constraint'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.add_transition_constraint(regclass, text, name, text, text[]) IS
    'Constrain the changes of a column to the edges of a transition list: ''from'' -> ''to'' [BY ROLE ''role''], ...; with initial, inserts must use one of those values';

CREATE FUNCTION ofs.drop_transition_constraint(tbl regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_drop_transition_constraint'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.drop_transition_constraint(regclass, text) IS
    'Drop a transition constraint';

CREATE FUNCTION ofs.add_transition_check(tbl regclass, name text, expr text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_add_transition_check'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.add_transition_check(regclass, text, text) IS
    'Check a boolean expression over OLD and NEW on every UPDATE of a table; NULL passes, as in CHECK constraints';

CREATE FUNCTION ofs.drop_transition_check(tbl regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_drop_transition_check'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.drop_transition_check(regclass, text) IS
    'Drop a transition check';

-- Defining rules is for the owners of tables; the functions check ownership.
REVOKE ALL ON FUNCTION ofs.add_transition_constraint(regclass, text, name, text, text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.drop_transition_constraint(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.add_transition_check(regclass, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.drop_transition_check(regclass, text) FROM PUBLIC;

CREATE VIEW ofs.transition_rules AS
SELECT d.tbl AS table_name,
       d.name AS constraint_name,
       d.col AS column_name,
       e.from_state,
       e.to_state,
       e.role
  FROM ofs.transition_constraint_def d
  JOIN ofs.transition_edge e ON e.constraint_id = d.id
UNION ALL
SELECT d.tbl, d.name, d.col, NULL, i.state, NULL
  FROM ofs.transition_constraint_def d, unnest(d.initial) AS i(state);
COMMENT ON VIEW ofs.transition_rules IS
    'One row per edge of every transition constraint (table, constraint, column, from, to, role); a row whose from_state is NULL is an allowed initial state';

CREATE VIEW ofs.transition_checks AS
SELECT tbl AS table_name, name AS check_name, expr AS expression, created_at
  FROM ofs.transition_check_def;
COMMENT ON VIEW ofs.transition_checks IS
    'Transition checks: table, name and the boolean expression over OLD and NEW';

GRANT SELECT ON ofs.transition_rules, ofs.transition_checks TO PUBLIC;


-------------------------------------------------------------------------------
-- Sync registration and the changes feed (docs/DESIGN.md explains the cursor)
-------------------------------------------------------------------------------

-- Tables in the feed, with their merge policy per column.
CREATE TABLE ofs.synced_table (
    tbl      regclass PRIMARY KEY,
    merge    jsonb NOT NULL DEFAULT '{}',
    added_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE ofs.synced_table IS
    'Tables in the changes feed and their merge policy per column; write it through ofs.sync_table and ofs.unsync_table only';
SELECT pg_catalog.pg_extension_config_dump('ofs.synced_table', '');

CREATE SEQUENCE ofs.change_seq;

-- The changes log: one entry per captured row change, written in the
-- writing transaction.  xid is the writer's top-level transaction, which
-- decides when a reader may see the entry; seq orders the entries of a
-- batch (for one row, seq order is commit order, since writers of one row
-- wait for each other).  data is the full row after the change (NULL for a
-- delete), so that an entry superseded by a newer one for the same row can
-- be dropped.  changed lists the columns an update changed (NULL: all); hlc
-- and site are the version of those columns; versions holds the column
-- versions folded in from dropped entries.  Not dumped: xids mean nothing in
-- another cluster (after a restore, run ofs.rebuild_feed()).
CREATE TABLE ofs.change_log (
    seq          bigint PRIMARY KEY,
    xid          xid8 NOT NULL,
    tbl          oid NOT NULL,
    pk           jsonb NOT NULL,
    op           "char" NOT NULL,
    data         jsonb,
    changed      text[],
    hlc          bigint NOT NULL,
    site         text NOT NULL,
    operation_id text,
    versions     jsonb,
    captured_at  timestamptz NOT NULL,
    as_sent      boolean
);
CREATE INDEX change_log_xid ON ofs.change_log (xid);
CREATE INDEX change_log_row ON ofs.change_log (tbl, pk);
COMMENT ON TABLE ofs.change_log IS
    'Captured changes of synced tables; read it through ofs.changes';
COMMENT ON COLUMN ofs.change_log.as_sent IS
    'The change left the row exactly as the device whose intent it applied sent it (that device holds it: it is not sent back); NULL for the origin''s own writes';

-- The feed's identity and retention horizon.  epoch changes whenever the
-- feed is created anew (CREATE EXTENSION, also in a restored database), so
-- cursors of another feed are refused; tombstones of transactions below
-- horizon have been purged, so a cursor that has not seen all of them must
-- re-snapshot.  Not dumped, on purpose.
CREATE TABLE ofs.feed_state (
    singleton bool PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch     text NOT NULL,
    horizon   xid8 NOT NULL DEFAULT '0',
    compacted_at timestamptz
);
INSERT INTO ofs.feed_state (epoch)
    VALUES (lpad(to_hex((random() * 4294967295)::bigint), 8, '0'));

CREATE FUNCTION ofs_internal.capture_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_capture_trigger'
LANGUAGE C;
COMMENT ON FUNCTION ofs_internal.capture_trigger() IS
    'Captures every row change of a synced table into ofs.change_log (an AFTER ROW trigger)';

CREATE FUNCTION ofs_internal.refuse_truncate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_refuse_truncate'
LANGUAGE C;
COMMENT ON FUNCTION ofs_internal.refuse_truncate() IS
    'Refuses TRUNCATE of a synced table: the feed could not tell devices which rows went';

CREATE FUNCTION ofs.sync_table(tbl regclass, merge jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_sync_table'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.sync_table(regclass, jsonb) IS
    'Start syncing a table (it needs a primary key); merge names a policy per column: lww (default), counter or manual';

CREATE FUNCTION ofs.unsync_table(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_unsync_table'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.unsync_table(regclass) IS
    'Stop syncing a table and drop its entries from the feed';

CREATE FUNCTION ofs.rebuild_feed()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_rebuild_feed'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.rebuild_feed() IS
    'Empty the feed and capture every row of every synced table again, under a new epoch (after pg_restore); returns the rows captured';

REVOKE ALL ON FUNCTION ofs.sync_table(regclass, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.unsync_table(regclass) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.rebuild_feed() FROM PUBLIC;

CREATE FUNCTION ofs.hlc_now()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_hlc_now'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ofs.hlc_now() IS
    'A fresh hybrid logical clock value of the origin: Unix milliseconds * 65536 + a counter';

CREATE FUNCTION ofs.feed_commits()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_feed_commits'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION ofs.feed_commits() IS
    'Commits that captured changes since the server started (needs ofs in shared_preload_libraries; NULL otherwise)';

-- The feed's cursors are made and checked in C (src/feed_cursor.c):
-- ofs_internal.cursor_parse splits a cursor into its parts, refusing foreign,
-- malformed and too old cursors with a clear error; ofs_internal.snapshot_text
-- makes the cursor of a snapshot, treating the reading transaction's own
-- (uncommitted) xid as not yet visible.
CREATE FUNCTION ofs_internal.cursor_parse(cursor text, OUT c pg_snapshot, OUT s pg_snapshot, OUT last_seq bigint)
AS 'MODULE_PATHNAME', 'ofs_cursor_parse'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

CREATE FUNCTION ofs_internal.snapshot_text(snap pg_snapshot)
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_snapshot_text'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;

-- The reading is C too (src/feed.c).
CREATE FUNCTION ofs.changes(since text DEFAULT NULL, max_rows int DEFAULT 1000)
RETURNS TABLE (cursor text, table_name text, pk jsonb, op text, data jsonb,
               device text, operation_id text, hlc bigint, changed_columns text[], as_sent boolean)
AS 'MODULE_PATHNAME', 'ofs_changes'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.changes(text, int) IS
    'The changes feed: committed changes of synced tables after a cursor (NULL: from the beginning), at most max_rows; follow the cursor of the last row';

CREATE FUNCTION ofs.feed_cursor()
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_feed_cursor'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.feed_cursor() IS
    'The cursor of the current snapshot: read the tables in the same transaction, then follow the feed from here (a re-snapshot)';

CREATE FUNCTION ofs.compact_changes(retain interval DEFAULT '7 days',
                                    OUT superseded bigint, OUT purged bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  purged_max xid8;
BEGIN
  IF retain IS NULL OR retain < '0'::interval THEN
    RAISE EXCEPTION 'retention must not be negative, not %', retain
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- One compaction at a time; writers and readers go on.
  LOCK TABLE ofs.change_log IN SHARE UPDATE EXCLUSIVE MODE;

  -- 1. An entry superseded by a newer entry of the same row is dropped: the
  --    newer one holds the full row, and a reader that has not seen the old
  --    one has not seen the new one either.  Column versions of the dropped
  --    entries that the survivor does not overwrite are folded into it.
  IF to_regclass('pg_temp.ofs_compact_rows') IS NOT NULL THEN
    DROP TABLE pg_temp.ofs_compact_rows;   -- a second compaction in one transaction
  END IF;
  CREATE TEMP TABLE ofs_compact_rows ON COMMIT DROP AS
    SELECT tbl, pk, max(seq) AS keep FROM ofs.change_log
     GROUP BY tbl, pk HAVING count(*) > 1;
  WITH folded AS (
    SELECT r.keep,
           (SELECT jsonb_object_agg(v.key, v.value)
              FROM jsonb_each(ofs_internal.row_versions(r.tbl, r.pk)) v
             WHERE NOT v.key = ANY (k.changed)) AS versions
      FROM ofs_compact_rows r JOIN ofs.change_log k ON k.seq = r.keep
     WHERE k.op = 'U'
  )
  UPDATE ofs.change_log k SET versions = f.versions
    FROM folded f WHERE k.seq = f.keep;
  DELETE FROM ofs.change_log l USING ofs_compact_rows r
   WHERE l.tbl = r.tbl AND l.pk = r.pk AND l.seq < r.keep;
  GET DIAGNOSTICS superseded = ROW_COUNT;

  -- 2. Tombstones older than the retention are purged; the horizon records
  --    that cursors which have not seen them must re-snapshot.
  WITH gone AS (
    DELETE FROM ofs.change_log
     WHERE op = 'D' AND captured_at < now() - retain
    RETURNING xid
  )
  SELECT count(*), max(xid) INTO purged, purged_max FROM gone;
  UPDATE ofs.feed_state
     SET compacted_at = now(),
         horizon = CASE WHEN purged_max IS NULL THEN horizon
                        ELSE greatest(horizon, (purged_max::text::bigint + 1)::text::xid8) END;
END $$;
COMMENT ON FUNCTION ofs.compact_changes(interval) IS
    'Drop feed entries superseded by newer ones of the same row, and purge deleted rows older than retain; cursors that had not seen a purged deletion must re-snapshot';
REVOKE ALL ON FUNCTION ofs.compact_changes(interval) FROM PUBLIC;

-- The raw feed is for ofs and its administrators; devices read it through
-- the sync worker, scoped to their role.
REVOKE ALL ON FUNCTION ofs.changes(text, int) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.feed_cursor() FROM PUBLIC;

-------------------------------------------------------------------------------
-- Devices
-------------------------------------------------------------------------------

-- A device maps to a PostgreSQL role; its pushes run as that role.  Only a
-- hash of its token is kept.
CREATE TABLE ofs.device (
    device        text PRIMARY KEY CHECK (device <> '' AND device <> 'origin'),
    role          name NOT NULL,
    token_sha256  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    revoked_at    timestamptz,
    last_contact  timestamptz,
    last_cursor   text,
    page_seq      bigint NOT NULL DEFAULT 0,
    caught_up_at  timestamptz,
    clock_ahead_ms bigint,
    clock_ahead_at timestamptz,
    rejections_version bigint NOT NULL DEFAULT 0,
    confirmed_page bigint NOT NULL DEFAULT 0
);
COMMENT ON COLUMN ofs.device.confirmed_page IS
    'The newest page the device confirmed (sent back a cursor of): it may not pull from an older cursor';
COMMENT ON COLUMN ofs.device.clock_ahead_ms IS
    'How far ahead of the origin''s wall clock (ms) the device''s clock last was when it passed ofs.max_clock_skew';
COMMENT ON COLUMN ofs.device.rejections_version IS
    'Moves whenever a dead letter or conflict of the device is made, closed or cleared (the device compares it)';
COMMENT ON TABLE ofs.device IS
    'Devices and the roles they act as; write it through ofs.create_device_token and ofs.revoke_device only';
SELECT pg_catalog.pg_extension_config_dump('ofs.device', '');

CREATE FUNCTION ofs.create_device_token(role name, device text, valid_for interval DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  token text;
BEGIN
  IF role IS NULL OR device IS NULL OR device = '' OR device = 'origin' THEN
    RAISE EXCEPTION 'a device token needs a role and a device name other than "origin"'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = create_device_token.role) THEN
    RAISE EXCEPTION 'role "%" does not exist', role
      USING ERRCODE = 'undefined_object', HINT = 'Create the role first with CREATE ROLE.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = create_device_token.role AND r.rolsuper) THEN
    RAISE EXCEPTION 'a device may not act as superuser "%"', role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Create an ordinary role for devices and grant it what they may do.';
  END IF;
  IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = create_device_token.role AND r.rolbypassrls) THEN
    RAISE EXCEPTION 'a device may not act as role "%", which bypasses row-level security', role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Create an ordinary role for devices and grant it what they may do.';
  END IF;
  IF NOT pg_has_role(current_user, create_device_token.role, 'MEMBER') THEN
    RAISE EXCEPTION 'permission denied to create a device acting as role "%"', role
      USING ERRCODE = 'insufficient_privilege',
            HINT = 'Only members of a role may create devices that act as it.';
  END IF;
  -- Owners are exempt from row-level security unless a table forces it:
  -- such a device would receive every row.
  IF EXISTS (SELECT 1 FROM ofs.synced_table st JOIN pg_class c ON c.oid = st.tbl
              WHERE NOT c.relforcerowsecurity
                AND pg_has_role(create_device_token.role, c.relowner, 'USAGE')) THEN
    RAISE EXCEPTION 'a device may not act as role "%", which owns synced table %', role,
      (SELECT string_agg(st.tbl::text, ', ' ORDER BY st.tbl::text) FROM ofs.synced_table st JOIN pg_class c ON c.oid = st.tbl
        WHERE NOT c.relforcerowsecurity AND pg_has_role(create_device_token.role, c.relowner, 'USAGE'))
      USING ERRCODE = 'insufficient_privilege',
            DETAIL = 'A table''s owner, and roles with its privileges, bypass its row-level security policies.',
            HINT = 'Create an ordinary role for devices, or ALTER TABLE ... FORCE ROW LEVEL SECURITY.';
  END IF;
  IF valid_for IS NOT NULL AND valid_for <= '0'::interval THEN
    RAISE EXCEPTION 'valid_for must be positive, not %', valid_for
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  -- 244 random bits from the server's strong random source.
  token := 'ofs_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
  INSERT INTO ofs.device (device, role, token_sha256, expires_at)
  VALUES (device, role, sha256(convert_to(token, 'UTF8')), now() + valid_for)
  ON CONFLICT ON CONSTRAINT device_pkey DO UPDATE
     SET role = EXCLUDED.role, token_sha256 = EXCLUDED.token_sha256, created_at = now(),
         expires_at = EXCLUDED.expires_at, revoked_at = NULL;
  -- A device that changes role sees other rows: it re-snapshots everything.
  PERFORM ofs.resnapshot_device(device);
  RETURN token;
END $$;
COMMENT ON FUNCTION ofs.create_device_token(name, text, interval) IS
    'Create (or replace) a device acting as a role; returns its token, shown only this once';

CREATE FUNCTION ofs.notify_device_change()
RETURNS void AS 'MODULE_PATHNAME', 'ofs_notify_device_change' LANGUAGE C VOLATILE;
CREATE FUNCTION ofs_internal.notify_feed_change()
RETURNS void AS 'MODULE_PATHNAME', 'ofs_notify_feed_change' LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION ofs_internal.notify_feed_change() FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.notify_device_change() FROM PUBLIC;

-- Every change of a device's token, role, revocation or expiry wakes the
-- sync workers at commit, which close the sessions it ends.
CREATE FUNCTION ofs_internal.device_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM ofs.notify_device_change();
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ofs_internal.device_changed() FROM PUBLIC;
CREATE TRIGGER device_changed AFTER INSERT OR UPDATE OF device, role, token_sha256, expires_at, revoked_at OR DELETE
    ON ofs.device FOR EACH STATEMENT EXECUTE FUNCTION ofs_internal.device_changed();

-- The key that seals the pull cursors the sync worker hands out
-- (bgworker/cursor.c).  Not dumped: a restored database seals anew, and its
-- devices start afresh as they would after a restore anyway.
CREATE TABLE ofs.cursor_key (
    key bytea NOT NULL CHECK (length(key) = 32)
);
CREATE UNIQUE INDEX cursor_key_one ON ofs.cursor_key ((true));
INSERT INTO ofs.cursor_key
SELECT sha256(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'));
COMMENT ON TABLE ofs.cursor_key IS
    'The secret with which the sync worker seals pull cursors; readable by the extension owner only';

CREATE FUNCTION ofs.revoke_device(device text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE ofs.device d SET revoked_at = now() WHERE d.device = revoke_device.device AND d.revoked_at IS NULL;
  IF FOUND THEN
    -- At commit, the sync workers close the device's connections.
    PERFORM ofs.notify_device_change();
  ELSE
    RAISE EXCEPTION 'device "%" does not exist or is already revoked', device
      USING ERRCODE = 'undefined_object', HINT = 'Devices are listed in ofs.devices.';
  END IF;
END $$;
COMMENT ON FUNCTION ofs.revoke_device(text) IS 'Cut a device off: its token stops working';

CREATE VIEW ofs.devices AS
SELECT device, role, created_at, expires_at, revoked_at, last_contact,
       CASE WHEN revoked_at IS NOT NULL THEN 'revoked'
            WHEN expires_at < now() THEN 'expired'
            ELSE 'active' END AS status,
       caught_up_at,
       (SELECT count(*) FROM ofs.change_log c
         WHERE c.captured_at > coalesce(d.caught_up_at, '-infinity')) AS changes_behind,
       clock_ahead_ms * interval '1 millisecond' AS clock_ahead,
       clock_ahead_at
  FROM ofs.device d;
COMMENT ON VIEW ofs.devices IS
    'Devices: role, creation, expiry, revocation, last contact, status, when the device last had read the whole feed, how many changes (of any table) were captured since, and how far ahead its clock last ran past ofs.max_clock_skew';

REVOKE ALL ON FUNCTION ofs.create_device_token(name, text, interval) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.revoke_device(text) FROM PUBLIC;

-------------------------------------------------------------------------------
-- The write path (docs/DESIGN.md: "Applying mutations")
-------------------------------------------------------------------------------

-- One row per (device, operation id) ever seen: what makes pushes idempotent.
CREATE TABLE ofs.applied_op (
    device       text NOT NULL,
    operation_id text NOT NULL,
    status       text NOT NULL,
    result       jsonb NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device, operation_id)
);
COMMENT ON TABLE ofs.applied_op IS
    'The result of every mutation ever applied or rejected, by device and operation id';

CREATE TABLE ofs.dead_letters (
    id           bigserial PRIMARY KEY,
    device       text NOT NULL,
    operation_id text NOT NULL,
    table_name   text,
    pk           jsonb,
    mutation     jsonb NOT NULL,
    sqlstate     text NOT NULL,
    message      text NOT NULL,
    detail       text,
    hint         jsonb NOT NULL,
    status       text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'retried', 'discarded')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    closed_at    timestamptz,
    closed_by    name,
    retry_result jsonb,
    grp          text,
    device_cleared_at timestamptz
);
COMMENT ON COLUMN ofs.dead_letters.grp IS
    'The atomic group of the mutation (its push''s "group"); a retry retries the group''s open dead letters together';
COMMENT ON COLUMN ofs.dead_letters.device_cleared_at IS
    'When the device cleared the closed dead letter from its list (PROTOCOL.md, "rejections")';
CREATE INDEX dead_letters_open ON ofs.dead_letters (device, table_name, pk) WHERE status = 'open';
COMMENT ON TABLE ofs.dead_letters IS
    'Every rejected mutation: device, operation, table, key, the mutation, SQLSTATE, message and a compensation hint; closed by retry or discard';

CREATE TABLE ofs.conflicts (
    id            bigserial PRIMARY KEY,
    table_name    text NOT NULL,
    pk            jsonb NOT NULL,
    column_name   name NOT NULL,
    origin_value  jsonb,
    device_value  jsonb,
    base_value    jsonb,
    origin_hlc    bigint,
    origin_site   text,
    device_hlc    bigint NOT NULL,
    device        text NOT NULL,
    operation_id  text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution    text,
    resolved_at   timestamptz,
    resolved_by   name,
    created_at    timestamptz NOT NULL DEFAULT now(),
    device_cleared_at timestamptz
);
COMMENT ON TABLE ofs.conflicts IS
    'Concurrent changes of manual columns: both values, both sites, both clocks; ofs.resolve_conflict decides';
SELECT pg_catalog.pg_extension_config_dump('ofs.applied_op', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.dead_letters', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.dead_letters_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.conflicts', '');
SELECT pg_catalog.pg_extension_config_dump('ofs.conflicts_id_seq', '');
CREATE INDEX dead_letters_device ON ofs.dead_letters (device) WHERE device_cleared_at IS NULL;
CREATE INDEX conflicts_device ON ofs.conflicts (device) WHERE device_cleared_at IS NULL;

-- A device learns that its rejections changed from a version it is sent
-- (welcome, changes): every write of its dead letters or conflicts moves it.
CREATE FUNCTION ofs_internal.rejections_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE ofs.device d SET rejections_version = d.rejections_version + 1
   WHERE d.device IN (SELECT n.device FROM changed n);
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ofs_internal.rejections_changed() FROM PUBLIC;
CREATE TRIGGER dead_letters_made AFTER INSERT ON ofs.dead_letters
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ofs_internal.rejections_changed();
CREATE TRIGGER dead_letters_closed AFTER UPDATE ON ofs.dead_letters
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ofs_internal.rejections_changed();
CREATE TRIGGER conflicts_made AFTER INSERT ON ofs.conflicts
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ofs_internal.rejections_changed();
CREATE TRIGGER conflicts_closed AFTER UPDATE ON ofs.conflicts
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION ofs_internal.rejections_changed();

CREATE FUNCTION ofs_internal.clamp_hlc(hlc bigint)
RETURNS bigint AS 'MODULE_PATHNAME', 'ofs_clamp_hlc' LANGUAGE C VOLATILE STRICT;
COMMENT ON FUNCTION ofs_internal.clamp_hlc(bigint) IS
    'A device HLC, clamped to the origin clock plus ofs.max_clock_skew (internal)';
CREATE FUNCTION ofs.encode_row(anyelement)
RETURNS jsonb AS 'MODULE_PATHNAME', 'ofs_encode_row' LANGUAGE C STABLE STRICT;
COMMENT ON FUNCTION ofs.encode_row(anyelement) IS
    'A row in the JSON encoding of the changes feed';
REVOKE ALL ON FUNCTION ofs_internal.clamp_hlc(bigint) FROM PUBLIC;

-- row_versions: the version (HLC, site) of each column of a row, folded
-- from its feed entries in order.
CREATE FUNCTION ofs_internal.row_versions(tbl oid, pk jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce(jsonb_object_agg(col, jsonb_build_array(hlc, site)), '{}')
    FROM (SELECT DISTINCT ON (v.col) v.col, v.hlc, v.site
            FROM ofs.change_log l
            CROSS JOIN LATERAL (
              SELECT c, 1, l.hlc, l.site
                FROM unnest(coalesce(l.changed, ARRAY(SELECT jsonb_object_keys(l.data)))) AS c
               WHERE l.op <> 'D'
              UNION ALL
              SELECT key, 0, (value->>0)::bigint, value->>1 FROM jsonb_each(coalesce(l.versions, '{}'))
            ) AS v(col, prio, hlc, site)
           WHERE l.tbl = row_versions.tbl AND l.pk = row_versions.pk
           ORDER BY v.col, l.seq DESC, v.prio DESC) x
$$;

-- decode_json_columns: the feed carries json and jsonb values as strings;
-- turn them back into JSON before jsonb_populate_record reads them.
CREATE FUNCTION ofs_internal.decode_json_columns(tbl regclass, data jsonb)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT data || coalesce(jsonb_object_agg(a.attname, (data->>a.attname)::jsonb), '{}')
    FROM pg_attribute a
   WHERE a.attrelid = tbl AND a.attnum > 0 AND NOT a.attisdropped
     AND a.atttypid IN ('json'::regtype, 'jsonb'::regtype)
     AND jsonb_typeof(data->a.attname) = 'string'
$$;

-- compensation: what a device needs to undo a rejected mutation: the kind
-- of failure, the origin's current row as the device's role sees it (NULL
-- if it has none), and for transitions the allowed next states.
CREATE FUNCTION ofs_internal.compensation(role name, tbl regclass, pk jsonb, data jsonb,
                                 state text, con text, col text, message text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  kind text;
  cur jsonb;
  prev_role text := current_setting('role');
  hint jsonb;
  cur_state text;
BEGIN
  kind := CASE
    WHEN state = 'OF001' THEN 'transition_not_allowed'
    WHEN state = 'OF002' THEN 'role_required'
    WHEN state = 'OF003' THEN 'check_failed'
    WHEN state = 'OF004' THEN 'initial_state_not_allowed'
    WHEN state = 'OF020' THEN 'dependent'
    WHEN state = 'OF021' THEN 'group_rolled_back'
    WHEN state = '23505' THEN 'unique_violation'
    WHEN state = '23503' THEN 'foreign_key_violation'
    WHEN state = '23514' THEN 'check_violation'
    WHEN state = '23502' THEN 'not_null_violation'
    WHEN state = '42501' THEN 'permission_denied'
    WHEN state = 'P0002' THEN 'row_missing'
    WHEN state IN ('22023', '42703') THEN 'invalid_mutation'
    WHEN state LIKE '22%' THEN 'invalid_value'
    ELSE 'error' END;
  hint := jsonb_build_object('kind', kind);
  IF con IS NOT NULL THEN hint := hint || jsonb_build_object('constraint', con); END IF;
  IF col IS NOT NULL THEN hint := hint || jsonb_build_object('column', col); END IF;
  IF tbl IS NOT NULL AND pk IS NOT NULL THEN
    BEGIN
      PERFORM set_config('role', role, true);
      EXECUTE format('SELECT ofs.encode_row(t) FROM %1$s t, jsonb_populate_record(NULL::%1$s, $1) k WHERE %2$s',
                     tbl, (SELECT string_agg(format('t.%1$I = k.%1$I', key), ' AND ') FROM jsonb_object_keys(pk) key))
         INTO cur USING pk;
      PERFORM set_config('role', prev_role, true);
    EXCEPTION WHEN OTHERS THEN
      cur := NULL;  -- the role may not read the row at all
    END;
    hint := hint || jsonb_build_object('row', cur);
  END IF;
  IF state IN ('OF001', 'OF002') AND con IS NOT NULL AND col IS NOT NULL THEN
    cur_state := cur->>col;
    hint := hint || jsonb_build_object('from', cur_state, 'to', data->>col,
      'allowed_next', coalesce((SELECT jsonb_agg(jsonb_build_object('to', r.to_state, 'role', r.role) ORDER BY r.to_state)
                                  FROM ofs.transition_rules r
                                 WHERE r.table_name = tbl AND r.constraint_name = con
                                   AND r.from_state = cur_state), '[]'));
    IF state = 'OF002' THEN
      hint := hint || jsonb_build_object('required_role',
        (SELECT r.role FROM ofs.transition_rules r
          WHERE r.table_name = tbl AND r.constraint_name = con
            AND r.from_state = cur_state AND r.to_state = data->>col));
    END IF;
  END IF;
  IF kind = 'permission_denied' THEN
    hint := hint || jsonb_build_object('role', role);
  END IF;
  RETURN hint;
END $$;

-- reject_mutation: the rejection of a mutation (its subtransaction already
-- rolled back): a compensation hint, a dead letter, and the result.
CREATE FUNCTION ofs_internal.reject_mutation(device text, op_id text, tbl regclass, pktext text, m jsonb,
                                    data jsonb, state text, message text, con text, col text,
                                    role name, detail text, extra jsonb DEFAULT NULL)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  hint jsonb;
  res jsonb;
BEGIN
  BEGIN
    hint := ofs_internal.compensation(role, tbl, pktext::jsonb, data, state, nullif(con, ''), nullif(col, ''), message);
  EXCEPTION WHEN OTHERS THEN
    hint := jsonb_build_object('kind', 'error');   -- a hint must never lose the rejection
  END;
  -- A row this batch's answer already carried for the key is left out.
  IF extra ? 'omit_row' THEN
    hint := hint - 'row';
    extra := extra - 'omit_row';
  END IF;
  hint := hint || coalesce(extra, '{}');
  res := jsonb_build_object('operation_id', op_id, 'status', 'rejected', 'sqlstate', state,
                            'message', message, 'hint', hint);
  BEGIN
    INSERT INTO ofs.dead_letters (device, operation_id, table_name, pk, mutation, sqlstate, message, detail, hint, grp)
    VALUES (device, op_id, tbl::text, pktext::jsonb, m, state, message, nullif(detail, ''), hint,
            CASE WHEN jsonb_typeof(m->'group') = 'string' THEN m->>'group' END);
    INSERT INTO ofs.applied_op (device, operation_id, status, result)
    VALUES (device, op_id, 'rejected', res)
    ON CONFLICT ON CONSTRAINT applied_op_pkey DO NOTHING;
  EXCEPTION WHEN OTHERS THEN
    -- A mutation that cannot even be recorded (say, too large to index) is
    -- still answered; nothing else of the batch is lost.
    res := res || jsonb_build_object('recorded', false);
  END;
  RETURN res;
END $$;

-- apply_one: one mutation of a device, idempotent, in its own
-- subtransaction, as the device's role (src/apply_mutation.c).
CREATE FUNCTION ofs_internal.apply_one(device text, m jsonb, retry_of bigint DEFAULT NULL,
                              check_dependent boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ofs_apply_one'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- ofs_internal.resolve_table finds a table a device names: schema-qualified, or in
-- public; NULL for a name that is not a table or not a name at all.
CREATE FUNCTION ofs_internal.resolve_table(tbl text)
RETURNS regclass LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RETURN coalesce(to_regclass(tbl),
                  CASE WHEN strpos(tbl, '.') = 0 THEN to_regclass('public.' || tbl) END);
EXCEPTION WHEN invalid_name OR syntax_error OR invalid_parameter_value THEN
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ofs_internal.resolve_table(text) FROM PUBLIC;

-- ofs_internal.refeed_row puts a row into the changes feed as it is, without a
-- change: for a row whose device holds values the origin did not take (a
-- conflict, a column that lost last-writer-wins), so that its next pull
-- brings the origin's row back.
CREATE FUNCTION ofs_internal.refeed_row(tbl text, pk jsonb)
RETURNS void LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rel regclass;
  cur jsonb;
BEGIN
  rel := ofs_internal.resolve_table(tbl);
  IF rel IS NULL OR jsonb_typeof(pk) IS DISTINCT FROM 'object'
     OR NOT EXISTS (SELECT 1 FROM ofs.synced_table s WHERE s.tbl = rel) THEN
    RETURN;
  END IF;
  EXECUTE format('SELECT ofs.encode_row(t) FROM ONLY %1$s t, jsonb_populate_record(NULL::%1$s, $1) k WHERE %2$s',
                 rel, (SELECT string_agg(format('t.%1$I = k.%1$I', key), ' AND ') FROM jsonb_object_keys(pk) key))
     INTO cur USING pk;
  IF cur IS NULL THEN
    RETURN;
  END IF;
  INSERT INTO ofs.change_log (seq, xid, tbl, pk, op, data, changed, hlc, site, captured_at)
  VALUES (nextval('ofs.change_seq'), pg_current_xact_id(), rel,
          (SELECT jsonb_object_agg(k, cur->k) FROM jsonb_object_keys(pk) k), 'U', cur, '{}',
          ofs.hlc_now(), 'origin', now());
  PERFORM ofs_internal.notify_feed_change();
END $$;
REVOKE ALL ON FUNCTION ofs_internal.refeed_row(text, jsonb) FROM PUBLIC;

CREATE FUNCTION ofs.apply_batch(device text, mutations jsonb)
RETURNS TABLE (operation_id text, status text, sqlstate text, message text, hint jsonb)
AS 'MODULE_PATHNAME', 'ofs_apply_batch'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.apply_batch(text, jsonb) IS
    'Apply a device''s batch of mutations in order, as the device''s role; one result per mutation: applied, duplicate, rejected (with SQLSTATE, message and compensation hint) or conflict';

CREATE FUNCTION ofs.retry_dead_letter(id bigint)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dl ofs.dead_letters;
  dev ofs.device;
  r jsonb;
BEGIN
  SELECT * INTO dl FROM ofs.dead_letters d WHERE d.id = retry_dead_letter.id FOR UPDATE;
  IF NOT FOUND OR dl.status <> 'open' THEN
    RAISE EXCEPTION 'dead letter % does not exist or is closed', id
      USING ERRCODE = 'undefined_object', HINT = 'Open dead letters are listed in ofs.dead_letters.';
  END IF;
  SELECT * INTO dev FROM ofs.device d WHERE d.device = dl.device;
  IF NOT FOUND OR dev.revoked_at IS NOT NULL OR dev.expires_at < now() THEN
    RAISE EXCEPTION 'device "%" of dead letter % is unknown, revoked or expired', dl.device, id
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Discard it with ofs.discard_dead_letter.';
  END IF;
  PERFORM pg_advisory_xact_lock(hashtext('ofs.device'), hashtext(dl.device));
  IF dl.grp IS NOT NULL THEN
    -- A group is retried whole: its open dead letters, in order, all or nothing.
    RETURN ofs_internal.retry_group(dl);
  END IF;
  UPDATE ofs.dead_letters d SET status = 'retried', closed_at = now(), closed_by = current_user
   WHERE d.id = dl.id;
  DELETE FROM ofs.applied_op a WHERE a.device = dl.device AND a.operation_id = dl.operation_id;
  r := ofs_internal.apply_one(dl.device, dl.mutation, dl.id);
  UPDATE ofs.dead_letters d SET retry_result = r WHERE d.id = dl.id;
  RETURN r;
END $$;
COMMENT ON FUNCTION ofs.retry_dead_letter(bigint) IS
    'Apply a dead letter''s mutation again (e.g. after a role was granted), with the other open dead letters of its atomic group; a new rejection opens a new dead letter';

-- retry_batch: ofs.apply_batch for dead letters applied again: a mutation
-- waits only for the device's open dead letters older than retry_of.
CREATE FUNCTION ofs_internal.retry_batch(device text, mutations jsonb, retry_of bigint)
RETURNS TABLE (operation_id text, status text, sqlstate text, message text, hint jsonb)
AS 'MODULE_PATHNAME', 'ofs_retry_batch'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION ofs_internal.retry_batch(text, jsonb, bigint) FROM PUBLIC;

-- retry_group: the open dead letters of a letter's atomic group, applied
-- again as one group (a batch applies a group all or nothing).
CREATE FUNCTION ofs_internal.retry_group(dl ofs.dead_letters)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  ids bigint[];
  ms jsonb;
  results jsonb;
BEGIN
  PERFORM 1 FROM ofs.dead_letters d
   WHERE d.device = dl.device AND d.grp = dl.grp AND d.status = 'open' ORDER BY d.id FOR UPDATE;
  SELECT array_agg(d.id ORDER BY d.id), jsonb_agg(d.mutation ORDER BY d.id) INTO ids, ms
    FROM ofs.dead_letters d
   WHERE d.device = dl.device AND d.grp = dl.grp AND d.status = 'open';
  UPDATE ofs.dead_letters d SET status = 'retried', closed_at = now(), closed_by = current_user
   WHERE d.id = ANY (ids) AND d.status = 'open';
  DELETE FROM ofs.applied_op a
   WHERE a.device = dl.device
     AND a.operation_id IN (SELECT d.operation_id FROM ofs.dead_letters d WHERE d.id = ANY (ids));
  SELECT jsonb_agg(jsonb_build_object('operation_id', r.operation_id, 'status', r.status)
                   || jsonb_strip_nulls(jsonb_build_object('sqlstate', r.sqlstate, 'message', r.message, 'hint', r.hint))
                   ORDER BY r.ord)
    INTO results
    FROM ofs_internal.retry_batch(dl.device, ms, ids[1]) WITH ORDINALITY AS r(operation_id, status, sqlstate, message, hint, ord);
  UPDATE ofs.dead_letters d SET retry_result = results->(array_position(ids, d.id) - 1)
   WHERE d.id = ANY (ids);
  RETURN results->(array_position(ids, dl.id) - 1);
END $$;
REVOKE ALL ON FUNCTION ofs_internal.retry_group(ofs.dead_letters) FROM PUBLIC;

CREATE FUNCTION ofs.discard_dead_letter(id bigint)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dl ofs.dead_letters;
BEGIN
  SELECT * INTO dl FROM ofs.dead_letters d WHERE d.id = discard_dead_letter.id AND d.status = 'open' FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'dead letter % does not exist or is closed', id
      USING ERRCODE = 'undefined_object', HINT = 'Open dead letters are listed in ofs.dead_letters.';
  END IF;
  -- An atomic group is one intent: discarding one of its mutations discards the group.
  UPDATE ofs.dead_letters d SET status = 'discarded', closed_at = now(), closed_by = current_user
   WHERE d.status = 'open'
     AND (d.id = dl.id OR (dl.grp IS NOT NULL AND d.device = dl.device AND d.grp = dl.grp));
END $$;
COMMENT ON FUNCTION ofs.discard_dead_letter(bigint) IS
    'Close a dead letter without applying it (with the other open dead letters of its atomic group)';

CREATE FUNCTION ofs.resolve_conflict(id bigint, take text DEFAULT 'origin', value jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  c ofs.conflicts;
  chosen jsonb;
  tbl regclass;
BEGIN
  SELECT * INTO c FROM ofs.conflicts x WHERE x.id = resolve_conflict.id FOR UPDATE;
  IF NOT FOUND OR c.status <> 'open' THEN
    RAISE EXCEPTION 'conflict % does not exist or is resolved', id
      USING ERRCODE = 'undefined_object', HINT = 'Open conflicts are listed in ofs.conflicts.';
  END IF;
  IF take NOT IN ('origin', 'device', 'value') OR (take = 'value') <> (value IS NOT NULL) THEN
    RAISE EXCEPTION 'resolve a conflict with take => ''origin'', ''device'', or ''value'' and a value'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF take <> 'origin' THEN
    chosen := CASE take WHEN 'device' THEN c.device_value ELSE value END;
    tbl := c.table_name::regclass;
    EXECUTE format('UPDATE %1$s t SET %2$I = r.%2$I FROM jsonb_populate_record(NULL::%1$s, $1) r,'
                   ' jsonb_populate_record(NULL::%1$s, $2) k WHERE %3$s',
                   tbl, c.column_name,
                   (SELECT string_agg(format('t.%1$I = k.%1$I', key), ' AND ') FROM jsonb_object_keys(c.pk) key))
      USING ofs_internal.decode_json_columns(tbl, jsonb_build_object(c.column_name, chosen)), c.pk;
  END IF;
  UPDATE ofs.conflicts x SET status = 'resolved', resolution = take, resolved_at = now(), resolved_by = current_user
   WHERE x.id = c.id;
END $$;
COMMENT ON FUNCTION ofs.resolve_conflict(bigint, text, jsonb) IS
    'Resolve a conflict: keep the origin''s value, take the device''s, or set a value';

REVOKE ALL ON FUNCTION ofs.apply_batch(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.apply_one(text, jsonb, bigint, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.reject_mutation(text, text, regclass, text, jsonb, jsonb, text, text, text, text, name, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.retry_dead_letter(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.discard_dead_letter(bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.resolve_conflict(bigint, text, jsonb) FROM PUBLIC;

-- Rules and sync registrations of a dropped table or column go with it.
CREATE FUNCTION ofs_internal.forget_dropped_rules()
RETURNS event_trigger LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM ofs.transition_constraint_def d
   WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = d.tbl AND a.attname = d.col AND NOT a.attisdropped);
  DELETE FROM ofs.transition_check_def c
   WHERE NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c.tbl);
  -- A dropped synced table leaves the feed.
  DELETE FROM ofs.change_log l
   WHERE l.tbl IN (SELECT s.tbl FROM ofs.synced_table s
                    WHERE NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = s.tbl));
  DELETE FROM ofs.synced_table s
   WHERE NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = s.tbl);
END $$;
CREATE EVENT TRIGGER ofs_forget_dropped_rules ON sql_drop
    EXECUTE FUNCTION ofs_internal.forget_dropped_rules();

-- Internal helpers and trigger functions are not for PUBLIC (ofs's owner
-- attaches the triggers).
REVOKE ALL ON FUNCTION ofs_internal.capture_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.refuse_truncate() FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.transition_trigger() FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.compensation(name, regclass, jsonb, jsonb, text, text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.row_versions(oid, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.decode_json_columns(regclass, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.cursor_parse(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.snapshot_text(pg_snapshot) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.hlc_now() FROM PUBLIC;

-------------------------------------------------------------------------------
-- Shapes and the scoped pull (docs/DESIGN.md: "Scoped pull")
-------------------------------------------------------------------------------

-- A device's shapes on one table: the filters (rewritten by
-- ofs.shape_filter; '' is the whole table) whose union it receives.  A row
-- with no filters is an unsubscribed table whose rows the device must still
-- be told to remove.  version orders changes of shapes; a pull that sees a
-- version newer than its cursor's re-snapshots the table.
CREATE TABLE ofs.device_shape (
    device  text NOT NULL REFERENCES ofs.device ON DELETE CASCADE,
    tbl     oid NOT NULL,
    filters text[] NOT NULL,
    version bigint NOT NULL,
    PRIMARY KEY (device, tbl)
);
COMMENT ON TABLE ofs.device_shape IS
    'The shapes each device subscribes to, per table; write it through ofs.subscribe, ofs.unsubscribe and ofs.set_subscriptions only';
CREATE SEQUENCE ofs.shape_version;

-- The rows each device has been sent and not told to remove: what makes a
-- removal possible without ever naming a row the device was not allowed to
-- see.  gen is the snapshot generation that last sent the row (a snapshot
-- removes the rows of older generations it did not send again); gone_page
-- is set when the device was told to remove the row, in that page, and the
-- entry is forgotten once the device confirms a later page.
-- (No foreign key to ofs.device: a snapshot inserts thousands of rows a
-- page, and devices are revoked, never deleted.)
CREATE TABLE ofs.device_row (
    device    text NOT NULL,
    tbl       oid NOT NULL,
    pk        jsonb NOT NULL,
    gen       bigint NOT NULL,
    gone_page bigint,
    sent_page bigint,
    PRIMARY KEY (device, tbl, pk)
);
CREATE INDEX device_row_gone ON ofs.device_row (device, gone_page) WHERE gone_page IS NOT NULL;
CREATE INDEX device_row_sent ON ofs.device_row (device, sent_page) WHERE sent_page IS NOT NULL;
COMMENT ON COLUMN ofs.device_row.sent_page IS
    'The page that first sent the row: a row of a page after the device''s cursor never reached it, and is not held';
COMMENT ON TABLE ofs.device_row IS
    'The rows each device holds (or was just told to remove); maintained by ofs.pull';

-- A device deleted by hand takes its held rows with it (one statement).
CREATE FUNCTION ofs_internal.forget_device_rows()
RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM ofs.device_row r USING gone g WHERE r.device = g.device;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ofs_internal.forget_device_rows() FROM PUBLIC;
CREATE TRIGGER device_forget_rows AFTER DELETE ON ofs.device
  REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION ofs_internal.forget_device_rows();

-- ofs.resnapshot_device makes a device's next pull re-read every table it
-- subscribes to, removing the rows no longer in its scope: for changes of
-- scope that change no row (a new role, a changed policy or membership).
CREATE FUNCTION ofs.resnapshot_device(device text)
RETURNS void LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
  UPDATE ofs.device_shape s SET version = nextval('ofs.shape_version')
   WHERE s.device = resnapshot_device.device
$$;
COMMENT ON FUNCTION ofs.resnapshot_device(text) IS
    'Make a device re-read all its shapes at its next pull (after a change of policy, membership or role that changes no row)';
REVOKE ALL ON FUNCTION ofs.resnapshot_device(text) FROM PUBLIC;

CREATE VIEW ofs.subscriptions AS
SELECT s.device, s.tbl::regclass AS table_name, nullif(f, '') AS filter
  FROM ofs.device_shape s, unnest(s.filters) AS f;
COMMENT ON VIEW ofs.subscriptions IS 'The shapes devices subscribe to: device, table and filter (NULL: the whole table)';

CREATE FUNCTION ofs.shape_filter(tbl regclass, filter text)
RETURNS text AS 'MODULE_PATHNAME', 'ofs_shape_filter'
LANGUAGE C STABLE;
COMMENT ON FUNCTION ofs.shape_filter(regclass, text) IS
    'Check a shape filter against the grammar of docs/PROTOCOL.md and the table, and return it rewritten from its parse tree (NULL: the whole table)';

CREATE FUNCTION ofs_internal.scope_rows(role oid, tbl oid, filter text, pks jsonb)
RETURNS TABLE (pk jsonb, "row" jsonb) AS 'MODULE_PATHNAME', 'ofs_scope_rows'
LANGUAGE C VOLATILE;
CREATE FUNCTION ofs_internal.scope_page(role oid, tbl oid, filter text, after jsonb, max_rows int)
RETURNS TABLE (pk jsonb, "row" jsonb) AS 'MODULE_PATHNAME', 'ofs_scope_page'
LANGUAGE C VOLATILE;
CREATE FUNCTION ofs_internal.scope_count(role oid, tbl oid, filter text)
RETURNS bigint AS 'MODULE_PATHNAME', 'ofs_scope_count'
LANGUAGE C VOLATILE;
REVOKE ALL ON FUNCTION ofs_internal.scope_count(oid, oid, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.scope_rows(oid, oid, text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.scope_page(oid, oid, text, jsonb, int) FROM PUBLIC;

-- The schema-qualified, quoted name of a table, as the feed prints it.
CREATE FUNCTION ofs_internal.table_name(tbl oid)
RETURNS text LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT coalesce((SELECT format('%I.%I', n.nspname, c.relname)
                     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                    WHERE c.oid = tbl), tbl::text)
$$;

-- The union of a table's shapes as one SQL condition (NULL: every row).
CREATE FUNCTION ofs_internal.shape_condition(filters text[])
RETURNS text LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp AS $$
  SELECT CASE WHEN '' = ANY (filters) THEN NULL
              WHEN cardinality(filters) = 0 THEN 'FALSE'
              ELSE '(' || array_to_string(filters, ') OR (') || ')' END
$$;

-- The device, if it may connect; otherwise an error saying why.
CREATE FUNCTION ofs_internal.device_check(device text)
RETURNS ofs.device LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device;
BEGIN
  SELECT * INTO dev FROM ofs.device d WHERE d.device = device_check.device;
  IF NOT FOUND OR dev.revoked_at IS NOT NULL OR dev.expires_at < now() THEN
    RAISE EXCEPTION 'device "%" is %', device,
          CASE WHEN NOT FOUND THEN 'unknown' WHEN dev.revoked_at IS NOT NULL THEN 'revoked' ELSE 'expired' END
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Create a device token with ofs.create_device_token.';
  END IF;
  RETURN dev;
END $$;

-- ofs.authenticate_device finds the device of a token; unknown, expired and
-- revoked tokens are refused with SQLSTATE 28000.
CREATE FUNCTION ofs.authenticate_device(token text)
RETURNS ofs.device LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device;
BEGIN
  SELECT * INTO dev FROM ofs.device d WHERE d.token_sha256 = sha256(convert_to(coalesce(token, ''), 'UTF8'));
  IF NOT FOUND THEN
    RAISE EXCEPTION 'unknown device token'
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Create a device token with ofs.create_device_token.';
  ELSIF dev.revoked_at IS NOT NULL THEN
    RAISE EXCEPTION 'device "%" was revoked at %', dev.device, dev.revoked_at
      USING ERRCODE = 'invalid_authorization_specification';
  ELSIF dev.expires_at < now() THEN
    RAISE EXCEPTION 'the token of device "%" expired at %', dev.device, dev.expires_at
      USING ERRCODE = 'invalid_authorization_specification',
            HINT = 'Create a new token with ofs.create_device_token.';
  END IF;
  UPDATE ofs.device d SET last_contact = now() WHERE d.device = dev.device;
  RETURN dev;
END $$;
COMMENT ON FUNCTION ofs.authenticate_device(text) IS
    'The device a token belongs to; refuses unknown, expired and revoked tokens (SQLSTATE 28000)';

-- ofs_internal.shape_table resolves a table a device names: synced and readable by
-- its role, or not found (without saying which).
CREATE FUNCTION ofs_internal.shape_table(role name, tbl text)
RETURNS regclass LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  rel regclass;
BEGIN
  rel := ofs_internal.resolve_table(tbl);
  IF rel IS NULL OR NOT EXISTS (SELECT 1 FROM ofs.synced_table s WHERE s.tbl = rel)
     OR NOT has_table_privilege(role, rel, 'SELECT') THEN
    RAISE EXCEPTION 'table "%" is not synced or not readable by role "%"', tbl, role
      USING ERRCODE = 'undefined_table',
            HINT = 'Tables are synced with ofs.sync_table and made readable with GRANT SELECT.';
  END IF;
  RETURN rel;
END $$;

CREATE FUNCTION ofs.subscribe(device text, tbl text, filter text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs_internal.device_check(device);
  rel regclass := ofs_internal.shape_table(dev.role, tbl);
  f text := coalesce(ofs.shape_filter(rel, filter), '');
BEGIN
  INSERT INTO ofs.device_shape AS s (device, tbl, filters, version)
  VALUES (dev.device, rel, ARRAY[f], nextval('ofs.shape_version'))
  ON CONFLICT ON CONSTRAINT device_shape_pkey DO UPDATE
     SET filters = s.filters || f, version = EXCLUDED.version
   WHERE NOT f = ANY (s.filters);
  RETURN jsonb_build_object('table', ofs_internal.table_name(rel), 'filter', nullif(f, ''));
END $$;
COMMENT ON FUNCTION ofs.subscribe(text, text, text) IS
    'Subscribe a device to a shape: a synced table its role may read and a filter (docs/PROTOCOL.md); the next pull sends the rows in scope';

CREATE FUNCTION ofs.unsubscribe(device text, tbl text, filter text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs_internal.device_check(device);
  rel regclass := ofs_internal.shape_table(dev.role, tbl);
  f text := coalesce(ofs.shape_filter(rel, filter), '');
BEGIN
  UPDATE ofs.device_shape s SET filters = array_remove(s.filters, f), version = nextval('ofs.shape_version')
   WHERE s.device = dev.device AND s.tbl = rel AND f = ANY (s.filters);
  IF NOT FOUND THEN
    RAISE EXCEPTION 'device "%" is not subscribed to that shape of %', dev.device, ofs_internal.table_name(rel)
      USING ERRCODE = 'undefined_object',
            HINT = 'ofs.subscriptions lists the shapes of each device.';
  END IF;
  RETURN jsonb_build_object('table', ofs_internal.table_name(rel), 'filter', nullif(f, ''));
END $$;
COMMENT ON FUNCTION ofs.unsubscribe(text, text, text) IS
    'Drop one shape of a device; the next pull removes the rows no other shape keeps';

-- ofs.set_subscriptions makes a device's shapes exactly subs (a JSON array
-- of {table, filter}); tables whose shapes do not change are left alone.
CREATE FUNCTION ofs.set_subscriptions(device text, subs jsonb)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs_internal.device_check(device);
  e jsonb;
  rel regclass;
  wanted jsonb := '{}';
  t text;
  fs text[];
BEGIN
  IF jsonb_typeof(subs) IS DISTINCT FROM 'array' THEN
    RAISE EXCEPTION 'subscriptions must be a JSON array of {"table", "filter"} objects'
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  FOR e IN SELECT value FROM jsonb_array_elements(subs) LOOP
    IF jsonb_typeof(e) IS DISTINCT FROM 'object' OR jsonb_typeof(e->'table') IS DISTINCT FROM 'string'
       OR jsonb_typeof(coalesce(e->'filter', 'null')) NOT IN ('string', 'null') THEN
      RAISE EXCEPTION 'each subscription must be an object with a string "table" and an optional string "filter"'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    rel := ofs_internal.shape_table(dev.role, e->>'table');
    wanted := jsonb_set(wanted, ARRAY[rel::oid::text],
                        coalesce(wanted->(rel::oid::text), '[]')
                        || to_jsonb(coalesce(ofs.shape_filter(rel, e->>'filter'), '')));
  END LOOP;
  -- Tables no longer wanted keep an empty shape, so the next pull removes their rows.
  UPDATE ofs.device_shape s SET filters = '{}', version = nextval('ofs.shape_version')
   WHERE s.device = dev.device AND cardinality(s.filters) > 0 AND NOT wanted ? s.tbl::text;
  FOR t IN SELECT jsonb_object_keys(wanted) LOOP
    fs := ARRAY(SELECT DISTINCT x FROM jsonb_array_elements_text(wanted->t) x ORDER BY x);
    INSERT INTO ofs.device_shape AS s (device, tbl, filters, version)
    VALUES (dev.device, t::oid, fs, nextval('ofs.shape_version'))
    ON CONFLICT ON CONSTRAINT device_shape_pkey DO UPDATE
       SET filters = EXCLUDED.filters, version = EXCLUDED.version
     WHERE ARRAY(SELECT x FROM unnest(s.filters) x ORDER BY x) IS DISTINCT FROM EXCLUDED.filters;
  END LOOP;
  RETURN (SELECT coalesce(jsonb_agg(jsonb_build_object('table', ofs_internal.table_name(s.tbl), 'filter', nullif(f, ''))
                                    ORDER BY s.tbl, f), '[]')
            FROM ofs.device_shape s, unnest(s.filters) f WHERE s.device = dev.device);
END $$;
COMMENT ON FUNCTION ofs.set_subscriptions(text, jsonb) IS
    'Make a device''s shapes exactly the given list of {"table", "filter"}; returns them normalized';

-- ofs.pull: the changes a device should apply next, scoped to its role and
-- its shapes (docs/DESIGN.md, "Scoped pull"; docs/PROTOCOL.md, "pull").
-- since is the last cursor the device stored (NULL: it has nothing);
-- confirmed, when given, is the last cursor the device is known to have
-- stored, if that is older (a live connection's sent-but-unacknowledged
-- pages).  Returns {cursor, changes, more, snapshot}.  The engine is C
-- (src/pull.c, src/pull_feed.c).
CREATE FUNCTION ofs.pull(device text, since text DEFAULT NULL, max_rows int DEFAULT 1000,
                         confirmed text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ofs_pull'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.pull(text, text, int, text) IS
    'The next changes for a device after its cursor, scoped to its role (GRANTs, row-level security) and shapes: {cursor, changes, more, snapshot}';

-- ofs.device_schema: what a device needs to create its local tables and to
-- check transitions offline (docs/PROTOCOL.md, "schema").
CREATE FUNCTION ofs.device_schema(device text, all_tables boolean DEFAULT false)
RETURNS jsonb LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs_internal.device_check(device);
BEGIN
  RETURN jsonb_build_object(
    'tables', (SELECT coalesce(jsonb_agg(jsonb_build_object(
        'name', ofs_internal.table_name(s.tbl),
        'columns', (SELECT jsonb_agg(jsonb_build_object('name', a.attname, 'type', format_type(a.atttypid, a.atttypmod),
                                                        'nullable', NOT a.attnotnull) ORDER BY a.attnum)
                      FROM pg_attribute a
                     WHERE a.attrelid = s.tbl AND a.attnum > 0 AND NOT a.attisdropped),
        'primary_key', (SELECT jsonb_agg(a.attname ORDER BY k.ord)
                          FROM pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord), pg_attribute a
                         WHERE i.indrelid = s.tbl AND i.indisprimary AND a.attrelid = s.tbl AND a.attnum = k.attnum),
        'subscribed', s.subscribed,
        'merge', st.merge,
        'transitions', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                             'name', c.name, 'column', c.col, 'initial', to_jsonb(c.initial),
                             'edges', (SELECT coalesce(jsonb_agg(jsonb_build_object('from', e.from_state, 'to', e.to_state,
                                                                                    'role', e.role) ORDER BY e.ord), '[]')
                                         FROM ofs.transition_edge e WHERE e.constraint_id = c.id)) ORDER BY c.name), '[]')
                          FROM ofs.transition_constraint_def c WHERE c.tbl = s.tbl)) ORDER BY s.tbl), '[]')
                 FROM (SELECT st0.tbl,
                              EXISTS (SELECT 1 FROM ofs.device_shape ds
                                       WHERE ds.device = dev.device AND ds.tbl = st0.tbl
                                         AND cardinality(ds.filters) > 0) AS subscribed
                         FROM ofs.synced_table st0) s
                 JOIN ofs.synced_table st ON st.tbl = s.tbl
                WHERE (s.subscribed OR all_tables)
                  AND has_table_privilege(dev.role, s.tbl, 'SELECT')),
    'roles', (SELECT coalesce(jsonb_agg(r.rolname ORDER BY r.rolname), '[]') FROM pg_roles r
               WHERE pg_has_role(dev.role, r.oid, 'MEMBER')));
END $$;
COMMENT ON FUNCTION ofs.device_schema(text, boolean) IS
    'The subscribed tables of a device, or with all_tables every synced table its role may read (columns, types, primary key, whether subscribed, merge policy, transition rules), and its role memberships';

-- ofs.device_rejections: a device's own dead letters and conflicts, open or
-- closed but not yet cleared by it (docs/PROTOCOL.md, "rejections").  clear
-- ({"dead_letters": [id...], "conflicts": [id...]}) first clears those of
-- its entries that are closed, and discards its open dead letters named.
CREATE FUNCTION ofs.device_rejections(device text, clear jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs_internal.device_check(device);
  dl_ids bigint[];
  cf_ids bigint[];
BEGIN
  IF clear IS NOT NULL THEN
    IF jsonb_typeof(clear) <> 'object'
       OR jsonb_typeof(coalesce(clear->'dead_letters', '[]')) <> 'array'
       OR jsonb_typeof(coalesce(clear->'conflicts', '[]')) <> 'array'
       OR EXISTS (SELECT 1 FROM jsonb_array_elements(coalesce(clear->'dead_letters', '[]')
                                                     || coalesce(clear->'conflicts', '[]')) e
                   WHERE jsonb_typeof(e) <> 'number' OR (e #>> '{}') !~ '^[0-9]{1,18}$') THEN
      RAISE EXCEPTION 'clear must be {"dead_letters": [ids], "conflicts": [ids]} with integer ids'
        USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg((e #>> '{}')::bigint) INTO dl_ids FROM jsonb_array_elements(clear->'dead_letters') e;
    SELECT array_agg((e #>> '{}')::bigint) INTO cf_ids FROM jsonb_array_elements(clear->'conflicts') e;
    -- The device gives up its own open intents; closed ones leave its list.
    -- An atomic group is one intent: giving up one of its mutations gives up the group.
    UPDATE ofs.dead_letters d
       SET status = CASE WHEN d.status = 'open' THEN 'discarded' ELSE d.status END,
           closed_at = coalesce(d.closed_at, now()),
           closed_by = coalesce(d.closed_by, dev.role),
           device_cleared_at = now()
     WHERE d.device = dev.device AND d.device_cleared_at IS NULL
       AND (d.id = ANY (coalesce(dl_ids, '{}'))
            OR (d.status = 'open'
                AND d.grp IN (SELECT g.grp FROM ofs.dead_letters g
                               WHERE g.device = dev.device AND g.id = ANY (coalesce(dl_ids, '{}'))
                                 AND g.status = 'open' AND g.grp IS NOT NULL)));
    UPDATE ofs.conflicts c SET device_cleared_at = now()
     WHERE c.device = dev.device AND c.id = ANY (coalesce(cf_ids, '{}')) AND c.status <> 'open'
       AND c.device_cleared_at IS NULL;
  END IF;
  -- At most 100 of each, the oldest: an answer stays a message a device can
  -- take; "more" says there are others, listed once these are cleared.
  RETURN jsonb_build_object(
    'version', (SELECT d.rejections_version FROM ofs.device d WHERE d.device = dev.device),
    'dead_letters', (SELECT coalesce(jsonb_agg(jsonb_build_object(
          'id', d.id, 'operation_id', d.operation_id, 'table', d.table_name, 'pk', d.pk,
          'op', d.mutation->'op', 'group', d.grp, 'sqlstate', d.sqlstate, 'message', d.message,
          'hint', d.hint, 'status', d.status, 'created_at', d.created_at, 'closed_at', d.closed_at,
          'retry_result', d.retry_result) ORDER BY d.id), '[]')
        FROM (SELECT * FROM ofs.dead_letters d WHERE d.device = dev.device AND d.device_cleared_at IS NULL
               ORDER BY d.id LIMIT 100) d),
    'conflicts', (SELECT coalesce(jsonb_agg(jsonb_build_object(
          'id', c.id, 'operation_id', c.operation_id, 'table', c.table_name, 'pk', c.pk,
          'column', c.column_name, 'origin_value', c.origin_value, 'device_value', c.device_value,
          'base_value', c.base_value, 'status', c.status, 'resolution', c.resolution,
          'created_at', c.created_at, 'resolved_at', c.resolved_at) ORDER BY c.id), '[]')
        FROM (SELECT * FROM ofs.conflicts c WHERE c.device = dev.device AND c.device_cleared_at IS NULL
               ORDER BY c.id LIMIT 100) c),
    'more', (SELECT count(*) > 100 FROM (SELECT 1 FROM ofs.dead_letters d WHERE d.device = dev.device
                                          AND d.device_cleared_at IS NULL LIMIT 101) x)
            OR (SELECT count(*) > 100 FROM (SELECT 1 FROM ofs.conflicts c WHERE c.device = dev.device
                                             AND c.device_cleared_at IS NULL LIMIT 101) x));
END $$;
COMMENT ON FUNCTION ofs.device_rejections(text, jsonb) IS
    'A device''s own dead letters and conflicts, open or not yet cleared by it; clear closes and clears entries for it';
REVOKE ALL ON FUNCTION ofs.device_rejections(text, jsonb) FROM PUBLIC;

REVOKE ALL ON FUNCTION ofs.shape_filter(regclass, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.device_check(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.authenticate_device(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.shape_table(name, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.subscribe(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.unsubscribe(text, text, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.set_subscriptions(text, jsonb) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.pull(text, text, int, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.device_schema(text, boolean) FROM PUBLIC;

-- ofs_internal.hello: a device's hello (docs/PROTOCOL.md): authenticates its token,
-- sets its subscriptions when it sends them, and returns the welcome.
CREATE FUNCTION ofs_internal.hello(token text, subscriptions jsonb DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs.authenticate_device(token);
  subs jsonb;
BEGIN
  IF subscriptions IS NOT NULL THEN
    subs := ofs.set_subscriptions(dev.device, subscriptions);
  ELSE
    subs := (SELECT coalesce(jsonb_agg(jsonb_build_object('table', ofs_internal.table_name(s.tbl), 'filter', nullif(f, ''))
                                       ORDER BY s.tbl, f), '[]')
               FROM ofs.device_shape s, unnest(s.filters) f WHERE s.device = dev.device);
  END IF;
  RETURN jsonb_build_object('device', dev.device, 'role', dev.role,
                            'server_version', (SELECT extversion FROM pg_extension WHERE extname = 'ofs'),
                            'hlc', ofs.hlc_now(), 'subscriptions', subs,
                            'rejections', dev.rejections_version);
END $$;
REVOKE ALL ON FUNCTION ofs_internal.hello(text, jsonb) FROM PUBLIC;

-------------------------------------------------------------------------------
-- Metrics
-------------------------------------------------------------------------------

-- The version of the loaded shared library, next to extversion: after an
-- upgrade of the library they differ until ALTER EXTENSION ofs UPDATE.
CREATE FUNCTION ofs.library_version() RETURNS text
AS 'MODULE_PATHNAME', 'ofs_library_version' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ofs.library_version() IS
    'Version of the ofs shared library in use; extversion in pg_extension is the version of its SQL';

CREATE FUNCTION ofs.worker_stats(
    OUT connected_devices bigint, OUT sessions bigint, OUT messages_in bigint, OUT messages_out bigint,
    OUT bytes_in bigint, OUT bytes_out bigint, OUT mutations_applied bigint, OUT mutations_duplicate bigint,
    OUT mutations_rejected bigint, OUT conflicts bigint, OUT rows_sent bigint, OUT errors bigint,
    OUT last_error text, OUT last_error_at timestamptz)
AS 'MODULE_PATHNAME', 'ofs_worker_stats' LANGUAGE C VOLATILE;
-- Its last_error names devices: monitoring roles only, as ofs.stats.
REVOKE ALL ON FUNCTION ofs.worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ofs.worker_stats() TO pg_monitor;
COMMENT ON FUNCTION ofs.worker_stats() IS
    'Counters of the sync workers since PostgreSQL started (shared memory), and the last error; executable by pg_monitor';

CREATE VIEW ofs.stats AS
SELECT w.connected_devices, w.sessions, w.messages_in, w.messages_out, w.bytes_in, w.bytes_out,
       w.mutations_applied, w.mutations_duplicate, w.mutations_rejected,
       w.conflicts AS conflicts_detected,
       (SELECT count(*) FROM ofs.conflicts c WHERE c.status = 'open') AS conflicts_open,
       (SELECT count(*) FROM ofs.dead_letters d WHERE d.status = 'open') AS dead_letters,
       w.rows_sent,
       (SELECT max(now() - d.caught_up_at) FROM ofs.devices d
         WHERE d.status = 'active' AND d.changes_behind > 0) AS pull_lag,
       w.errors, w.last_error, w.last_error_at
  FROM ofs.worker_stats() w;
COMMENT ON VIEW ofs.stats IS
    'Sync metrics: connected devices, sessions, messages and bytes each way, mutations applied, duplicate and rejected, conflicts, open dead letters, rows sent, pull lag (longest an active device has been behind the feed), errors and the last one (worker counters start at zero when PostgreSQL starts)';
GRANT SELECT ON ofs.stats TO pg_monitor;

-- ofs_internal.pull_live: ofs.pull for many live devices at once, which is what a
-- commit wakes the sync worker for.  Devices whose cursor is in the steady
-- state (no snapshot under way, no shape changed, no removal to resend) are
-- served together: the feed is read once per distinct cursor, rows are read
-- once per role, table and shape, and the bookkeeping of held rows is one
-- statement for all (docs/DESIGN.md, "Live fan-out").  The others go
-- through ofs.pull one by one.  Returns one result per device that has
-- changes (ord is the device's position in the arrays); a device that may no
-- longer connect gets {"error": ..., "sqlstate": ...}.
-- The engine is C (src/live_round.c).
CREATE FUNCTION ofs_internal.pull_live(devices text[], cursors text[], confirmed text[], max_rows int DEFAULT 1000)
RETURNS TABLE (ord int, result jsonb)
AS 'MODULE_PATHNAME', 'ofs_pull_live'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION ofs_internal.pull_live(text[], text[], text[], int) FROM PUBLIC;

-------------------------------------------------------------------------------
-- The sync worker's status page (docs/monitoring.md): who may read it
-------------------------------------------------------------------------------

-- A credential for /status, which shows device names and error texts.
CREATE TABLE ofs.status_token (
    name         text PRIMARY KEY CHECK (name <> ''),
    token_sha256 bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   name NOT NULL DEFAULT current_user,
    revoked_at   timestamptz
);
COMMENT ON TABLE ofs.status_token IS
    'Credentials of the sync worker''s /status page: a name, the SHA-256 of the token, when made, by whom, and when revoked';

CREATE FUNCTION ofs.create_status_token(name text)
RETURNS text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  token text;
BEGIN
  IF name IS NULL OR name = '' THEN
    RAISE EXCEPTION 'a status token needs a name'
      USING ERRCODE = 'invalid_parameter_value', HINT = 'Name it after the person or system that reads the page.';
  END IF;
  -- 244 random bits from the server's strong random source.
  token := 'ofs_status_' || replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
  INSERT INTO ofs.status_token AS t (name, token_sha256)
  VALUES (create_status_token.name, sha256(convert_to(token, 'UTF8')))
  ON CONFLICT ON CONSTRAINT status_token_pkey DO UPDATE
     SET token_sha256 = EXCLUDED.token_sha256, created_at = now(), created_by = current_user, revoked_at = NULL;
  RETURN token;
END $$;
COMMENT ON FUNCTION ofs.create_status_token(text) IS
    'Create (or replace) a credential of the /status page; returns its token, shown only this once';

CREATE FUNCTION ofs.revoke_status_token(name text)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  UPDATE ofs.status_token t SET revoked_at = now()
   WHERE t.name = revoke_status_token.name AND t.revoked_at IS NULL;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'status token "%" does not exist or is already revoked', name
      USING ERRCODE = 'undefined_object', HINT = 'Status tokens are listed in ofs.status_token.';
  END IF;
END $$;
COMMENT ON FUNCTION ofs.revoke_status_token(text) IS 'Revoke a credential of the /status page: it is refused from the next request on';

-- The sync worker checks a token as the extension's owner; nobody else reads the table.
REVOKE ALL ON TABLE ofs.status_token FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.create_status_token(text) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs.revoke_status_token(text) FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('ofs.status_token', '');
