//! Server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL's auth-scram.c speaks it.

use std::fmt;
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::AuthError;

/// The only SASL mechanism to list in AuthenticationSASL: without TLS channel binding there is
/// no `-PLUS` variant to offer.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";
const KEY_LEN: usize = 32;
// PostgreSQL's SCRAM_RAW_NONCE_LEN; 18 bytes encode to 24 base64 characters without padding.
const SERVER_NONCE_LEN: usize = 18;
// PostgreSQL's defaults, so that a mock exchange looks like a freshly set password.
const DEFAULT_ITERATIONS: u32 = 4096;
const DEFAULT_SALT_LEN: usize = 16;
// base64 of the only two gs2 headers accepted: "n,," and "y,," (no authzid, no channel binding).
const CBIND_N: &str = "biws";
const CBIND_Y: &str = "eSws";

type HmacSha256 = Hmac<Sha256>;

/// A parsed `pg_authid` SCRAM secret. Holding StoredKey and ServerKey lets a login cost a few
/// HMACs instead of PBKDF2.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    iterations: u32,
    salt: Vec<u8>,
    // Every server-first-message carries the salt encoded, so it is encoded once here.
    salt_b64: String,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl ScramVerifier {
    /// Parses `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts), the
    /// form PostgreSQL stores in `pg_authid.rolpassword`.
    pub fn parse(s: &str) -> Result<Self, AuthError> {
        fn invalid(why: &str) -> AuthError {
            AuthError::InvalidVerifier(why.to_owned())
        }
        let rest = s
            .strip_prefix(VERIFIER_PREFIX)
            .ok_or_else(|| invalid("does not start with \"SCRAM-SHA-256$\""))?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or_else(|| invalid("missing '$' between parameters and keys"))?;
        let (iterations, salt_b64) = params
            .split_once(':')
            .ok_or_else(|| invalid("missing ':' between iteration count and salt"))?;
        let (stored_b64, server_b64) = keys
            .split_once(':')
            .ok_or_else(|| invalid("missing ':' between StoredKey and ServerKey"))?;
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| invalid("iteration count is not a positive integer"))?;
        let salt = BASE64
            .decode(salt_b64)
            .ok()
            .filter(|salt| !salt.is_empty())
            .ok_or_else(|| invalid("salt is not non-empty base64"))?;
        let stored_key =
            decode_key(stored_b64).ok_or_else(|| invalid("StoredKey is not 32 bytes of base64"))?;
        let server_key =
            decode_key(server_b64).ok_or_else(|| invalid("ServerKey is not 32 bytes of base64"))?;
        Ok(ScramVerifier {
            iterations,
            salt_b64: BASE64.encode(&salt),
            salt,
            stored_key,
            server_key,
        })
    }

    /// Derives a verifier with a random 16-byte salt and 4096 iterations (PostgreSQL's
    /// defaults). This runs PBKDF2: call it once at configuration load, never per login.
    pub fn from_password(password: &str) -> Self {
        // postgres-protocol applies SASLprep exactly as libpq and the server do.
        let encoded = postgres_protocol::password::scram_sha_256(password.as_bytes());
        Self::parse(&encoded).expect("postgres-protocol writes well-formed SCRAM verifiers")
    }

    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    pub fn salt(&self) -> &[u8] {
        &self.salt
    }
}

// The keys are password equivalents for this proxy: keep them out of logs.
impl fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramVerifier")
            .field("iterations", &self.iterations)
            .field("salt", &self.salt_b64)
            .field("keys", &"<redacted>")
            .finish()
    }
}

fn decode_key(b64: &str) -> Option<[u8; KEY_LEN]> {
    BASE64.decode(b64).ok()?.try_into().ok()
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; KEY_LEN] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// One client's SCRAM-SHA-256 login: feed it the SASLInitialResponse, then the SASLResponse.
///
/// Any error ends the exchange; later calls return [`AuthError::Malformed`].
pub struct ScramExchange {
    verifier: Arc<ScramVerifier>,
    // A mock exchange (unknown user) does every step of a real one, including the proof check,
    // and fails at the end, like PostgreSQL's "doomed" exchange: neither the replies nor their
    // timing tell an attacker whether the user exists.
    doomed: bool,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Pending),
    Done,
}

// What the client-final-message is checked against.
struct Pending {
    client_first_bare: Vec<u8>,
    server_first: Vec<u8>,
    // server_first[2..nonce_end] is the combined nonce, which the client must echo in r=.
    nonce_end: usize,
    // The client must echo its gs2 header, base64-encoded, in c=.
    cbind: &'static str,
}

impl ScramExchange {
    pub fn new(verifier: Arc<ScramVerifier>) -> Self {
        ScramExchange {
            verifier,
            doomed: false,
            state: State::AwaitingClientFirst,
        }
    }

    /// An exchange for a user that does not exist (or has no SCRAM secret): it answers with a
    /// plausible salt, the same for the same user for the life of the process, and always ends
    /// in [`AuthError::PasswordMismatch`].
    pub fn mock(user: &str) -> Self {
        Self::mock_with_secret(user, process_mock_secret())
    }

    /// Like [`ScramExchange::mock`], with the fake salt keyed by `secret`; a secret kept across
    /// restarts (PostgreSQL keeps one in its control file) stops an attacker from spotting a
    /// fake user by its salt changing after a restart.
    pub fn mock_with_secret(user: &str, secret: &[u8]) -> Self {
        let salt = hmac_sha256(secret, &[user.as_bytes()])[..DEFAULT_SALT_LEN].to_vec();
        let verifier = ScramVerifier {
            iterations: DEFAULT_ITERATIONS,
            salt_b64: BASE64.encode(&salt),
            salt,
            stored_key: [0; KEY_LEN],
            server_key: [0; KEY_LEN],
        };
        ScramExchange {
            verifier: Arc::new(verifier),
            doomed: true,
            state: State::AwaitingClientFirst,
        }
    }

    /// Takes the SASLInitialResponse: the mechanism the client chose and its
    /// client-first-message. Returns the server-first-message for AuthenticationSASLContinue.
    pub fn client_first(&mut self, mechanism: &str, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        if !matches!(
            std::mem::replace(&mut self.state, State::Done),
            State::AwaitingClientFirst
        ) {
            return Err(AuthError::Malformed("SASLInitialResponse out of order"));
        }
        if mechanism != SCRAM_SHA_256 {
            return Err(AuthError::UnsupportedMechanism(mechanism.to_owned()));
        }
        let first = parse_client_first(data)?;

        let mut nonce = [0u8; SERVER_NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let iterations = self.verifier.iterations.to_string();
        let salt_b64 = self.verifier.salt_b64.as_bytes();
        let mut server_first = Vec::with_capacity(
            first.nonce.len() + salt_b64.len() + iterations.len() + 2 * SERVER_NONCE_LEN,
        );
        server_first.extend_from_slice(b"r=");
        server_first.extend_from_slice(first.nonce);
        server_first.extend_from_slice(BASE64.encode(nonce).as_bytes());
        let nonce_end = server_first.len();
        server_first.extend_from_slice(b",s=");
        server_first.extend_from_slice(salt_b64);
        server_first.extend_from_slice(b",i=");
        server_first.extend_from_slice(iterations.as_bytes());

        let reply = server_first.clone();
        self.state = State::AwaitingClientFinal(Pending {
            client_first_bare: first.bare.to_vec(),
            server_first,
            nonce_end,
            cbind: first.cbind,
        });
        Ok(reply)
    }

    /// Takes the SASLResponse (client-final-message). Returns the server-final-message
    /// (`v=<ServerSignature>`) for AuthenticationSASLFinal, or [`AuthError::PasswordMismatch`].
    pub fn client_final(&mut self, data: &[u8]) -> Result<Vec<u8>, AuthError> {
        let State::AwaitingClientFinal(pending) = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(AuthError::Malformed("SASLResponse out of order"));
        };
        let last = parse_client_final(data)?;
        if last.cbind != pending.cbind.as_bytes() {
            return Err(AuthError::Malformed(
                "unexpected SCRAM channel-binding attribute in client-final-message",
            ));
        }
        if last.nonce != &pending.server_first[2..pending.nonce_end] {
            return Err(AuthError::Malformed("SCRAM nonce does not match"));
        }

        // AuthMessage = client-first-message-bare "," server-first-message ","
        // client-final-message-without-proof, fed in pieces rather than concatenated.
        let auth_message: [&[u8]; 5] = [
            &pending.client_first_bare,
            b",",
            &pending.server_first,
            b",",
            last.without_proof,
        ];
        let client_signature = hmac_sha256(&self.verifier.stored_key, &auth_message);
        let mut client_key = last.proof;
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let stored_key: [u8; KEY_LEN] = Sha256::digest(client_key).into();
        let matches: bool = stored_key.ct_eq(&self.verifier.stored_key).into();
        if !matches || self.doomed {
            return Err(AuthError::PasswordMismatch);
        }

        let server_signature = hmac_sha256(&self.verifier.server_key, &auth_message);
        let mut reply = b"v=".to_vec();
        reply.extend_from_slice(BASE64.encode(server_signature).as_bytes());
        Ok(reply)
    }
}

// One random key per process for mock salts; immutable once drawn, so tests stay independent.
fn process_mock_secret() -> &'static [u8] {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        secret
    })
}

struct ClientFirst<'a> {
    cbind: &'static str,
    bare: &'a [u8],
    nonce: &'a [u8],
}

struct ClientFinal<'a> {
    cbind: &'a [u8],
    nonce: &'a [u8],
    without_proof: &'a [u8],
    proof: [u8; KEY_LEN],
}

// client-first-message = gs2-header client-first-message-bare
//   gs2-header = ("n" / "y") "," "," (no channel binding, no authzid)
//   client-first-message-bare = "n=" user "," "r=" nonce ["," extensions]
fn parse_client_first(data: &[u8]) -> Result<ClientFirst<'_>, AuthError> {
    let mut c = Cursor::new(data)?;
    let cbind = match c.next() {
        Some(b'n') => CBIND_N,
        Some(b'y') => CBIND_Y,
        Some(b'p') => {
            return Err(AuthError::Malformed(
                "client requested SCRAM channel binding, which was not offered",
            ))
        }
        _ => {
            return Err(AuthError::Malformed(
                "unexpected channel-binding flag in SCRAM client-first-message",
            ))
        }
    };
    c.expect(b',', "comma expected after the SCRAM channel-binding flag")?;
    if c.peek() == Some(b'a') {
        return Err(AuthError::Malformed(
            "SCRAM authorization identity is not supported",
        ));
    }
    c.expect(b',', "comma expected after the SCRAM gs2 header")?;
    let bare = c.rest();
    if c.peek() == Some(b'm') {
        return Err(AuthError::Malformed(
            "client requires an unsupported SCRAM extension",
        ));
    }
    // The user name is ignored: PostgreSQL authenticates the user of the startup packet.
    c.attr(b'n')?;
    c.expect(b',', "comma expected after the SCRAM user name")?;
    let nonce = c.attr(b'r')?;
    if nonce.is_empty() || !nonce.iter().all(|&b| is_printable(b)) {
        return Err(AuthError::Malformed("invalid SCRAM client nonce"));
    }
    while !c.at_end() {
        c.expect(b',', "comma expected between SCRAM attributes")?;
        c.any_attr()?;
    }
    Ok(ClientFirst { cbind, bare, nonce })
}

// client-final-message = "c=" cbind "," "r=" nonce ["," extensions] "," "p=" proof
fn parse_client_final(data: &[u8]) -> Result<ClientFinal<'_>, AuthError> {
    let mut c = Cursor::new(data)?;
    let cbind = c.attr(b'c')?;
    c.expect(
        b',',
        "comma expected after the SCRAM channel-binding attribute",
    )?;
    let nonce = c.attr(b'r')?;
    let without_proof = loop {
        let end = c.pos;
        c.expect(b',', "SCRAM client-final-message has no proof")?;
        if c.peek() == Some(b'p') {
            break &data[..end];
        }
        c.any_attr()?;
    };
    let proof = c.attr(b'p')?;
    if !c.at_end() {
        return Err(AuthError::Malformed(
            "garbage at the end of SCRAM client-final-message",
        ));
    }
    let proof = BASE64
        .decode(proof)
        .ok()
        .and_then(|p| <[u8; KEY_LEN]>::try_from(p).ok())
        .ok_or(AuthError::Malformed("malformed SCRAM proof"))?;
    Ok(ClientFinal {
        cbind,
        nonce,
        without_proof,
        proof,
    })
}

// RFC 5802 "printable": 0x21..0x7E except ','.
fn is_printable(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Result<Self, AuthError> {
        // PostgreSQL reads SCRAM messages as C strings; a NUL would be truncation there.
        if buf.contains(&0) {
            return Err(AuthError::Malformed("NUL byte in SCRAM message"));
        }
        Ok(Cursor { buf, pos: 0 })
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Some(b)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    fn expect(&mut self, want: u8, why: &'static str) -> Result<(), AuthError> {
        match self.next() {
            Some(b) if b == want => Ok(()),
            _ => Err(AuthError::Malformed(why)),
        }
    }

    // `name=value`, the value running to the next ',' or the end (the ',' is left unread).
    fn attr(&mut self, name: u8) -> Result<&'a [u8], AuthError> {
        if self.next() != Some(name) || self.next() != Some(b'=') {
            return Err(AuthError::Malformed(match name {
                b'n' => "SCRAM user name attribute (n=) expected",
                b'r' => "SCRAM nonce attribute (r=) expected",
                b'c' => "SCRAM channel-binding attribute (c=) expected",
                b'p' => "SCRAM proof attribute (p=) expected",
                _ => "SCRAM attribute expected",
            }));
        }
        Ok(self.value())
    }

    // An extension attribute, which is read and ignored.
    fn any_attr(&mut self) -> Result<&'a [u8], AuthError> {
        match (self.next(), self.next()) {
            (Some(name), Some(b'=')) if name.is_ascii_alphabetic() => Ok(self.value()),
            _ => Err(AuthError::Malformed("SCRAM attribute expected")),
        }
    }

    fn value(&mut self) -> &'a [u8] {
        let rest = self.rest();
        let len = rest.iter().position(|&b| b == b',').unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }
}

#[cfg(test)]
mod tests;
