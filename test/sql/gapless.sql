-- Gap-free sequences: API, formats, periods, rollbacks, errors, privileges.

-- err(sql): run a statement and show the error it raises, with its SQLSTATE,
-- detail and hint, so that every error path is checked exactly.
CREATE FUNCTION pg_temp.err(sql text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE st text; msg text; det text; hnt text;
BEGIN
  EXECUTE sql;
  RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
  GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                          det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
  RETURN st || ': ' || msg || coalesce(E'\nDETAIL: ' || nullif(det, ''), '')
            || coalesce(E'\nHINT: ' || nullif(hnt, ''), '');
END $$;

-- Defaults: '{n}', never reset, start 1.
SELECT ofs.create_gapless_sequence('plain');
SELECT ofs.gapless_nextval('plain'), ofs.gapless_nextval('plain'), ofs.gapless_next('plain');

-- A rolled-back transaction leaves no gap.
BEGIN;
SELECT ofs.gapless_nextval('plain');
ROLLBACK;
SELECT ofs.gapless_nextval('plain');

-- Neither does a rolled-back savepoint.
BEGIN;
SELECT ofs.gapless_nextval('plain');
SAVEPOINT s;
SELECT ofs.gapless_nextval('plain');
ROLLBACK TO SAVEPOINT s;
SELECT ofs.gapless_nextval('plain');
COMMIT;
SELECT value, formatted, period FROM ofs.gapless_issued WHERE sequence_name = 'plain' ORDER BY value;

-- Every token, a monthly reset, and the period decided by the given timestamp
-- in the sequence's time zone.
SELECT ofs.create_gapless_sequence('inv', 'INV-{YY}-{MM}-{n:5}', 'monthly');
SELECT ofs.gapless_next('inv', '2026-01-31 23:59:59+00');
SELECT ofs.gapless_next('inv', '2026-01-15 10:00:00+00');
SELECT ofs.gapless_next('inv', '2026-02-01 00:00:00+00');
SELECT ofs.gapless_next('inv', '2026-01-02 00:00:00+00');
SELECT ofs.create_gapless_sequence('day', '{YYYY}{MM}{DD}/{n:3}', 'daily', 100, 'Europe/Madrid');
SELECT ofs.gapless_next('day', '2026-04-16 22:30:00+00');  -- 00:30 on the 17th in Madrid
SELECT ofs.gapless_next('day', '2026-04-16 21:30:00+00');  -- 23:30 on the 16th in Madrid
SELECT ofs.gapless_next('day', '2026-04-17 08:00:00+00');
SELECT ofs.create_gapless_sequence('year', 'R{YYYY}-{n:2} {{x}}', 'yearly', 0);
SELECT ofs.gapless_next('year', '2025-06-01'), ofs.gapless_next('year', '2026-06-01');
-- A number wider than its width is printed whole.
SELECT ofs.create_gapless_sequence('narrow', 'N{n:1}', start => 9);
SELECT ofs.gapless_next('narrow'), ofs.gapless_next('narrow');

-- The period of the plain functions is that of the transaction timestamp.
SELECT ofs.gapless_nextval('inv') = 1 AS first_of_this_month;
SELECT period = to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM') AS period_of_now
  FROM ofs.gapless_issued WHERE sequence_name = 'inv' ORDER BY issued_at DESC LIMIT 1;

SELECT name, format, reset, start_value, time_zone, periods, last_period, last_value
  FROM ofs.gapless_sequences WHERE name <> 'inv' ORDER BY name;
SELECT sequence_name, period, value, formatted FROM ofs.gapless_issued
 WHERE sequence_name IN ('inv', 'day', 'year') AND issued_at < '2026-03-01'
 ORDER BY sequence_name, period, value;
-- The audit names the issuing transaction: 5 and 6 were committed together.
SELECT count(DISTINCT xid) AS transactions FROM ofs.gapless_issued
 WHERE sequence_name = 'plain' AND value IN (5, 6);

-- Bad input: every error has a SQLSTATE, a detail or hint, and changes nothing.
SELECT pg_temp.err($$SELECT ofs.gapless_nextval('nosuch')$$);
SELECT pg_temp.err($$SELECT ofs.gapless_next('nosuch', now())$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('plain')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b1', 'X-{Q}-{n}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b2', 'X-{n:0}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b3', 'X-{n:20}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b4', 'X-{n:5a}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b5', 'X-{n:99999999999999999999}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b6', 'X-{n')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b7', 'X}-{n}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b8', 'X-{YYYY}')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b9', '{n}', 'weekly')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b10', '{YYYY}-{n}', 'monthly')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b11', '{n}', 'yearly')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b12', '{YY}{MM}-{n}', 'daily')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b13', start => -1)$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b14', time_zone => 'Mars/Olympus')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence(NULL)$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b15', NULL)$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('b16', start => NULL)$$);
SELECT pg_temp.err($$SELECT ofs.drop_gapless_sequence('nosuch')$$);
SELECT count(*) AS sequences_after_errors FROM ofs.gapless_sequences;

-- Drop removes the counters but keeps the audit; a new sequence of the same
-- name starts again without colliding with the old audit rows.
SELECT ofs.drop_gapless_sequence('plain');
SELECT count(*) AS counters_left FROM ofs.gapless_counter k
 WHERE NOT EXISTS (SELECT 1 FROM ofs.gapless_sequence_config c WHERE c.id = k.sequence_id);
SELECT ofs.create_gapless_sequence('plain', 'P{n}');
SELECT ofs.gapless_next('plain');
SELECT value, formatted FROM ofs.gapless_issued WHERE sequence_name = 'plain' ORDER BY sequence_id, value;

-- Privileges: taking numbers needs EXECUTE, and EXECUTE is enough.
CREATE ROLE gapless_clerk;
SET ROLE gapless_clerk;
SELECT pg_temp.err($$SELECT ofs.gapless_next('plain')$$);
SELECT pg_temp.err($$SELECT ofs.create_gapless_sequence('clerks')$$);
SELECT pg_temp.err($$UPDATE ofs.gapless_counter SET last_value = 0$$);
RESET ROLE;
GRANT EXECUTE ON FUNCTION ofs.gapless_next(text) TO gapless_clerk;
SET ROLE gapless_clerk;
SELECT ofs.gapless_next('plain');
SELECT count(*) > 0 AS clerk_reads_audit FROM ofs.gapless_issued;
RESET ROLE;
REVOKE EXECUTE ON FUNCTION ofs.gapless_next(text) FROM gapless_clerk;
DROP ROLE gapless_clerk;

-- The configuration tables are dumped with the data (pg_dump keeps counters).
SELECT c AS dumped FROM pg_extension, unnest(extconfig::regclass[]) AS c
 WHERE extname = 'ofs' AND c::text LIKE 'ofs.gapless%' ORDER BY 1;
