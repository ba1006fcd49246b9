//! The bodies of the fuzz targets, shared with `tests/fuzz_regressions.rs` so every saved input is replayed by `cargo test`.

use bytes::BytesMut;
use pgsplit::auth::md5;
use pgsplit::auth::scram::{ScramExchange, ScramVerifier};
use pgsplit::protocol::frame;
use pgsplit::protocol::messages::{Bind, Parse, Query, SaslInitialResponse, Target};
use pgsplit::protocol::startup;
use pgsplit::protocol::tags::frontend as tag;
use pgsplit::router::{analyze_uncached, shape, FunctionCatalog};
use std::sync::{Arc, OnceLock};

/// The client-side frame decoder and the typed views of the messages the proxy inspects.
pub fn frame_decoder(data: &[u8]) {
    // A small limit too, so short inputs also reach the too-large path.
    for max in [1 << 20, 64] {
        // Fed in two pieces, as a socket would, so partial frames are exercised too.
        let split = data.first().map_or(0, |&b| b as usize % (data.len() + 1));
        let mut buf = BytesMut::from(&data[..split]);
        let mut fed_rest = false;
        loop {
            match frame::decode_frontend(&mut buf, max) {
                Ok(Some(f)) => {
                    assert!(f.len() >= frame::HEADER_LEN);
                    assert!(f.body().len() <= max);
                    let body = f.body();
                    match f.tag() {
                        tag::QUERY => drop(Query::decode(body)),
                        tag::PARSE => drop(Parse::decode(body)),
                        tag::BIND => drop(Bind::decode(body)),
                        tag::DESCRIBE | tag::CLOSE => drop(Target::decode(body, "Describe")),
                        _ => {}
                    }
                }
                Ok(None) if !fed_rest => {
                    buf.extend_from_slice(&data[split..]);
                    fed_rest = true;
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
}

fn verifier() -> Arc<ScramVerifier> {
    static V: OnceLock<Arc<ScramVerifier>> = OnceLock::new();
    V.get_or_init(|| Arc::new(ScramVerifier::from_password("app")))
        .clone()
}

/// The startup packet and the authentication messages after it, as the handshake reads them.
pub fn startup_auth(data: &[u8]) {
    // Untagged packets first (SSLRequest may precede the StartupMessage).
    let mut rest = data;
    loop {
        let len = match startup::packet_len(rest) {
            Ok(Some(len)) if rest.len() >= len => len,
            _ => return,
        };
        let (packet, tail) = rest.split_at(len);
        rest = tail;
        match startup::parse(packet) {
            Ok(startup::StartupRequest::Ssl | startup::StartupRequest::GssEnc) => continue,
            Ok(_) => break,
            Err(_) => return,
        }
    }
    // Then PasswordMessage-family frames: SASLInitialResponse, SASLResponse, or an md5 answer.
    let mut buf = BytesMut::from(rest);
    let mut frames = Vec::new();
    while let Ok(Some(f)) = frame::decode(&mut buf, 8192) {
        frames.push(f);
    }
    let Some(first) = frames.first() else { return };
    let _ = md5::verify(
        "app",
        "md5aaaabbbbccccddddeeeeffff00001111",
        [1, 2, 3, 4],
        first.body(),
    );
    let Ok(initial) = SaslInitialResponse::decode(first.body()) else {
        return;
    };
    let mechanism = std::str::from_utf8(initial.mechanism).unwrap_or("");
    for mut ex in [ScramExchange::new(verifier()), ScramExchange::mock("app")] {
        if ex.client_first(mechanism, initial.data).is_ok() {
            if let Some(second) = frames.get(1) {
                let _ = ex.client_final(second.body());
            }
        }
    }
}

/// The statement classifier (routing analysis and shape) on arbitrary text.
pub fn classifier(data: &[u8]) {
    static CATALOG: OnceLock<FunctionCatalog> = OnceLock::new();
    let catalog = CATALOG.get_or_init(FunctionCatalog::builtin);
    // Clients send bytes, not necessarily UTF-8.
    let sql = String::from_utf8_lossy(data);
    let _ = shape(&sql);
    let _ = analyze_uncached(&sql, catalog);
}
