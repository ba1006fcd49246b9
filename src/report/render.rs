//! The printed report: header, top queries, pools, servers, cache, N+1 bursts and targets, in plain aligned text.

use super::model::{Query, StatsDoc};
use super::table::{one_line, Align, Table};
use super::targets::{self, KNOWN};
use std::fmt::Write;

/// Renders the whole report; `top` holds the indices of the queries to show, heaviest first.
pub fn render(doc: &StatsDoc, source: &str, generated_at: &str, top: &[usize]) -> String {
    let mut out = String::new();
    header(&mut out, doc, source, generated_at);
    queries(&mut out, doc, top);
    pools(&mut out, doc);
    servers(&mut out, doc);
    cache(&mut out, doc);
    n_plus_one(&mut out, doc);
    targets_section(&mut out, doc);
    out
}

fn header(out: &mut String, doc: &StatsDoc, source: &str, generated_at: &str) {
    let _ = writeln!(out, "pgsplit report — {source} — {generated_at}");
    let mut line = format!(
        "uptime {} · {} clients · {} query fingerprints",
        duration(doc.uptime_s),
        doc.clients,
        doc.queries.len()
    );
    if doc.queries_folded > 0 {
        let _ = write!(line, " ({} more folded into <other>)", doc.queries_folded);
    }
    let _ = writeln!(out, "{line}");
}

fn section(out: &mut String, title: &str) {
    let _ = writeln!(out, "\n{title}");
}

fn queries(out: &mut String, doc: &StatsDoc, top: &[usize]) {
    if doc.queries.is_empty() {
        section(out, "Top queries by total time");
        out.push_str("  no queries recorded yet\n");
        return;
    }
    let shown = if top.len() < doc.queries.len() {
        format!("top {} of {}", top.len(), doc.queries.len())
    } else {
        format!("all {}", doc.queries.len())
    };
    section(out, &format!("Top queries by total time ({shown})"));
    let mut t = Table::new(&[
        ("#", Align::Right),
        ("calls", Align::Right),
        ("errors", Align::Right),
        ("rows", Align::Right),
        ("total ms", Align::Right),
        ("mean", Align::Right),
        ("p50", Align::Right),
        ("p90", Align::Right),
        ("p99", Align::Right),
        ("route", Align::Left),
    ]);
    for (rank, &i) in top.iter().enumerate() {
        let Some(q) = doc.queries.get(i) else {
            continue;
        };
        // The text goes on its own line: beside eleven numeric columns it would get ~15 columns.
        let text = if q.database.is_empty() {
            one_line(&q.query)
        } else {
            format!("[{}] {}", q.database, one_line(&q.query))
        };
        t.row_with_notes(
            vec![
                (rank + 1).to_string(),
                q.calls.to_string(),
                q.errors.to_string(),
                q.rows.to_string(),
                targets::ms(q.total_ms),
                targets::ms(q.mean_ms),
                targets::ms(q.p50_ms),
                targets::ms(q.p90_ms),
                targets::ms(q.p99_ms),
                route(q),
            ],
            vec![text],
        );
    }
    t.render(out);
}

/// "replica 80% / primary 20% / cache 0%" of the calls, or "–" before any.
pub fn route(q: &Query) -> String {
    let total = q.replica_calls + q.primary_calls + q.cache_hits;
    if total == 0 {
        return "–".to_string();
    }
    let p = |n: u64| (n as f64 * 100.0 / total as f64).round();
    format!(
        "replica {}% / primary {}% / cache {}%",
        p(q.replica_calls),
        p(q.primary_calls),
        p(q.cache_hits)
    )
}

fn pools(out: &mut String, doc: &StatsDoc) {
    section(out, "Pools");
    if doc.pools.is_empty() {
        out.push_str("  no pools\n");
        return;
    }
    let mut t = Table::new(&[
        ("pool", Align::Left),
        ("size/max", Align::Right),
        ("busy", Align::Right),
        ("waiting", Align::Right),
        ("acquire p95 ms", Align::Right),
        ("efficiency", Align::Right),
        ("timeouts", Align::Right),
    ])
    .flex(0);
    for p in &doc.pools {
        t.row(vec![
            p.name.clone(),
            format!("{}/{}", p.size, p.max_size),
            p.busy.to_string(),
            p.waiting.to_string(),
            if p.acquisitions == 0 {
                "–".to_string()
            } else {
                targets::ms(p.acquire_p95_ms)
            },
            match p.efficiency {
                Some(e) => format!("{}%", targets::pct(e)),
                None => "–".to_string(),
            },
            p.timeouts.to_string(),
        ]);
    }
    t.render(out);
}

fn servers(out: &mut String, doc: &StatsDoc) {
    section(out, "Servers");
    if doc.servers.is_empty() {
        out.push_str("  no servers\n");
        return;
    }
    let mut t = Table::new(&[
        ("server", Align::Left),
        ("role", Align::Left),
        ("state", Align::Left),
        ("outstanding", Align::Right),
        ("reads", Align::Right),
        ("after wait", Align::Right),
        ("wait p99", Align::Right),
        ("reads sent to the primary, by reason", Align::Left),
    ])
    .flex(0);
    for s in &doc.servers {
        let r = &s.reads;
        let why: Vec<String> = r
            .to_primary
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        t.row(vec![
            s.server.clone(),
            s.role.clone(),
            if s.reachable { "up" } else { "DOWN" }.to_string(),
            s.outstanding.to_string(),
            r.served.to_string(),
            r.served_after_wait.to_string(),
            r.wait_p99_ms
                .map(|ms| format!("{ms:.1} ms"))
                .unwrap_or_else(|| "-".into()),
            if why.is_empty() {
                "-".into()
            } else {
                why.join(", ")
            },
        ]);
    }
    t.render(out);
}

fn cache(out: &mut String, doc: &StatsDoc) {
    section(out, "Cache");
    let c = &doc.cache;
    let rate = match c.hit_rate {
        Some(r) => format!("hit rate {}%", targets::pct(r)),
        None => "hit rate: no data".to_string(),
    };
    if !c.enabled && c.hits + c.misses == 0 {
        let _ = writeln!(out, "  disabled ({rate})");
        return;
    }
    let _ = writeln!(
        out,
        "  {rate} · {} hits · {} misses · {} entries · {} · {} evictions{}",
        c.hits,
        c.misses,
        c.entries,
        bytes(c.bytes),
        c.evictions,
        if c.enabled { "" } else { " (now disabled)" }
    );
    let i = &c.invalidations;
    let _ = writeln!(
        out,
        "  {} coalesced · invalidated by writes {} · unknown writes {} · WAL {} (mode: {})",
        c.coalesced,
        i.write,
        i.unknown,
        i.wal,
        if c.invalidation.is_empty() {
            "proxy"
        } else {
            &c.invalidation
        }
    );
}

fn n_plus_one(out: &mut String, doc: &StatsDoc) {
    section(out, "N+1 bursts");
    if doc.n_plus_one.is_empty() {
        out.push_str("  none detected\n");
        return;
    }
    let mut t = Table::new(&[
        ("#", Align::Right),
        ("kind", Align::Left),
        ("bursts", Align::Right),
        ("last size", Align::Right),
        ("max size", Align::Right),
        ("total ms", Align::Right),
    ]);
    for (i, b) in doc.n_plus_one.iter().enumerate() {
        let mut notes = vec![format!("query: {}", one_line(&b.query))];
        if !b.parent_query.is_empty() {
            notes.push(format!("after: {}", one_line(&b.parent_query)));
        }
        if !b.flow.is_empty() {
            notes.push(format!("flow:  {}", b.flow));
        }
        if let Some(share) = b.cached_share {
            notes.push(format!(
                "cache: {:.0}% answered by pgsplit's result cache",
                share * 100.0
            ));
        }
        if !b.suggestion.is_empty() {
            // The exact fix is the point of the finding: wrapped, never cut off.
            for (j, line) in wrap(&one_line(&b.suggestion), FIX_WIDTH)
                .into_iter()
                .enumerate()
            {
                notes.push(format!(
                    "{}{line}",
                    if j == 0 { "fix:   " } else { "       " }
                ));
            }
        }
        if !b.application_name.is_empty() || !b.database.is_empty() {
            notes.push(format!(
                "from:  {}{}{}",
                b.application_name,
                if b.application_name.is_empty() || b.database.is_empty() {
                    ""
                } else {
                    " on "
                },
                b.database
            ));
        }
        t.row_with_notes(
            vec![
                (i + 1).to_string(),
                if b.kind.is_empty() { "–" } else { &b.kind }.to_string(),
                b.occurrences.to_string(),
                b.last_count.to_string(),
                b.max_count.to_string(),
                targets::ms(b.total_ms),
            ],
            notes,
        );
    }
    t.render(out);
}

/// Room for a fix's text on a note line (the table's note indent and "fix:   " taken off).
const FIX_WIDTH: usize = super::table::WIDTH - 13;

/// Words of `text` in lines of at most `width` characters (a longer word gets a line of its own).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

fn targets_section(out: &mut String, doc: &StatsDoc) {
    section(out, "Targets");
    let mut t = Table::new(&[
        ("target", Align::Left),
        ("goal", Align::Left),
        ("actual", Align::Right),
        ("status", Align::Left),
    ]);
    let known = KNOWN
        .iter()
        .map(|k| (k.label, k.unit, k.pick(&doc.targets)));
    let others = doc
        .targets
        .iter()
        .filter(|(name, _)| !KNOWN.iter().any(|k| k.name == name.as_str()))
        .map(|(name, tg)| (name.as_str(), targets::unit_of(name), tg.clone()));
    for (label, unit, tg) in known.chain(others) {
        t.row(vec![
            label.to_string(),
            targets::threshold(unit, &tg, true),
            targets::actual(unit, &tg, true),
            status(&tg.status),
        ]);
    }
    t.render(out);
}

fn status(s: &str) -> String {
    match s {
        "met" => "✓ met".to_string(),
        "missed" => "✗ missed".to_string(),
        "no data" => "– no data".to_string(),
        other => other.to_string(),
    }
}

/// "3d 4h 5m", "4h 5m 6s", "5m 6s", "6s".
pub fn duration(s: u64) -> String {
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}
