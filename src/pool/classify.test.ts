import { describe, expect, it } from 'vitest';
import { classifySql } from './classify.js';

const kind = (sql: string, fns?: string[]) => classifySql(sql, fns ? new Set(fns) : undefined).kind;

describe('classifySql: examples', () => {
  it.each([
    'SELECT 1',
    'select * from users where id = $1',
    '  \n\t SELECT id FROM t',
    '-- comment\nSELECT 1',
    '/* a /* nested */ comment */ SELECT 1',
    'SELECT \'DELETE FROM t\', "update" FROM t',
    'SELECT $$ INSERT INTO t VALUES (1) $$',
    'SELECT $fn$ UPDATE t SET a = 1 $fn$ AS body',
    "SELECT E'it\\'s; DELETE' AS s",
    'SELECT count(*), lower(name), coalesce(a, b) FROM t GROUP BY 2',
    'SELECT count(*) FILTER (WHERE x > 1) OVER (PARTITION BY y ORDER BY z) FROM t',
    'SELECT x FROM t WHERE id IN (SELECT id FROM u) AND EXISTS (SELECT 1 FROM v)',
    'SELECT * FROM generate_series(1, 3) AS g(n)',
    'SELECT * FROM unnest(ARRAY[1, 2]) u(x)',
    "SELECT a::varchar(10), b::numeric(10, 2), now() - interval '1 day' FROM t",
    'WITH RECURSIVE r(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM r WHERE n < 9) SELECT sum(n) FROM r',
    'WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b',
    '(SELECT 1) UNION ALL (SELECT 2)',
    'VALUES (1, 2), (3, 4)',
    'TABLE users',
    'SHOW statement_timeout',
    'EXPLAIN SELECT * FROM t',
    'EXPLAIN (FORMAT JSON) SELECT * FROM t',
    'SELECT 1;',
    'SELECT * FROM t TABLESAMPLE SYSTEM (10)',
    "SELECT jsonb_set(doc, '{a}', '1') FROM t",
    'SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()',
    'SELECT DISTINCT ON (a) a, b FROM t ORDER BY a, b DESC',
    'SELECT x FROM t WHERE x = ANY($1) LIMIT 10 OFFSET 5',
  ])('read: %s', (sql) => {
    expect(classifySql(sql)).toMatchObject({ kind: 'read' });
  });

  it.each([
    ['INSERT INTO t VALUES (1)', 'command insert'],
    ['UPDATE t SET a = 1', 'command update'],
    ['DELETE FROM t', 'command delete'],
    ['MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', 'command merge'],
    ['SELECT * FROM t FOR UPDATE', 'locking clause'],
    ['SELECT * FROM t FOR NO KEY UPDATE SKIP LOCKED', 'locking clause'],
    ['SELECT * FROM t FOR SHARE', 'locking clause'],
    ['SELECT * FROM t FOR KEY SHARE OF t NOWAIT', 'locking clause'],
    ['SELECT * INTO archive FROM t', 'select into'],
    ["SELECT nextval('ids')", 'function nextval'],
    ["SELECT setval('ids', 10)", 'function setval'],
    ["SELECT pg_catalog.set_config('a', 'b', false)", 'function set_config'],
    ['SELECT pg_advisory_lock(1)', 'function pg_advisory_lock'],
    ['SELECT txid_current()', 'function txid_current'],
    ['SELECT my_function(1)', 'unknown function my_function'],
    ['SELECT app.audit($1)', 'unknown function audit'],
    ['SELECT "MixedCase"(1)', 'unknown function MixedCase'],
    ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', 'data-modifying delete'],
    ['WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i', 'data-modifying insert'],
    ['WITH x AS (SELECT 1) UPDATE t SET a = 1', 'data-modifying update'],
    ['SELECT 1; SELECT 2', 'multiple statements'],
    ['SELECT 1; DELETE FROM t', 'multiple statements'],
    ['BEGIN', 'transaction control'],
    ['COMMIT', 'transaction control'],
    ['SET search_path TO app', 'command set'],
    ['CREATE TABLE t (a int)', 'command create'],
    ['CALL proc()', 'command call'],
    ['DO $$ BEGIN END $$', 'command do'],
    ['COPY t TO STDOUT', 'command copy'],
    ['LOCK TABLE t', 'command lock'],
    ['EXPLAIN ANALYZE DELETE FROM t', 'command delete'],
    ["SELECT 'unterminated", 'unparsable'],
    ['SELECT /* unterminated', 'unparsable'],
    ['SELECT $$ unterminated', 'unparsable'],
    ["SELECT 'a\\' FROM t", 'backslash in string'],
    ["SELECT U&'\\0041'", 'unparsable'],
    ['', 'empty'],
    ['   ;  ', 'empty'],
    ['42', 'unparsable'],
  ])('write: %s (%s)', (sql, reason) => {
    expect(classifySql(sql)).toMatchObject({ kind: 'write', reason });
  });

  it('names the session features PgBouncer transaction pooling breaks', () => {
    const feature = (sql: string) => classifySql(sql).sessionFeature;
    expect(feature('SET search_path TO app')).toBe('set');
    expect(feature('SET SESSION statement_timeout = 5')).toBe('set');
    expect(feature('SET LOCAL statement_timeout = 5')).toBeUndefined();
    expect(feature('SET TRANSACTION ISOLATION LEVEL SERIALIZABLE')).toBeUndefined();
    expect(feature('SET CONSTRAINTS ALL DEFERRED')).toBeUndefined();
    expect(feature('RESET ALL')).toBe('reset');
    expect(feature('LISTEN jobs')).toBe('listen');
    expect(feature('UNLISTEN *')).toBe('unlisten');
    expect(feature('PREPARE q (int) AS SELECT $1')).toBe('prepare');
    expect(feature("PREPARE TRANSACTION 'x'")).toBeUndefined();
    expect(feature('DECLARE c CURSOR WITH HOLD FOR SELECT 1')).toBe('hold-cursor');
    expect(feature('DECLARE c CURSOR FOR SELECT 1')).toBeUndefined();
    expect(feature('CREATE TEMP TABLE x (a int)')).toBe('temp-table');
    expect(feature('CREATE GLOBAL TEMPORARY TABLE x (a int)')).toBe('temp-table');
    expect(feature('CREATE TABLE x (a int)')).toBeUndefined();
    expect(feature("LOAD 'auto_explain'")).toBe('load');
    expect(feature('SELECT pg_advisory_lock(1)')).toBe('advisory-lock');
    expect(feature('SELECT pg_advisory_xact_lock(1)')).toBeUndefined();
    expect(feature('UPDATE t SET a = pg_try_advisory_lock(1)')).toBe('advisory-lock');
    expect(feature('SELECT 1; LISTEN x')).toBe('listen');
  });

  it('readOnlyFunctions lets known functions through, never the built-in writers', () => {
    expect(kind('SELECT price_of($1)', ['price_of'])).toBe('read');
    expect(kind('SELECT app.price_of($1)', ['price_of'])).toBe('read');
    expect(kind("SELECT nextval('s')", ['nextval'])).toBe('write');
  });
});
