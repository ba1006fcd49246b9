//! Criterion benchmarks of the proxy's own work per client login (SCRAM-SHA-256, md5).

use std::hint::black_box;
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use criterion::{criterion_group, criterion_main, Criterion};
use hmac::{Hmac, Mac};
use pgsplit::auth::md5;
use pgsplit::auth::scram::{ScramExchange, ScramVerifier, SCRAM_SHA_256};
use sha2::{Digest, Sha256};

const PASSWORD: &str = "bench-password";
// Shaped like libpq's: a 24-character nonce and an empty user name.
const CLIENT_FIRST: &[u8] = b"n,,n=,r=rOprNGfwEbeRWgbNEkqO+hvY";

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A SCRAM client that did its PBKDF2 once up front, so a measured login is almost all server
/// work (a real client spends ~1 ms in PBKDF2 per login, which is not the proxy's cost).
struct LightClient {
    client_key: [u8; 32],
    stored_key: [u8; 32],
}

impl LightClient {
    fn new(password: &str, verifier: &ScramVerifier) -> Self {
        // Hi(password, salt, i) of RFC 5802: PBKDF2-HMAC-SHA-256 with one output block.
        let mut u = hmac(password.as_bytes(), &[verifier.salt(), &1u32.to_be_bytes()]);
        let mut salted = u;
        for _ in 1..verifier.iterations() {
            u = hmac(password.as_bytes(), &[&u]);
            salted.iter_mut().zip(u).for_each(|(s, u)| *s ^= u);
        }
        let client_key = hmac(&salted, &[b"Client Key"]);
        LightClient {
            client_key,
            stored_key: Sha256::digest(client_key).into(),
        }
    }

    fn client_final(&self, server_first: &[u8]) -> Vec<u8> {
        let nonce_end = server_first.iter().position(|&b| b == b',').unwrap();
        let mut message = b"c=biws,".to_vec();
        message.extend_from_slice(&server_first[..nonce_end]);
        let signature = hmac(
            &self.stored_key,
            &[&CLIENT_FIRST[3..], b",", server_first, b",", &message],
        );
        let mut proof = self.client_key;
        proof.iter_mut().zip(signature).for_each(|(p, s)| *p ^= s);
        message.extend_from_slice(b",p=");
        message.extend_from_slice(BASE64.encode(proof).as_bytes());
        message
    }
}

fn scram(c: &mut Criterion) {
    let verifier = Arc::new(ScramVerifier::from_password(PASSWORD));
    let client = LightClient::new(PASSWORD, &verifier);

    c.bench_function("scram/login (server + light client)", |b| {
        b.iter(|| {
            let mut server = ScramExchange::new(verifier.clone());
            let server_first = server
                .client_first(SCRAM_SHA_256, black_box(CLIENT_FIRST))
                .unwrap();
            let last = client.client_final(&server_first);
            black_box(server.client_final(&last).unwrap())
        })
    });

    // Subtract this from the line above for the server's share.
    let server_first = ScramExchange::new(verifier.clone())
        .client_first(SCRAM_SHA_256, CLIENT_FIRST)
        .unwrap();
    c.bench_function("scram/light client alone", |b| {
        b.iter(|| black_box(client.client_final(black_box(&server_first))))
    });

    c.bench_function("scram/mock login (unknown user)", |b| {
        b.iter(|| {
            let mut server = ScramExchange::mock(black_box("nobody"));
            let server_first = server.client_first(SCRAM_SHA_256, CLIENT_FIRST).unwrap();
            let last = client.client_final(&server_first);
            black_box(server.client_final(&last).unwrap_err())
        })
    });

    // What every login would cost if verifiers were derived per login instead of at load.
    c.bench_function("scram/verifier from password (config load)", |b| {
        b.iter(|| black_box(ScramVerifier::from_password(black_box(PASSWORD))))
    });
}

fn md5_check(c: &mut Criterion) {
    let salt = [1, 2, 3, 4];
    let response = postgres_protocol::authentication::md5_hash(b"app", PASSWORD.as_bytes(), salt);
    let stored = postgres_protocol::password::md5(PASSWORD.as_bytes(), "app");
    c.bench_function("md5/verify against stored hash", |b| {
        b.iter(|| md5::verify("app", black_box(&stored), salt, response.as_bytes()).unwrap())
    });
}

criterion_group!(benches, scram, md5_check);
criterion_main!(benches);
