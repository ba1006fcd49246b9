//! Helpers of the result-cache tests (tests/cache.rs, tests/cache_reach.rs).
#![allow(dead_code)]

use super::{superuser, wait_for_replica, TestProxy};
use pgsplit::admin::snapshot::{cache as cache_stats, CacheSnapshot};

pub fn cache_config(extra: &str) -> String {
    format!("[cache]\nenabled = true\n{extra}\n")
}

pub async fn start(extra: &str) -> TestProxy {
    TestProxy::start_with(&cache_config(extra)).await
}

pub fn stats(p: &TestProxy) -> CacheSnapshot {
    cache_stats(&p.handle.shared)
}

/// A table `name(id int primary key, v text)` with rows 1..=n, readable by every test role.
pub async fn table(name: &str, n: i32) {
    let su = superuser().await;
    su.batch_execute(&format!(
        "create table {name} (id int primary key, v text);
         insert into {name} select i, 'v' || i from generate_series(1, {n}) i;
         grant select, insert, update, delete, truncate on {name} to app, app_md5;"
    ))
    .await
    .unwrap();
    wait_for_replica().await;
}

pub fn data_rows(m: &[tokio_postgres::SimpleQueryMessage]) -> Vec<&tokio_postgres::SimpleQueryRow> {
    m.iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some(r),
            _ => None,
        })
        .collect()
}

pub async fn read(client: &tokio_postgres::Client, q: &str) -> String {
    client.query_one(q, &[]).await.unwrap().get(0)
}
