//! Tests for `pgsplit report`'s HTTP side: URL parsing, response framing, chunked bodies, and runs against a local server.

use super::fetch::{decode_chunked, parse_response, Endpoint, Response};
use super::tests::{realistic, SRC};
use super::*;
use serde_json::Value;
use std::time::{Duration, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[test]
fn chunked_bodies_decode() {
    let body = b"4;ext=1\r\n{\"a\"\r\n6\r\n: 1234\r\n1\r\n}\r\n0\r\nX-Trailer: y\r\n\r\n";
    assert_eq!(decode_chunked(body), Ok(Some(b"{\"a\": 1234}".to_vec())));
    assert_eq!(decode_chunked(b"0\r\n\r\n"), Ok(Some(Vec::new())));
    // Every prefix is incomplete, never an error.
    for cut in 0..body.len() {
        assert_eq!(decode_chunked(&body[..cut]), Ok(None), "cut at {cut}");
    }
    assert!(decode_chunked(b"zz\r\nab\r\n0\r\n\r\n").is_err());
    assert!(decode_chunked(b"2\r\nabc\r\n0\r\n\r\n").is_err());
    assert!(decode_chunked(b"ffffffffffffffffff\r\n").is_err());
    assert!(
        decode_chunked(b"7fffffff\r\n").is_err(),
        "bigger than the cap"
    );
}

#[test]
fn responses_parse_with_length_chunks_or_close() {
    let chunked = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n";
    let ok = Ok(Some(Response {
        status: 200,
        body: b"{}".to_vec(),
    }));
    assert_eq!(parse_response(chunked, false), ok);
    for cut in 0..chunked.len() {
        assert_eq!(parse_response(&chunked[..cut], false), Ok(None));
    }
    let sized = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
    assert_eq!(parse_response(sized, false), ok);
    assert_eq!(parse_response(&sized[..sized.len() - 1], false), Ok(None));
    assert_eq!(parse_response(&sized[..sized.len() - 1], true), Ok(None));
    let close = b"HTTP/1.0 200 OK\r\n\r\n{}";
    assert_eq!(parse_response(close, false), Ok(None));
    assert_eq!(parse_response(close, true), ok);
    assert!(parse_response(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", true).is_err());
    assert!(parse_response(b"HTTP/1.1 2xx OK\r\n\r\n", true).is_err());
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", true).is_err());
}

#[test]
fn urls() {
    let e = Endpoint::parse("http://127.0.0.1:9930").expect("parses");
    assert_eq!(
        (
            e.host.as_str(),
            e.port,
            e.authority.as_str(),
            e.prefix.as_str()
        ),
        ("127.0.0.1", 9930, "127.0.0.1:9930", "")
    );
    let e = Endpoint::parse("HTTP://[::1]:9930/pgsplit/").expect("parses");
    assert_eq!(
        (e.host.as_str(), e.port, e.prefix.as_str()),
        ("::1", 9930, "/pgsplit")
    );
    let e = Endpoint::parse("localhost").expect("parses");
    assert_eq!((e.host.as_str(), e.port), ("localhost", 80));
    for bad in [
        "https://127.0.0.1:9930",
        "ftp://x",
        "http://",
        "http://:9930",
        "http://host:0",
        "http://host:99999",
        "http://u:p@host:1",
        "http://host:1/a b",
        "http://host:1/?x=1",
        "http://[::1",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad} accepted");
    }
}

/// Serves `response` to each connection for `n` connections, returning each request's head.
async fn serve(n: usize, response: Vec<u8>) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        for _ in 0..n {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = Vec::new();
            while !buf.ends_with(b"\r\n\r\n") {
                let mut b = [0u8; 1024];
                let k = s.read(&mut b).await.expect("read");
                assert!(k > 0, "client closed before its request ended");
                buf.extend_from_slice(&b[..k]);
            }
            heads.push(String::from_utf8(buf).expect("utf-8"));
            // Written in pieces so the client has to reassemble across reads.
            for piece in response.chunks(700) {
                s.write_all(piece).await.expect("write");
                s.flush().await.expect("flush");
                tokio::task::yield_now().await;
            }
            // Left open on purpose: the client must stop on the framing, not on EOF.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        heads
    });
    (url, task)
}

fn chunked_response(body: &[u8]) -> Vec<u8> {
    let mut r =
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            .to_vec();
    for c in body.chunks(1000) {
        r.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        r.extend_from_slice(c);
        r.extend_from_slice(b"\r\n");
    }
    r.extend_from_slice(b"0\r\n\r\n");
    r
}

fn args(url: &str, token: Option<&str>, export: Option<PathBuf>) -> ReportArgs {
    ReportArgs {
        url: url.to_string(),
        token: token.map(str::to_string),
        limit: 15,
        export,
    }
}

#[tokio::test]
async fn end_to_end_with_token_and_export() {
    let body = serde_json::to_vec(&realistic()).expect("json");
    let (url, server) = serve(1, chunked_response(&body)).await;
    let path = std::env::temp_dir().join(format!(
        "pgsplit-report-{}-{}.json",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    let mut out = Vec::new();
    run_to(&args(&url, Some("s3cret"), Some(path.clone())), &mut out)
        .await
        .expect("report runs");
    let heads = server.await.expect("server");
    let head = &heads[0];
    assert!(head.starts_with("GET /stats HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nAuthorization: Bearer s3cret\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\nConnection: close\r\n"));

    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("replica 80% / primary 20% / cache 0%"));
    assert!(text.contains(&format!("Exported to {}", path.display())));

    let written = std::fs::read(&path).expect("export written");
    let _ = std::fs::remove_file(&path);
    let e: Value = serde_json::from_slice(&written).expect("export is JSON");
    assert_eq!(e["source"], url.as_str());
    assert_eq!(
        e["performance_targets"]["connection_pool_efficiency"]["actual"],
        "95.2%"
    );
    assert_eq!(e["top_queries"].as_array().map(Vec::len), Some(3));
    let at = e["generated_at"].as_str().expect("timestamp");
    assert_eq!((at.len(), &at[10..11], &at[19..]), (20, "T", "Z"));
}

#[tokio::test]
async fn content_length_responses_and_no_token() {
    let body = br#"{"uptime_s": 5, "clients": 1}"#;
    let mut response =
        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
    response.extend_from_slice(body);
    let (url, server) = serve(1, response).await;
    let mut out = Vec::new();
    run_to(&args(&url, None, None), &mut out)
        .await
        .expect("report runs");
    let head = &server.await.expect("server")[0];
    assert!(!head.contains("Authorization"));
    let text = String::from_utf8(out).expect("utf-8");
    assert!(text.contains("uptime 5s · 1 clients"));
    assert!(!text.contains("Exported"));
}

#[tokio::test]
async fn refusals_say_what_to_do() {
    let response = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_vec();
    let (url, _server) = serve(2, response).await;
    let err = run_to(&args(&url, None, None), &mut Vec::new())
        .await
        .expect_err("401");
    assert!(
        err.to_string()
            .contains("pass --token or set PGSPLIT_STATS_TOKEN"),
        "{err}"
    );
    let err = run_to(&args(&url, Some("wrong"), None), &mut Vec::new())
        .await
        .expect_err("401");
    assert!(err.to_string().contains("the token is wrong"), "{err}");

    let response = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found".to_vec();
    let (url, _server) = serve(1, response).await;
    let err = run_to(&args(&url, None, None), &mut Vec::new())
        .await
        .expect_err("404");
    assert!(err.to_string().contains("HTTP 404: not found"), "{err}");

    let response = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nnot json!".to_vec();
    let (url, _server) = serve(1, response).await;
    let err = run_to(&args(&url, None, None), &mut Vec::new())
        .await
        .expect_err("bad json");
    assert!(matches!(err, ReportError::BadJson { .. }), "{err}");
}

#[tokio::test]
async fn an_unreachable_endpoint_says_so() {
    // Bind and drop to find a port nothing listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let err = run(&args(&url, None, None)).await.expect_err("refused");
    let msg = err.to_string();
    assert!(msg.starts_with(&format!("cannot reach pgsplit's stats endpoint at {url}: ")));
    assert!(
        msg.ends_with("(is pgsplit running? is stats.listen right?)"),
        "{msg}"
    );
}

#[tokio::test]
async fn bad_arguments_fail_before_connecting() {
    let err = run(&args("https://127.0.0.1:9930", None, None))
        .await
        .expect_err("https");
    assert!(err.to_string().contains("https is not supported"), "{err}");
    let err = run(&args("http://127.0.0.1:9", Some("a\r\nX-Evil: 1"), None))
        .await
        .expect_err("token");
    assert!(matches!(err, ReportError::BadToken));
}

#[test]
fn debug_hides_the_token() {
    let a = args(SRC, Some("s3cret"), None);
    let dbg = format!("{a:?}");
    assert!(!dbg.contains("s3cret") && dbg.contains("********"));
}

#[test]
fn cli_defaults_and_flags() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        report: ReportArgs,
    }
    let a = Cli::try_parse_from(["report"]).expect("defaults").report;
    assert_eq!(
        (a.url.as_str(), a.limit, a.export.is_none()),
        (SRC, 15, true)
    );
    let a = Cli::try_parse_from([
        "report",
        "--url",
        "http://10.0.0.5:9930",
        "--token",
        "t",
        "--limit",
        "3",
        "--export",
        "out.json",
    ])
    .expect("flags")
    .report;
    assert_eq!(a.url, "http://10.0.0.5:9930");
    assert_eq!(a.token.as_deref(), Some("t"));
    assert_eq!(a.limit, 3);
    assert_eq!(a.export, Some(PathBuf::from("out.json")));
}
