//! Reads of constantly written tables stay on the replica and never miss an acknowledged write (table_lsn with on-demand replay positions).

mod common;

use common::TestProxy;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ROWS: i32 = 50;

/// The tests take turns: each measures a routing share on 2 cores, which the others' clients
/// would otherwise starve (a replica scheduled late is a replica behind).
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The last value each row was acknowledged to hold, shared by the writers and the readers.
struct Acked {
    values: Vec<AtomicI64>,
    stale: AtomicU64,
    reads: AtomicU64,
    writes: AtomicU64,
}

async fn writer(url: String, t: String, acked: Arc<Acked>, stop: Arc<AtomicBool>, seed: i32) {
    let c = common::connect(&url).await;
    let stmt = c
        .prepare(&format!(
            "update {t} set v = v + 1 where id = $1 returning v"
        ))
        .await
        .expect("prepare update");
    let mut id = seed;
    while !stop.load(Ordering::Relaxed) {
        id = (id * 7 + 3) % ROWS;
        let v: i64 = c.query_one(&stmt, &[&id]).await.expect("update").get(0);
        acked.values[id as usize].fetch_max(v, Ordering::AcqRel);
        acked.writes.fetch_add(1, Ordering::Relaxed);
        // About 20 % writes beside the readers' 80 %, each writer a few hundred per second.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn reader(
    url: String,
    t: String,
    acked: Arc<Acked>,
    stop: Arc<AtomicBool>,
    seed: i32,
    prepared: bool,
) {
    let c = common::connect(&url).await;
    let sql = format!("select v from {t} where id = $1");
    let stmt = c.prepare(&sql).await.expect("prepare select");
    let mut id = seed;
    while !stop.load(Ordering::Relaxed) {
        id = (id * 13 + 5) % ROWS;
        // Taken before the read is sent: the read must see at least this.
        let want = acked.values[id as usize].load(Ordering::Acquire);
        let got: i64 = if prepared {
            c.query_one(&stmt, &[&id]).await.expect("select").get(0)
        } else {
            let rows = c
                .simple_query(&format!("select v from {t} where id = {id}"))
                .await
                .expect("simple select");
            rows.iter()
                .find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => {
                        r.get(0).and_then(|v| v.parse().ok())
                    }
                    _ => None,
                })
                .expect("a row")
        };
        acked.reads.fetch_add(1, Ordering::Relaxed);
        if got < want {
            acked.stale.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// (replica, primary, cache) calls of the statements that read `t`.
fn routes(proxy: &TestProxy, t: &str) -> (u64, u64, u64) {
    proxy
        .handle
        .shared
        .stats
        .queries
        .snapshot()
        .iter()
        .filter(|q| q.query.contains(t) && q.query.starts_with("select"))
        .fold((0, 0, 0), |(r, p, c), q| {
            (r + q.replica_calls, p + q.primary_calls, c + q.cache_hits)
        })
}

async fn soak(cache: bool) {
    let _turn = TURN.lock().await;
    let extra = if cache {
        "[cache]\nenabled = true\n"
    } else {
        ""
    };
    let proxy = TestProxy::start_with(extra).await;
    let t = common::unique("soak");
    let admin = common::superuser().await;
    admin
        .batch_execute(&format!(
            "create table {t} (id int primary key, v bigint not null default 0); \
             insert into {t} select g, 0 from generate_series(0, {}) g; grant all on {t} to app",
            ROWS - 1
        ))
        .await
        .expect("create");
    common::wait_for_replica().await;
    let acked = Arc::new(Acked {
        values: (0..ROWS).map(|_| AtomicI64::new(0)).collect(),
        stale: AtomicU64::new(0),
        reads: AtomicU64::new(0),
        writes: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let url = proxy.url("app", "app");
    let mut tasks = Vec::new();
    for w in 0..2 {
        tasks.push(tokio::spawn(writer(
            url.clone(),
            t.clone(),
            acked.clone(),
            stop.clone(),
            w,
        )));
    }
    for r in 0..4 {
        tasks.push(tokio::spawn(reader(
            url.clone(),
            t.clone(),
            acked.clone(),
            stop.clone(),
            r,
            r % 2 == 0,
        )));
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("client task");
    }
    let (replica, primary, hits) = routes(&proxy, &t);
    let reads = acked.reads.load(Ordering::Relaxed);
    let writes = acked.writes.load(Ordering::Relaxed);
    let stale = acked.stale.load(Ordering::Relaxed);
    let servers = pgsplit::admin::snapshot::servers(&proxy.handle.shared);
    let replica_reads = servers
        .iter()
        .find(|s| s.role == "replica")
        .map(|s| s.reads.clone());
    eprintln!(
        "soak (cache {cache}): {reads} reads, {writes} writes, {stale} stale; \
         replica {replica}, primary {primary}, cache {hits}; replica routing {replica_reads:?}"
    );
    let _ = admin.batch_execute(&format!("drop table {t}")).await;
    assert_eq!(stale, 0, "a read missed an acknowledged write");
    assert!(reads > 500, "too few reads to judge: {reads}");
    assert!(writes > 200, "too few writes to judge: {writes}");
    let served = replica + primary;
    assert!(
        replica as f64 >= 0.9 * served as f64,
        "only {replica} of {served} server reads on the replica"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_heavy_reads_stay_on_the_replica_without_cache() {
    soak(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_heavy_reads_stay_on_the_replica_with_cache() {
    soak(true).await;
}

/// Whether the server answering `sql` (which must select `pg_is_in_recovery()` second) is a replica, and the value.
async fn read_where(c: &tokio_postgres::Client, sql: &str) -> (i64, bool) {
    let row = c
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    (row.get(0), row.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_replay_sends_only_written_tables_to_the_primary_within_the_bound() {
    let _turn = TURN.lock().await;
    use common::own_cluster::OwnCluster;
    let c = OwnCluster::from_env(
        "PGSPLIT_REPLICA_READS",
        "/tmp/pgsplit-replica-reads",
        31536,
        31537,
    );
    c.ensure_running();
    let replica = c.replica_superuser().await;
    replica
        .execute("select pg_wal_replay_resume()", &[])
        .await
        .expect("resume");
    let admin = c.primary_superuser().await;
    admin
        .batch_execute(
            "drop table if exists rr_written, rr_untouched; \
             create table rr_written (id int primary key, v bigint); insert into rr_written values (1, 0); \
             create table rr_untouched (id int primary key, v bigint); insert into rr_untouched values (1, 7); \
             grant all on rr_written, rr_untouched to app",
        )
        .await
        .expect("tables");
    c.wait_for_replica().await;
    let env = pgsplit::config::EnvOverrides {
        primary: Some(c.primary_addr()),
        replicas: Some(c.replica_addr()),
        ..Default::default()
    };
    let config =
        pgsplit::config::Config::from_toml(&common::config_text(""), &env).expect("config");
    let listener = pgsplit::bind(config.listen, 1024).expect("bind");
    let proxy = pgsplit::start(Arc::new(config), listener)
        .await
        .expect("proxy");
    let url = format!("postgres://app:app@127.0.0.1:{}/app", proxy.addr.port());
    let writer = common::connect(&url).await;
    let reader = common::connect(&url).await;
    // The proxy has seen the replica poll at least once, and its catalog load has listed the
    // plain tables (a read of a relation it does not know may read anything, so it needs every
    // write; on a loaded machine the load can take longer than the first poll).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let known = std::time::Instant::now();
    while !proxy.shared.pools.lsns.knows_table("rr_untouched") {
        assert!(
            known.elapsed() < Duration::from_secs(10),
            "the catalog never listed the tables"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replica
        .execute("select pg_wal_replay_pause()", &[])
        .await
        .expect("pause");
    let read_written = "select v, pg_is_in_recovery() from rr_written where id = 1";
    let read_untouched = "select v, pg_is_in_recovery() from rr_untouched where id = 1";
    // A pipelined batch: the first read goes to the replica with its position question in the
    // same round trip, is found behind and runs again (on the primary), ahead of the reads the
    // client sent after it, which the proxy had read already. Each answer is the right one, in
    // order.
    writer
        .execute("update rr_written set v = 100 where id = 1", &[])
        .await
        .expect("write");
    let (first, second, third) = tokio::join!(
        reader.simple_query(read_written),
        reader.simple_query(read_untouched),
        reader.simple_query(read_written)
    );
    let answer = |r: Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>| {
        let rows = r.expect("pipelined read");
        rows.iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some((
                    row.get(0).unwrap_or_default().to_string(),
                    row.get(1) == Some("t"),
                )),
                _ => None,
            })
            .expect("a row")
    };
    assert_eq!(answer(first), ("100".to_string(), false));
    // (It may ride along on the primary connection the first one ended on, as any request
    // pipelined behind another joins its server.)
    assert_eq!(answer(second).0, "7");
    assert_eq!(answer(third), ("100".to_string(), false));
    let sent_again = pgsplit::admin::snapshot::servers(&proxy.shared)
        .iter()
        .find(|s| s.role == "replica")
        .map(|s| s.reads.sent_again)
        .unwrap_or_default();
    assert!(
        sent_again >= 1,
        "no read was verified in line and found behind ({sent_again})"
    );
    let mut slowest = Duration::ZERO;
    for round in 1..=20i64 {
        writer
            .execute("update rr_written set v = $1 where id = 1", &[&round])
            .await
            .expect("write");
        let started = std::time::Instant::now();
        let (v, on_replica) = read_where(&reader, read_written).await;
        slowest = slowest.max(started.elapsed());
        assert_eq!(
            v, round,
            "stale read of a written table while replay is paused"
        );
        assert!(!on_replica, "the paused replica cannot have the write");
        let (u, on_replica) = read_where(&reader, read_untouched).await;
        assert_eq!(u, 7);
        assert!(
            on_replica,
            "round {round}: a table nobody wrote stays on the replica; replica routing {:?}",
            pgsplit::admin::snapshot::servers(&proxy.shared)
                .iter()
                .find(|s| s.role == "replica")
                .map(|s| s.reads.clone())
        );
    }
    eprintln!(
        "paused replay: slowest read of a written table {slowest:?} (max_replica_wait_ms = 5)"
    );
    // A read waits at most max_replica_wait_ms for the replica, then goes to the primary; the
    // rest is this loaded machine's scheduling.
    assert!(
        slowest < Duration::from_secs(1),
        "a read waited {slowest:?}"
    );
    replica
        .execute("select pg_wal_replay_resume()", &[])
        .await
        .expect("resume");
    c.wait_for_replica().await;
    let mut back = false;
    for _ in 0..50 {
        let (v, on_replica) = read_where(&reader, read_written).await;
        assert_eq!(v, 20);
        if on_replica {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        back,
        "reads of the written table return to the replica after resume"
    );
    // A write inside an open transaction is invisible to every other session until its COMMIT:
    // reads of its table stay on the replica meanwhile, and see it right after.
    writer.batch_execute("begin").await.expect("begin");
    writer
        .execute("update rr_written set v = 21 where id = 1", &[])
        .await
        .expect("write in a transaction");
    for _ in 0..5 {
        let (v, on_replica) = read_where(&reader, read_written).await;
        assert_eq!(v, 20, "an uncommitted write is visible");
        assert!(
            on_replica,
            "an uncommitted write sent a read to the primary"
        );
    }
    writer.batch_execute("commit").await.expect("commit");
    let (v, _) = read_where(&reader, read_written).await;
    assert_eq!(v, 21, "a read right after COMMIT missed it");
    let servers = pgsplit::admin::snapshot::servers(&proxy.shared);
    let r = servers
        .iter()
        .find(|s| s.role == "replica")
        .map(|s| s.reads.clone());
    eprintln!("paused replay: replica routing {r:?}");
    let r = r.expect("replica");
    assert!(r.to_primary["wait_timed_out"] + r.to_primary["position_unknown"] >= 20);
    proxy.shutdown().await;
}
