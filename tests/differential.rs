//! Differential test: seeded random sequences of reads, direct and indirect writes (triggers, defaults, cascades), DDL, SET and transactions, run through pgsplit with the cache on and directly against the primary, must give the same results statement by statement.
//!
//! Each worker owns two schemas with the same tables: one reached through pgsplit, one
//! directly. `PGSPLIT_DIFF_SEED` replays a failing run (the seed is printed on failure);
//! `PGSPLIT_DIFF_STATEMENTS` sets the statements sent through pgsplit (10,000 by default).

mod common;

use pgsplit::admin::snapshot::cache as cache_stats;
use tokio_postgres::{Client, SimpleQueryMessage};

const WORKERS: u64 = 4;

const SETUP: &str = "
    create table t_W (id int primary key, v int not null default 0, note text default 'x');
    create table audit_W (n int not null); insert into audit_W values (0);
    create function t_audit_W() returns trigger language plpgsql as $$
      begin update audit_W set n = n + 1; return null; end $$;
    create trigger t_audit_W after insert or update or delete on t_W
      for each statement execute function t_audit_W();
    create table counter_W (n int not null); insert into counter_W values (0);
    create function bump_W() returns int language plpgsql as $$
      begin update counter_W set n = n + 1; return 1; end $$;
    create table d_W (id serial primary key, x int default bump_W());
    create table p_W (id int primary key);
    create table c_W (id int primary key, p int references p_W on delete cascade);
    create table r_W (id int primary key, tenant int not null, v int not null);
    insert into r_W select g, g % 3, g from generate_series(1, 12) g;
    alter table r_W enable row level security;
    alter table r_W force row level security;
    create policy r_tenant_W on r_W using
      (tenant = coalesce(nullif(current_setting('app.diff_tenant', true), ''), '0')::int);
    create view tv_W as select id, v * 2 as v2 from t_W;
    create function k_W() returns int language sql immutable as 'select 1';
    insert into t_W select g, g from generate_series(1, 20) g;
    insert into p_W select generate_series(1, 10);
    insert into c_W select g, g % 10 + 1 from generate_series(1, 30) g;";

/// A small seeded generator (xorshift64*): the sequence is replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One step: statements sent in order, each compared; `param` runs the first one through
/// the extended protocol with that parameter.
struct Step {
    sql: Vec<String>,
    param: Option<i32>,
}

fn step(sql: &[String]) -> Step {
    Step {
        sql: sql.to_vec(),
        param: None,
    }
}

fn read(rng: &mut Rng) -> String {
    let k = rng.below(40) + 1;
    match rng.below(10) {
        0 => format!("select v from t_W where id = {k}"),
        1 => "select count(*), coalesce(sum(v), 0) from t_W".into(),
        2 => "select n from audit_W".into(),
        3 => "select n from counter_W".into(),
        4 => "select count(*) from c_W".into(),
        5 => "select count(*), coalesce(sum(v), 0) from r_W".into(),
        6 => "select coalesce(sum(v2), 0) from tv_W".into(),
        7 => "select k_W()".into(),
        8 => "select count(*), max(id) from d_W".into(),
        _ => format!(
            "select id, v from t_W where id between {k} and {} order by id",
            k + 3
        ),
    }
}

fn write(rng: &mut Rng) -> String {
    let k = rng.below(40) + 1;
    match rng.below(9) {
        0 => format!("update t_W set v = v + 1 where id = {k}"),
        1 => format!(
            "insert into t_W (id, v) values ({k}, {}) on conflict (id) do update set v = excluded.v",
            rng.below(100)
        ),
        2 => format!("delete from t_W where id = {k}"),
        3 => "insert into d_W default values".into(),
        4 => format!("delete from p_W where id = {}", k % 12),
        5 => format!("insert into p_W values ({}) on conflict do nothing", k % 12),
        6 => format!(
            "insert into c_W values ({}, {}) on conflict do nothing",
            k + 30 * rng.below(3),
            k % 12 + 1
        ),
        7 => format!("update r_W set v = v + 1 where id = {}", k % 12 + 1),
        _ => format!("update counter_W set n = n + {k}"),
    }
}

fn ddl(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => format!(
            "create or replace function k_W() returns int language sql immutable as 'select {}'",
            rng.below(1000)
        ),
        1 => format!(
            "create or replace view tv_W as select id, v * {} as v2 from t_W",
            rng.below(5) + 1
        ),
        2 => "alter table t_W disable trigger t_audit_W".into(),
        _ => "alter table t_W enable trigger t_audit_W".into(),
    }
}

fn set(rng: &mut Rng) -> String {
    match rng.below(4) {
        0 => "reset app.diff_tenant".into(),
        // Also ends the pin a call of k() makes while the catalog is stale after DDL.
        1 => "reset all".into(),
        n => format!("set app.diff_tenant = '{}'", (n + rng.below(2)) % 3),
    }
}

fn next_step(rng: &mut Rng) -> Step {
    match rng.below(100) {
        // A read repeated one to three times: the repeats are what the cache may answer.
        0..=59 => {
            let r = read(rng);
            step(&vec![r; rng.below(3) as usize + 1])
        }
        60..=64 => Step {
            sql: vec!["select v::text from t_W where id = $1".into(); rng.below(3) as usize + 1],
            param: Some(rng.below(40) as i32 + 1),
        },
        65..=84 => step(&[write(rng)]),
        85 => step(&[ddl(rng)]),
        86..=89 => step(&[set(rng)]),
        90..=94 => {
            // A write and a read inside a transaction, committed or rolled back.
            let end = if rng.below(3) == 0 {
                "rollback"
            } else {
                "commit"
            };
            step(&["begin".into(), write(rng), read(rng), end.into()])
        }
        95..=97 => {
            let tenant = rng.below(3);
            step(&[
                "begin".into(),
                format!("set local app.diff_tenant = '{tenant}'"),
                read(rng),
                "commit".into(),
            ])
        }
        _ => {
            // Several statements in one query: an implicit transaction.
            step(&[format!("{}; {}", write(rng), read(rng))])
        }
    }
}

/// What a statement returned: its rows as text, or the SQLSTATE of its error.
type Outcome = Result<Vec<Vec<Option<String>>>, String>;

fn code(e: &tokio_postgres::Error) -> String {
    e.code()
        .map_or_else(|| format!("{e}"), |c| c.code().to_owned())
}

async fn run(c: &Client, sql: &str, param: Option<i32>) -> Outcome {
    if let Some(p) = param {
        return c
            .query(sql, &[&p])
            .await
            .map(|rows| rows.iter().map(|r| vec![r.get(0)]).collect())
            .map_err(|e| code(&e));
    }
    c.simple_query(sql)
        .await
        .map(|msgs| {
            msgs.iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
                    }
                    _ => None,
                })
                .collect()
        })
        .map_err(|e| code(&e))
}

/// Runs `statements` steps' worth of statements in the worker's schema pair; returns how many
/// went through pgsplit, or the first difference with the steps before it.
async fn worker(
    suffix: &str,
    seed: u64,
    via: Client,
    direct: Client,
    statements: usize,
) -> Result<usize, String> {
    let mut rng = Rng(seed | 1);
    let mut sent = 0;
    let mut history: Vec<String> = Vec::new();
    while sent < statements {
        let s = next_step(&mut rng);
        for sql in &s.sql {
            // Each worker's relations and functions have names of their own, so one worker's
            // writes never invalidate another's cached reads.
            let sql = &sql.replace("_W", suffix);
            let (a, b) = tokio::join!(run(&via, sql, s.param), run(&direct, sql, s.param));
            sent += 1;
            history.push(match s.param {
                Some(p) => format!("{sql}   -- $1 = {p}"),
                None => sql.clone(),
            });
            if a != b {
                let from = history.len().saturating_sub(25);
                return Err(format!(
                    "statement {sent} differs: {sql}\n  through pgsplit: {a:?}\n  direct:          {b:?}\n  the statements before it:\n    {}",
                    history[from..].join("\n    ")
                ));
            }
        }
    }
    Ok(sent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgsplit_with_the_cache_gives_what_the_primary_gives() {
    let seed: u64 = std::env::var("PGSPLIT_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    let statements: usize = std::env::var("PGSPLIT_DIFF_STATEMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    eprintln!(
        "differential: seed {seed} (PGSPLIT_DIFF_SEED={seed} replays it), {statements} statements"
    );
    let base = common::unique("diff");
    let su = common::superuser().await;
    let primary = common::primary_addr();
    let schemas: Vec<(String, String)> = (0..WORKERS)
        .map(|w| (format!("{base}_p{w}"), format!("{base}_d{w}")))
        .collect();
    for (w, (via, direct)) in schemas.iter().enumerate() {
        for schema in [via, direct] {
            su.batch_execute(&format!("create schema {schema} authorization app"))
                .await
                .unwrap();
            let c = common::connect(&format!(
                "postgres://app:app@{primary}/app?options=-c%20search_path%3D{schema}"
            ))
            .await;
            c.batch_execute(&SETUP.replace("_W", &format!("_{w}")))
                .await
                .unwrap();
        }
    }
    common::wait_for_replica().await;
    let proxy = common::TestProxy::start_with_text(&format!(
        "{}\n[cache]\nenabled = true\n",
        common::config_text("[pool]\nprimary_size = 8\nreplica_size = 4\n")
    ))
    .await;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for (w, (via, direct)) in schemas.iter().enumerate() {
        let via = common::connect(&format!(
            "postgres://app:app@127.0.0.1:{}/app?options=-c%20search_path%3D{via}",
            proxy.port()
        ))
        .await;
        let direct = common::connect(&format!(
            "postgres://app:app@{primary}/app?options=-c%20search_path%3D{direct}"
        ))
        .await;
        let worker_seed = seed.wrapping_add((w as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let share = statements.div_ceil(WORKERS as usize);
        tasks.push(tokio::spawn(async move {
            worker(&format!("_{w}"), worker_seed, via, direct, share)
                .await
                .map_err(|e| format!("worker {w} (seed {worker_seed}): {e}"))
        }));
    }
    let mut sent = 0;
    let mut failures = Vec::new();
    for t in tasks {
        match t.await.expect("worker task") {
            Ok(n) => sent += n,
            Err(e) => failures.push(e),
        }
    }
    let hits = cache_stats(&proxy.handle.shared).hits;
    eprintln!(
        "differential: {sent} statements through pgsplit in {:?}, {hits} cache hits",
        started.elapsed()
    );
    for (via, direct) in &schemas {
        su.batch_execute(&format!(
            "drop schema {via} cascade; drop schema {direct} cascade"
        ))
        .await
        .unwrap();
    }
    assert!(
        failures.is_empty(),
        "seed {seed}: PGSPLIT_DIFF_SEED={seed} replays it\n{}",
        failures.join("\n\n")
    );
    assert!(sent >= statements, "{sent} statements");
    // The comparison is only worth something if the cache answered some of the reads.
    assert!(hits > 0, "the cache answered nothing");
}
