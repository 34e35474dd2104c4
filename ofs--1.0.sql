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

CREATE FUNCTION ofs.transition_trigger()
RETURNS trigger
AS 'MODULE_PATHNAME', 'transition_trigger'
LANGUAGE C;
COMMENT ON FUNCTION ofs.transition_trigger() IS
    'Enforces the transition constraints and checks of a table on the final row (an AFTER ROW trigger) and writes ofs.transition_log';

CREATE FUNCTION ofs.add_transition_constraint(
    tbl regclass, name text, col name, transitions text, initial text[] DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'add_transition_constraint'
LANGUAGE C VOLATILE
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.add_transition_constraint(regclass, text, name, text, text[]) IS
    'Constrain the changes of a column to the edges of a transition list: ''from'' -> ''to'' [BY ROLE ''role''], ...; with initial, inserts must use one of those values';

CREATE FUNCTION ofs.drop_transition_constraint(tbl regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'drop_transition_constraint'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.drop_transition_constraint(regclass, text) IS
    'Drop a transition constraint';

CREATE FUNCTION ofs.add_transition_check(tbl regclass, name text, expr text)
RETURNS void
AS 'MODULE_PATHNAME', 'add_transition_check'
LANGUAGE C VOLATILE STRICT
SET search_path = pg_catalog, pg_temp;
COMMENT ON FUNCTION ofs.add_transition_check(regclass, text, text) IS
    'Check a boolean expression over OLD and NEW on every UPDATE of a table; NULL passes, as in CHECK constraints';

CREATE FUNCTION ofs.drop_transition_check(tbl regclass, name text)
RETURNS void
AS 'MODULE_PATHNAME', 'drop_transition_check'
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

-- Rules of a dropped table or column go with it.
CREATE FUNCTION ofs.forget_dropped_rules()
RETURNS event_trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM ofs.transition_constraint_def d
   WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = d.tbl AND a.attname = d.col AND NOT a.attisdropped);
  DELETE FROM ofs.transition_check_def c
   WHERE NOT EXISTS (SELECT 1 FROM pg_class r WHERE r.oid = c.tbl);
END $$;
CREATE EVENT TRIGGER ofs_forget_dropped_rules ON sql_drop
    EXECUTE FUNCTION ofs.forget_dropped_rules();
