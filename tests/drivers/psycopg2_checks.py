"""psycopg2 (libpq) through pgsplit: execute_values, named cursors, copy_expert, errors.
Prints "ok <check>" per check."""

import io
import os

import psycopg2
import psycopg2.errors
import psycopg2.extras

URL = os.environ["PGSPLIT_DRIVER_URL"]
TAG = os.environ["PGSPLIT_DRIVER_TAG"]
T = f"drv_{TAG}_pg2"


def ok(name):
    print("ok", name, flush=True)


def main():
    c = psycopg2.connect(URL)
    cur = c.cursor()
    cur.execute(f"create table {T} (id int primary key, name text, tags text[])")
    c.commit()
    try:
        rows = [(i, f"v{i}", [f"t{i % 3}"]) for i in range(1000)]
        psycopg2.extras.execute_values(
            cur, f"insert into {T} (id, name, tags) values %s", rows, page_size=150
        )
        c.commit()
        cur.execute(f"select count(*), max(id) from {T}")
        assert cur.fetchone() == (1000, 999)
        got = psycopg2.extras.execute_values(
            cur,
            f"update {T} as t set name = v.name from (values %s) as v(id, name)"
            " where t.id = v.id returning t.id",
            [(i, f"u{i}") for i in range(10)],
            fetch=True,
        )
        assert sorted(r[0] for r in got) == list(range(10))
        c.commit()
        cur.execute(f"select name, tags from {T} where id = %s", (4,))
        assert cur.fetchone() == ("u4", ["t1"])
        c.commit()
        ok("execute_values")

        named = c.cursor(name="drv_named")
        named.itersize = 64
        named.execute(f"select id, name from {T} order by id")
        seen = [r for r in named]
        assert len(seen) == 1000 and seen[500] == (500, "v500"), seen[500]
        named.close()
        c.commit()
        held = c.cursor(name="drv_hold", withhold=True)
        held.execute(f"select id from {T} where id < 100 order by id")
        c.commit()  # WITH HOLD: survives the commit (and pins the session to its server)
        assert [r[0] for r in held.fetchmany(5)] == [0, 1, 2, 3, 4]
        held.close()
        c.commit()
        ok("named_cursors")

        buf = io.StringIO("".join(f"{i}\tc{i}\t{{x}}\n" for i in range(2000, 2500)))
        cur.copy_expert(f"copy {T} (id, name, tags) from stdin", buf)
        c.commit()
        out = io.StringIO()
        cur.copy_expert(f"copy (select id from {T} where id >= 2000) to stdout", out)
        assert len(out.getvalue().splitlines()) == 500
        c.commit()
        ok("copy_expert")

        try:
            cur.execute(f"insert into {T} (id) values (1)")
            raise AssertionError("duplicate accepted")
        except psycopg2.errors.UniqueViolation as e:
            assert e.pgcode == "23505"
        try:
            cur.execute("select 1")
            raise AssertionError("statement ran in a failed transaction")
        except psycopg2.errors.InFailedSqlTransaction as e:
            assert e.pgcode == "25P02"
        c.rollback()
        cur.execute("select %s::int", (7,))
        assert cur.fetchone() == (7,)
        c.commit()
        ok("errors_sqlstate")
    finally:
        c.rollback()
        cur.execute(f"drop table if exists {T}")
        c.commit()
        c.close()


main()
