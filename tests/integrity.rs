//! Transaction integrity: a transaction whose server connection dies ends with that server's error and a closed client, never half committed.

mod common;

use common::TestProxy;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// A client whose connection task's end is observable: (client, the connection's result).
async fn watched(
    url: &str,
) -> (
    Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    (client, tokio::spawn(conn))
}

fn sqlstate(e: &tokio_postgres::Error) -> Option<&str> {
    e.as_db_error().map(|d| d.code().code())
}

async fn count(table: &str) -> i64 {
    common::superuser()
        .await
        .query_one(&format!("select count(*) from {table}"), &[])
        .await
        .expect("count")
        .get(0)
}

async fn table(prefix: &str) -> String {
    let t = common::unique(prefix);
    common::superuser()
        .await
        .batch_execute(&format!(
            "create table {t} (id int primary key); grant all on {t} to app"
        ))
        .await
        .expect("create table");
    t
}

async fn drop_table(t: &str) {
    let _ = common::superuser()
        .await
        .batch_execute(&format!("drop table if exists {t}"))
        .await;
}

/// The connection's end, which must be the server's error with `code`, and the next statement
/// on the client must fail without running anywhere.
async fn assert_closed_with(
    client: &Client,
    conn: tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
    next: &str,
    code: &str,
) {
    let ended = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the proxy closes the client within 5 s")
        .expect("connection task");
    let err = ended.expect_err("the connection ends with the server's error");
    assert_eq!(sqlstate(&err), Some(code), "connection ended with {err}");
    let after = client.batch_execute(next).await;
    assert!(after.is_err(), "a statement after the loss must not run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_backend_in_transaction_closes_the_client_and_commits_nothing() {
    let proxy = TestProxy::start().await;
    let t = table("integrity_term").await;
    for simple in [true, false] {
        let (client, conn) = watched(&proxy.url("app", "app")).await;
        client.batch_execute("begin").await.expect("begin");
        if simple {
            client
                .batch_execute(&format!("insert into {t} values (1)"))
                .await
                .expect("insert a");
        } else {
            client
                .execute(&format!("insert into {t} values ($1)"), &[&1i32])
                .await
                .expect("insert a");
        }
        let pid: i32 = client
            .query_one("select pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);
        let killed: bool = common::superuser()
            .await
            .query_one("select pg_terminate_backend($1)", &[&pid])
            .await
            .expect("terminate")
            .get(0);
        assert!(killed);
        // The client, idle in its transaction, is told and closed without sending anything.
        assert_closed_with(
            &client,
            conn,
            &format!("insert into {t} values (2); insert into {t} values (3); commit"),
            "57P01",
        )
        .await;
        assert_eq!(
            count(&t).await,
            0,
            "nothing of the transaction is committed"
        );
    }
    drop_table(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_after_a_terminated_backend_never_succeeds() {
    // The raw protocol, so the next statements are already on their way when the loss is seen.
    use tokio::io::AsyncWriteExt;
    let proxy = TestProxy::start().await;
    let t = table("integrity_commit").await;
    let mut s = common::raw_authenticated(proxy.port(), "app", "app").await;
    let mut out = bytes::BytesMut::new();
    let query = |sql: &str, out: &mut bytes::BytesMut| {
        postgres_protocol::message::frontend::query(sql, out).expect("query");
    };
    query(&format!("begin; insert into {t} values (1)"), &mut out);
    s.write_all(&out).await.expect("send");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid: i32 = common::superuser()
        .await
        .query_one(
            "select pid from pg_stat_activity where query like $1 and state <> 'active'",
            &[&format!("%insert into {t}%")],
        )
        .await
        .expect("backend of the transaction")
        .get(0);
    common::superuser()
        .await
        .execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    out.clear();
    query(&format!("insert into {t} values (2)"), &mut out);
    query("commit", &mut out);
    // The proxy may already have closed the socket: a failed write is part of the expected end.
    let _ = s.write_all(&out).await;
    let reply = common::read_until_closed(&mut s).await;
    let text = String::from_utf8_lossy(&reply);
    // The server's own error, or 08006 when the proxy's write to the dead socket fails before
    // it has read the server's FATAL: either way the transaction is reported lost.
    assert!(
        text.contains("57P01") || text.contains("08006"),
        "the loss reaches the client as an error: {text:?}"
    );
    assert!(
        !text.contains("COMMIT"),
        "no COMMIT is acknowledged after the loss: {text:?}"
    );
    assert_eq!(count(&t).await, 0);
    drop_table(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_idle_in_transaction_timeout_reaches_the_client() {
    let proxy = TestProxy::start().await;
    let t = table("integrity_idle").await;
    let (client, conn) = watched(&proxy.url("app", "app")).await;
    client
        .batch_execute(&format!(
            "begin; set local idle_in_transaction_session_timeout = 300; insert into {t} values (1)"
        ))
        .await
        .expect("transaction");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_closed_with(
        &client,
        conn,
        &format!("insert into {t} values (2); commit"),
        "25P03",
    )
    .await;
    assert_eq!(count(&t).await, 0);
    drop_table(&t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_session_whose_server_dies_is_closed() {
    let proxy = TestProxy::start().await;
    let (client, conn) = watched(&proxy.url("app", "app")).await;
    // A temporary table pins the session: its server connection holds state.
    client
        .batch_execute(
            "create temporary table integrity_pin (x int); insert into integrity_pin values (1)",
        )
        .await
        .expect("pin");
    let pid: i32 = client
        .query_one("select pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);
    common::superuser()
        .await
        .execute("select pg_terminate_backend($1)", &[&pid])
        .await
        .expect("terminate");
    assert_closed_with(&client, conn, "select * from integrity_pin", "57P01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_server_between_transactions_is_invisible() {
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 1\n").await;
    let t = table("integrity_between").await;
    let (client, conn) = watched(&proxy.url("app", "app")).await;
    client
        .batch_execute(&format!("begin; insert into {t} values (1); commit"))
        .await
        .expect("first transaction");
    // The pool of one holds the connection that served it; end that backend.
    common::superuser()
        .await
        .execute(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where usename = 'app' and backend_type = 'client backend' and query like $1",
            &[&format!("%{t}%")],
        )
        .await
        .expect("terminate");
    tokio::time::sleep(Duration::from_millis(200)).await;
    client
        .batch_execute(&format!("begin; insert into {t} values (2); commit"))
        .await
        .expect("the next transaction takes a fresh server");
    assert_eq!(count(&t).await, 2);
    assert!(!conn.is_finished(), "the client stays connected");
    drop_table(&t).await;
}
