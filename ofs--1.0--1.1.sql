-- ofs--1.0--1.1.sql: ALTER EXTENSION ofs UPDATE from 1.0 to 1.1.
--
-- Every change here is also in ofs--1.1.sql, the full script of 1.1, and
-- leaves the database object for object as CREATE EXTENSION ofs VERSION
-- '1.1' would (test/scripts/upgrade.sh compares the two).  The shared
-- library is installed before this runs, and serves 1.0 until it has.
\echo Use "ALTER EXTENSION ofs UPDATE TO '1.1'" to load this file. \quit

-- Internal functions move to a schema of their own (ofs_internal); the
-- API stays in ofs.
CREATE SCHEMA ofs_internal;
GRANT USAGE ON SCHEMA ofs_internal TO PUBLIC;
COMMENT ON SCHEMA ofs_internal IS
    'ofs''s internal functions (triggers, the write path''s and the sync engine''s helpers): not an API; the API is schema ofs';
ALTER FUNCTION ofs.transition_trigger() SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.capture_trigger() SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.refuse_truncate() SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.cursor_parse(text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.snapshot_text(pg_snapshot) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.notify_feed_change() SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.clamp_hlc(bigint) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.row_versions(oid, jsonb) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.decode_json_columns(regclass, jsonb) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.compensation(name, regclass, jsonb, jsonb, text, text, text, text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.reject_mutation(text, text, regclass, text, jsonb, jsonb, text, text, text, text, name, text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.apply_one(text, jsonb, bigint, boolean) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.resolve_table(text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.refeed_row(text, jsonb) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.forget_dropped_rules() SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.forget_device_rows() SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.scope_rows(oid, oid, text, jsonb) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.scope_page(oid, oid, text, jsonb, int) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.scope_count(oid, oid, text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.table_name(oid) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.shape_condition(text[]) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.device_check(text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.shape_table(name, text) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.hello(text, jsonb) SET SCHEMA ofs_internal;
ALTER FUNCTION ofs.pull_live(text[], text[], text[], int) SET SCHEMA ofs_internal;

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

-- ofs_internal.pull_live is C (src/live_round.c): its PL/pgSQL type goes.
CREATE OR REPLACE FUNCTION ofs_internal.pull_live(devices text[], cursors text[], confirmed text[], max_rows int DEFAULT 1000)
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

CREATE OR REPLACE FUNCTION ofs_internal.transition_trigger()
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

CREATE OR REPLACE FUNCTION ofs_internal.capture_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'ofs_capture_trigger'
LANGUAGE C;

CREATE OR REPLACE FUNCTION ofs_internal.refuse_truncate()
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

CREATE OR REPLACE FUNCTION ofs_internal.notify_feed_change()
RETURNS void AS 'MODULE_PATHNAME', 'ofs_notify_feed_change' LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs_internal.clamp_hlc(hlc bigint)
RETURNS bigint AS 'MODULE_PATHNAME', 'ofs_clamp_hlc' LANGUAGE C VOLATILE STRICT;

CREATE OR REPLACE FUNCTION ofs.encode_row(anyelement)
RETURNS jsonb AS 'MODULE_PATHNAME', 'ofs_encode_row' LANGUAGE C STABLE STRICT;

CREATE OR REPLACE FUNCTION ofs_internal.apply_one(device text, m jsonb, retry_of bigint DEFAULT NULL,
                              check_dependent boolean DEFAULT true)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'ofs_apply_one'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs.shape_filter(tbl regclass, filter text)
RETURNS text AS 'MODULE_PATHNAME', 'ofs_shape_filter'
LANGUAGE C STABLE;

CREATE OR REPLACE FUNCTION ofs_internal.scope_rows(role oid, tbl oid, filter text, pks jsonb)
RETURNS TABLE (pk jsonb, "row" jsonb) AS 'MODULE_PATHNAME', 'ofs_scope_rows'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs_internal.scope_page(role oid, tbl oid, filter text, after jsonb, max_rows int)
RETURNS TABLE (pk jsonb, "row" jsonb) AS 'MODULE_PATHNAME', 'ofs_scope_page'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs_internal.scope_count(role oid, tbl oid, filter text)
RETURNS bigint AS 'MODULE_PATHNAME', 'ofs_scope_count'
LANGUAGE C VOLATILE;

CREATE OR REPLACE FUNCTION ofs.worker_stats(
    OUT connected_devices bigint, OUT sessions bigint, OUT messages_in bigint, OUT messages_out bigint,
    OUT bytes_in bigint, OUT bytes_out bigint, OUT mutations_applied bigint, OUT mutations_duplicate bigint,
    OUT mutations_rejected bigint, OUT conflicts bigint, OUT rows_sent bigint, OUT errors bigint,
    OUT last_error text, OUT last_error_at timestamptz)
AS 'MODULE_PATHNAME', 'ofs_worker_stats' LANGUAGE C VOLATILE;

-- The feed's cursors are made and checked in C (src/feed_cursor.c).
CREATE OR REPLACE FUNCTION ofs_internal.cursor_parse(cursor text, OUT c pg_snapshot, OUT s pg_snapshot, OUT last_seq bigint)
AS 'MODULE_PATHNAME', 'ofs_cursor_parse'
LANGUAGE C STABLE
SET search_path = pg_catalog, pg_temp;

CREATE OR REPLACE FUNCTION ofs_internal.snapshot_text(snap pg_snapshot)
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

-- Functions whose bodies name the internal functions where they now are.
CREATE OR REPLACE FUNCTION ofs.compact_changes(retain interval DEFAULT '7 days',
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

DROP FUNCTION ofs_internal.reject_mutation(text, text, regclass, text, jsonb, jsonb, text, text, text, text, name, text);
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

CREATE OR REPLACE FUNCTION ofs_internal.refeed_row(tbl text, pk jsonb)
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

CREATE OR REPLACE FUNCTION ofs.retry_dead_letter(id bigint)
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

CREATE OR REPLACE FUNCTION ofs.resolve_conflict(id bigint, take text DEFAULT 'origin', value jsonb DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION ofs_internal.shape_table(role name, tbl text)
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

CREATE OR REPLACE FUNCTION ofs.subscribe(device text, tbl text, filter text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION ofs.unsubscribe(device text, tbl text, filter text DEFAULT NULL)
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

CREATE OR REPLACE FUNCTION ofs.set_subscriptions(device text, subs jsonb)
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

DROP FUNCTION ofs.device_schema(text);
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

CREATE OR REPLACE FUNCTION ofs_internal.hello(token text, subscriptions jsonb DEFAULT NULL)
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

-- Clocks: how far ahead a device's clock ran; rejections the device sees.
ALTER TABLE ofs.device ADD COLUMN clock_ahead_ms bigint, ADD COLUMN clock_ahead_at timestamptz,
    ADD COLUMN rejections_version bigint NOT NULL DEFAULT 0, ADD COLUMN confirmed_page bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN ofs.device.confirmed_page IS
    'The newest page the device confirmed (sent back a cursor of): it may not pull from an older cursor';
COMMENT ON COLUMN ofs.device.clock_ahead_ms IS
    'How far ahead of the origin''s wall clock (ms) the device''s clock last was when it passed ofs.max_clock_skew';
COMMENT ON COLUMN ofs.device.rejections_version IS
    'Moves whenever a dead letter or conflict of the device is made, closed or cleared (the device compares it)';
CREATE OR REPLACE VIEW ofs.devices AS
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
ALTER TABLE ofs.dead_letters ADD COLUMN grp text, ADD COLUMN device_cleared_at timestamptz;
COMMENT ON COLUMN ofs.dead_letters.grp IS
    'The atomic group of the mutation (its push''s "group"); a retry retries the group''s open dead letters together';
COMMENT ON COLUMN ofs.dead_letters.device_cleared_at IS
    'When the device cleared the closed dead letter from its list (PROTOCOL.md, "rejections")';
ALTER TABLE ofs.conflicts ADD COLUMN device_cleared_at timestamptz;
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

CREATE OR REPLACE FUNCTION ofs_internal.compensation(role name, tbl regclass, pk jsonb, data jsonb,
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
REVOKE ALL ON FUNCTION ofs.device_schema(text, boolean) FROM PUBLIC;
REVOKE ALL ON FUNCTION ofs_internal.reject_mutation(text, text, regclass, text, jsonb, jsonb, text, text, text, text, name, text, jsonb) FROM PUBLIC;

COMMENT ON FUNCTION ofs.retry_dead_letter(bigint) IS
    'Apply a dead letter''s mutation again (e.g. after a role was granted), with the other open dead letters of its atomic group; a new rejection opens a new dead letter';

CREATE OR REPLACE FUNCTION ofs.discard_dead_letter(id bigint)
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

-- Last in every upgrade script: at commit, the sync workers read the
-- installed version again (bgworker/sqlversion.c).
SELECT ofs.notify_device_change();
