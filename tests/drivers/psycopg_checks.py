"""psycopg 3 through pgsplit: pipeline mode (and an error fetched before its Sync), binary
COPY, server-side (named) cursors in a transaction, prepare_threshold and its DEALLOCATEs.
Prints "ok <check>" per check."""

import datetime
import decimal
import os

import psycopg
from psycopg import errors

URL = os.environ["PGSPLIT_DRIVER_URL"]
TAG = os.environ["PGSPLIT_DRIVER_TAG"]
T = f"drv_{TAG}_pg3"


def ok(name):
    print("ok", name, flush=True)


def expect_error(cls, sqlstate, fn):
    try:
        fn()
    except cls as e:
        assert e.sqlstate == sqlstate, (e.sqlstate, e)
        return
    raise AssertionError(f"expected {cls.__name__} ({sqlstate})")


def pipeline(c):
    with c.pipeline() as p:
        curs = [c.execute("select %s::int + 1, %s::text", (i, f"v{i}")) for i in range(50)]
        c.execute(f"insert into {T} (id, name) values (%s, %s)", (1, "one"))
        c.cursor().executemany(
            f"insert into {T} (id, name) values (%s, %s)", [(i, f"n{i}") for i in range(2, 102)]
        )
        p.sync()
        assert [cur.fetchone() for cur in curs] == [(i + 1, f"v{i}") for i in range(50)]
    assert c.execute(f"select count(*) from {T}").fetchone() == (101,)
    # An error in a pipeline: reported with its SQLSTATE, the rest of the batch skipped.
    def failing():
        with c.pipeline():
            c.execute(f"insert into {T} (id, name) values (1000, 'before')")
            c.execute("select 1 / 0")
            c.execute(f"insert into {T} (id, name) values (1001, 'skipped')")

    expect_error(errors.DivisionByZero, "22012", failing)
    # One Sync ends the pipeline: its statements were one implicit transaction, rolled back.
    got = c.execute(f"select id from {T} where id >= 1000 order by id").fetchall()
    assert got == [], got
    with c.pipeline():
        with c.transaction():
            c.execute(f"update {T} set name = 'piped' where id = 1")
    assert c.execute(f"select name from {T} where id = 1").fetchone() == ("piped",)
    ok("pipeline")


def pipeline_error_after_flush(c):
    # Fetching a result inside a pipeline sends Flush, not Sync: after that error the server
    # skips everything up to the pipeline's Sync, and psycopg reports the statements sent
    # meanwhile as aborted. The proxy expected replies to them and broke the connection at
    # the Sync's ReadyForQuery ("server sent 'Z' where the proxy expected a reply to ...").
    for _ in range(3):
        with c.pipeline():
            c.execute(f"insert into {T} (id, name) values (2000, 'rolled back')")
            bad = c.execute(f"select * from {T}_missing where id = %s", (1,))
            expect_error(errors.UndefinedTable, "42P01", bad.fetchall)
            try:
                after = c.execute("select %s::int + 1", (1,))
                c.execute(f"insert into {T} (id, name) values (2001, 'skipped')")
                after.fetchall()
                raise AssertionError("a statement after the error ran")
            except errors.PipelineAborted:
                pass
        assert c.execute("select %s::text", ("after",)).fetchone() == ("after",)
        got = c.execute(f"select id from {T} where id >= 2000").fetchall()
        assert got == [], got
    ok("pipeline_error_after_flush")


def binary_copy(c):
    dst = f"{T}_copy"
    c.execute(f"create table {dst} (id int, name text, at timestamptz, n numeric)")
    try:
        at = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc)
        c.execute("select 1").fetchone()  # COPY after an extended-protocol statement
        with c.cursor() as cur:
            with cur.copy(f"copy {dst} (id, name, at, n) from stdin (format binary)") as cp:
                cp.set_types(["int4", "text", "timestamptz", "numeric"])
                for i in range(20_000):
                    cp.write_row((i, f"p{i}", at, decimal.Decimal(i) / 8))
            assert cur.rowcount == 20_000, cur.rowcount
            with cur.copy(
                f"copy (select id, name, at, n from {dst} where id < 5 order by id)"
                " to stdout (format binary)"
            ) as cp:
                cp.set_types(["int4", "text", "timestamptz", "numeric"])
                rows = list(cp.rows())
        assert rows == [(i, f"p{i}", at, decimal.Decimal(i) / 8) for i in range(5)], rows
        assert c.execute(f"select count(*), sum(id) from {dst}").fetchone() == (
            20_000,
            sum(range(20_000)),
        )
        # A COPY failing midway (a text row that is not a number), then the connection works.
        def bad():
            with c.cursor().copy(f"copy {dst} (id) from stdin") as cp:
                cp.write(b"1\n2\nthree\n" + b"4\n" * 10_000)

        expect_error(errors.InvalidTextRepresentation, "22P02", bad)
        assert c.execute(f"select count(*) from {dst}").fetchone() == (20_000,)
    finally:
        c.execute(f"drop table if exists {dst}")
    ok("binary_copy")


def named_cursors():
    with psycopg.connect(URL) as c:  # not autocommit: a transaction holds the cursor
        with c.cursor(name="drv_cursor") as cur:
            cur.itersize = 17
            cur.execute(f"select id, name from {T} where id < %s order by id", (1000,))
            first = cur.fetchone()
            some = cur.fetchmany(10)
            rest = cur.fetchall()
        assert first == (1, "piped")
        assert len(some) == 10 and some[0] == (2, "n2")
        assert 1 + len(some) + len(rest) == 101
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        c.commit()
        # A scrollable one, and one that fails inside the transaction.
        with c.cursor(name="drv_scroll", scrollable=True) as cur:
            cur.execute(f"select id from {T} where id <= 10 order by id")
            cur.scroll(5, mode="absolute")
            assert cur.fetchone() == (6,)
            cur.scroll(-3)
            assert cur.fetchone() == (4,)
        c.rollback()

        def failing():
            with c.cursor(name="drv_bad") as cur:
                cur.execute("select 1 / (id - id) from " + T)
                cur.fetchall()

        expect_error(errors.DivisionByZero, "22012", failing)
        c.rollback()
        assert c.execute("select 1").fetchone() == (1,)
        c.rollback()
    ok("named_cursors_in_transaction")


def prepare_threshold():
    # threshold 0: every statement is prepared (named _pg3_N on every client); prepared_max 2
    # makes psycopg DEALLOCATE the ones it evicts.
    conns = [
        psycopg.connect(URL, autocommit=True, prepare_threshold=0) for _ in range(3)
    ] + [psycopg.connect(URL, autocommit=True, prepare_threshold=2) for _ in range(3)]
    try:
        for c in conns[:3]:
            c.prepared_max = 2
        for rnd in range(12):
            for k, c in enumerate(conns):
                q = rnd % 4
                row = c.execute(f"select %s::int * {q + 2} + %s::int", (rnd, k)).fetchone()
                assert row == (rnd * (q + 2) + k,), row
                row = c.execute(f"select name from {T} where id = %s", (rnd + 2,)).fetchone()
                assert row == (f"n{rnd + 2}",), row
        # The statement psycopg prepared is one it believes is on the server.
        c = conns[3]
        assert any(c._prepared._names.values()), "psycopg prepared nothing"
        expect_error(
            errors.UndefinedTable,
            "42P01",
            lambda: c.execute(f"select * from {T}_missing where id = %s", (1,), prepare=True),
        )
        assert c.execute("select %s::text", ("still",), prepare=True).fetchone() == ("still",)
    finally:
        for c in conns:
            c.close()
    ok("prepare_threshold")


def main():
    with psycopg.connect(URL, autocommit=True) as c:
        c.execute(f"create table {T} (id int primary key, name text)")
        try:
            pipeline(c)
            pipeline_error_after_flush(c)
            binary_copy(c)
            named_cursors()
            prepare_threshold()
        finally:
            c.execute(f"drop table if exists {T}")


main()
