//! Routing through the real proxy: reads on the replica, writes and transactions on the primary.

mod common;
use common::*;

async fn in_recovery(c: &tokio_postgres::Client, sql: &str) -> bool {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

#[tokio::test]
async fn reads_go_to_the_replica_and_transactions_to_the_primary() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    assert!(
        in_recovery(&c, "select pg_is_in_recovery()").await,
        "plain read on replica"
    );
    c.batch_execute("begin").await.unwrap();
    assert!(
        !in_recovery(&c, "select pg_is_in_recovery()").await,
        "read in transaction on primary"
    );
    c.batch_execute("commit").await.unwrap();
    assert!(in_recovery(&c, "select pg_is_in_recovery()").await);
    assert!(
        !in_recovery(&c, "/* pgsplit:primary */ select pg_is_in_recovery()").await,
        "hint forces primary"
    );
    // Simple protocol too.
    let rows = c
        .simple_query("select pg_is_in_recovery()::text")
        .await
        .unwrap();
    let v = rows.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(v.as_deref(), Some("true"));
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn writes_and_write_like_reads_succeed_on_the_primary() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    let t = unique("rt");
    let seq = format!("{t}_seq");
    c.batch_execute(&format!(
        "create table {t} (id int primary key, v text); create sequence {seq};
         create function {t}_bump() returns int language sql volatile as 'select 1';"
    ))
    .await
    .unwrap();
    let id: i32 = c
        .query_one(
            &format!("insert into {t} values (1, 'a') returning id"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(id, 1);
    let v: String = c
        .query_one(
            &format!("update {t} set v = 'b' where id = 1 returning v"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(v, "b");
    let n: i64 = c
        .query_one(&format!("select nextval('{seq}')"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    // These would fail with "cannot execute ... in a read-only transaction" on a replica.
    c.query(&format!("select * from {t} for update"), &[])
        .await
        .unwrap();
    c.query(&format!("select * from {t} for no key update"), &[])
        .await
        .unwrap();
    c.query(&format!("select * from {t} for share skip locked"), &[])
        .await
        .unwrap();
    let moved = c
        .query(
            &format!("with d as (delete from {t} where id = 1 returning *) select count(*) from d"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(moved[0].get::<_, i64>(0), 1);
    c.query(&format!("select {t}_bump()"), &[]).await.unwrap();
    c.execute(&format!("insert into {t} values (2, 'x')"), &[])
        .await
        .unwrap();
    let d = c
        .execute(&format!("delete from {t} where id = 2"), &[])
        .await
        .unwrap();
    assert_eq!(d, 1);
    c.batch_execute(&format!(
        "drop table {t}; drop sequence {seq}; drop function {t}_bump()"
    ))
    .await
    .unwrap();
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn multi_statement_simple_query_with_a_write_goes_to_the_primary() {
    let proxy = TestProxy::start().await;
    let c = proxy.connect().await;
    let t = unique("ms");
    let msgs = c
        .simple_query(&format!(
            "create table {t} (id int); insert into {t} values (1); select pg_is_in_recovery()::text; drop table {t}"
        ))
        .await
        .unwrap();
    let v = msgs.iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
        _ => None,
    });
    assert_eq!(v.as_deref(), Some("false"));
    proxy.handle.shutdown().await;
}

#[tokio::test]
async fn reads_fall_back_to_the_primary_when_no_replica_answers() {
    // A replica address where nothing listens.
    let env = pgsplit::config::EnvOverrides {
        primary: Some(primary_addr()),
        replicas: Some("127.0.0.1:1".into()),
        ..Default::default()
    };
    let config = pgsplit::config::Config::from_toml(&config_text(""), &env).unwrap();
    let listener = pgsplit::bind(config.listen, 128).unwrap();
    let handle = pgsplit::start(std::sync::Arc::new(config), listener)
        .await
        .unwrap();
    let c = connect(&format!(
        "postgres://app:app@127.0.0.1:{}/app",
        handle.addr.port()
    ))
    .await;
    for _ in 0..3 {
        assert!(
            !in_recovery(&c, "select pg_is_in_recovery()").await,
            "read served by the primary"
        );
    }
    handle.shutdown().await;
}
