// pgjdbc through pgsplit: prepareThreshold crossing to server-side statements, batches, binary
// transfer, autocommit off, CopyManager, errors with their SQLSTATE. Run as a single source file
// (java -cp postgresql.jar JdbcChecks.java); prints "ok <check>" per check, exits 1 on a failure.

import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.Arrays;
import java.util.Properties;
import java.util.UUID;
import org.postgresql.PGConnection;
import org.postgresql.PGStatement;
import org.postgresql.copy.CopyManager;

public class JdbcChecks {
    static String table;

    static void check(boolean cond, String what) {
        if (!cond) {
            throw new AssertionError(what);
        }
    }

    static void ok(String name) {
        System.out.println("ok " + name);
    }

    interface Body {
        void run() throws Exception;
    }

    static void expectState(String state, Body body) throws Exception {
        try {
            body.run();
        } catch (SQLException e) {
            check(state.equals(e.getSQLState()), "SQLSTATE " + e.getSQLState() + ", expected " + state + ": " + e);
            return;
        }
        throw new AssertionError("expected SQLSTATE " + state);
    }

    static Connection connect(String url, Properties base, String... kv) throws SQLException {
        Properties p = new Properties();
        p.putAll(base);
        for (int i = 0; i < kv.length; i += 2) {
            p.setProperty(kv[i], kv[i + 1]);
        }
        return DriverManager.getConnection(url, p);
    }

    static long count(Connection c, String where) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select count(*) from " + table + " " + where)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        // PGSPLIT_DRIVER_URL is postgres://user:password@host:port/db.
        java.net.URI u = new java.net.URI(System.getenv("PGSPLIT_DRIVER_URL"));
        String[] userInfo = u.getUserInfo().split(":", 2);
        String url = "jdbc:postgresql://" + u.getHost() + ":" + u.getPort() + u.getPath();
        Properties base = new Properties();
        base.setProperty("user", userInfo[0]);
        base.setProperty("password", userInfo[1]);
        table = "drv_" + System.getenv("PGSPLIT_DRIVER_TAG") + "_jdbc";

        try (Connection c = connect(url, base, "prepareThreshold", "3")) {
            try (Statement s = c.createStatement()) {
                s.execute("create table " + table + " (id int primary key, name text, n numeric, at timestamptz)");
            }
            try {
                prepareThreshold(c);
                batches(c);
                binaryTransfer(url, base);
                autocommitOff(c);
                copyManager(c);
            } finally {
                c.setAutoCommit(true);
                try (Statement s = c.createStatement()) {
                    s.execute("drop table if exists " + table);
                }
            }
        }
    }

    static void prepareThreshold(Connection c) throws Exception {
        try (PreparedStatement ps = c.prepareStatement("select ?::int * 2, ?::text")) {
            for (int i = 0; i < 10; i++) {
                ps.setInt(1, i);
                ps.setString(2, "s" + i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getInt(1) == i * 2 && rs.getString(2).equals("s" + i), "row " + i);
                }
            }
            // From the third execution on, pgjdbc used a named server statement (S_n).
            check(ps.unwrap(PGStatement.class).isUseServerPrepare(), "isUseServerPrepare");
        }
        // Server statements made on one server connection, used after the pool moved us.
        try (PreparedStatement ps = c.prepareStatement("select ?::int + 100")) {
            for (int i = 0; i < 8; i++) {
                ps.setInt(1, i);
                try (ResultSet rs = ps.executeQuery()) {
                    check(rs.next() && rs.getInt(1) == i + 100, "plus " + i);
                }
                try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery("select pg_backend_pid()")) {
                    check(rs.next(), "pid");
                }
            }
        }
        expectState("22012", () -> {
            try (PreparedStatement ps = c.prepareStatement("select 1 / ?::int")) {
                for (int i = 0; i < 4; i++) {
                    ps.setInt(1, 3 - i); // the fourth, server-prepared, divides by zero
                    ps.executeQuery().close();
                }
            }
        });
        ok("prepare_threshold");
    }

    static void batches(Connection c) throws Exception {
        try (PreparedStatement ps = c.prepareStatement("insert into " + table + " (id, name, n) values (?, ?, ?)")) {
            for (int i = 0; i < 1000; i++) {
                ps.setInt(1, i);
                ps.setString(2, "b" + i);
                ps.setBigDecimal(3, new BigDecimal(i).movePointLeft(2));
                ps.addBatch();
            }
            int[] counts = ps.executeBatch();
            check(counts.length == 1000 && Arrays.stream(counts).allMatch(n -> n == 1), "batch counts");
        }
        check(count(c, "") == 1000, "1000 rows");
        // A batch with a duplicate fails with 23505; the batch ran before one Sync, as one
        // implicit transaction, so none of it stays.
        expectState("23505", () -> {
            try (PreparedStatement ps = c.prepareStatement("insert into " + table + " (id, name) values (?, ?)")) {
                for (int id : new int[] {5000, 5001, 1, 5002}) {
                    ps.setInt(1, id);
                    ps.setString(2, "dup");
                    ps.addBatch();
                }
                try {
                    ps.executeBatch();
                } catch (java.sql.BatchUpdateException e) {
                    throw e.getNextException() != null ? e.getNextException() : e;
                }
            }
        });
        check(count(c, "where id >= 5000") == 0, "the failed batch left nothing");
        try (Statement s = c.createStatement()) {
            s.addBatch("update " + table + " set name = 'x' where id < 10");
            s.addBatch("update " + table + " set name = 'y' where id >= 990");
            int[] counts = s.executeBatch();
            check(counts[0] == 10 && counts[1] == 10, "statement batch counts");
        }
        ok("batches");
    }

    static void binaryTransfer(String url, Properties base) throws Exception {
        // prepareThreshold -1: every statement server-prepared, results in binary from the first.
        try (Connection c = connect(url, base, "prepareThreshold", "-1", "binaryTransfer", "true")) {
            UUID id = UUID.randomUUID();
            Timestamp at = Timestamp.valueOf("2024-03-04 05:06:07.123456");
            try (PreparedStatement ps = c.prepareStatement(
                    "select ?::uuid, ?::timestamp, ?::numeric, ?::bytea, ?::float8, ?::int8, array[1, 2, null]::int4[], ?::date")) {
                ps.setObject(1, id);
                ps.setTimestamp(2, at);
                ps.setBigDecimal(3, new BigDecimal("-12345678901234.000042"));
                ps.setBytes(4, new byte[] {0, 1, (byte) 0xff});
                ps.setDouble(5, 2.5e-300);
                ps.setLong(6, Long.MIN_VALUE + 1);
                ps.setDate(7, java.sql.Date.valueOf("2000-02-29"));
                for (int round = 0; round < 3; round++) {
                    try (ResultSet rs = ps.executeQuery()) {
                        check(rs.next(), "binary row");
                        check(id.equals(rs.getObject(1)), "uuid");
                        check(at.equals(rs.getTimestamp(2)), "timestamp " + rs.getTimestamp(2));
                        check(new BigDecimal("-12345678901234.000042").equals(rs.getBigDecimal(3)), "numeric");
                        check(Arrays.equals(new byte[] {0, 1, (byte) 0xff}, rs.getBytes(4)), "bytea");
                        check(rs.getDouble(5) == 2.5e-300, "float8");
                        check(rs.getLong(6) == Long.MIN_VALUE + 1, "int8");
                        Object[] arr = (Object[]) rs.getArray(7).getArray();
                        check(Arrays.equals(new Object[] {1, 2, null}, arr), "int4[] " + Arrays.toString(arr));
                        check(java.sql.Date.valueOf("2000-02-29").equals(rs.getDate(8)), "date");
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("select id, n from " + table + " where id between ? and ? order by id")) {
                ps.setInt(1, 10);
                ps.setInt(2, 12);
                try (ResultSet rs = ps.executeQuery()) {
                    for (int i = 10; i <= 12; i++) {
                        check(rs.next() && rs.getInt(1) == i, "id " + i);
                        check(new BigDecimal(i).movePointLeft(2).compareTo(rs.getBigDecimal(2)) == 0, "n " + i);
                    }
                    check(!rs.next(), "three rows");
                }
            }
        }
        ok("binary_transfer");
    }

    static void autocommitOff(Connection c) throws Exception {
        c.setAutoCommit(false);
        try (PreparedStatement ps = c.prepareStatement("insert into " + table + " (id, name) values (?, ?)")) {
            ps.setInt(1, 7000);
            ps.setString(2, "rolled back");
            ps.executeUpdate();
            check(count(c, "where id = 7000") == 1, "visible in its transaction");
            c.rollback();
            check(count(c, "where id = 7000") == 0, "rolled back");
            ps.setInt(1, 7001);
            ps.setString(2, "committed");
            ps.executeUpdate();
            c.commit();
        }
        expectState("23505", () -> {
            try (Statement s = c.createStatement()) {
                s.executeUpdate("insert into " + table + " (id) values (7001)");
            }
        });
        expectState("25P02", () -> count(c, ""));
        c.rollback();
        // A fetch size makes pgjdbc read through a named portal in the transaction.
        try (PreparedStatement ps = c.prepareStatement("select id from " + table + " where id < 1000 order by id")) {
            ps.setFetchSize(100);
            long n = 0;
            long sum = 0;
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    n++;
                    sum += rs.getInt(1);
                }
            }
            check(n == 1000 && sum == 999L * 1000 / 2, "fetched " + n);
        }
        c.commit();
        c.setAutoCommit(true);
        check(count(c, "where id = 7001") == 1, "committed row");
        ok("autocommit_off");
    }

    static void copyManager(Connection c) throws Exception {
        CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
        StringBuilder sb = new StringBuilder();
        for (int i = 10000; i < 30000; i++) {
            sb.append(i).append("\tc").append(i).append('\n');
        }
        long n = cm.copyIn("copy " + table + " (id, name) from stdin", new StringReader(sb.toString()));
        check(n == 20000, "copied in " + n);
        StringWriter out = new StringWriter();
        n = cm.copyOut("copy (select id from " + table + " where id >= 10000 and id < 10003 order by id) to stdout", out);
        check(n == 3 && out.toString().equals("10000\n10001\n10002\n"), "copied out " + out);
        expectState("22P02", () -> cm.copyIn("copy " + table + " (id) from stdin", new StringReader("40000\nbad\n40001\n")));
        check(count(c, "where id >= 40000") == 0, "failed copy left nothing");
        ok("copy_manager");
    }
}
