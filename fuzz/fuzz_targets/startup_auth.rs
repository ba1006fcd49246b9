//! Fuzz target: the startup packet and the authentication messages that follow it, as the handshake reads them.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use pgsplit::auth::md5;
use pgsplit::auth::scram::{ScramExchange, ScramVerifier};
use pgsplit::protocol::frame;
use pgsplit::protocol::messages::SaslInitialResponse;
use pgsplit::protocol::startup;
use std::sync::{Arc, OnceLock};

fn verifier() -> Arc<ScramVerifier> {
    static V: OnceLock<Arc<ScramVerifier>> = OnceLock::new();
    V.get_or_init(|| Arc::new(ScramVerifier::from_password("app")))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    // Untagged packets first (SSLRequest may precede the StartupMessage), as read_startup does.
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
    let _ = md5::verify("app", "md5aaaabbbbccccddddeeeeffff00001111", [1, 2, 3, 4], first.body());
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
});
