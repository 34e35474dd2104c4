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

-- A row is held by a device only once a cursor of the device confirms the
-- page that sent it; pages are bounded by bytes in the sync worker.
ALTER TABLE ofs.device_row ADD COLUMN sent_page bigint;
CREATE INDEX device_row_sent ON ofs.device_row (device, sent_page) WHERE sent_page IS NOT NULL;
COMMENT ON COLUMN ofs.device_row.sent_page IS
    'The page that first sent the row, until a cursor of the device confirms it: a row of a page never delivered is not held';
-- ofs.pull_feed: the feed part of a pull, in C (src/pull_feed.c): the
-- changes after a feed cursor as the device must get them, at most room.
CREATE FUNCTION ofs.pull_feed(device text, role oid, since text, room int, gen bigint, page bigint,
                              OUT changes jsonb[], OUT cursor text, OUT feed_more boolean)
AS 'MODULE_PATHNAME', 'ofs_pull_feed'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION ofs.pull_feed(text, oid, text, int, bigint, bigint) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ofs.pull(device text, since text DEFAULT NULL, max_rows int DEFAULT 1000,
                         confirmed text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  dev ofs.device := ofs.device_check(device);
  roleid oid;
  cur jsonb;
  next_cursor text;
  feedc text;
  v bigint := 0;
  since_page bigint := 0;
  conf_page bigint;
  new_page bigint;
  snaps jsonb := '[]';
  snap jsonb;
  t oid;
  g bigint;
  cond text;
  fs text[];
  out jsonb[] := '{}';
  room int;
  cnt int;
  want int;
  last_pk jsonb;
  resnap boolean := false;
  more boolean := false;
  progress jsonb;
  r record;
  f_out jsonb[];
  tname text;
  feed_more boolean;
BEGIN
  IF max_rows IS NULL OR max_rows < 1 THEN
    RAISE EXCEPTION 'max_rows must be at least 1' USING ERRCODE = 'invalid_parameter_value';
  END IF;
  room := least(max_rows, 1000);
  roleid := (SELECT oid FROM pg_roles WHERE rolname = dev.role);
  -- The pulls of one device happen one at a time.
  PERFORM pg_advisory_xact_lock(hashtext('ofs.pull'), hashtext(dev.device));
  SELECT * INTO dev FROM ofs.device d WHERE d.device = dev.device;
  new_page := dev.page_seq + 1;
  -- Tables the device may no longer read (unsynced, dropped, SELECT
  -- revoked) lose their shapes: the snapshot below removes their rows.
  UPDATE ofs.device_shape s SET filters = '{}', version = nextval('ofs.shape_version')
   WHERE s.device = dev.device AND cardinality(s.filters) > 0
     AND (NOT EXISTS (SELECT 1 FROM ofs.synced_table st WHERE st.tbl = s.tbl)
          OR coalesce(NOT has_table_privilege(roleid, s.tbl, 'SELECT'), true));

  IF since IS NULL THEN
    resnap := true;
  ELSE
    BEGIN
      cur := since::jsonb;
      feedc := cur->>'f';
      v := (cur->>'v')::bigint;
      since_page := (cur->>'p')::bigint;
      snaps := cur->'s';
      IF feedc IS NULL OR v IS NULL OR since_page IS NULL OR jsonb_typeof(snaps) IS DISTINCT FROM 'array'
         OR EXISTS (SELECT 1 FROM jsonb_array_elements(snaps) e
                     WHERE jsonb_typeof(e) IS DISTINCT FROM 'object'
                        OR coalesce(e->>'t', '') !~ '^[0-9]+$' OR coalesce(e->>'g', '') !~ '^[0-9]+$') THEN
        RAISE EXCEPTION USING ERRCODE = 'invalid_text_representation';
      END IF;
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range
                   OR invalid_parameter_value OR datatype_mismatch THEN
      RAISE EXCEPTION 'invalid pull cursor'
        USING ERRCODE = 'invalid_parameter_value',
              DETAIL = 'A cursor is the opaque text of a "changes" answer.',
              HINT = 'Send the cursor of the last changes the device applied, or none to start afresh.';
    END;
    BEGIN
      PERFORM ofs.cursor_parse(feedc);
    EXCEPTION WHEN SQLSTATE 'OF010' THEN
      resnap := true;
    END;
  END IF;

  IF resnap THEN
    -- Everything afresh: every table of the device, from the feed's present.
    feedc := ofs.feed_cursor();
    v := nextval('ofs.shape_version');
    snaps := (SELECT coalesce(jsonb_agg(jsonb_build_object('t', s.tbl, 'g', v) ORDER BY s.tbl), '[]')
                FROM ofs.device_shape s WHERE s.device = dev.device);
  ELSE
    -- Tables whose shapes changed since the cursor are snapshot anew.
    FOR r IN SELECT s.tbl, s.version FROM ofs.device_shape s
              WHERE s.device = dev.device AND s.version > v ORDER BY s.version LOOP
      snaps := (SELECT coalesce(jsonb_agg(e), '[]') FROM jsonb_array_elements(snaps) e
                 WHERE (e->>'t')::oid <> r.tbl)
               || jsonb_build_array(jsonb_build_object('t', r.tbl, 'g', r.version));
      v := greatest(v, r.version);
    END LOOP;
  END IF;

  -- Removals the device confirmed are forgotten; removals sent after its
  -- cursor may have been lost with the connection, and are sent again.
  conf_page := since_page;
  IF confirmed IS NOT NULL THEN
    BEGIN
      conf_page := least(since_page, (confirmed::jsonb->>'p')::bigint);
    EXCEPTION WHEN invalid_text_representation OR numeric_value_out_of_range THEN
      conf_page := 0;
    END;
  END IF;
  DELETE FROM ofs.device_row d WHERE d.device = dev.device AND d.gone_page <= coalesce(conf_page, 0);
  -- Rows first sent in a page after the cursor never reached the device:
  -- it does not hold them.  Those of pages it confirmed it holds.
  IF since IS NOT NULL AND NOT resnap THEN
    DELETE FROM ofs.device_row d WHERE d.device = dev.device AND d.sent_page > since_page;
  END IF;
  UPDATE ofs.device_row d SET sent_page = NULL
   WHERE d.device = dev.device AND d.sent_page <= coalesce(conf_page, 0);
  -- Removals owed are marked with the largest page number until a page
  -- carries them: one that does not fit in this page stays owed.
  UPDATE ofs.device_row d SET gone_page = 9223372036854775807
   WHERE d.device = dev.device AND d.gone_page > since_page AND d.gone_page < 9223372036854775807;
  FOR r IN SELECT d.tbl, d.pk FROM ofs.device_row d
            WHERE d.device = dev.device AND d.gone_page = 9223372036854775807
            ORDER BY d.tbl, d.pk LIMIT room + 1 LOOP
    IF cardinality(out) >= room THEN
      more := true;
      EXIT;
    END IF;
    out := out || jsonb_build_object('table', ofs.table_name(r.tbl), 'op', 'delete', 'pk', r.pk);
    UPDATE ofs.device_row d SET gone_page = new_page
     WHERE d.device = dev.device AND d.tbl = r.tbl AND d.pk = r.pk;
  END LOOP;

  -- Snapshots first: each table's rows in scope in key order, then the
  -- removal of the rows of older generations not sent again.
  WHILE cardinality(out) < room AND jsonb_array_length(snaps) > 0 LOOP
    snap := snaps->0;
    t := (snap->>'t')::oid;
    g := (snap->>'g')::bigint;
    SELECT s.filters INTO fs FROM ofs.device_shape s WHERE s.device = dev.device AND s.tbl = t;
    IF NOT EXISTS (SELECT 1 FROM ofs.synced_table st WHERE st.tbl = t) THEN
      fs := '{}';
    END IF;
    cond := ofs.shape_condition(coalesce(fs, '{}'));
    tname := ofs.table_name(t);
    IF NOT coalesce((snap->>'stale')::boolean, false) THEN
      IF cond = 'FALSE' THEN
        snap := snap || '{"stale": true}';
      ELSE
        IF NOT snap ? 'n' THEN
          snap := snap || jsonb_build_object('n', ofs.scope_count(roleid, t, cond), 'd', 0);
        END IF;
        want := room - cardinality(out);
        -- One statement per page: the rows, and the device holding them.
        WITH p AS MATERIALIZED (
               SELECT * FROM ofs.scope_page(roleid, t, cond, snap->'a', want) WITH ORDINALITY AS x(pk, "row", ord)),
             held AS (
               INSERT INTO ofs.device_row AS d (device, tbl, pk, gen, sent_page)
               SELECT dev.device, t, p.pk, g, new_page FROM p
               ON CONFLICT ON CONSTRAINT device_row_pkey DO UPDATE SET gen = EXCLUDED.gen, gone_page = NULL)
        SELECT out || coalesce(array_agg(jsonb_build_object('table', tname, 'op', 'upsert',
                                                            'pk', p.pk, 'row', p."row") ORDER BY p.ord), '{}'),
               count(*), (array_agg(p.pk ORDER BY p.ord DESC))[1]
          INTO out, cnt, last_pk
          FROM p;
        snap := snap || jsonb_build_object('d', (snap->>'d')::bigint + cnt);
        IF cnt < want THEN
          snap := (snap - 'a') || '{"stale": true}';
        ELSE
          snap := snap || jsonb_build_object('a', last_pk);
        END IF;
        progress := jsonb_build_object('table', ofs.table_name(t), 'rows_done', snap->'d',
                                       'rows_total', greatest((snap->>'n')::bigint, (snap->>'d')::bigint));
      END IF;
    END IF;
    IF (snap->>'stale')::boolean AND cardinality(out) < room THEN
      want := room - cardinality(out);
      cnt := 0;
      FOR r IN SELECT d.pk FROM ofs.device_row d
                WHERE d.device = dev.device AND d.tbl = t AND d.gen < g AND d.gone_page IS NULL
                ORDER BY d.pk LIMIT want LOOP
        out := out || jsonb_build_object('table', ofs.table_name(t), 'op', 'delete', 'pk', r.pk);
        UPDATE ofs.device_row d SET gone_page = new_page
         WHERE d.device = dev.device AND d.tbl = t AND d.pk = r.pk;
        cnt := cnt + 1;
      END LOOP;
      IF cnt < want THEN
        snaps := snaps - 0;
        CONTINUE;
      END IF;
    END IF;
    snaps := jsonb_set(snaps, '{0}', snap);
  END LOOP;
  more := more OR jsonb_array_length(snaps) > 0;

  -- Then the feed (C, ofs.pull_feed): each change of a subscribed table
  -- becomes the row as the role sees it now (an upsert), the removal of a
  -- row the device holds, or nothing (its own row, left as it sent it).
  feed_more := NOT more;
  IF feed_more AND cardinality(out) < room THEN
    SELECT f.changes, f.cursor, f.feed_more INTO f_out, feedc, feed_more
      FROM ofs.pull_feed(dev.device, roleid, feedc, room - cardinality(out), v, new_page) f;
    out := out || f_out;
  END IF;
  -- Still true here: the page filled up before the feed ran dry.
  more := more OR feed_more;

  IF cardinality(out) > 0 THEN
    since_page := new_page;
  END IF;
  next_cursor := jsonb_build_object('f', feedc, 'v', v, 'p', since_page, 's', snaps)::text;
  UPDATE ofs.device d
     SET page_seq = greatest(d.page_seq, since_page), last_contact = now(), last_cursor = next_cursor,
         caught_up_at = CASE WHEN more THEN d.caught_up_at ELSE now() END
   WHERE d.device = dev.device;
  RETURN jsonb_build_object('cursor', next_cursor, 'changes', to_jsonb(out), 'more', more)
         || CASE WHEN progress IS NULL THEN '{}' ELSE jsonb_build_object('snapshot', progress) END;
END $$;

-- ofs.live_round: the round of the fast devices, in C (src/live_round.c):
-- the feed once per cursor, rows once per (role, table, shape), each
-- device's share by the rule every pull uses; slow: pull for it one by one.
CREATE FUNCTION ofs.live_round(devs ofs.live_dev[], room int)
RETURNS TABLE (ord int, result jsonb, slow boolean)
AS 'MODULE_PATHNAME', 'ofs_live_round'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
REVOKE ALL ON FUNCTION ofs.live_round(ofs.live_dev[], int) FROM PUBLIC;

CREATE OR REPLACE FUNCTION ofs.pull_live(devices text[], cursors text[], confirmed text[], max_rows int DEFAULT 1000)
RETURNS TABLE (ord int, result jsonb) LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  r record;
  d record;
  room int := least(greatest(max_rows, 1), 1000);
  devs ofs.live_dev[];
  slow int[] := '{}';
BEGIN
  -- The pulls of one device happen one at a time (in key order: no deadlock).
  PERFORM pg_advisory_xact_lock(hashtext('ofs.pull'), hashtext(x))
     FROM (SELECT DISTINCT unnest(devices) AS x ORDER BY 1) u;

  devs := ARRAY(
    SELECT ROW(a.i, a.device, ro.oid, c->>'f', (c->>'v')::bigint, (c->>'p')::bigint,
               coalesce(least((c->>'p')::bigint, (nullif(a.confirmed, '')::jsonb->>'p')::bigint), (c->>'p')::bigint),
               dv.page_seq + 1,
               jsonb_array_length(c->'s') = 0
                 AND (c->>'v')::bigint >= coalesce((SELECT max(s.version) FROM ofs.device_shape s WHERE s.device = a.device), 0)
                 AND NOT EXISTS (SELECT 1 FROM ofs.device_row h
                                  WHERE h.device = a.device AND h.gone_page > (c->>'p')::bigint)
                 AND NOT EXISTS (SELECT 1 FROM ofs.device_row h
                                  WHERE h.device = a.device AND h.sent_page > (c->>'p')::bigint))::ofs.live_dev
      FROM unnest(devices, cursors, confirmed) WITH ORDINALITY AS a(device, since, confirmed, i)
      JOIN ofs.device dv ON dv.device = a.device
                        AND dv.revoked_at IS NULL AND coalesce(dv.expires_at > now(), true)
      JOIN pg_roles ro ON ro.rolname = dv.role
      CROSS JOIN LATERAL (SELECT CASE WHEN a.since IS NULL OR a.since !~ '^\{.*\}$' THEN NULL
                                      ELSE a.since::jsonb END AS c) cc
     WHERE cc.c IS NOT NULL AND jsonb_typeof(cc.c->'s') = 'array' AND cc.c->>'f' IS NOT NULL
       AND cc.c->>'v' ~ '^[0-9]+$' AND cc.c->>'p' ~ '^[0-9]+$');

  -- The fast devices' round is C (ofs.live_round); those it sends back go
  -- the slow way below, with the devices that were not fast.
  FOR r IN SELECT * FROM ofs.live_round(devs, room) x LOOP
    IF r.slow THEN
      slow := slow || r.ord;
    ELSE
      ord := r.ord;
      result := r.result;
      RETURN NEXT;
    END IF;
  END LOOP;

  -- The rest, one by one.
  FOR d IN SELECT a.i, a.device, a.since, a.confirmed
             FROM unnest(devices, cursors, confirmed) WITH ORDINALITY AS a(device, since, confirmed, i)
             LEFT JOIN unnest(devs) l ON l.ord = a.i AND l.fast
            WHERE l.ord IS NULL OR a.i = ANY (slow) LOOP
    BEGIN
      ord := d.i;
      result := ofs.pull(d.device, d.since, room, d.confirmed);
      RETURN NEXT;
    EXCEPTION WHEN OTHERS THEN
      ord := d.i;
      result := jsonb_build_object('error', SQLERRM, 'sqlstate', SQLSTATE);
      RETURN NEXT;
    END;
  END LOOP;
END $$;

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
