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

/// Differential check of the shape cache against PostgreSQL's own scanner: two texts the cheap
/// lexer gives one shape (so one cached analysis) must tokenize alike under `pg_query::scan`,
/// constants aside. The second text is the first rebuilt from the cheap lexer's tokens with
/// other whitespace and comments (also where it saw none), other letter case, and either the
/// same or fresh constants: any token boundary the lexer gets wrong shows up as a difference.
pub fn lexer_diff(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(&data[..data.len().min(4096)]) else {
        return;
    };
    if sql.contains('\0') {
        return;
    }
    let mut rng = Rng(data.iter().fold(0x9e37_79b9_7f4a_7c15, |h: u64, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1);
    for fresh in [false, true] {
        let other = variant(sql, &mut rng, fresh);
        if shape(sql).hash != shape(&other).hash {
            continue;
        }
        match (pg_tokens(sql), pg_tokens(&other)) {
            (Ok(a), Ok(b)) => assert!(
                a == b,
                "one shape, different PostgreSQL tokens:\n{sql:?}\n{other:?}\n{a:?}\n{b:?}"
            ),
            (Err(_), Err(_)) => {}
            // Fresh constants may be valid where the originals held a bad escape.
            (Err(_), Ok(_)) if fresh => {}
            (a, b) => panic!(
                "one shape, only one scans:\n{sql:?} -> {:?}\n{other:?} -> {:?}",
                a.err(),
                b.err()
            ),
        }
    }
}

/// xorshift64: the variants of one input are the same on every run, so findings replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const BLANKS: &[&str] = &[
    " ",
    "\n",
    "\t",
    "\r",
    "\r\n",
    "\x0c",
    "  ",
    "/**/",
    "/* c /* nested */ c */",
    "-- c\n",
    "--c\r",
];

fn variant(sql: &str, rng: &mut Rng, fresh: bool) -> String {
    use pgsplit::router::TokenKind;
    let (tokens, _) = pgsplit::router::tokens(sql);
    let mut out = String::with_capacity(sql.len() * 2);
    for t in &tokens {
        let text = &sql[t.start..t.end.min(sql.len())];
        let insert = t.space_before || rng.next() % 4 == 0;
        if insert && !out.is_empty() {
            let blank = rng.pick(BLANKS);
            // `-` then `--` would make the operator part of the comment: that is the
            // generator's doing, not the lexer's.
            if blank.starts_with(['-', '/']) && out.ends_with(['-', '/', '*']) {
                out.push(' ');
            }
            out.push_str(blank);
        }
        match t.kind {
            TokenKind::Word => {
                for c in text.chars() {
                    if rng.next() % 2 == 0 {
                        out.push(c.to_ascii_uppercase());
                    } else {
                        out.push(c.to_ascii_lowercase());
                    }
                }
            }
            TokenKind::Literal if fresh => out.push_str(fresh_literal(text)),
            _ => out.push_str(text),
        }
    }
    out
}

/// A valid constant of the same family, that starts the way the original does (so it fuses
/// with its neighbours no more and no less).
fn fresh_literal(text: &str) -> &'static str {
    let b = text.as_bytes();
    match (b.first().copied(), b.get(1).copied()) {
        (Some(b'.'), _) => ".5",
        (Some(b'0'..=b'9'), _) => "7",
        (Some(b'e' | b'E'), _) => "E'z'",
        (Some(b'b' | b'B'), _) => "B'1'",
        (Some(b'x' | b'X'), _) => "X'F'",
        (Some(b'n' | b'N'), _) => "N'z'",
        (Some(b'u' | b'U'), _) => "U&'z'",
        (Some(b'$'), _) => "$q$z$q$",
        _ => "'z'",
    }
}

/// PostgreSQL's tokens of a text with comments dropped, constants as one class, `N'..'`'s
/// NCHAR folded into its string, and unquoted identifiers lowercased as the scanner does.
fn pg_tokens(sql: &str) -> Result<Vec<(i32, String)>, String> {
    use pg_query::protobuf::Token as T;
    // A text of scanner whitespace has no tokens, and pg_query 18.1's scan_tokens then builds a
    // slice from a null pointer (UB; debug assertions abort on it): the protobuf scan is safe.
    let tokens = if sql.bytes().all(|b| b" \t\n\r\x0b\x0c".contains(&b)) {
        pg_query::scan(sql).map_err(|e| e.to_string())?.tokens
    } else {
        pg_query::scan_tokens(sql).map_err(|e| e.to_string())?
    };
    let mut out = Vec::with_capacity(tokens.len());
    for (i, t) in tokens.iter().enumerate() {
        let kind = T::try_from(t.token).unwrap_or(T::Nul);
        let text = sql
            .get(t.start as usize..t.end as usize)
            .unwrap_or("")
            .to_owned();
        let key = match kind {
            T::SqlComment | T::CComment => continue,
            T::Nchar
                if text.len() == 1
                    && tokens
                        .get(i + 1)
                        .is_some_and(|n| n.start == t.end && n.token == T::Sconst as i32) =>
            {
                continue
            }
            T::Iconst | T::Fconst | T::Sconst | T::Usconst | T::Bconst | T::Xconst => {
                (T::Sconst as i32, String::new())
            }
            T::Ident if !text.starts_with('"') => (t.token, text.to_ascii_lowercase()),
            T::Ident | T::Uident | T::Op | T::Param => (t.token, text),
            _ => (t.token, String::new()),
        };
        out.push(key);
    }
    Ok(out)
}
