//! md5 password authentication check (AuthenticationMD5Password, then PasswordMessage (F)).

use md5::{Digest, Md5};
use rand::RngCore;
use subtle::ConstantTimeEq;

use super::scram::ScramVerifier;
use super::AuthError;

const PREFIX: &str = "md5";
// "md5" followed by 32 lowercase hex digits, as pg_authid stores an md5 secret.
const HASH_LEN: usize = 35;

/// The 4-byte salt to send in AuthenticationMD5Password, fresh for every login.
pub fn random_salt() -> [u8; 4] {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    salt
}

/// Checks a PasswordMessage payload (`md5` + hex, with or without its terminating NUL) against
/// `stored`, which is either the plaintext password or an `md5…` hash of password + user.
///
/// A stored SCRAM verifier can never match, as in PostgreSQL: md5 needs the password or its
/// md5 hash, and a SCRAM verifier is neither.
pub fn verify(user: &str, stored: &str, salt: [u8; 4], response: &[u8]) -> Result<(), AuthError> {
    let response = response.strip_suffix(b"\0").unwrap_or(response);
    if response.contains(&0) {
        return Err(AuthError::Malformed("NUL byte inside password message"));
    }
    // PostgreSQL treats an empty password as a failed login, not a protocol error.
    if response.is_empty() || ScramVerifier::parse(stored).is_ok() {
        return Err(AuthError::PasswordMismatch);
    }
    let expected = salted_response(&stored_hash(user, stored), salt);
    if bool::from(response.ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(AuthError::PasswordMismatch)
    }
}

/// True for the `md5<32 lowercase hex>` form, which PostgreSQL tells from a plaintext password
/// by exactly this shape.
pub fn is_md5_hash(secret: &str) -> bool {
    secret.len() == HASH_LEN
        && secret.starts_with(PREFIX)
        && secret[PREFIX.len()..]
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

// "md5" + hex(md5(password + user)), whichever form the secret is stored in.
fn stored_hash(user: &str, stored: &str) -> String {
    if is_md5_hash(stored) {
        stored.to_owned()
    } else {
        let mut md5 = Md5::new();
        md5.update(stored.as_bytes());
        md5.update(user.as_bytes());
        format!("{PREFIX}{}", hex(&md5.finalize()))
    }
}

// What the client must send: "md5" + hex(md5(hex(md5(password + user)) + salt)).
fn salted_response(stored_hash: &str, salt: [u8; 4]) -> String {
    let mut md5 = Md5::new();
    md5.update(&stored_hash.as_bytes()[PREFIX.len()..]);
    md5.update(salt);
    format!("{PREFIX}{}", hex(&md5.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::md5_hash;

    use super::*;
    use crate::auth::UserSecret;

    const SALT: [u8; 4] = [0x01, 0x02, 0xfe, 0xff];

    #[test]
    fn plaintext_secret_accepts_the_client_hash() {
        let response = md5_hash(b"app", b"pw", SALT);
        assert_eq!(verify("app", "pw", SALT, response.as_bytes()), Ok(()));
    }

    #[test]
    fn terminating_nul_is_accepted() {
        let mut response = md5_hash(b"app", b"pw", SALT).into_bytes();
        response.push(0);
        assert_eq!(verify("app", "pw", SALT, &response), Ok(()));
    }

    #[test]
    fn stored_md5_hash_accepts_the_client_hash() {
        // PostgreSQL 15.18 stored this for `CREATE ROLE appmd5 PASSWORD 'app'` (md5).
        let stored = "md5b27af67da61e61de90c73eb6eda9ec68";
        let response = md5_hash(b"appmd5", b"app", SALT);
        assert_eq!(verify("appmd5", stored, SALT, response.as_bytes()), Ok(()));

        let secret = UserSecret::from_password("u", "pw");
        let response = md5_hash(b"u", b"pw", SALT);
        let stored = secret.md5.unwrap();
        assert_eq!(verify("u", &stored, SALT, response.as_bytes()), Ok(()));
    }

    #[test]
    fn wrong_password_user_or_salt_is_mismatch() {
        let response = md5_hash(b"app", b"pw", SALT);
        let mismatch = Err(AuthError::PasswordMismatch);
        assert_eq!(verify("app", "pW", SALT, response.as_bytes()), mismatch);
        assert_eq!(verify("apq", "pw", SALT, response.as_bytes()), mismatch);
        assert_eq!(verify("app", "pw", [0; 4], response.as_bytes()), mismatch);
        let upper = response.to_uppercase();
        assert_eq!(verify("app", "pw", SALT, upper.as_bytes()), mismatch);
        assert_eq!(
            verify("app", "pw", SALT, &response.as_bytes()[..34]),
            mismatch
        );
    }

    #[test]
    fn empty_or_plaintext_responses_are_mismatch() {
        let mismatch = Err(AuthError::PasswordMismatch);
        assert_eq!(verify("app", "pw", SALT, b""), mismatch);
        assert_eq!(verify("app", "pw", SALT, b"\0"), mismatch);
        assert_eq!(verify("app", "pw", SALT, b"pw\0"), mismatch);
    }

    #[test]
    fn inner_nul_is_malformed() {
        assert!(matches!(
            verify("app", "pw", SALT, b"md5\0abc\0"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn scram_secret_never_matches() {
        // Not even a client that knows the verifier text and sends it as the "password".
        let verifier = postgres_protocol::password::scram_sha_256(b"pw");
        let response = md5_hash(b"app", verifier.as_bytes(), SALT);
        assert_eq!(
            verify("app", &verifier, SALT, response.as_bytes()),
            Err(AuthError::PasswordMismatch)
        );
    }

    #[test]
    fn md5_hash_shape() {
        assert!(is_md5_hash("md5b27af67da61e61de90c73eb6eda9ec68"));
        assert!(!is_md5_hash("md5B27AF67DA61E61DE90C73EB6EDA9EC68"));
        assert!(!is_md5_hash("md5b27af67da61e61de90c73eb6eda9ec6"));
        assert!(!is_md5_hash("md5b27af67da61e61de90c73eb6eda9ec6g"));
        assert!(!is_md5_hash("md5"));
    }

    #[test]
    fn salts_vary() {
        let salts: Vec<_> = (0..8).map(|_| random_salt()).collect();
        assert!(salts.iter().any(|s| *s != salts[0]));
    }
}
