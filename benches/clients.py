#!/usr/bin/env python3
"""Many PostgreSQL client connections at once, for benches/compare.sh.

  clients.py idle  --port P --pid PID --counts 1000,5000 [--client asyncpg|raw]
      Opens connections in steps up to each count (each runs SELECT 1 once, then stays open and
      idle), and after each step reads VmRSS of process PID from /proc. Prints one JSON object per line:
      {"count": N, "ok": N_OK, "failed": N_FAILED, "rss_before_kib": .., "rss_kib": .., "per_client_kib": .., "errors": {...}}
  clients.py storm --port P --count 2000 [--client asyncpg|raw]
      Starts COUNT logins at once (asyncio.gather); each runs SELECT 1 and closes.
      Prints {"count": .., "ok": .., "failed": .., "wall_s": .., "errors": {...}}.

Clients:
  asyncpg  the asyncpg library (pip install asyncpg). Its SCRAM client runs PBKDF2 (4096 rounds of
           HMAC-SHA-256) in Python for every login, several ms of client CPU per login on a small
           machine, which is shared with the proxy under test.
  raw      a minimal protocol client using only the standard library: startup, SCRAM-SHA-256 with a
           fresh nonce and full proof/signature check per login, simple query, Terminate. It derives
           the salted password once per (salt, iterations) and reuses it, so the client's CPU does
           not dominate the measurement of the proxy.

Always 127.0.0.1; user/password/database default to app/app/app.
"""

import argparse
import asyncio
import base64
import collections
import hashlib
import hmac
import json
import os
import struct
import sys
import time

HOST = "127.0.0.1"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def short_error(e):
    s = f"{type(e).__name__}: {e}".replace("\n", " ")
    return s[:160]


# --- raw client -------------------------------------------------------------------------------

_salted_cache = {}


class PgError(Exception):
    pass


class RawConn:
    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    async def read_msg(self):
        head = await self.reader.readexactly(5)
        kind = head[:1]
        (length,) = struct.unpack("!I", head[1:])
        body = await self.reader.readexactly(length - 4)
        return kind, body

    def send(self, kind, body):
        self.writer.write(kind + struct.pack("!I", len(body) + 4) + body)

    @staticmethod
    def error_text(body):
        fields = {}
        for part in body.split(b"\0"):
            if part:
                fields[part[:1]] = part[1:].decode(errors="replace")
        return f"{fields.get(b'C', '?')} {fields.get(b'M', '?')}"

    async def expect_auth(self):
        kind, body = await self.read_msg()
        if kind == b"E":
            raise PgError(self.error_text(body))
        if kind != b"R":
            raise PgError(f"unexpected message {kind!r} during authentication")
        (code,) = struct.unpack("!I", body[:4])
        return code, body[4:]

    @classmethod
    async def connect(cls, port, user, password, database):
        reader, writer = await asyncio.open_connection(HOST, port)
        conn = cls(reader, writer)
        params = b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
        body = struct.pack("!I", 196608) + params
        writer.write(struct.pack("!I", len(body) + 4) + body)
        code, rest = await conn.expect_auth()
        if code == 10:
            await conn.scram(rest, password)
        elif code != 0:
            raise PgError(f"unsupported authentication request {code}")
        while True:
            kind, body = await conn.read_msg()
            if kind == b"Z":
                return conn
            if kind == b"E":
                raise PgError(conn.error_text(body))

    async def scram(self, mechanisms, password):
        if b"SCRAM-SHA-256\0" not in mechanisms:
            raise PgError(f"server offers {mechanisms!r}")
        nonce = base64.b64encode(os.urandom(18)).decode()
        first_bare = f"n=,r={nonce}"
        first = ("n,," + first_bare).encode()
        self.send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
        code, server_first = await self.expect_auth()
        if code != 11:
            raise PgError(f"expected SASLContinue, got {code}")
        server_first = server_first.decode()
        attrs = dict(a.split("=", 1) for a in server_first.split(","))
        if not attrs["r"].startswith(nonce):
            raise PgError("server nonce does not extend the client nonce")
        salt = base64.b64decode(attrs["s"])
        iterations = int(attrs["i"])
        key = (password, salt, iterations)
        salted = _salted_cache.get(key)
        if salted is None:
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
            _salted_cache[key] = salted
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        final_wo_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{first_bare},{server_first},{final_wo_proof}".encode()
        signature = hmac.digest(stored_key, auth_message, "sha256")
        proof = bytes(a ^ b for a, b in zip(client_key, signature))
        final = f"{final_wo_proof},p={base64.b64encode(proof).decode()}".encode()
        self.send(b"p", final)
        code, server_final = await self.expect_auth()
        if code != 12:
            raise PgError(f"expected SASLFinal, got {code}")
        server_key = hmac.digest(salted, b"Server Key", "sha256")
        expected = base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
        if server_final.decode() != f"v={expected}":
            raise PgError("server signature does not match")
        code, _ = await self.expect_auth()
        if code != 0:
            raise PgError(f"expected AuthenticationOk, got {code}")

    async def fetchval(self, sql):
        self.send(b"Q", sql.encode() + b"\0")
        await self.writer.drain()
        value, error = None, None
        while True:
            kind, body = await self.read_msg()
            if kind == b"D":
                (n,) = struct.unpack("!H", body[:2])
                if n:
                    (ln,) = struct.unpack("!i", body[2:6])
                    value = body[6 : 6 + ln].decode() if ln >= 0 else None
            elif kind == b"E":
                error = self.error_text(body)
            elif kind == b"Z":
                if error:
                    raise PgError(error)
                return value

    async def close(self):
        try:
            self.send(b"X", b"")
            await self.writer.drain()
        except Exception:
            pass
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except Exception:
            pass


# --- asyncpg client ---------------------------------------------------------------------------


class AsyncpgConn:
    def __init__(self, conn):
        self.conn = conn

    @classmethod
    async def connect(cls, port, user, password, database):
        import asyncpg

        conn = await asyncpg.connect(
            host=HOST, port=port, user=user, password=password, database=database,
            ssl=False, timeout=120, statement_cache_size=0,
        )
        return cls(conn)

    async def fetchval(self, sql):
        return await self.conn.fetchval(sql)

    async def close(self):
        try:
            await self.conn.close(timeout=10)
        except Exception:
            self.conn.terminate()


def client_class(name):
    return {"raw": RawConn, "asyncpg": AsyncpgConn}[name]


# --- modes ------------------------------------------------------------------------------------


async def idle(args):
    cls = client_class(args.client)
    counts = [int(c) for c in args.counts.split(",")]
    sem = asyncio.Semaphore(args.parallel)
    conns = []
    errors = collections.Counter()

    async def one():
        async with sem:
            try:
                c = await cls.connect(args.port, args.user, args.password, args.database)
                # Issue 13's idle client has run one query: what a request leaves behind counts.
                if str(await c.fetchval("SELECT 1")) != "1":
                    raise PgError("SELECT 1 did not return 1")
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                errors[short_error(e)] += 1
                return
            conns.append(c)

    await asyncio.sleep(0.5)
    base = rss_kib(args.pid)
    opened = 0
    for count in counts:
        errors_before = sum(errors.values())
        await asyncio.gather(*(one() for _ in range(count - opened)))
        opened = count
        await asyncio.sleep(args.settle)
        rss = rss_kib(args.pid)
        # The connections must still be usable: check a sample after measuring.
        alive = 0
        for c in conns[: args.check]:
            try:
                if str(await c.fetchval("SELECT 1")) == "1":
                    alive += 1
            except Exception as e:  # noqa: BLE001
                errors["check: " + short_error(e)] += 1
        ok = len(conns)
        print(json.dumps({
            "count": count, "ok": ok, "failed": count - ok,
            "new_failures": sum(errors.values()) - errors_before,
            "checked_alive": alive, "checked": min(args.check, ok),
            "rss_before_kib": base, "rss_kib": rss,
            "per_client_kib": round((rss - base) / ok, 2) if ok else None,
            "errors": dict(errors.most_common(3)),
        }), flush=True)
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def storm(args):
    cls = client_class(args.client)
    errors = collections.Counter()
    if args.client == "raw":
        # Derive the salted password before the clock starts (one login, not timed).
        c = await cls.connect(args.port, args.user, args.password, args.database)
        await c.close()
        await asyncio.sleep(0.5)

    async def one():
        try:
            c = await cls.connect(args.port, args.user, args.password, args.database)
            try:
                v = await c.fetchval("SELECT 1")
                if str(v) != "1":
                    raise PgError(f"SELECT 1 returned {v!r}")
            finally:
                await c.close()
            return True
        except Exception as e:  # noqa: BLE001
            errors[short_error(e)] += 1
            return False

    t0 = time.monotonic()
    c0 = os.times()
    results = await asyncio.gather(*(one() for _ in range(args.count)))
    wall = time.monotonic() - t0
    c1 = os.times()
    ok = sum(results)
    print(json.dumps({
        "count": args.count, "ok": ok, "failed": args.count - ok,
        "wall_s": round(wall, 3),
        "client_cpu_s": round(c1.user + c1.system - c0.user - c0.system, 3),
        "errors": dict(errors.most_common(3)),
    }), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("idle", "storm"):
        s = sub.add_parser(name)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--client", choices=("asyncpg", "raw"), default="asyncpg")
        s.add_argument("--user", default="app")
        s.add_argument("--password", default="app")
        s.add_argument("--database", default="app")
    i = sub.choices["idle"]
    i.add_argument("--pid", type=int, required=True, help="process whose VmRSS is measured")
    i.add_argument("--counts", default="1000,5000", help="ascending totals of open connections")
    i.add_argument("--parallel", type=int, default=64, help="logins in flight at once")
    i.add_argument("--settle", type=float, default=1.0, help="seconds to wait before measuring")
    i.add_argument("--check", type=int, default=20, help="connections that run SELECT 1 after each step")
    sub.choices["storm"].add_argument("--count", type=int, default=2000)
    args = p.parse_args()
    asyncio.run(idle(args) if args.mode == "idle" else storm(args))


if __name__ == "__main__":
    sys.exit(main())
