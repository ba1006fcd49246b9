//! Write reach and read dependencies computed from catalog rows: triggers, defaults, cascades, partitions, views' and policies' functions, the clock and the user.

use crate::router::write_reach::{Rows, WriteReach};

fn s(v: &str) -> String {
    v.to_owned()
}

fn reach() -> WriteReach {
    WriteReach::from_rows(Rows {
        read_edges: vec![(s("clock_v"), s("outer_v"))],
        edges: vec![(s("clock_v"), s("outer_v")), (s("outer_v"), s("clock_v")), (s("events_2024"), s("events")), (s("events"), s("events_2024")), (s("orders"), s("orders_id_seq"))],
        truncate: vec![(s("customers"), s("orders"))],
        functions: vec![
            (s("orders"), s("audit_order"), true, s("w")),
            (s("payments"), s("dynamic_trigger"), true, s("w")),
            (s("report"), s("stock_of"), true, s("r")),
            (s("docs"), s("allowed"), true, s("r")),
            (s("tsv"), s("tsvector_update_trigger"), false, s("w")),
            (s("stamp_v"), s("stamped"), true, s("r")),
        ],
        bodies: vec![
            (s("audit_order"), s("plpgsql"), s("BEGIN INSERT INTO order_log VALUES (NEW.id); PERFORM touch(NEW.id); RETURN NEW; END")),
            (s("touch"), s("sql"), s("UPDATE counters SET n = n + 1")),
            (s("dynamic_trigger"), s("plpgsql"), s("BEGIN EXECUTE format('INSERT INTO %I VALUES (1)', TG_ARGV[0]); RETURN NEW; END")),
            (s("stock_of"), s("sql"), s("SELECT sum(qty) FROM stock WHERE item = $1")),
            (s("allowed"), s("sql"), s("SELECT exists (SELECT 1 FROM acl WHERE who = current_user)")),
            (s("stamped"), s("plpgsql"), s("BEGIN RETURN stamp_of(1); END")),
            (s("stamp_of"), s("sql"), s("SELECT 'now'::timestamptz")),
        ],
        relations: ["events", "events_2024", "orders", "orders_id_seq", "order_log", "counters", "payments", "report", "stock", "docs", "acl", "customers", "tsv"]
            .iter()
            .map(|r| s(r))
            .collect(),
        sequences: vec![s("orders_id_seq")],
        reads: vec![
            (s("clock_v"), s("v"), s("({QUERY :commandType 1 :targetList ({TARGETENTRY :expr {SQLVALUEFUNCTION :op 3 :type 1184 :typmod -1 :location 7}})})")),
            (s("docs"), s("s"), s("")),
            (s("plain_v"), s("v"), s("({QUERY :commandType 1 :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 870 :funcresulttype 25}})})")),
            (s("now_v"), s("v"), s("({QUERY :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 1299 :funcresulttype 1184}})})")),
            (s("tenant_docs"), s("p"), s("{OPEXPR :args ({FUNCEXPR :funcid 2077 :args ({CONST :consttype 25})})}")),
            (s("tenant_docs"), s("s"), s("")),
        ],
        named_functions: vec![(1299, s("now")), (2077, s("current_setting"))],
    })
}

fn analysis(read: &[&str], written: &[&str], functions: &[&str]) -> crate::router::Analysis {
    let mut a =
        crate::router::analyze_uncached("SELECT 1", &crate::router::FunctionCatalog::builtin());
    a.tables_read = read.iter().map(|r| s(r)).collect();
    a.tables_written = written.iter().map(|r| s(r)).collect();
    a.functions = functions.iter().map(|r| s(r)).collect();
    a
}

#[test]
fn writes_reach_triggers_functions_sequences_and_partitions() {
    let r = reach();
    let mut a = analysis(&[], &["public.orders"], &[]);
    r.expand(&mut a, false, false);
    assert_eq!(
        a.tables_written,
        vec!["public.orders", "counters", "order_log", "orders_id_seq"]
    );
    assert!(!a.writes_unknown);
    let mut a = analysis(&[], &["events"], &[]);
    r.expand(&mut a, false, false);
    assert_eq!(a.tables_written, vec!["events", "events_2024"]);
    // Dynamic SQL in a trigger: anything.
    let mut a = analysis(&[], &["payments"], &[]);
    r.expand(&mut a, false, false);
    assert!(a.writes_unknown);
    // TRUNCATE CASCADE follows plain foreign keys, and then the reach of what it empties.
    let mut a = analysis(&[], &["customers"], &[]);
    r.expand(&mut a, false, false);
    assert_eq!(a.tables_written, vec!["customers"]);
    r.expand(&mut a, true, false);
    assert!(a.tables_written.contains(&s("orders")) && a.tables_written.contains(&s("order_log")));
    // A stale catalog knows no reach.
    let mut a = analysis(&[], &["stock"], &[]);
    r.expand(&mut a, false, true);
    assert!(a.writes_unknown);
    // Built-in trigger functions reach nothing else.
    let mut a = analysis(&[], &["tsv"], &[]);
    r.expand(&mut a, false, false);
    assert!(!a.writes_unknown && a.tables_written == vec!["tsv"]);
}

#[test]
fn reads_depend_on_views_policies_and_function_bodies() {
    let r = reach();
    // A write to what a view's function or a policy reads reaches the view / the table.
    let mut a = analysis(&[], &["stock"], &[]);
    r.expand(&mut a, false, false);
    assert_eq!(a.tables_written, vec!["stock", "report"]);
    let mut a = analysis(&[], &["acl"], &[]);
    r.expand(&mut a, false, false);
    assert_eq!(a.tables_written, vec!["acl", "docs"]);
    // A function called by the query: its body's relations are read too.
    let mut a = analysis(&["items"], &[], &["stock_of"]);
    a.not_cacheable = None;
    r.expand(&mut a, false, false);
    assert_eq!(a.tables_read, vec!["items", "stock"]);
    assert!(a.cacheable());
    let mut a = analysis(&["orders_id_seq"], &[], &[]);
    r.expand(&mut a, false, false);
    assert_eq!(a.route, crate::router::Route::Primary);
    let mut a = analysis(&[], &[], &["dynamic_trigger"]);
    a.not_cacheable = None;
    r.expand(&mut a, false, false);
    assert!(!a.cacheable());
}

#[test]
fn reads_reaching_the_clock_or_the_user_are_refused() {
    let r = reach();
    let read = |t: &str| {
        let mut a = analysis(&[t], &[], &[]);
        a.not_cacheable = None;
        r.expand(&mut a, false, false);
        a
    };
    // CURRENT_TIMESTAMP in a view, through a view over it, now() in a view, 'now' in a
    // function a view calls through another.
    for (t, why) in [
        ("clock_v", "clock_v reads CURRENT_TIMESTAMP or the like"),
        (
            "outer_v",
            "outer_v reads CURRENT_TIMESTAMP or the like through clock_v",
        ),
        ("now_v", "now_v reads now"),
        ("stamp_v", "stamp_v reads now in stamp_of in stamped"),
    ] {
        assert_eq!(read(t).not_cacheable.as_deref(), Some(why), "{t}");
    }
    assert!(read("plain_v").cacheable());
    // Row-level security: cacheable keyed by user, refused when shared across users.
    let docs = read("docs");
    assert!(docs.cacheable());
    assert_eq!(docs.cache_refusal(false), None);
    let why = docs.cache_refusal(true).unwrap_or_default();
    assert!(
        why.contains("row-level security") && why.contains("allowed"),
        "{why}"
    );
    let why = read("tenant_docs")
        .cache_refusal(true)
        .unwrap_or_default()
        .to_owned();
    assert!(why.contains("current_setting"), "{why}");
}

#[test]
fn a_logged_change_reaches_what_reads_its_rows_through_and_dynamic_triggers_reach_anything() {
    let r = reach();
    let mut out = Vec::new();
    // The WAL names the partition; readers of its parent see the change too.
    assert!(r.logged_reach(&["public.events_2024"], &mut out));
    out.sort();
    assert_eq!(out, ["events", "events_2024"]);
    // report's reads call stock_of, whose body reads stock.
    let mut out = Vec::new();
    assert!(r.logged_reach(&["stock"], &mut out));
    assert_eq!(out, ["stock", "report"]);
    // A trigger that runs SQL pgsplit cannot read: its reach is unknown.
    assert!(!r.logged_reach(&["payments"], &mut Vec::new()));
}

#[test]
fn merged_catalogs_reach_what_either_reaches() {
    let other = WriteReach::from_rows(Rows {
        edges: vec![(s("stock"), s("stock_v"))],
        relations: vec![s("stock"), s("stock_v")],
        ..Default::default()
    });
    let merged = reach().merge(other);
    let mut out = Vec::new();
    assert!(merged.logged_reach(&["stock"], &mut out));
    assert_eq!(out, ["stock", "report", "stock_v"]);
    let mut out = Vec::new();
    merged.logged_reach(&["events"], &mut out);
    assert_eq!(out, ["events", "events_2024"]);
    assert!(!merged.logged_reach(&["payments"], &mut Vec::new()));
}
