-- ofs--1.0--1.1.sql: ALTER EXTENSION ofs UPDATE from 1.0 to 1.1.
--
-- Every change here is also in ofs--1.1.sql, the full script of 1.1, and
-- leaves the database object for object as CREATE EXTENSION ofs VERSION
-- '1.1' would (test/scripts/upgrade.sh compares the two).  The shared
-- library is installed before this runs, and serves 1.0 until it has.
\echo Use "ALTER EXTENSION ofs UPDATE TO '1.1'" to load this file. \quit

-- The version of the loaded shared library, next to extversion.
CREATE FUNCTION ofs.library_version() RETURNS text
AS 'MODULE_PATHNAME', 'library_version' LANGUAGE C STABLE STRICT PARALLEL SAFE;
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

-- Last in every upgrade script: at commit, the sync workers read the
-- installed version again (bgworker/sqlversion.c).
SELECT ofs.notify_device_change();
