//! The response plan driven by tag sequences, as servers answer.

use super::*;
use bytes::BytesMut;

fn run(plan: &mut Plan, tags: &[u8]) -> Vec<Step> {
    let mut forget = Vec::new();
    let mut steps = Vec::new();
    for &t in tags {
        let mut out = BytesMut::new();
        plan.drain_synthetic(&mut out);
        steps.push(plan.on_message(t, &mut forget).unwrap().0);
    }
    steps
}

#[test]
fn unsynced_replies_are_told_from_the_proxys_own_queries() {
    let mut p = Plan::default();
    assert!(!p.awaits_unsynced_reply());
    p.push(Expect::Probe);
    assert!(!p.awaits_unsynced_reply());
    p.push(Expect::Bind);
    p.push(Expect::Execute);
    assert!(p.awaits_unsynced_reply(), "Bind/Execute sent on with Flush");
    p.push(Expect::Sync);
    assert!(
        !p.awaits_unsynced_reply(),
        "a Sync's ReadyForQuery answers them"
    );
}

#[test]
fn injected_parse_is_swallowed() {
    let mut p = Plan::default();
    p.push(Expect::Parse {
        injected: true,
        key: Some(1),
        client_name: None,
    });
    p.push(Expect::Bind);
    p.push(Expect::Execute);
    p.push(Expect::Sync);
    let steps = run(&mut p, b"12DDCZ");
    assert_eq!(steps[0], Step::Swallow);
    assert!(steps[1..].iter().all(|s| *s == Step::Forward));
    assert!(p.is_empty());
}

#[test]
fn synthetic_parse_complete_in_order() {
    let mut p = Plan::default();
    p.push(Expect::Synthetic(Bytes::from_static(b"1\0\0\0\x04")));
    p.push(Expect::Bind);
    p.push(Expect::Sync);
    let mut out = BytesMut::new();
    p.drain_synthetic(&mut out);
    assert_eq!(&out[..], b"1\0\0\0\x04");
    let mut f = Vec::new();
    assert_eq!(p.on_message(b'2', &mut f).unwrap().0, Step::Forward);
    let (_, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert!(ev.ready);
}

#[test]
fn error_skips_to_sync_and_forgets_parses() {
    let mut p = Plan::default();
    p.push(Expect::Parse {
        injected: false,
        key: Some(7),
        client_name: Some(Bytes::from_static(b"s1")),
    });
    p.push(Expect::Bind);
    p.push(Expect::Parse {
        injected: false,
        key: Some(8),
        client_name: Some(Bytes::from_static(b"s2")),
    });
    p.push(Expect::Synthetic(Bytes::from_static(b"x")));
    p.push(Expect::Sync);
    p.push(Expect::Bind);
    p.push(Expect::Sync);
    let mut f = Vec::new();
    let (step, ev) = p.on_message(b'E', &mut f).unwrap();
    assert_eq!(step, Step::Forward);
    assert!(ev.error);
    assert!(
        !ev.unsynced_error,
        "the queued Sync ends the server's skipping"
    );
    assert_eq!(f.len(), 2);
    assert_eq!(f[0].key, Some(7));
    assert!(p.on_message(b'Z', &mut f).unwrap().1.ready);
    assert_eq!(p.len(), 2);
}

/// asyncpg prepares with Parse, Describe, Flush; psycopg's pipeline flushes between
/// statements. An error there leaves the server skipping to a Sync nobody has sent yet.
#[test]
fn error_without_a_sync_queued_is_reported_as_unsynced() {
    let mut p = Plan::default();
    p.push(Expect::Synthetic(Bytes::from_static(b"1\0\0\0\x04")));
    p.push(Expect::Describe { statement: None });
    let mut out = BytesMut::new();
    p.drain_synthetic(&mut out);
    let mut f = Vec::new();
    let (step, ev) = p.on_message(b'E', &mut f).unwrap();
    assert_eq!(step, Step::Forward);
    assert!(ev.error && ev.unsynced_error);
    assert!(p.is_empty());
    // What the session did before: plan the client's next Bind/Execute/Sync. The server,
    // skipping, answers only the Sync, and the plan was out of step at its ReadyForQuery.
    p.push(Expect::Bind);
    p.push(Expect::Execute);
    p.push(Expect::Sync);
    assert_eq!(
        p.on_message(b'Z', &mut f).unwrap_err(),
        Desync {
            got: b'Z',
            expected: "Bind"
        }
    );
    // What it does now: its own Sync, whose ReadyForQuery is swallowed.
    let mut p = Plan::default();
    p.push(Expect::Bind);
    p.push(Expect::Execute);
    let (_, ev) = p.on_message(b'E', &mut f).unwrap();
    assert!(ev.unsynced_error);
    p.push(Expect::Internal);
    let (step, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(step, Step::Swallow);
    assert!(ev.internal_done && !ev.ready);
    assert!(p.is_empty());
}

#[test]
fn simple_query_with_error_continues_to_ready() {
    let mut p = Plan::default();
    p.push(Expect::Query);
    let steps = run(&mut p, b"TDCE");
    assert!(steps.iter().all(|s| *s == Step::Forward));
    assert!(p.on_message(b'Z', &mut Vec::new()).unwrap().1.ready);
}

#[test]
fn internal_query_is_swallowed() {
    let mut p = Plan::default();
    p.push(Expect::Internal);
    p.push(Expect::Query);
    let mut f = Vec::new();
    assert_eq!(p.on_message(b'C', &mut f).unwrap().0, Step::Swallow);
    assert_eq!(p.on_message(b'S', &mut f).unwrap().0, Step::Swallow);
    assert_eq!(p.on_message(b'E', &mut f).unwrap().0, Step::Swallow);
    let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(s, Step::Swallow);
    assert!(ev.internal_done && ev.internal_failed);
    assert_eq!(p.on_message(b'C', &mut f).unwrap().0, Step::Forward);
}

#[test]
fn probe_is_swallowed_and_flagged() {
    let mut p = Plan::default();
    p.push(Expect::Probe);
    p.push(Expect::Query);
    let mut f = Vec::new();
    for t in *b"TDC" {
        let (s, ev) = p.on_message(t, &mut f).unwrap();
        assert_eq!(s, Step::Swallow);
        assert!(ev.probe && !ev.internal_done);
    }
    let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(s, Step::Swallow);
    assert!(ev.probe && ev.internal_done && !ev.internal_failed);
    let (_, ev) = p.on_message(b'T', &mut f).unwrap();
    assert!(!ev.probe);
}

#[test]
fn a_position_question_is_swallowed_and_flagged_apart_from_the_probe() {
    let mut p = Plan::default();
    p.push(Expect::Position);
    p.push(Expect::Query);
    let mut f = Vec::new();
    for t in *b"TDCZ" {
        let (s, ev) = p.on_message(t, &mut f).unwrap();
        assert_eq!(s, Step::Swallow);
        assert!(ev.position && !ev.probe);
        assert_eq!(ev.internal_done, t == b'Z');
    }
    assert_eq!(run(&mut p, b"TDCZ"), vec![Step::Forward; 4]);
}

#[test]
fn a_prepared_question_is_swallowed_from_its_close_through_its_ready_for_query() {
    // First use on a connection: Close (of an evicted statement and of its own name), Parse,
    // Bind, Execute, Sync; the client's query after it is answered as usual.
    let mut p = Plan::default();
    p.push(Expect::CloseInjected);
    p.push(Expect::CloseInjected);
    p.push(Expect::Position);
    p.push(Expect::Query);
    let mut f = Vec::new();
    for t in *b"33" {
        assert_eq!(p.on_message(t, &mut f).unwrap().0, Step::Swallow);
    }
    for t in *b"12DCZ" {
        let (s, ev) = p.on_message(t, &mut f).unwrap();
        assert_eq!(s, Step::Swallow, "{}", char::from(t));
        assert!(ev.position);
        assert_eq!(ev.internal_done, t == b'Z');
    }
    assert_eq!(run(&mut p, b"TDCZ"), vec![Step::Forward; 4]);

    // A failed Parse: the error and the ReadyForQuery are swallowed and reported as failed.
    p.push(Expect::Probe);
    let (s, _) = p.on_message(b'E', &mut f).unwrap();
    assert_eq!(s, Step::Swallow);
    let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(s, Step::Swallow);
    assert!(ev.probe && ev.internal_done && ev.internal_failed);
    assert!(p.is_empty());
}

#[test]
fn a_write_probe_prepared_for_the_first_time_still_leaves_the_session_between_requests() {
    // The probe after a write, on a connection that has not prepared it yet: its Closes come
    // first. The client's request is answered; only the probe is left, Closes or not.
    let mut p = Plan::default();
    p.push(Expect::Query);
    p.push(Expect::CloseInjected);
    p.push(Expect::CloseInjected);
    p.push(Expect::Probe);
    assert!(!p.only_probe_left());
    assert_eq!(run(&mut p, b"CZ"), vec![Step::Forward; 2]);
    assert!(p.only_probe_left());
    assert_eq!(run(&mut p, b"3"), vec![Step::Swallow]);
    assert!(p.only_probe_left());
    // A client request queued behind the probe is not "between requests".
    p.push(Expect::Query);
    assert!(!p.only_probe_left());
    // Neither is an in-line replay-position question.
    let mut q = Plan::default();
    q.push(Expect::CloseInjected);
    q.push(Expect::Position);
    assert!(!q.only_probe_left());
    assert!(!Plan::default().only_probe_left());
}

#[test]
fn a_voided_request_is_swallowed_through_its_ready_for_query_and_reported() {
    // The replica was behind: the read's answer (a notice, rows, even a proxy reply due
    // meanwhile) is dropped, and its ReadyForQuery tells the session to run it again.
    let mut p = Plan::default();
    p.push(Expect::Position);
    p.push(Expect::Parse {
        injected: true,
        key: Some(7),
        client_name: None,
    });
    p.push(Expect::Bind);
    p.push(Expect::Synthetic(Bytes::from_static(b"3\0\0\0\x04")));
    p.push(Expect::Execute);
    p.push(Expect::Sync);
    p.push(Expect::Query);
    let mut f = Vec::new();
    for t in *b"TDCZ" {
        p.on_message(t, &mut f).unwrap();
    }
    p.void();
    let mut out = BytesMut::new();
    for t in *b"12N" {
        let (s, ev) = p.on_message(t, &mut f).unwrap();
        assert_eq!(s, Step::Swallow, "{}", char::from(t));
        assert!(!ev.voided);
        p.drain_synthetic(&mut out);
    }
    assert!(
        out.is_empty(),
        "a proxy reply of a voided request is dropped"
    );
    for t in *b"DC" {
        assert_eq!(p.on_message(t, &mut f).unwrap().0, Step::Swallow);
    }
    let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(s, Step::Swallow);
    assert!(ev.ready && ev.voided);
    assert!(!p.is_voided());
    assert_eq!(
        run(&mut p, b"TDCZ"),
        vec![Step::Forward; 4],
        "the next request is the client's"
    );
}

#[test]
fn a_voided_request_that_failed_its_column_check_reports_no_failure() {
    let mut p = Plan::default();
    p.push(Expect::Check {
        name: Bytes::from_static(b"s"),
        key: 1,
        columns: 2,
    });
    p.push(Expect::Bind);
    p.push(Expect::Sync);
    p.hold_sync(1);
    p.void();
    let mut f = Vec::new();
    let (_, ev) = p.on_message(b't', &mut f).unwrap();
    assert!(ev.check.is_none());
    let (_, ev) = p.on_message(b'T', &mut f).unwrap();
    assert!(
        ev.check.is_some(),
        "the check is still answered, so the held Sync goes out"
    );
    assert!(p.checked(Some(1)).is_some());
    for t in *b"23E" {
        let (s, _) = p.on_message(t, &mut f).unwrap();
        assert_eq!(s, Step::Swallow);
    }
    let (s, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(s, Step::Swallow);
    assert!(ev.voided && !ev.checked_failed);
}

#[test]
fn extended_copy_in_drops_the_early_sync() {
    let mut p = Plan::default();
    p.push(Expect::Bind);
    p.push(Expect::Execute);
    p.push(Expect::Sync);
    p.push(Expect::Sync);
    let mut f = Vec::new();
    p.on_message(b'2', &mut f).unwrap();
    p.on_message(b'G', &mut f).unwrap();
    assert_eq!(p.copy_in_started(), 2);
    p.push(Expect::Sync);
    p.on_message(b'C', &mut f).unwrap();
    assert!(p.on_message(b'Z', &mut f).unwrap().1.ready);
    assert!(p.is_empty());
}

#[test]
fn describe_statement() {
    let mut p = Plan::default();
    p.push(Expect::Describe { statement: None });
    p.push(Expect::Sync);
    assert_eq!(run(&mut p, b"tTZ"), vec![Step::Forward; 3]);
    assert!(p.is_empty());
    // A client statement's ParameterDescription names it, for the types to be kept.
    let s1 = (Bytes::from_static(b"s1"), 9);
    p.push(Expect::Describe {
        statement: Some(s1.clone()),
    });
    let (_, ev) = p.on_message(b't', &mut Vec::new()).unwrap();
    assert_eq!(ev.described, Some(s1));
    let (_, ev) = p.on_message(b'n', &mut Vec::new()).unwrap();
    assert_eq!(ev.described, None);
    assert!(p.is_empty());
}

#[test]
fn unexpected_message_is_desync() {
    let mut p = Plan::default();
    p.push(Expect::Bind);
    assert!(p.on_message(b'1', &mut Vec::new()).is_err());
    let mut p = Plan::default();
    assert!(p.on_message(b'D', &mut Vec::new()).is_err());
    assert!(p.on_message(b'N', &mut Vec::new()).is_ok());
    let (step, ev) = p.on_message(b'E', &mut Vec::new()).unwrap();
    assert_eq!(step, Step::Swallow);
    assert!(ev.unsolicited_error);
}

fn checked_request(p: &mut Plan) {
    p.push(Expect::Parse {
        injected: true,
        key: Some(3),
        client_name: None,
    });
    p.push(Expect::Check {
        name: Bytes::from_static(b"s1"),
        key: 3,
        columns: 42,
    });
    p.push(Expect::Bind);
    p.push(Expect::Execute);
    p.push(Expect::Sync);
    p.hold_sync(1);
}

#[test]
fn a_matching_check_is_swallowed_and_releases_the_sync() {
    let mut p = Plan::default();
    checked_request(&mut p);
    assert!(p.holds_sync());
    let mut f = Vec::new();
    assert_eq!(p.on_message(b'1', &mut f).unwrap().0, Step::Swallow);
    assert_eq!(p.on_message(b't', &mut f).unwrap().0, Step::Swallow);
    let (step, ev) = p.on_message(b'T', &mut f).unwrap();
    assert_eq!(step, Step::Swallow);
    let check = ev.check.expect("a check");
    assert_eq!(
        (&check.name[..], check.key, check.columns),
        (&b"s1"[..], 3, 42)
    );
    assert_eq!(p.checked(None), Some(Release::Sync));
    assert!(!p.holds_sync());
    assert!(run(&mut p, b"2DCZ").iter().all(|s| *s == Step::Forward));
    assert!(p.is_empty());
}

#[test]
fn a_failed_check_swallows_the_request_up_to_its_ready_for_query() {
    let mut p = Plan::default();
    checked_request(&mut p);
    run(&mut p, b"1tT");
    assert_eq!(
        p.checked(Some(3)),
        Some(Release::FailThenSync { close: vec![3] })
    );
    // The client's Bind and Execute ran; then the proxy's Close and failing Execute.
    assert!(run(&mut p, b"2DC3").iter().all(|s| *s == Step::Swallow));
    let mut f = Vec::new();
    let (step, ev) = p.on_message(b'E', &mut f).unwrap();
    assert_eq!(step, Step::Swallow);
    assert!(ev.error);
    let (step, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(step, Step::Forward);
    assert!(ev.ready && ev.checked_failed);
    // The next request is forwarded as usual.
    p.push(Expect::Bind);
    p.push(Expect::Sync);
    assert_eq!(run(&mut p, b"2Z"), [Step::Forward, Step::Forward]);
}

#[test]
fn an_error_before_the_check_releases_the_sync_and_reaches_the_client() {
    let mut p = Plan::default();
    checked_request(&mut p);
    let mut f = Vec::new();
    let (step, ev) = p.on_message(b'E', &mut f).unwrap();
    assert_eq!(step, Step::Forward);
    assert_eq!(ev.release, Some(Release::Sync));
    assert!(!p.holds_sync());
    assert_eq!(f.len(), 1, "the injected Parse is forgotten");
    let (step, ev) = p.on_message(b'Z', &mut f).unwrap();
    assert_eq!(step, Step::Forward);
    assert!(ev.ready && !ev.checked_failed);
}

#[test]
fn the_proxys_own_queries_are_not_swallowed_by_a_failed_check() {
    let mut p = Plan::default();
    p.push(Expect::Internal);
    checked_request(&mut p);
    // The settings replay answers first.
    assert_eq!(run(&mut p, b"CZ"), [Step::Swallow, Step::Swallow]);
    run(&mut p, b"1tT");
    p.checked(Some(3));
    run(&mut p, b"2DC3E");
    assert!(
        p.on_message(b'Z', &mut Vec::new())
            .unwrap()
            .1
            .checked_failed
    );
    assert!(p.is_empty());
}

fn row_description(columns: &[(&str, u32, u32, i32)]) -> Vec<u8> {
    let mut b = (columns.len() as u16).to_be_bytes().to_vec();
    for (name, table, ty, typmod) in columns {
        b.extend_from_slice(name.as_bytes());
        b.push(0);
        b.extend_from_slice(&table.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&ty.to_be_bytes());
        b.extend_from_slice(&4i16.to_be_bytes());
        b.extend_from_slice(&typmod.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    }
    b
}

#[test]
fn columns_keep_their_shape_by_name_type_and_modifier_only() {
    let int = row_description(&[("v", 16384, 23, -1)]);
    let recreated = row_description(&[("v", 16999, 23, -1)]);
    let text = row_description(&[("v", 16384, 25, -1)]);
    let renamed = row_description(&[("w", 16384, 23, -1)]);
    let shape = |b: &[u8]| columns_shape(Some(b));
    assert_eq!(shape(&int), shape(&recreated), "a table made again");
    assert_ne!(shape(&int), shape(&text));
    assert_ne!(shape(&int), shape(&renamed));
    assert_eq!(columns_shape(None), shape(&row_description(&[])));
    assert_eq!(shape(&int[..int.len() - 3]), None, "cut short");
}
