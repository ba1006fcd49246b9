//! Router benchmarks: the lexer shape, a cache hit, and the pg_query slow path.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use pgsplit::router::{analyze_uncached, shape, FunctionCatalog, Router};

const SHORT: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;";

const JOIN: &str = "SELECT o.id, o.total, c.name, c.email, p.title, p.price \
    FROM orders o \
    JOIN customers c ON c.id = o.customer_id \
    JOIN products p ON p.id = o.product_id \
    WHERE o.created_at > '2024-01-01' AND c.country = 'FR' AND p.price BETWEEN 10 AND 250 \
    ORDER BY o.created_at DESC LIMIT 50";

fn lexer(c: &mut Criterion) {
    c.bench_function("shape/short", |b| b.iter(|| shape(black_box(SHORT))));
    c.bench_function("shape/3-table join", |b| b.iter(|| shape(black_box(JOIN))));
}

fn analyze(c: &mut Criterion) {
    let router = Router::new(FunctionCatalog::builtin(), 10_000);
    // pgbench-style: the same statement with a new literal every call.
    let texts: Vec<String> = (0..1024)
        .map(|i| {
            format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {};",
                i * 7919
            )
        })
        .collect();
    let mut i = 0;
    c.bench_function("analyze/hit short, new literal", |b| {
        b.iter(|| {
            i = (i + 1) % texts.len();
            router.analyze(black_box(&texts[i]))
        })
    });
    let joins: Vec<String> = (0..1024)
        .map(|i| JOIN.replace("'FR'", &format!("'C{i}'")))
        .collect();
    c.bench_function("analyze/hit 3-table join, new literal", |b| {
        b.iter(|| {
            i = (i + 1) % joins.len();
            router.analyze(black_box(&joins[i]))
        })
    });

    let catalog = FunctionCatalog::builtin();
    c.bench_function("analyze/miss short (pg_query)", |b| {
        b.iter(|| analyze_uncached(black_box(SHORT), &catalog))
    });
    c.bench_function("analyze/miss 3-table join (pg_query)", |b| {
        b.iter(|| analyze_uncached(black_box(JOIN), &catalog))
    });
    // A miss through the router: a new shape every call (a new column alias), cache insert included.
    let router = Router::new(FunctionCatalog::builtin(), 10_000);
    let mut n = 0u64;
    c.bench_function("analyze/miss short via router", |b| {
        b.iter_batched(
            || {
                n += 1;
                format!("SELECT abalance AS c{n} FROM pgbench_accounts WHERE aid = 1")
            },
            |sql| router.analyze(&sql),
            BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, lexer, analyze);
criterion_main!(benches);
