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

-- Last in every upgrade script: at commit, the sync workers read the
-- installed version again (bgworker/sqlversion.c).
SELECT ofs.notify_device_change();
