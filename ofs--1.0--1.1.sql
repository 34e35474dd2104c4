-- ofs--1.0--1.1.sql: ALTER EXTENSION ofs UPDATE from 1.0 to 1.1.
--
-- Every change here is also in ofs--1.1.sql, the full script of 1.1, and
-- leaves the database object for object as CREATE EXTENSION ofs VERSION
-- '1.1' would (test/scripts/upgrade.sh compares the two).  The shared
-- library is installed before this runs, and serves 1.0 until it has.
\echo Use "ALTER EXTENSION ofs UPDATE TO '1.1'" to load this file. \quit

-- The version of the loaded shared library, next to extversion.
CREATE FUNCTION ofs.library_version() RETURNS text
AS 'MODULE_PATHNAME', 'ofs_library_version' LANGUAGE C STABLE STRICT PARALLEL SAFE;
COMMENT ON FUNCTION ofs.library_version() IS
    'Version of the ofs shared library in use; extversion in pg_extension is the version of its SQL';

-- ofs.worker_stats() names devices in last_error: monitoring roles only.
REVOKE ALL ON FUNCTION ofs.worker_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ofs.worker_stats() TO pg_monitor;
COMMENT ON FUNCTION ofs.worker_stats() IS
    'Counters of the sync workers since PostgreSQL started (shared memory), and the last error; executable by pg_monitor';
GRANT SELECT ON ofs.stats TO pg_monitor;

-- A device may not act as a role that owns a synced table without FORCE ROW
-- LEVEL SECURITY: owners are exempt from its policies.
CREATE OR REPLACE FUNCTION ofs.create_device_token(role name, device text, valid_for interval DEFAULT NULL)
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

-- Every change of a device's token, role, revocation or expiry wakes the
-- sync workers at commit, which close the sessions it ends.
CREATE FUNCTION ofs.device_changed() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM ofs.notify_device_change();
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION ofs.device_changed() FROM PUBLIC;
CREATE TRIGGER device_changed AFTER INSERT OR UPDATE OF device, role, token_sha256, expires_at, revoked_at OR DELETE
    ON ofs.device FOR EACH STATEMENT EXECUTE FUNCTION ofs.device_changed();

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

-- A row is held by a device only once a cursor of the device is past the
-- page that sent it; pages are bounded by bytes in the sync worker.
ALTER TABLE ofs.device_row ADD COLUMN sent_page bigint;
CREATE INDEX device_row_sent ON ofs.device_row (device, sent_page) WHERE sent_page IS NOT NULL;
COMMENT ON COLUMN ofs.device_row.sent_page IS
    'The page that first sent the row: a row of a page after the device''s cursor never reached it, and is not held';

-- ofs.pull is C (src/pull.c, src/pull_feed.c).
CREATE OR REPLACE FUNCTION ofs.pull(device text, since text DEFAULT NULL, max_rows int DEFAULT 1000,
                         confirmed text DEFAULT NULL)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ofs_pull'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- ofs.pull_live is C (src/live_round.c): its PL/pgSQL type goes.
CREATE OR REPLACE FUNCTION ofs.pull_live(devices text[], cursors text[], confirmed text[], max_rows int DEFAULT 1000)
RETURNS TABLE (ord int, result jsonb)
AS 'MODULE_PATHNAME', 'ofs_pull_live'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
DROP TYPE ofs.live_dev;

-- Every C function's symbol now carries the prefix ofs_ (the library still
-- exports 1.0's bare names until this update has run; src/sql_compat.c).
CREATE OR REPLACE FUNCTION ofs.create_gapless_sequence(
    name text,
    format text DEFAULT '{n}',
    reset text DEFAULT 'never',
    start bigint DEFAULT 1,
    time_zone text DEFAULT 'UTC')
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_create_gapless_sequence'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.drop_gapless_sequence(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_drop_gapless_sequence'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.gapless_nextval(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_gapless_nextval'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.gapless_nextval(name text, at timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_gapless_nextval_at'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.gapless_next(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_gapless_next'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.gapless_next(name text, at timestamptz)
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_gapless_next_at'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.transition_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_transition_trigger'
LANGUAGE C;

CREATE OR REPLACE FUNCTION ofs.add_transition_constraint(
    tbl regclass, name text, col name, transitions text, initial text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_add_transition_constraint'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.drop_transition_constraint(tbl regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_drop_transition_constraint'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.add_transition_check(tbl regclass, name text, expr text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_add_transition_check'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.drop_transition_check(tbl regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_drop_transition_check'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.capture_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_capture_trigger'
LANGUAGE C;

CREATE OR REPLACE FUNCTION ofs.refuse_truncate()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_refuse_truncate'
LANGUAGE C;

CREATE OR REPLACE FUNCTION ofs.sync_table(tbl regclass, merge jsonb DEFAULT '{}')
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_sync_table'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.unsync_table(tbl regclass)
RETURNS void
AS 'MODULE_PATHNAME', 'ofs_unsync_table'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.rebuild_feed()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_rebuild_feed'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.hlc_now()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_hlc_now'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.feed_commits()
RETURNS bigint
AS 'MODULE_PATHNAME', 'ofs_feed_commits'
LANGUAGE C VOLATILE;


CREATE OR REPLACE FUNCTION ofs.notify_device_change()
RETURNS void AS 'MODULE_PATHNAME', 'ofs_notify_device_change' LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.notify_feed_change()
RETURNS void AS 'MODULE_PATHNAME', 'ofs_notify_feed_change' LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.clamp_hlc(hlc bigint)
RETURNS bigint AS 'MODULE_PATHNAME', 'ofs_clamp_hlc' LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION ofs.encode_row(anyelement)
RETURNS jsonb AS 'MODULE_PATHNAME', 'ofs_encode_row' LANGUAGE C STABLE STRICT;

CREATE OR REPLACE FUNCTION ofs.apply_one(device text, m jsonb, retry_of bigint DEFAULT NULL,
                              check_dependent boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ofs_apply_one'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.shape_filter(tbl regclass, filter text)
RETURNS text AS 'MODULE_PATHNAME', 'ofs_shape_filter'
LANGUAGE C STABLE;

CREATE OR REPLACE FUNCTION ofs.scope_rows(role oid, tbl oid, filter text, pks jsonb)
RETURNS TABLE (pk jsonb, "row" jsonb) AS 'MODULE_PATHNAME', 'ofs_scope_rows'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.scope_page(role oid, tbl oid, filter text, after jsonb, max_rows int)
RETURNS TABLE (pk jsonb, "row" jsonb) AS 'MODULE_PATHNAME', 'ofs_scope_page'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.scope_count(role oid, tbl oid, filter text)
RETURNS bigint AS 'MODULE_PATHNAME', 'ofs_scope_count'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.worker_stats(
    OUT connected_devices bigint, OUT sessions bigint, OUT messages_in bigint, OUT messages_out bigint,
    OUT bytes_in bigint, OUT bytes_out bigint, OUT mutations_applied bigint, OUT mutations_duplicate bigint,
    OUT mutations_rejected bigint, OUT conflicts bigint, OUT rows_sent bigint, OUT errors bigint,
    OUT last_error text, OUT last_error_at timestamptz)
AS 'MODULE_PATHNAME', 'ofs_worker_stats' LANGUAGE C VOLATILE;

-- The feed's cursors are made and checked in C (src/feed_cursor.c).
CREATE OR REPLACE FUNCTION ofs.cursor_parse(cursor text, OUT c pg_snapshot, OUT s pg_snapshot, OUT last_seq bigint)
AS 'MODULE_PATHNAME', 'ofs_cursor_parse'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.snapshot_text(snap pg_snapshot)
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_snapshot_text'
LANGUAGE C STABLE STRICT
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.feed_cursor()
RETURNS text
AS 'MODULE_PATHNAME', 'ofs_feed_cursor'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

-- ofs.apply_batch's loop is C (src/apply_batch.c).
CREATE OR REPLACE FUNCTION ofs.apply_batch(device text, mutations jsonb)
RETURNS TABLE (operation_id text, status text, sqlstate text, message text, hint jsonb)
AS 'MODULE_PATHNAME', 'ofs_apply_batch'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

-- A change that left the row exactly as its device sent it is not sent
-- back to that device (ofs.change_log.as_sent, ofs.changes' as_sent).
ALTER TABLE ofs.change_log ADD COLUMN as_sent boolean;
COMMENT ON COLUMN ofs.change_log.as_sent IS
    'The change left the row exactly as the device whose intent it applied sent it (that device holds it: it is not sent back); NULL for the origin''s own writes';
DROP FUNCTION ofs.changes(text, int);
CREATE FUNCTION ofs.changes(since text DEFAULT NULL, max_rows int DEFAULT 1000)
RETURNS TABLE (cursor text, table_name text, pk jsonb, op text, data jsonb,
               device text, operation_id text, hlc bigint, changed_columns text[], as_sent boolean)
AS 'MODULE_PATHNAME', 'ofs_changes'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.changes(text, int) IS
    'The changes feed: committed changes of synced tables after a cursor (NULL: from the beginning), at most max_rows; follow the cursor of the last row';
REVOKE ALL ON FUNCTION ofs.changes(text, int) FROM PUBLIC;
-- The live round is C (ofs.live_round): its PL/pgSQL types go.
DROP TYPE ofs.live_change, ofs.live_feed, ofs.live_vis, ofs.live_out;

-- Last in every upgrade script: at commit, the sync workers read the
-- installed version again (bgworker/sqlversion.c).
SELECT ofs.notify_device_change();
