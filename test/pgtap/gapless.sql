-- pgTAP: gap-free numbering as an invoice table uses it, with a trigger that
-- numbers rows as late as possible (BEFORE INSERT) in monthly periods.
BEGIN;
SELECT plan(9);

SELECT ofs.create_gapless_sequence('tap_inv', 'INV-{YY}-{MM}-{n:5}', 'monthly');
CREATE TABLE tap_invoice (id serial PRIMARY KEY, issued_on timestamptz NOT NULL, number text);
CREATE FUNCTION tap_number() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.number := ofs.gapless_next('tap_inv', NEW.issued_on);
  RETURN NEW;
END $$;
CREATE TRIGGER tap_number BEFORE INSERT ON tap_invoice FOR EACH ROW EXECUTE FUNCTION tap_number();

INSERT INTO tap_invoice (issued_on) VALUES ('2026-03-01'), ('2026-03-02');
SAVEPOINT before_bad_row;
INSERT INTO tap_invoice (issued_on) VALUES ('2026-03-03');
ROLLBACK TO SAVEPOINT before_bad_row;
INSERT INTO tap_invoice (issued_on) VALUES ('2026-03-04'), ('2026-04-01');

SELECT results_eq(
  $$SELECT number FROM tap_invoice ORDER BY id$$,
  ARRAY['INV-26-03-00001', 'INV-26-03-00002', 'INV-26-03-00003', 'INV-26-04-00001'],
  'numbers are consecutive per month across a rolled-back savepoint');
SELECT results_eq(
  $$SELECT formatted FROM ofs.gapless_issued WHERE sequence_name = 'tap_inv' ORDER BY period, value$$,
  $$SELECT number FROM tap_invoice ORDER BY issued_on$$,
  'the audit holds exactly the numbers the table holds');
SELECT is(
  (SELECT last_value FROM ofs.gapless_sequences WHERE name = 'tap_inv'), 1::bigint,
  'the view shows the last value of the latest period');
SELECT throws_ok(
  $$SELECT ofs.gapless_next('tap_nosuch')$$, '42704',
  'gap-free sequence "tap_nosuch" does not exist',
  'an unknown sequence is an undefined_object error');
SELECT throws_ok(
  $$SELECT ofs.create_gapless_sequence('tap_bad', 'X{n}{MM}', 'monthly')$$, '22023',
  NULL, 'a monthly sequence must show the year');
SELECT throws_ok(
  $$SELECT ofs.create_gapless_sequence('tap_inv')$$, '42710',
  NULL, 'names are unique');
SELECT has_function('ofs', 'gapless_nextval', ARRAY['text'], 'gapless_nextval(text) exists');
SELECT has_function('ofs', 'gapless_next', ARRAY['text', 'timestamp with time zone'],
  'gapless_next(text, timestamptz) exists');
SELECT function_privs_are('ofs', 'gapless_next', ARRAY['text'], 'public', ARRAY[]::text[],
  'PUBLIC may not take numbers');

SELECT * FROM finish();
ROLLBACK;
