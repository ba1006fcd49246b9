// node-postgres through pgsplit: named prepared queries (over a pool), pg-cursor, pg-copy-streams
// in and out, errors with their SQLSTATE. Prints "ok <check>" per check; exits 1 on a failure.
'use strict';
const assert = require('assert/strict');
const { pipeline } = require('stream/promises');
const { Readable, Writable } = require('stream');
const { Client, Pool } = require('pg');
const Cursor = require('pg-cursor');
const copy = require('pg-copy-streams');

const URL = process.env.PGSPLIT_DRIVER_URL;
const T = `drv_${process.env.PGSPLIT_DRIVER_TAG}_node`;
const ok = (name) => console.log(`ok ${name}`);

async function expectError(code, promise) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.code, code, e.message);
    return;
  }
  assert.fail(`expected SQLSTATE ${code}`);
}

async function namedQueries(c) {
  for (let i = 0; i < 20; i++) {
    const r = await c.query({ name: 'drv-add', text: 'select $1::int + 1 as v, $2::text as s', values: [i, `s${i}`] });
    assert.deepEqual(r.rows, [{ v: i + 1, s: `s${i}` }]);
  }
  await c.query({ name: 'drv-ins', text: `insert into ${T} (id, name) values ($1, $2)`, values: [1, 'one'] });
  // Several clients of one pool, each with the same statement names, on fewer server connections.
  const pool = new Pool({ connectionString: URL, max: 6 });
  try {
    await Promise.all(
      [...Array(6).keys()].map(async (k) => {
        for (let i = 0; i < 15; i++) {
          const r = await pool.query({ name: 'drv-mul', text: 'select $1::int * $2::int as v', values: [i, k] });
          assert.equal(r.rows[0].v, i * k);
        }
      }),
    );
  } finally {
    await pool.end();
  }
  await expectError('22012', c.query({ name: 'drv-div', text: 'select 1 / $1::int', values: [0] }));
  await expectError('23505', c.query({ name: 'drv-ins', text: `insert into ${T} (id, name) values ($1, $2)`, values: [1, 'dup'] }));
  const r = await c.query({ name: 'drv-add', text: 'select $1::int + 1 as v, $2::text as s', values: [41, 'x'] });
  assert.equal(r.rows[0].v, 42);
  ok('named_prepared_queries');
}

async function cursors(c) {
  await c.query(`insert into ${T} (id, name) select g, 'g' || g from generate_series(2, 1000) g`);
  const read = (cur, n) => new Promise((resolve, reject) => cur.read(n, (e, rows) => (e ? reject(e) : resolve(rows))));
  const close = (cur) => new Promise((resolve, reject) => cur.close((e) => (e ? reject(e) : resolve())));
  // Outside a transaction: an unnamed portal read with Execute(max rows) + Flush, no Sync.
  let cur = c.query(new Cursor(`select id, name from ${T} where id >= $1 order by id`, [1]));
  let total = 0;
  let first;
  for (;;) {
    const rows = await read(cur, 100);
    if (rows.length === 0) break;
    first = first || rows[0];
    total += rows.length;
  }
  assert.equal(total, 1000);
  assert.deepEqual(first, { id: 1, name: 'one' });
  await close(cur);
  // Inside a transaction, closed early.
  await c.query('begin');
  cur = c.query(new Cursor(`select id from ${T} order by id`));
  assert.deepEqual((await read(cur, 3)).map((r) => r.id), [1, 2, 3]);
  await close(cur);
  const n = await c.query(`select count(*)::int as n from ${T}`);
  assert.equal(n.rows[0].n, 1000);
  await c.query('commit');
  // A cursor whose query fails.
  cur = c.query(new Cursor('select 1 / (g - 3) from generate_series(1, 10) g'));
  await expectError('22012', read(cur, 10));
  assert.equal((await c.query('select 5 as v')).rows[0].v, 5);
  ok('pg_cursor');
}

async function copyStreams(c) {
  await c.query('select 1'); // COPY after a statement on the same connection
  const lines = function* () {
    for (let i = 5000; i < 25000; i++) yield `${i}\tc${i}\n`;
  };
  await pipeline(Readable.from(lines()), c.query(copy.from(`copy ${T} (id, name) from stdin`)));
  let r = await c.query(`select count(*)::int as n from ${T} where id >= 5000`);
  assert.equal(r.rows[0].n, 20000);
  let out = '';
  await pipeline(
    c.query(copy.to(`copy (select id from ${T} where id >= 5000 and id < 5010 order by id) to stdout`)),
    new Writable({ write(chunk, _e, cb) { out += chunk; cb(); } }),
  );
  assert.equal(out, [...Array(10).keys()].map((i) => `${5000 + i}\n`).join(''));
  // Bad data midway: the COPY fails with the server's error and the connection goes on.
  const bad = function* () {
    yield '30000\tfine\n';
    yield 'x\tbad\n';
    for (let i = 0; i < 2000; i++) yield `${40000 + i}\tnever\n`;
  };
  await expectError('22P02', pipeline(Readable.from(bad()), c.query(copy.from(`copy ${T} (id, name) from stdin`))));
  r = await c.query(`select count(*)::int as n from ${T} where id >= 30000`);
  assert.equal(r.rows[0].n, 0);
  ok('pg_copy_streams');
}

async function main() {
  const c = new Client({ connectionString: URL });
  await c.connect();
  await c.query(`create table ${T} (id int primary key, name text)`);
  try {
    await namedQueries(c);
    await cursors(c);
    await copyStreams(c);
  } catch (e) {
    // Shown before the cleanup, whose own failure would hide it.
    console.error(e);
    process.exit(1);
  }
  await c.query(`drop table if exists ${T}`);
  await c.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
