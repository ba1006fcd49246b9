//! Client authentication building blocks (SCRAM-SHA-256, md5, TLS configs) that the frontend drives; no I/O here.

pub mod md5;
pub mod scram;
pub mod tls;

use std::fmt;
use std::sync::Arc;

use scram::ScramVerifier;

/// Why a client login failed.
///
/// Nothing here is mapped to a SQLSTATE: the frontend does that in one place. Each variant says
/// which SQLSTATE it is meant to become; all are FATAL, since a failed login ends the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Wrong password, or an unknown user run through a mock exchange.
    ///
    /// Meant as `28P01` (invalid_password), with PostgreSQL's wording
    /// `password authentication failed for user "…"`, the same for an unknown user so that the
    /// reply does not tell whether the user exists.
    #[error("password authentication failed")]
    PasswordMismatch,
    /// The client's message breaks the SCRAM or password message grammar, or arrived out of order.
    ///
    /// Meant as `08P01` (protocol_violation), as PostgreSQL reports a malformed SCRAM message.
    #[error("malformed authentication message: {0}")]
    Malformed(&'static str),
    /// The client chose a SASL mechanism that was not offered.
    ///
    /// Meant as `28000` (invalid_authorization_specification). PostgreSQL itself reports this
    /// case as `08P01` ("client selected an invalid SASL authentication mechanism").
    #[error("unsupported SASL mechanism \"{0}\"")]
    UnsupportedMechanism(String),
    /// A stored verifier (from configuration) cannot be parsed; the text never echoes the secret.
    ///
    /// Meant as `28000` (invalid_authorization_specification) if it surfaces at login; normally
    /// it is reported when the configuration is loaded.
    #[error("invalid SCRAM verifier: {0}")]
    InvalidVerifier(String),
}

/// What the proxy keeps for one user: enough to check a SCRAM login without PBKDF2, and an md5
/// login when the plaintext password was known at configuration load.
#[derive(Clone)]
pub struct UserSecret {
    pub scram: Arc<ScramVerifier>,
    /// `md5` followed by the hex MD5 of password + user name, as `pg_authid` stores it.
    pub md5: Option<String>,
}

impl UserSecret {
    /// Derives both secrets from a plaintext password. Runs PBKDF2 once: call it at configuration
    /// load, never per login.
    pub fn from_password(user: &str, password: &str) -> Self {
        UserSecret {
            scram: Arc::new(ScramVerifier::from_password(password)),
            md5: Some(postgres_protocol::password::md5(password.as_bytes(), user)),
        }
    }

    /// Takes a `SCRAM-SHA-256$…` verifier as `pg_authid` stores it; md5 logins are then impossible,
    /// as they are in PostgreSQL for such a user.
    pub fn from_verifier(verifier: &str) -> Result<Self, AuthError> {
        Ok(UserSecret {
            scram: Arc::new(ScramVerifier::parse(verifier)?),
            md5: None,
        })
    }
}

// Secrets stay out of logs even when a containing struct is printed with {:?}.
impl fmt::Debug for UserSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSecret")
            .field("scram", &self.scram)
            .field("md5", &self.md5.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written by PostgreSQL 15.18 for `CREATE ROLE app PASSWORD 'app'` (scram-sha-256).
    pub(crate) const PG15_VERIFIER_FOR_APP: &str = "SCRAM-SHA-256$4096:/IsjnrwwqXzVfv1e0xI3cg==$IOtQhmRXKOY7trXPErVhsoXJ5w5T5bX4Nr3Rw3UkS/Y=:5CyEOBcmOMvqFIOtkr1JAdcaZqG7U9WgmHYe6llAF6A=";

    #[test]
    fn from_password_matches_postgres_md5_form() {
        // PostgreSQL 15.18 stored this for `CREATE ROLE appmd5 PASSWORD 'app'` (md5).
        let secret = UserSecret::from_password("appmd5", "app");
        assert_eq!(
            secret.md5.as_deref(),
            Some("md5b27af67da61e61de90c73eb6eda9ec68")
        );
        assert_eq!(secret.scram.iterations(), 4096);
        assert_eq!(secret.scram.salt().len(), 16);
    }

    #[test]
    fn from_verifier_has_no_md5() {
        let secret = UserSecret::from_verifier(PG15_VERIFIER_FOR_APP).unwrap();
        assert!(secret.md5.is_none());
        assert!(matches!(
            UserSecret::from_verifier("md5b27af67da61e61de90c73eb6eda9ec68"),
            Err(AuthError::InvalidVerifier(_))
        ));
    }

    #[test]
    fn debug_hides_secrets() {
        let secret = UserSecret::from_password("app", "app");
        let shown = format!("{secret:?}");
        assert!(!shown.contains(secret.md5.as_deref().unwrap()));
        assert!(shown.contains("redacted"));
    }
}
