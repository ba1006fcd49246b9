use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::auth::tests::PG15_VERIFIER_FOR_APP;

fn verifier(password: &str) -> Arc<ScramVerifier> {
    Arc::new(ScramVerifier::from_password(password))
}

/// Runs a whole login with the postgres-protocol client and returns the server's verdict.
fn login(
    verifier: Arc<ScramVerifier>,
    password: &str,
    binding: ChannelBinding,
) -> Result<(), AuthError> {
    let mut client = ScramSha256::new(password.as_bytes(), binding);
    let mut server = ScramExchange::new(verifier);
    let server_first = server.client_first(SCRAM_SHA_256, client.message())?;
    client.update(&server_first).unwrap();
    let server_final = server.client_final(client.message())?;
    client
        .finish(&server_final)
        .expect("client accepts the server signature");
    Ok(())
}

/// The server-first-message and client-final-message of a correct login, for tampering with.
fn valid_final(server: &mut ScramExchange, password: &str) -> String {
    let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
    let server_first = server
        .client_first(SCRAM_SHA_256, client.message())
        .unwrap();
    client.update(&server_first).unwrap();
    String::from_utf8(client.message().to_vec()).unwrap()
}

#[test]
fn correct_password_logs_in_and_client_accepts_server() {
    login(verifier("s3cret"), "s3cret", ChannelBinding::unsupported()).unwrap();
}

#[test]
fn gs2_flag_y_is_accepted() {
    login(verifier("s3cret"), "s3cret", ChannelBinding::unrequested()).unwrap();
}

#[test]
fn wrong_password_is_mismatch() {
    assert_eq!(
        login(verifier("s3cret"), "S3cret", ChannelBinding::unsupported()),
        Err(AuthError::PasswordMismatch)
    );
}

#[test]
fn non_ascii_password_goes_through_saslprep_on_both_sides() {
    // U+00A0 (no-break space) maps to a plain space under SASLprep.
    login(
        verifier("pass\u{a0}word"),
        "pass word",
        ChannelBinding::unsupported(),
    )
    .unwrap();
}

#[test]
fn real_postgres_verifier_parses_and_logs_in() {
    let v = Arc::new(ScramVerifier::parse(PG15_VERIFIER_FOR_APP).unwrap());
    assert_eq!(v.iterations(), 4096);
    assert_eq!(v.salt().len(), 16);
    login(v.clone(), "app", ChannelBinding::unsupported()).unwrap();
    assert_eq!(
        login(v, "ap", ChannelBinding::unsupported()),
        Err(AuthError::PasswordMismatch)
    );
}

#[test]
fn postgres_protocol_verifier_parses() {
    let text = postgres_protocol::password::scram_sha_256(b"pw");
    let v = ScramVerifier::parse(&text).unwrap();
    assert_eq!(v.iterations(), 4096);
    login(Arc::new(v), "pw", ChannelBinding::unsupported()).unwrap();
}

#[test]
fn bad_verifiers_are_rejected() {
    let key = BASE64.encode([7u8; 32]);
    let short = BASE64.encode([7u8; 31]);
    let cases = [
        String::new(),
        "md5b27af67da61e61de90c73eb6eda9ec68".to_owned(),
        format!("SCRAM-SHA-1$4096:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA=={key}:{key}"),
        format!("SCRAM-SHA-256$4096c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}{key}"),
        format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$-1:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$99999999999:c2FsdA==${key}:{key}"),
        format!("SCRAM-SHA-256$4096:${key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA=${key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}:{key}"),
        format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}$"),
    ];
    for case in &cases {
        match ScramVerifier::parse(case) {
            Err(AuthError::InvalidVerifier(why)) => {
                assert!(!why.contains(&key), "error echoes the secret: {why}")
            }
            other => panic!("{case:?} gave {other:?}"),
        }
    }
}

#[test]
fn verifier_debug_hides_keys() {
    let v = ScramVerifier::parse(PG15_VERIFIER_FOR_APP).unwrap();
    let shown = format!("{v:?}");
    assert!(!shown.contains("IOtQhmRX"), "{shown}");
    assert!(!shown.contains("5CyEOBcm"), "{shown}");
}

#[test]
fn server_first_has_client_nonce_fresh_server_nonce_salt_and_iterations() {
    let v = Arc::new(ScramVerifier::parse(PG15_VERIFIER_FOR_APP).unwrap());
    let client_first = b"n,,n=ignored,r=abcdefghijklmnopqrstuvwx";
    let a = ScramExchange::new(v.clone())
        .client_first(SCRAM_SHA_256, client_first)
        .unwrap();
    let b = ScramExchange::new(v)
        .client_first(SCRAM_SHA_256, client_first)
        .unwrap();
    let a = String::from_utf8(a).unwrap();
    let b = String::from_utf8(b).unwrap();
    let tail = ",s=/IsjnrwwqXzVfv1e0xI3cg==,i=4096";
    assert!(
        a.starts_with("r=abcdefghijklmnopqrstuvwx") && a.ends_with(tail),
        "{a}"
    );
    let server_nonce = &a["r=abcdefghijklmnopqrstuvwx".len()..a.len() - tail.len()];
    assert_eq!(BASE64.decode(server_nonce).unwrap().len(), 18);
    assert_ne!(a, b, "server nonce must be fresh per exchange");
}

#[test]
fn other_mechanisms_are_unsupported() {
    let mut server = ScramExchange::new(verifier("pw"));
    assert_eq!(
        server.client_first("SCRAM-SHA-256-PLUS", b"p=tls-server-end-point,,n=,r=abc"),
        Err(AuthError::UnsupportedMechanism("SCRAM-SHA-256-PLUS".into()))
    );
}

#[test]
fn malformed_client_first_messages_are_rejected() {
    let cases: &[&[u8]] = &[
        b"",
        b"n",
        b"n,",
        b"n,,",
        b"x,,n=,r=abc",
        b"p=tls-server-end-point,,n=,r=abc",
        b"n,a=admin,n=,r=abc",
        b"n,,m=ext,n=,r=abc",
        b"n,,r=abc",
        b"n,,n=,",
        b"n,,n=,r=",
        b"n,,n=,r=a\x01c",
        b"n,,n=,r=a\xffc",
        b"n,,n=,r=abc,",
        b"n,,n=,r=abc,x",
        b"n,,n=,r=abc,1=x",
        b"n,,n=,r=ab\0c",
        b"n,,n=,s=abc",
    ];
    for case in cases {
        let mut server = ScramExchange::new(verifier("pw"));
        match server.client_first(SCRAM_SHA_256, case) {
            Err(AuthError::Malformed(_)) => {}
            other => panic!("{:?} gave {other:?}", String::from_utf8_lossy(case)),
        }
    }
}

#[test]
fn client_first_extensions_and_user_name_are_ignored() {
    let mut server = ScramExchange::new(verifier("pw"));
    let reply = server
        .client_first(SCRAM_SHA_256, b"n,,n=someone=2Celse,r=abc,x=ext")
        .unwrap();
    assert!(reply.starts_with(b"r=abc"));
}

#[test]
fn tampered_nonce_is_malformed() {
    let mut server = ScramExchange::new(verifier("pw"));
    let last = valid_final(&mut server, "pw");
    // Flip one character of the server's part of the nonce.
    let r = last.find(",p=").unwrap() - 1;
    let mut bytes = last.into_bytes();
    bytes[r] = if bytes[r] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        server.client_final(&bytes),
        Err(AuthError::Malformed("SCRAM nonce does not match"))
    );
}

#[test]
fn wrong_channel_binding_attribute_is_malformed() {
    for cbind in ["eSws", "cD10bHMtc2VydmVyLWVuZC1wb2ludCws", "", "biws="] {
        let mut server = ScramExchange::new(verifier("pw"));
        let last = valid_final(&mut server, "pw").replacen("c=biws", &format!("c={cbind}"), 1);
        assert!(
            matches!(
                server.client_final(last.as_bytes()),
                Err(AuthError::Malformed(_))
            ),
            "{cbind}"
        );
    }
}

#[test]
fn bad_proofs_are_malformed() {
    let mut server = ScramExchange::new(verifier("pw"));
    let last = valid_final(&mut server, "pw");
    let at = last.find(",p=").unwrap();
    let good_proof = &last[at + 3..];
    let short = BASE64.encode([1u8; 31]);
    let long = BASE64.encode([1u8; 33]);
    let bad_b64 = good_proof.replacen(|c: char| c.is_ascii_alphanumeric(), "*", 1);
    for proof in [short.as_str(), &long, &bad_b64, "", "===="] {
        let mut server = ScramExchange::new(verifier("pw"));
        let last = valid_final(&mut server, "pw");
        let tampered = format!("{},p={proof}", &last[..last.find(",p=").unwrap()]);
        assert_eq!(
            server.client_final(tampered.as_bytes()),
            Err(AuthError::Malformed("malformed SCRAM proof")),
            "{proof}"
        );
    }
}

#[test]
fn wrong_proof_of_right_length_is_mismatch() {
    let mut server = ScramExchange::new(verifier("pw"));
    let last = valid_final(&mut server, "pw");
    let at = last.find(",p=").unwrap();
    let forged = format!("{},p={}", &last[..at], BASE64.encode([9u8; 32]));
    assert_eq!(
        server.client_final(forged.as_bytes()),
        Err(AuthError::PasswordMismatch)
    );
}

#[test]
fn every_truncation_of_client_final_is_an_error() {
    let mut probe = ScramExchange::new(verifier("pw"));
    let full = valid_final(&mut probe, "pw");
    for len in 0..full.len() {
        let mut server = ScramExchange::new(verifier("pw"));
        let last = valid_final(&mut server, "pw");
        assert!(server.client_final(&last.as_bytes()[..len]).is_err());
    }
}

#[test]
fn trailing_garbage_after_proof_is_malformed() {
    for suffix in [",", ",x=1", "\n"] {
        let mut server = ScramExchange::new(verifier("pw"));
        let last = valid_final(&mut server, "pw") + suffix;
        assert!(
            matches!(
                server.client_final(last.as_bytes()),
                Err(AuthError::Malformed(_))
            ),
            "{suffix:?}"
        );
    }
}

#[test]
fn client_final_extensions_before_proof_are_covered_by_the_proof() {
    // An extension inserted by a middleman changes AuthMessage, so the proof no longer matches.
    let mut server = ScramExchange::new(verifier("pw"));
    let last = valid_final(&mut server, "pw");
    let at = last.find(",p=").unwrap();
    let with_ext = format!("{},x=1{}", &last[..at], &last[at..]);
    assert_eq!(
        server.client_final(with_ext.as_bytes()),
        Err(AuthError::PasswordMismatch)
    );
}

#[test]
fn messages_out_of_order_are_malformed() {
    let mut server = ScramExchange::new(verifier("pw"));
    assert!(matches!(
        server.client_final(b"c=biws,r=abc,p=AAAA"),
        Err(AuthError::Malformed(_))
    ));

    let mut server = ScramExchange::new(verifier("pw"));
    server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
    assert!(matches!(
        server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc"),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn a_failed_exchange_cannot_be_retried() {
    let mut server = ScramExchange::new(verifier("pw"));
    let last = valid_final(&mut server, "pw");
    assert!(server.client_final(b"garbage").is_err());
    assert!(matches!(
        server.client_final(last.as_bytes()),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn mock_exchange_looks_real_and_always_fails() {
    for password in ["", "pw", "app"] {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let mut server = ScramExchange::mock("nobody");
        let server_first = server
            .client_first(SCRAM_SHA_256, client.message())
            .unwrap();
        let text = String::from_utf8(server_first.clone()).unwrap();
        let salt = text.split(",s=").nth(1).unwrap().split(',').next().unwrap();
        assert_eq!(BASE64.decode(salt).unwrap().len(), 16);
        assert!(text.ends_with(",i=4096"), "{text}");
        client.update(&server_first).unwrap();
        assert_eq!(
            server.client_final(client.message()),
            Err(AuthError::PasswordMismatch)
        );
    }
}

#[test]
fn mock_salt_is_stable_per_user_and_differs_between_users() {
    fn salt(mut server: ScramExchange) -> Vec<u8> {
        let reply = server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
        let at = reply.windows(3).position(|w| w == b",s=").unwrap();
        reply[at..].to_vec()
    }
    assert_eq!(
        salt(ScramExchange::mock("alice")),
        salt(ScramExchange::mock("alice"))
    );
    assert_ne!(
        salt(ScramExchange::mock("alice")),
        salt(ScramExchange::mock("bob"))
    );
    assert_eq!(
        salt(ScramExchange::mock_with_secret("alice", b"k")),
        salt(ScramExchange::mock_with_secret("alice", b"k"))
    );
    assert_ne!(
        salt(ScramExchange::mock_with_secret("alice", b"k")),
        salt(ScramExchange::mock_with_secret("alice", b"other"))
    );
}

#[test]
fn mock_exchange_reports_malformed_messages_like_a_real_one() {
    let mut server = ScramExchange::mock("nobody");
    assert!(matches!(
        server.client_first(SCRAM_SHA_256, b"n,,r=abc"),
        Err(AuthError::Malformed(_))
    ));
    let mut server = ScramExchange::mock("nobody");
    server.client_first(SCRAM_SHA_256, b"n,,n=,r=abc").unwrap();
    assert!(matches!(
        server.client_final(b"c=biws,r=abcdef,p=AAAA"),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn random_mutations_never_panic_and_never_log_in() {
    let mut rng = StdRng::seed_from_u64(0x5c4a_3d00);
    let v = verifier("pw");
    let mut finals = 0;
    for _ in 0..1500 {
        let mut client = ScramSha256::new(b"pw", ChannelBinding::unsupported());
        let mut first = client.message().to_vec();
        if rng.gen_bool(0.3) {
            mutate(&mut rng, &mut first);
        }
        let first_changed = first != client.message();
        let mut server = if rng.gen_bool(0.2) {
            ScramExchange::mock("nobody")
        } else {
            ScramExchange::new(v.clone())
        };
        let Ok(server_first) = server.client_first(SCRAM_SHA_256, &first) else {
            continue;
        };
        if client.update(&server_first).is_err() {
            continue;
        }
        let mut last = client.message().to_vec();
        mutate(&mut rng, &mut last);
        finals += 1;
        // A mutation that wrote back the same byte leaves a genuine login, which must succeed.
        if let Ok(reply) = server.client_final(&last) {
            assert!(!first_changed && !server.doomed);
            assert_eq!(
                &last[..],
                client.message(),
                "logged in with a mutated message"
            );
            client.finish(&reply).unwrap();
        }
    }
    assert!(
        finals > 750,
        "only {finals} mutated client-final-messages were tried"
    );
}

fn mutate(rng: &mut StdRng, msg: &mut Vec<u8>) {
    match rng.gen_range(0..4) {
        0 if !msg.is_empty() => {
            let i = rng.gen_range(0..msg.len());
            msg[i] = rng.gen();
        }
        1 if !msg.is_empty() => {
            let len = rng.gen_range(0..msg.len());
            msg.truncate(len);
        }
        2 => {
            let i = rng.gen_range(0..=msg.len());
            let tricky = b",=pcrn\0\xff";
            msg.insert(i, tricky[rng.gen_range(0..tricky.len())]);
        }
        _ if !msg.is_empty() => {
            let i = rng.gen_range(0..msg.len());
            msg.remove(i);
        }
        _ => msg.push(rng.gen()),
    }
}
