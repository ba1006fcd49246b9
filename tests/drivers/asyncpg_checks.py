"""asyncpg through pgsplit: queries, executemany, its statement cache over pooled server
connections, transactions, COPY in and out (records, 1 to 100,000 rows), LISTEN/NOTIFY and
binary codecs. Prints "ok <check>" per check; any failure raises and exits non-zero."""

import asyncio
import datetime
import decimal
import io
import ipaddress
import os
import uuid

import asyncpg

URL = os.environ["PGSPLIT_DRIVER_URL"]
TAG = os.environ["PGSPLIT_DRIVER_TAG"]


def ok(name):
    print("ok", name, flush=True)


async def expect_error(cls, sqlstate, coro):
    try:
        await coro
    except cls as e:
        assert e.sqlstate == sqlstate, (e.sqlstate, e)
        return e
    raise AssertionError(f"expected {cls.__name__} ({sqlstate})")


async def basics(c, t):
    assert await c.fetchval("select 1 + $1::int", 41) == 42
    assert await c.execute(f"insert into {t} values (1, 'one', 1.50)") == "INSERT 0 1"
    rows = await c.fetch(f"select id, name, score from {t} where id = $1", 1)
    assert [tuple(r) for r in rows] == [(1, "one", decimal.Decimal("1.50"))], rows
    # A multi-statement simple query (execute without arguments).
    await c.execute(f"update {t} set score = 2 where id = 1; update {t} set score = 1.5 where id = 1")
    ok("fetch_execute")

    await c.executemany(
        f"insert into {t} (id, name, score) values ($1, $2, $3)",
        [(i, f"n{i}", decimal.Decimal(i) / 4) for i in range(2, 202)],
    )
    assert await c.fetchval(f"select count(*) from {t}") == 201
    assert await c.fetchval(f"select score from {t} where id = 7") == decimal.Decimal("1.75")
    ok("executemany")

    await expect_error(
        asyncpg.UniqueViolationError, "23505", c.execute(f"insert into {t} (id) values (1)")
    )
    await expect_error(asyncpg.DivisionByZeroError, "22012", c.fetch("select 1 / $1::int", 0))
    await expect_error(
        asyncpg.UndefinedTableError, "42P01", c.fetch(f"select * from {t}_missing")
    )
    assert await c.fetchval("select $1::text", "after") == "after"
    ok("errors_sqlstate")


async def transactions(c, t):
    async with c.transaction():
        await c.execute(f"update {t} set name = 'tx' where id = 1")
        assert await c.fetchval("select txid_current_if_assigned() is not null")
    assert await c.fetchval(f"select name from {t} where id = 1") == "tx"
    try:
        async with c.transaction():
            await c.execute(f"update {t} set name = 'rolled back' where id = 1")
            raise RuntimeError("roll back")
    except RuntimeError:
        pass
    assert await c.fetchval(f"select name from {t} where id = 1") == "tx"
    async with c.transaction():
        await c.execute(f"update {t} set name = 'outer' where id = 1")
        try:
            async with c.transaction():  # a savepoint
                await c.execute(f"update {t} set name = 'inner' where id = 1")
                raise RuntimeError("roll back to savepoint")
        except RuntimeError:
            pass
    assert await c.fetchval(f"select name from {t} where id = 1") == "outer"
    # An error inside a transaction: 25P02 until it ends.
    tr = c.transaction()
    await tr.start()
    await expect_error(asyncpg.DivisionByZeroError, "22012", c.execute("select 1/0"))
    await expect_error(
        asyncpg.InFailedSQLTransactionError, "25P02", c.fetchval("select 1")
    )
    await tr.rollback()
    assert await c.fetchval("select 1") == 1
    ok("transactions")


async def statement_cache(c, t):
    # More clients than server connections: asyncpg's statements (__asyncpg_stmt_N__, the same
    # names on every client) run on whichever server connection each request gets.
    conns = [await asyncpg.connect(URL) for _ in range(8)]
    try:
        async def worker(k, conn):
            for i in range(25):
                assert await conn.fetchval("select $1::int * 2 + $2::int", i, k) == i * 2 + k
                row = await conn.fetchrow(f"select id, name from {t} where id = $1", i + 2)
                assert (row["id"], row["name"]) == (i + 2, f"n{i + 2}"), row
                if i % 5 == 0:
                    async with conn.transaction():
                        assert await conn.fetchval("select $1::text || 'x'", "a") == "ax"

        await asyncio.gather(*(worker(k, cc) for k, cc in enumerate(conns)))
    finally:
        await asyncio.gather(*(cc.close() for cc in conns))
    ps = await c.prepare(f"select name from {t} where id = $1")
    assert [a.name for a in ps.get_attributes()] == ["name"]
    for i in range(2, 12):
        assert await ps.fetchval(i) == f"n{i}"
    ok("statement_cache_pooled")


async def statement_cache_after_ddl(c, t):
    # A table dropped and created again with another key type between uses: each client's
    # cached statement keeps the parameter type it was prepared with (int4 on the first
    # round), as PostgreSQL keeps it. A server connection that has to prepare it again must
    # not infer int8 from the new table: the client encodes its binary parameter as int4.
    d = f"{t}_ddl"
    conns = [await asyncpg.connect(URL) for _ in range(6)]
    try:
        for ty in ("int", "bigint", "int", "bigint"):
            await c.execute(f"drop table if exists {d}")
            await c.execute(f"create table {d} (id {ty} primary key, v text)")
            await c.execute(f"insert into {d} select g, 'v' || g from generate_series(1, 20) g")

            async def worker(k, conn):
                for i in range(1, 21):
                    v = await conn.fetchval(f"select v from {d} where id = $1", i)
                    assert v == f"v{i}", (k, i, v)

            await asyncio.gather(*(worker(k, cc) for k, cc in enumerate(conns)))
        # Dropped: the cached statement fails with 42P01, and works again once it is back.
        await c.execute(f"drop table {d}")
        await expect_error(
            asyncpg.UndefinedTableError,
            "42P01",
            conns[0].fetchval(f"select v from {d} where id = $1", 1),
        )
        await c.execute(f"create table {d} (id int primary key, v text)")
        await c.execute(f"insert into {d} values (1, 'back')")
        assert await conns[0].fetchval(f"select v from {d} where id = $1", 1) == "back"
    finally:
        await asyncio.gather(*(cc.close() for cc in conns))
        await c.execute(f"drop table if exists {d}")
    ok("statement_cache_after_ddl")


async def copy_in(c, t):
    dst = f"{t}_copy"
    await c.execute(
        f"create table {dst} (id int not null, name text, v float8, at timestamptz,"
        " check (id >= -10))"
    )
    try:
        at = datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
        total = 0
        for n in (1, 5, 10, 50, 100, 200, 500, 100_000):
            recs = [(i, f"r{i}", i / 4, at) for i in range(n)]
            r = await asyncio.wait_for(c.copy_records_to_table(dst, records=recs), 60)
            assert r == f"COPY {n}", r
            total += n
        assert await c.fetchval(f"select count(*) from {dst}") == total
        assert await c.fetchval(f"select sum(id) from {dst} where name = 'r99999'") == 99_999
        assert await c.fetchval(f"select at from {dst} where id = 3 limit 1") == at
        ok("copy_records_1_to_100000")

        # Text COPY after an extended-protocol statement on the same connection.
        assert await c.fetchval("select 1") == 1
        src = io.BytesIO(b"-1\ttext one\t0.5\t2020-01-01 00:00:00+00\n-2\ttext two\t\\N\t\\N\n")
        r = await asyncio.wait_for(c.copy_to_table(dst, source=src), 30)
        assert r == "COPY 2", r
        assert await c.fetchval(f"select name from {dst} where id = -2") == "text two"
        ok("copy_to_table_after_prepare")

        async with c.transaction():
            r = await c.copy_records_to_table(dst, records=[(-3, "in tx", None, None)])
            assert r == "COPY 1"
            assert await c.fetchval(f"select count(*) from {dst} where id = -3") == 1
        try:
            async with c.transaction():
                await c.copy_records_to_table(dst, records=[(-4, "rolled back", None, None)])
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
        assert await c.fetchval(f"select count(*) from {dst} where id in (-3, -4)") == 1
        ok("copy_in_transaction")

        # Bad data in the middle of a COPY: the server's error, then a usable connection.
        bad = io.BytesIO(b"-5\tfine\t1\t\\N\nnot a number\tx\t1\t\\N\n" + b"-6\tnever\t1\t\\N\n" * 5000)
        await expect_error(
            asyncpg.InvalidTextRepresentationError, "22P02", c.copy_to_table(dst, source=bad)
        )
        recs = [(i, "ok", None, None) for i in range(2000)] + [(-11, "violates", None, None)]
        await expect_error(
            asyncpg.CheckViolationError, "23514", c.copy_records_to_table(dst, records=recs)
        )
        await expect_error(
            asyncpg.NotNullViolationError,
            "23502",
            c.copy_records_to_table(dst, records=[(None, "no id", None, None)]),
        )
        assert await c.fetchval(f"select count(*) from {dst} where id in (-5, -6, -11)") == 0
        assert await c.fetchval(f"select count(*) from {dst}") == total + 3
        ok("copy_fails_midway")

        out = io.BytesIO()
        r = await c.copy_from_table(dst, output=out, columns=["id"], format="csv")
        assert r == f"COPY {total + 3}", r
        assert len(out.getvalue().splitlines()) == total + 3
        ps = await c.prepare(f"select count(*) from {dst} where id < $1")
        # Ids 0..9 of each batch (1, 5, then six of at least 10 rows) and -1..-3.
        assert await ps.fetchval(10) == 1 + 5 + 6 * 10 + 3
        out = io.BytesIO()
        r = await c.copy_from_query(
            f"select id, name from {dst} where id < $1 order by id", -1, output=out
        )
        assert r == "COPY 2", r
        assert out.getvalue() == b"-3\tin tx\n-2\ttext two\n", out.getvalue()
        ok("copy_out_after_prepare")
    finally:
        await c.execute(f"drop table if exists {dst}")


async def listen_notify(c):
    channel = f"drv_{TAG}_chan"
    listener = await asyncpg.connect(URL)
    try:
        got = asyncio.get_running_loop().create_future()

        def on_notify(_conn, _pid, ch, payload):
            if not got.done():
                got.set_result((ch, payload))

        await listener.add_listener(channel, on_notify)
        await c.execute("select pg_notify($1, $2)", channel, "hello")
        assert await asyncio.wait_for(got, 10) == (channel, "hello")
        # The listening session still runs statements normally.
        assert await listener.fetchval("select $1::int", 5) == 5
        await listener.remove_listener(channel, on_notify)
    finally:
        await listener.close()
    ok("listen_notify")


async def binary_codecs(c):
    u = uuid.uuid4()
    ts = datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=datetime.timezone.utc)
    values = (
        u,
        '{"a": [1, 2, {"b": null}]}',
        decimal.Decimal("12345678901234567890.0123456789"),
        ts,
        datetime.timedelta(days=3, seconds=7, microseconds=5),
        b"\x00\x01\xffbytes",
        ipaddress.ip_address("192.168.1.20"),
        [1, None, 3],
        datetime.date(1999, 12, 31),
        True,
        1.5e300,
        -(2**62),
        ["x", "", None, "ü"],
    )
    r = await c.fetchrow(
        "select $1::uuid, $2::jsonb, $3::numeric, $4::timestamptz, $5::interval, $6::bytea,"
        " $7::inet, $8::int[], $9::date, $10::bool, $11::float8, $12::int8, $13::text[]",
        *values,
    )
    got = tuple(r)
    assert got[0] == u and got[2:] == values[2:], got
    assert got[1] == '{"a": [1, 2, {"b": null}]}', got[1]
    r = await c.fetchrow(
        "select int4range(1, 5) r, '(1,2)'::point p, array[[1,2],[3,4]]::int8[] m,"
        " 'NaN'::numeric n, '-infinity'::timestamptz t, row(1, 'a') rec"
    )
    assert (r["r"].lower, r["r"].upper) == (1, 5)
    assert tuple(r["p"]) == (1.0, 2.0)
    assert r["m"] == [[1, 2], [3, 4]]
    assert r["n"].is_nan()
    assert r["t"] == datetime.datetime.min, r["t"]  # asyncpg maps -infinity to min
    assert tuple(r["rec"]) == (1, "a")
    ok("binary_codecs")


async def result_columns_after_ddl(c, t):
    # A column's type changes under statements cached on several pooled connections. A server
    # connection that prepares one again must not return the new type to a client that decodes
    # by the old one: pgsplit fails it with 0A000, as PostgreSQL fails its own cached statement,
    # and asyncpg prepares it again and returns the new type.
    d = f"{t}_cols"
    await c.execute(f"drop table if exists {d}")
    await c.execute(f"create table {d} (id int primary key, v int)")
    await c.execute(f"insert into {d} select g, g from generate_series(1, 20) g")
    conns = [await asyncpg.connect(URL) for _ in range(6)]
    try:
        async def worker(conn, want):
            for i in range(1, 21):
                v = await conn.fetchval(f"select v from {d} where id = $1", i)
                assert v == want(i), (i, v)

        await asyncio.gather(*(worker(cc, lambda i: i) for cc in conns))
        await c.execute(f"alter table {d} alter column v type text")
        await asyncio.gather(*(worker(cc, str) for cc in conns))
    finally:
        await asyncio.gather(*(cc.close() for cc in conns))
        await c.execute(f"drop table if exists {d}")
    ok("result_columns_after_ddl")


async def main():
    c = await asyncpg.connect(URL)
    t = f"drv_{TAG}_apg"
    await c.execute(f"create table {t} (id int primary key, name text, score numeric(10, 2))")
    try:
        await basics(c, t)
        await transactions(c, t)
        await statement_cache(c, t)
        await statement_cache_after_ddl(c, t)
        await result_columns_after_ddl(c, t)
        await copy_in(c, t)
        await listen_notify(c)
        await binary_codecs(c)
    finally:
        await c.execute(f"drop table if exists {t}")
        await c.close()


asyncio.run(main())
