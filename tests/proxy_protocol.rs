//! The extended protocol, prepared statements over a small pool, pipelines, COPY, cancel and large results.

mod common;
use common::*;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use std::time::Duration;

#[tokio::test]
async fn twenty_clients_share_two_server_connections_with_named_statements() {
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 2\nreplica_size = 2\n").await;
    let mut tasks = Vec::new();
    for i in 0..20i32 {
        let url = proxy.url("app", "app");
        tasks.push(tokio::spawn(async move {
            let c = connect(&url).await;
            let read = c
                .prepare("select $1::int + 1, pg_is_in_recovery()")
                .await
                .unwrap();
            let write = c
                .prepare("select $1::int * 2, txid_current() > 0")
                .await
                .unwrap();
            for round in 0..25 {
                let r = c.query_one(&read, &[&(i * 100 + round)]).await.unwrap();
                assert_eq!(r.get::<_, i32>(0), i * 100 + round + 1);
                let w = c.query_one(&write, &[&round]).await.unwrap();
                assert_eq!(w.get::<_, i32>(0), round * 2);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn pipelined_queries_on_one_connection() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    let stmt = c.prepare("select $1::int").await.unwrap();
    let futs: Vec<_> = (0..50i32)
        .map(|i| {
            let c = &c;
            let stmt = stmt.clone();
            async move { c.query_one(&stmt, &[&i]).await.map(|r| r.get::<_, i32>(0)) }
        })
        .collect();
    let results = futures_util::future::join_all(futs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap(), i as i32);
    }
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn copy_in_and_out() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    let t = unique("cp");
    c.batch_execute(&format!("create table {t} (id int, v text)"))
        .await
        .unwrap();
    let sink = c.copy_in(&format!("copy {t} from stdin")).await.unwrap();
    pin_mut!(sink);
    let mut data = String::new();
    for i in 0..10_000 {
        data.push_str(&format!("{i}\trow {i}\n"));
    }
    sink.send(bytes::Bytes::from(data)).await.unwrap();
    let n = sink.finish().await.unwrap();
    assert_eq!(n, 10_000);
    let out = c.copy_out(&format!("copy {t} to stdout")).await.unwrap();
    let chunks: Vec<bytes::Bytes> = out.try_collect().await.unwrap();
    let total: usize = chunks
        .iter()
        .map(|b| b.iter().filter(|&&x| x == b'\n').count())
        .sum();
    assert_eq!(total, 10_000);
    c.batch_execute(&format!("drop table {t}")).await.unwrap();
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn cancel_reaches_the_running_query_only() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    let other = proxy.connect().await;
    let token = c.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel_query(tokio_postgres::NoTls).await.unwrap();
    });
    let slow = tokio::spawn(async move {
        other
            .query_one("select pg_sleep(0.6)::text", &[])
            .await
            .map(|_| ())
    });
    let err = c.query_one("select pg_sleep(10)", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("57014"), "{err}");
    canceller.await.unwrap();
    slow.await
        .unwrap()
        .expect("the other client's query was not cancelled");
    // The session still works after the cancel.
    let v: i32 = c.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(v, 1);
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn error_in_transaction_then_rollback_keeps_the_connection() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    c.batch_execute("begin").await.unwrap();
    let e = c.query("select 1/0", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("22012"));
    let e = c.query("select 1", &[]).await.unwrap_err();
    assert_eq!(e.code().map(|c| c.code()), Some("25P02"));
    c.batch_execute("rollback").await.unwrap();
    let v: i32 = c.query_one("select 2", &[]).await.unwrap().get(0);
    assert_eq!(v, 2);
    // A failing statement outside a transaction, in both protocols.
    assert!(c
        .simple_query("select * from no_such_table_x")
        .await
        .is_err());
    assert!(c.query("select * from no_such_table_y", &[]).await.is_err());
    let v: i32 = c.query_one("select 3", &[]).await.unwrap().get(0);
    assert_eq!(v, 3);
    proxy.handle.shutdown().await;
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_million_rows_stream_with_flat_memory() {
    // The client is a separate psql process, so this process's memory is the proxy's alone.
    let proxy = TestProxy::start().await;
    let port = proxy.port().to_string();
    let before = rss_kib();
    let mut child = tokio::process::Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "app",
            "-d",
            "app",
            "-AtX",
            "-o",
            "/dev/null",
        ])
        .args([
            "-c",
            "select g, repeat('x', 50) from generate_series(1, 1000000) g",
        ])
        .env("PGPASSWORD", "app")
        .spawn()
        .expect("psql");
    let mut peak = before;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        peak = peak.max(rss_kib());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success());
    // The result is about 70 MB on the wire; the proxy holds only a few read buffers of it.
    assert!(
        peak - before < 16 * 1024,
        "proxy memory grew by {} KiB",
        peak - before
    );
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn close_and_reprepare_and_describe() {
    let proxy = TestProxy::start_with("[pool]\nprimary_size = 1\nreplica_size = 1\n").await;
    let c = proxy.connect().await;
    for i in 0..30i32 {
        let s = c.prepare("select $1::int, $2::text").await.unwrap();
        assert_eq!(s.params().len(), 2);
        assert_eq!(s.columns().len(), 2);
        let r = c.query_one(&s, &[&i, &"x"]).await.unwrap();
        assert_eq!(r.get::<_, i32>(0), i);
        drop(s); // tokio-postgres sends Close for the statement
    }
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn flush_on_a_replica_then_a_write_does_not_hang() {
    use postgres_protocol::message::frontend;
    use tokio::io::AsyncWriteExt;
    let proxy = TestProxy::start().await;
    let mut s = raw_authenticated(proxy.port(), "app", "app").await;
    let mut out = bytes::BytesMut::new();
    // A read prepared with Flush (no Sync): held on a replica in an implicit transaction.
    frontend::parse("", "select 1", std::iter::empty(), &mut out).unwrap();
    frontend::describe(b'S', "", &mut out).unwrap();
    frontend::flush(&mut out);
    s.write_all(&out).await.unwrap();
    let mut buf = bytes::BytesMut::new();
    let got = wire::read_until(&mut s, &mut buf, b'T').await;
    assert_eq!(wire::show(&got), "1tT");
    // Now a statement that needs the primary, ended by Sync.
    out.clear();
    frontend::parse(
        "",
        "select txid_current() > 0, pg_is_in_recovery()",
        std::iter::empty(),
        &mut out,
    )
    .unwrap();
    wire::bind("", "", &mut out);
    frontend::execute("", 0, &mut out).unwrap();
    frontend::sync(&mut out);
    s.write_all(&out).await.unwrap();
    let got = wire::read_until(&mut s, &mut buf, b'Z').await;
    assert_eq!(wire::show(&got), "12DCZ");
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn notices_notifications_and_empty_queries_pass_through() {
    use futures_util::StreamExt;
    use tokio_postgres::AsyncMessage;
    let proxy = TestProxy::start().await;
    let (listener, mut conn) =
        tokio_postgres::connect(&proxy.url("app", "app"), tokio_postgres::NoTls)
            .await
            .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notice(n)) => {
                    let _ = tx.send(format!("notice:{}", n.message()));
                }
                Ok(AsyncMessage::Notification(n)) => {
                    let _ = tx.send(format!("notify:{}:{}", n.channel(), n.payload()));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let channel = unique("chan");
    // LISTEN pins this client to its server connection, so the notification reaches it.
    listener
        .batch_execute(&format!("listen {channel}"))
        .await
        .unwrap();
    listener
        .batch_execute("do $$ begin raise notice 'hello from the server'; end $$")
        .await
        .unwrap();
    let other = proxy.connect().await;
    other
        .batch_execute(&format!("notify {channel}, 'payload-1'"))
        .await
        .unwrap();
    // Any request on the listening connection lets the client read what the server queued.
    let mut seen = Vec::new();
    for _ in 0..50 {
        listener.simple_query("").await.unwrap();
        while let Ok(m) = rx.try_recv() {
            seen.push(m);
        }
        if seen.iter().any(|m| m.starts_with("notify:")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        seen.contains(&"notice:hello from the server".to_string()),
        "{seen:?}"
    );
    assert!(
        seen.contains(&format!("notify:{channel}:payload-1")),
        "{seen:?}"
    );
    // The empty query answered EmptyQueryResponse (simple_query returned Ok above).
    proxy.handle.shutdown().await;
}
