-- ofs--1.0.sql: the objects of CREATE EXTENSION ofs, in schema ofs.
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
AS 'MODULE_PATHNAME', 'create_gapless_sequence'
LANGUAGE C VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.create_gapless_sequence(text, text, text, bigint, text) IS
    'Create a gap-free sequence: format tokens {YYYY} {YY} {MM} {DD} {n} {n:W}; reset never, yearly, monthly or daily in the given time zone';

CREATE FUNCTION ofs.drop_gapless_sequence(name text)
RETURNS void
AS 'MODULE_PATHNAME', 'drop_gapless_sequence'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.drop_gapless_sequence(text) IS
    'Drop a gap-free sequence and its counters; the numbers it issued stay in ofs.gapless_issued';

CREATE FUNCTION ofs.gapless_nextval(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'gapless_nextval'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_nextval(text) IS
    'Take the next number of a gap-free sequence in the period of the transaction timestamp; the row lock is held until commit, so call it late';

CREATE FUNCTION ofs.gapless_nextval(name text, at timestamptz)
RETURNS bigint
AS 'MODULE_PATHNAME', 'gapless_nextval_at'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_nextval(text, timestamptz) IS
    'Take the next number of a gap-free sequence in the period that contains the given timestamp';

CREATE FUNCTION ofs.gapless_next(name text)
RETURNS text
AS 'MODULE_PATHNAME', 'gapless_next'
LANGUAGE C VOLATILE STRICT SECURITY DEFINER
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.gapless_next(text) IS
    'Take the next number of a gap-free sequence and return it formatted';

CREATE FUNCTION ofs.gapless_next(name text, at timestamptz)
RETURNS text
AS 'MODULE_PATHNAME', 'gapless_next_at'
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
GRANT SELECT ON ofs.gapless_sequences, ofs.gapless_issued TO PUBLIC;
