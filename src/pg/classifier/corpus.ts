/**
 * Statements for the differential test (differential.test.ts): every entry is parsed by the real PostgreSQL
 * parser and the classifier must agree with what an oracle derives from the parse tree. Hand-written base
 * statements, grouped by the rule they exercise, plus generated comment, whitespace, case, hint and
 * parenthesis variants. No expected values live here: the parse tree decides.
 *
 * @module
 */

/** pgbench: built-in TPC-B-like and select-only scripts, and the initialisation steps. */
const PGBENCH = [
  'SELECT abalance FROM pgbench_accounts WHERE aid = 48213',
  'UPDATE pgbench_accounts SET abalance = abalance + -4123 WHERE aid = 48213',
  'UPDATE pgbench_tellers SET tbalance = tbalance + -4123 WHERE tid = 7',
  'UPDATE pgbench_branches SET bbalance = bbalance + -4123 WHERE bid = 1',
  'INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (7, 1, 48213, -4123, CURRENT_TIMESTAMP)',
  'drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers',
  'create table pgbench_history(tid int,bid int,aid    int,delta int,mtime timestamp,filler char(22))',
  'create table pgbench_accounts(aid    int not null,bid int,abalance int,filler char(84)) with (fillfactor=100)',
  'truncate table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers',
  'insert into pgbench_branches(bid,bbalance) select bid, 0 from generate_series(1, 1) as bid',
  'copy pgbench_accounts from stdin with (freeze on)',
  'vacuum analyze pgbench_branches',
  'alter table pgbench_branches add primary key (bid)',
  'select count(*) from pgbench_branches',
  "select o.n, p.partstrat, pg_catalog.count(i.inhparent) from pg_catalog.pg_class as c join pg_catalog.pg_namespace as n on (n.oid = c.relnamespace) cross join lateral (select pg_catalog.array_position(pg_catalog.current_schemas(true), n.nspname)) as o(n) left join pg_catalog.pg_partitioned_table as p on (p.partrelid = c.oid) left join pg_catalog.pg_inherits as i on (c.oid = i.inhparent) where c.relname = 'pgbench_accounts' and o.n is not null group by 1, 2 order by 1 asc limit 1",
];

/** node-postgres style parameterised statements. */
const PARAMETERISED = [
  'SELECT * FROM users WHERE id = $1',
  'SELECT * FROM users WHERE id = ANY($1::int[])',
  'SELECT $1::text AS x, $2::int AS y',
  'INSERT INTO users(name, email) VALUES ($1, $2) RETURNING id',
  'UPDATE users SET name = $1, updated_at = now() WHERE id = $2',
  'DELETE FROM sessions WHERE expires_at < $1',
  'INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v',
  'INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT DO NOTHING',
  'SELECT id FROM jobs WHERE state = $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED',
  'SELECT count(*) FILTER (WHERE state = $1) FROM jobs',
  'SELECT data->>$1 FROM docs WHERE data @> $2::jsonb',
];

/** Catalog queries as psql sends them for \d, \dt, \l, \du, \dn, \df. */
const CATALOG = [
  `SELECT n.nspname as "Schema",
  c.relname as "Name",
  CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view' WHEN 'i' THEN 'index' WHEN 'S' THEN 'sequence' WHEN 't' THEN 'TOAST table' WHEN 'f' THEN 'foreign table' WHEN 'p' THEN 'partitioned table' WHEN 'I' THEN 'partitioned index' END as "Type",
  pg_catalog.pg_get_userbyid(c.relowner) as "Owner"
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r','p','')
      AND n.nspname <> 'pg_catalog'
      AND n.nspname !~ '^pg_toast'
      AND n.nspname <> 'information_schema'
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 1,2;`,
  `SELECT c.oid,
  n.nspname,
  c.relname
FROM pg_catalog.pg_class c
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname OPERATOR(pg_catalog.~) '^(accounts)$' COLLATE pg_catalog.default
  AND pg_catalog.pg_table_is_visible(c.oid)
ORDER BY 2, 3;`,
  `SELECT a.attname,
  pg_catalog.format_type(a.atttypid, a.atttypmod),
  (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)
   FROM pg_catalog.pg_attrdef d
   WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef),
  a.attnotnull
FROM pg_catalog.pg_attribute a
WHERE a.attrelid = '16384' AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum;`,
  `SELECT d.datname as "Name",
       pg_catalog.pg_get_userbyid(d.datdba) as "Owner",
       pg_catalog.pg_encoding_to_char(d.encoding) as "Encoding",
       pg_catalog.array_to_string(d.datacl, E'\\n') AS "Access privileges"
FROM pg_catalog.pg_database d
ORDER BY 1;`,
  `SELECT r.rolname, r.rolsuper, r.rolinherit,
  r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
  r.rolconnlimit, r.rolvaliduntil,
  ARRAY(SELECT b.rolname
        FROM pg_catalog.pg_auth_members m
        JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid)
        WHERE m.member = r.oid) as memberof
FROM pg_catalog.pg_roles r
WHERE r.rolname !~ '^pg_'
ORDER BY 1;`,
  `SELECT n.nspname AS "Name", pg_catalog.pg_get_userbyid(n.nspowner) AS "Owner"
FROM pg_catalog.pg_namespace n
WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
ORDER BY 1;`,
  `SELECT n.nspname as "Schema", p.proname as "Name",
  pg_catalog.pg_get_function_result(p.oid) as "Result data type",
  pg_catalog.pg_get_function_arguments(p.oid) as "Argument data types"
FROM pg_catalog.pg_proc p
     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE pg_catalog.pg_function_is_visible(p.oid)
ORDER BY 1, 2, 4;`,
  "SELECT pg_catalog.quote_ident(c.relname) FROM pg_catalog.pg_class c WHERE c.relkind IN ('r', 'p') LIMIT 1000",
];

/** Reads, including keywords hidden in strings, comments, quoted identifiers and dollar quotes. */
const READS = [
  'SELECT 1',
  'select * from accounts where id = 42',
  "SELECT now(), version(), current_setting('search_path')",
  'SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), inet_server_port()',
  'SELECT a, sum(b) OVER (PARTITION BY a ORDER BY c ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) FROM t',
  'SELECT * FROM t1 JOIN t2 USING (id) WHERE EXISTS (SELECT 1 FROM t3 WHERE t3.id = t1.id)',
  'SELECT * FROM t, LATERAL (SELECT * FROM u WHERE u.t_id = t.id LIMIT 1) x',
  'SELECT 1 UNION ALL SELECT 2 EXCEPT SELECT 3',
  "VALUES (1, 'a'), (2, 'b')",
  'TABLE accounts',
  'SHOW search_path',
  'SHOW ALL',
  'SHOW rwsplit.causal_token',
  '(SELECT 1)',
  '((SELECT 1) UNION (SELECT 2))',
  "SELECT 'DELETE FROM x'",
  "SELECT 'nextval(1)', 'pg_advisory_lock(1)'",
  "SELECT 'it''s; DELETE FROM t; --'",
  "SELECT E'it\\'s; DELETE FROM t'",
  "SELECT E'\\\\', 'x' FROM t",
  "SELECT U&'d\\0061t\\+000061'",
  'SELECT U&"d\\0061t\\+000061" FROM t',
  'SELECT $$DELETE FROM t$$',
  'SELECT $tag$ ; DROP TABLE x; $tag$',
  'SELECT $a$ $b$ inner $b$ INSERT $a$',
  'SELECT 1 /* nested /* DELETE FROM t; */ still a comment */',
  'SELECT 1 -- ; DELETE FROM t',
  'SELECT "update", "delete" FROM "Weird ""Table"""',
  'SELECT "NEXTVAL"(\'s\')',
  "SELECT substring('abcdef' FROM 2 FOR 3)",
  'SELECT * FROM t FOR READ ONLY',
  'SELECT nextval FROM sequence_like_table',
  'SELECT nextval_not_really(1)',
  'SELECT a$b FROM t',
  'SELECT x::numeric(10,2), y::varchar(20) FROM t',
  'SELECT (ARRAY[1,2,3])[1:2]',
  'SELECT * FROM generate_series(1, 10) g(i)',
  "SELECT jsonb_build_object('a', 1) #>> '{a}'",
  'SELECT 1.5e3, .5, 0x1F, 1_000',
  'SELECT\t1\r\n\f',
  'WITH a AS (SELECT 1 AS x) SELECT * FROM a',
  'WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 10) SELECT * FROM r',
  'WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t WHERE n < 5) SEARCH DEPTH FIRST BY n SET ordercol SELECT * FROM t',
  'WITH a AS MATERIALIZED (SELECT 1), b AS NOT MATERIALIZED (SELECT 2) SELECT * FROM a, b',
  'WITH a AS (SELECT 1) (SELECT * FROM a)',
  'FETCH 10 FROM c',
  'FETCH NEXT FROM c',
  'MOVE FORWARD 5 IN c',
  'CLOSE c',
  'CLOSE ALL',
  'COPY accounts TO STDOUT',
  'COPY accounts (id, balance) TO STDOUT WITH (FORMAT csv, HEADER)',
  'COPY (SELECT * FROM accounts WHERE id < 10) TO STDOUT',
  'COPY BINARY accounts TO STDOUT',
  'SET CONSTRAINTS ALL DEFERRED',
  "SELECT current_setting('transaction_read_only')",
];

/** Writes: DML, row locks, SELECT INTO, data-modifying CTEs. */
const WRITES = [
  'INSERT INTO t VALUES (1)',
  'INSERT INTO t SELECT * FROM u',
  'UPDATE t SET x = x + 1 WHERE id = 1 RETURNING x',
  'DELETE FROM t USING u WHERE t.id = u.id',
  'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v)',
  'SELECT * FROM t FOR UPDATE',
  'SELECT * FROM t FOR NO KEY UPDATE',
  'SELECT * FROM t FOR SHARE',
  'SELECT * FROM t FOR KEY SHARE',
  'SELECT * FROM t WHERE id = 1 FOR UPDATE OF t NOWAIT',
  'SELECT * FROM t JOIN u ON t.id = u.id FOR SHARE OF u SKIP LOCKED',
  'SELECT * FROM (SELECT * FROM t FOR UPDATE) s',
  'SELECT * FROM t WHERE id IN (SELECT id FROM q FOR UPDATE SKIP LOCKED LIMIT 1)',
  'SELECT * INTO newtable FROM t',
  'SELECT * INTO TABLE newtable FROM t',
  'SELECT * INTO UNLOGGED newtable FROM t',
  'SELECT * INTO temp FROM t',
  'WITH a AS (SELECT * INTO x FROM t) SELECT * FROM a',
  'WITH d AS (DELETE FROM t WHERE id = 1 RETURNING *) SELECT * FROM d',
  'WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i',
  'WITH u AS MATERIALIZED (UPDATE t SET x = 1 RETURNING *) SELECT count(*) FROM u',
  'WITH u AS NOT MATERIALIZED (UPDATE t SET x = 1 RETURNING *) SELECT count(*) FROM u',
  'WITH m AS (MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING t.*) SELECT * FROM m',
  'WITH a AS (WITH b AS (DELETE FROM t RETURNING *) SELECT * FROM b) SELECT * FROM a',
  'WITH a AS (SELECT 1), b AS (SELECT 2) INSERT INTO t SELECT * FROM a, b',
  'WITH a AS (SELECT 1) UPDATE t SET x = 1',
  'WITH a AS (SELECT 1) DELETE FROM t',
  'WITH a AS (SELECT id FROM s) MERGE INTO t USING a ON t.id = a.id WHEN MATCHED THEN DELETE',
  'WITH moved AS (DELETE FROM queue WHERE id = $1 RETURNING *) INSERT INTO done SELECT * FROM moved',
  'WITH RECURSIVE r AS (SELECT 1) , w AS (INSERT INTO log VALUES (1) RETURNING *) SELECT * FROM r',
  'COPY t FROM STDIN',
  "COPY t FROM '/tmp/data.csv' WITH (FORMAT csv)",
  'COPY t (a, b) FROM STDIN WITH (FORMAT binary)',
  'COPY (INSERT INTO t VALUES (1) RETURNING *) TO STDOUT',
  'COPY (DELETE FROM t RETURNING *) TO STDOUT',
];

/** Functions that write, pin or do neither. */
const FUNCTIONS = [
  "SELECT nextval('s')",
  "SELECT setval('s', 10)",
  "SELECT currval('s')",
  'SELECT lastval()',
  "SELECT pg_catalog.nextval('public.s')",
  'SELECT "nextval"(\'s\')',
  "SELECT id, nextval('s') FROM t",
  "SELECT * FROM t WHERE id = (SELECT nextval('s'))",
  "SELECT * FROM nextval('s')",
  "INSERT INTO t VALUES (nextval('s'))",
  'SELECT pg_advisory_lock(1)',
  'SELECT pg_try_advisory_lock(1, 2)',
  'SELECT pg_advisory_lock_shared($1)',
  'SELECT pg_try_advisory_lock_shared(42)',
  'SELECT "pg_advisory_lock"(7)',
  "SELECT pg_catalog.pg_advisory_lock(hashtext('job'))",
  'SELECT pg_advisory_xact_lock(1)',
  "SELECT pg_try_advisory_xact_lock(hashtext('job'))",
  'SELECT pg_advisory_xact_lock_shared(1)',
  'SELECT pg_advisory_unlock(1)',
  'SELECT pg_advisory_unlock_all()',
  "SELECT pg_notify('ch', 'payload')",
  "SELECT set_config('search_path', 'app', false)",
  "SELECT set_config('app.user', 'bob', true)",
  "SELECT set_config('app.user', $1, $2)",
  "SELECT set_config('app.user', 'bob', 'false')",
  'SELECT txid_current()',
  'SELECT pg_current_xact_id()',
  'SELECT pg_switch_wal()',
  "SELECT pg_create_restore_point('before-migration')",
  'SELECT lo_create(0)',
  "SELECT lo_import('/tmp/blob')",
  'SELECT lo_unlink(16401)',
  "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app'",
  'SELECT pg_cancel_backend(12345)',
  'SELECT pg_reload_conf()',
  "SELECT dblink_exec('conn', 'DELETE FROM t')",
  "SELECT dblink_connect('c', 'dbname=x')",
  "SELECT pg_backup_start('label')",
  'SELECT pg_advisory_lock(id) FROM jobs WHERE id = $1',
  'UPDATE t SET owner = pg_advisory_lock(1)::text',
  "INSERT INTO audit SELECT set_config('a.b', 'c', false)",
  "CALL do_work(set_config('a.b', 'c', false))",
  'CALL do_work(1)',
];

/** EXPLAIN with and without ANALYZE. */
const EXPLAINS = [
  'EXPLAIN SELECT * FROM t',
  'EXPLAIN ANALYZE SELECT * FROM t',
  'EXPLAIN DELETE FROM t',
  'EXPLAIN ANALYZE DELETE FROM t',
  'EXPLAIN ANALYZE VERBOSE UPDATE t SET x = 1',
  'EXPLAIN VERBOSE DELETE FROM t',
  'EXPLAIN (ANALYZE) INSERT INTO t VALUES (1)',
  'EXPLAIN (ANALYZE true, BUFFERS) UPDATE t SET x = 1',
  'EXPLAIN (ANALYZE on) DELETE FROM t',
  "EXPLAIN (ANALYZE 'on') DELETE FROM t",
  'EXPLAIN (ANALYZE 1) DELETE FROM t',
  'EXPLAIN (ANALYZE false) DELETE FROM t',
  'EXPLAIN (ANALYZE off, VERBOSE) UPDATE t SET x = 1',
  'EXPLAIN (ANALYZE 0) DELETE FROM t',
  'EXPLAIN (VERBOSE, ANALYZE) MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE',
  'EXPLAIN (FORMAT JSON) SELECT * FROM t',
  "EXPLAIN ANALYZE SELECT nextval('s')",
  "EXPLAIN SELECT nextval('s')",
  'EXPLAIN SELECT pg_advisory_lock(1)',
  'EXPLAIN ANALYZE SELECT pg_advisory_lock(1)',
  'EXPLAIN ANALYZE SELECT * FROM t FOR UPDATE',
  'EXPLAIN SELECT * FROM t FOR UPDATE',
  'EXPLAIN ANALYZE WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
  'EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1',
  'EXPLAIN CREATE TABLE x AS SELECT 1',
  'EXPLAIN ANALYZE EXECUTE p',
  'EXPLAIN EXECUTE p',
];

/** DDL and other utility statements: all writes. */
const DDL = [
  "CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT nextval('s')::text)",
  'CREATE UNLOGGED TABLE cache (k text, v text)',
  'CREATE TABLE t2 AS SELECT * FROM t',
  "CREATE TABLE t3 AS SELECT nextval('s')",
  'CREATE TABLE t4 AS SELECT pg_advisory_lock(1)',
  'CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (1) TO (10)',
  'CREATE TABLE g (a int, b int GENERATED ALWAYS AS (a * 2) STORED)',
  'CREATE INDEX CONCURRENTLY idx ON t (v)',
  'CREATE VIEW v AS SELECT * FROM t',
  'CREATE MATERIALIZED VIEW mv AS SELECT count(*) FROM t',
  'CREATE SEQUENCE s START 1',
  'CREATE SCHEMA app',
  'CREATE EXTENSION IF NOT EXISTS pgcrypto',
  'CREATE ROLE app LOGIN',
  "CREATE TYPE mood AS ENUM ('sad', 'ok')",
  'CREATE DOMAIN posint AS int CHECK (VALUE > 0)',
  'CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET search_path = x; LISTEN ch; PERFORM pg_advisory_lock(1); END $$',
  'CREATE OR REPLACE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a + b; SELECT CASE WHEN a > 0 THEN a END; END',
  'CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END',
  'CREATE FUNCTION sq(x int) RETURNS int LANGUAGE sql RETURN CASE WHEN x > 0 THEN x * x END',
  'CREATE TRIGGER trg BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION f()',
  'CREATE POLICY p ON t FOR SELECT USING (owner = current_user)',
  'CREATE PUBLICATION pub FOR TABLE t',
  'ALTER TABLE t ADD COLUMN c int',
  "ALTER TABLE t ALTER COLUMN c SET DEFAULT nextval('s')",
  'ALTER SEQUENCE s RESTART WITH 1',
  "ALTER SYSTEM SET work_mem = '64MB'",
  'ALTER ROLE app SET search_path = app',
  'ALTER DATABASE db SET statement_timeout = 0',
  'DROP TABLE IF EXISTS t CASCADE',
  'DROP INDEX CONCURRENTLY idx',
  'TRUNCATE t RESTART IDENTITY',
  'GRANT SELECT ON t TO app',
  'REVOKE ALL ON t FROM PUBLIC',
  "COMMENT ON TABLE t IS 'x'",
  'REINDEX TABLE t',
  'CLUSTER t USING idx',
  'VACUUM',
  'VACUUM (VERBOSE, ANALYZE) t',
  'ANALYZE t',
  'REFRESH MATERIALIZED VIEW CONCURRENTLY mv',
  'LOCK TABLE t IN ACCESS SHARE MODE',
  'DO $$BEGIN PERFORM 1; END$$',
  "DO LANGUAGE plpgsql $body$ BEGIN EXECUTE 'SELECT 1'; END $body$",
  "SECURITY LABEL FOR selinux ON TABLE t IS 'system_u:object_r:sepgsql_table_t:s0'",
  'IMPORT FOREIGN SCHEMA public FROM SERVER remote INTO local_schema',
  'REASSIGN OWNED BY old_role TO new_role',
  'CHECKPOINT',
  'NOTIFY ch',
  "NOTIFY ch, 'payload'",
  'UNLISTEN ch',
  'UNLISTEN *',
];

/** Transaction control. */
const TRANSACTIONS = [
  'BEGIN',
  'BEGIN WORK',
  'BEGIN TRANSACTION',
  'START TRANSACTION',
  'BEGIN READ ONLY',
  'BEGIN TRANSACTION READ ONLY',
  'START TRANSACTION READ ONLY',
  'START TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY',
  'BEGIN READ ONLY ISOLATION LEVEL READ COMMITTED',
  'BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE',
  'BEGIN ISOLATION LEVEL SERIALIZABLE',
  'BEGIN ISOLATION LEVEL READ UNCOMMITTED',
  'BEGIN READ WRITE',
  'BEGIN READ ONLY, READ WRITE',
  'BEGIN READ WRITE, READ ONLY',
  'START TRANSACTION NOT DEFERRABLE',
  'COMMIT',
  'COMMIT WORK',
  'COMMIT TRANSACTION',
  'END',
  'END WORK',
  'COMMIT AND CHAIN',
  'COMMIT AND NO CHAIN',
  'ROLLBACK',
  'ROLLBACK WORK',
  'ABORT',
  'ABORT TRANSACTION',
  'ROLLBACK AND CHAIN',
  'ROLLBACK TO SAVEPOINT sp',
  'ROLLBACK TO sp',
  'ROLLBACK WORK TO SAVEPOINT sp',
  'SAVEPOINT sp',
  'RELEASE SAVEPOINT sp',
  'RELEASE sp',
  "PREPARE TRANSACTION 'gid-1'",
  "COMMIT PREPARED 'gid-1'",
  "ROLLBACK PREPARED 'gid-1'",
  'SET TRANSACTION READ ONLY',
  'SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY',
  'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
  'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE, READ ONLY',
  'SET TRANSACTION ISOLATION LEVEL READ COMMITTED',
  'SET TRANSACTION READ WRITE',
  "SET TRANSACTION SNAPSHOT '00000003-0000001B-1'",
  'SET SESSION TRANSACTION READ ONLY',
  'SET LOCAL TRANSACTION READ ONLY',
];

/** Statements that create (or remove) session state. */
const SESSION = [
  'SET search_path TO app, public',
  'SET search_path = DEFAULT',
  "SET SESSION statement_timeout = '5s'",
  'SET LOCAL statement_timeout = 0',
  "SET TIME ZONE 'UTC'",
  'SET TIME ZONE LOCAL',
  "SET LOCAL TIME ZONE 'UTC'",
  'SET ROLE app',
  'SET LOCAL ROLE app',
  'SET SESSION ROLE app',
  'SET SESSION AUTHORIZATION app',
  'SET SESSION AUTHORIZATION DEFAULT',
  'SET LOCAL SESSION AUTHORIZATION app',
  "SET application_name = 'worker'",
  "SET NAMES 'UTF8'",
  "SET SCHEMA 'app'",
  'SET datestyle TO postgres, dmy',
  'SET app.tenant = 42',
  'SET transaction_read_only = on',
  "SET rwsplit.causal_token = '0/16B3748'",
  'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY',
  'SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE',
  'RESET search_path',
  'RESET ALL',
  'RESET ROLE',
  'RESET SESSION AUTHORIZATION',
  'CREATE TEMP TABLE tt (id int)',
  'CREATE TEMPORARY TABLE IF NOT EXISTS tt (id int)',
  'CREATE LOCAL TEMP TABLE tt (id int)',
  'CREATE GLOBAL TEMPORARY TABLE tt (id int)',
  'CREATE TEMP TABLE tt ON COMMIT DROP AS SELECT 1',
  'CREATE TEMP TABLE tt AS SELECT * FROM t',
  'CREATE TEMP VIEW tv AS SELECT 1',
  'CREATE OR REPLACE TEMP VIEW tv AS SELECT 1',
  'CREATE TEMP RECURSIVE VIEW tv(n) AS SELECT 1',
  'CREATE TEMP SEQUENCE ts',
  'CREATE TABLE pg_temp.x (a int)',
  "CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql",
  'CREATE VIEW v2 AS SELECT * FROM pg_temp.x',
  'SELECT * INTO TEMP tt FROM t',
  'SELECT * INTO TEMPORARY TABLE tt FROM t',
  'SELECT * INTO LOCAL TEMP tt FROM t',
  'SELECT 1 AS a INTO pg_temp.x',
  'PREPARE p AS SELECT 1',
  'PREPARE p(int) AS SELECT * FROM t WHERE id = $1',
  'PREPARE p AS INSERT INTO t VALUES ($1)',
  'PREPARE transaction AS SELECT 1',
  'EXECUTE p',
  "EXECUTE p(1, 'a')",
  'DEALLOCATE p',
  'DEALLOCATE PREPARE p',
  'DEALLOCATE ALL',
  'DISCARD ALL',
  'DISCARD PLANS',
  'DISCARD SEQUENCES',
  'DISCARD TEMP',
  'DISCARD TEMPORARY',
  'LISTEN ch',
  'LISTEN "Mixed Case"',
  "LOAD 'auto_explain'",
  'DECLARE c CURSOR FOR SELECT 1',
  'DECLARE c CURSOR WITH HOLD FOR SELECT * FROM t',
  'DECLARE c NO SCROLL CURSOR WITHOUT HOLD FOR SELECT 1',
  'DECLARE c BINARY CURSOR FOR SELECT 1',
  'DECLARE c SCROLL CURSOR FOR SELECT * FROM t FOR UPDATE',
  "DECLARE c CURSOR FOR SELECT nextval('s')",
  'DECLARE c CURSOR FOR SELECT pg_advisory_lock(1)',
  'DECLARE c INSENSITIVE CURSOR WITH HOLD FOR VALUES (1)',
  'DECLARE c CURSOR FOR (SELECT 1)',
];

/** Several statements in one text (simple query protocol). */
const MULTI = [
  'BEGIN; UPDATE t SET x = 1; COMMIT',
  'BEGIN READ ONLY; SELECT 1; COMMIT;',
  'SELECT 1; SELECT 2',
  'SELECT 1; DELETE FROM t',
  'SET search_path = app; SELECT 1',
  'SELECT 1;;SELECT 2;',
  'SELECT \'a;b\'; SELECT $$;$$; SELECT "x;y" FROM t',
  'CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; SELECT one()',
  'SAVEPOINT a; ROLLBACK TO a; RELEASE a',
  'DISCARD ALL; SELECT 1',
  ';',
  '   -- only a comment',
  '/* rwsplit:primary */',
];

const BASE: readonly string[] = [
  ...PGBENCH,
  ...PARAMETERISED,
  ...CATALOG,
  ...READS,
  ...WRITES,
  ...FUNCTIONS,
  ...EXPLAINS,
  ...DDL,
  ...TRANSACTIONS,
  ...SESSION,
  ...MULTI,
];

/** True if the text has no quotes or dollar quotes, so changing case or whitespace keeps its meaning. */
function isQuoteFree(sql: string): boolean {
  return !/['"]|\$[^0-9]/.test(sql);
}

/** Variants that keep the meaning of a statement; the oracle re-derives the expectation for each. */
const VARIANTS: ReadonlyArray<(sql: string, index: number) => string | null> = [
  (sql) => `/* leading comment; DELETE FROM t */ ${sql}`,
  (sql) => `-- line comment; DROP TABLE t\n${sql}`,
  (sql, i) => (i % 2 === 0 ? `/* rwsplit:replica */ ${sql}` : `${sql} -- RWSPLIT : PRIMARY`),
  (sql) => `\n\t ${sql.trimEnd()} ;\r\n`,
  (sql) => (isQuoteFree(sql) ? sql.toUpperCase() : null),
  (sql) => (isQuoteFree(sql) ? sql.toLowerCase().replaceAll(' ', '\n\t  ') : null),
  (sql) => (/^select /i.test(sql) && !sql.includes(';') ? `(${sql})` : null),
  (sql) => `/* /* nested */ rwsplit: primary */${sql}`,
];

function buildCorpus(): string[] {
  const out = new Set<string>(BASE);
  BASE.forEach((sql, i) => {
    if (sql.trim() === '' || sql.includes('--')) return;
    for (const variant of VARIANTS) {
      const v = variant(sql, i);
      if (v !== null) out.add(v);
    }
  });
  return [...out];
}

/** Base statements plus generated variants, deduplicated. */
export const CORPUS: readonly string[] = buildCorpus();
