//! Everything the proxy itself tells a client went wrong, mapped to severity and SQLSTATE in one place.

use crate::protocol::sqlstate::{Severity, SqlState};
use crate::protocol::ProtocolError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
    #[error("no user name given in the startup packet")]
    NoUser,
    #[error("role \"{0}\" does not exist")]
    UnknownUser(String),
    #[error("database \"{0}\" does not exist")]
    UnknownDatabase(String),
    #[error("password authentication failed for user \"{0}\"")]
    BadPassword(String),
    #[error("authentication failed for user \"{user}\": {reason}")]
    AuthMalformed { user: String, reason: String },
    #[error("client did not finish startup within {0} ms")]
    StartupTimeout(u128),
    #[error("replication connections are not supported by pgsplit")]
    ReplicationUnsupported,
    #[error("TLS handshake failed: {0}")]
    Tls(String),
    #[error("user \"{0}\" may not use the admin console")]
    NotAdmin(String),
    /// 53300 as PostgreSQL's "sorry, too many clients already": the pool, not the client, is full.
    #[error("pool \"{pool}\": no server connection free within pool.acquire_timeout_ms = {waited_ms} ms ({size} busy)")]
    PoolTimeout {
        pool: String,
        waited_ms: u128,
        size: usize,
    },
    #[error("pool \"{pool}\": cannot reach server: {reason}")]
    ServerUnreachable { pool: String, reason: String },
    /// Writes (and reads that must see a recent write) while no primary takes requests.
    #[error("primary unavailable: {0}")]
    PrimaryDown(String),
    #[error("server connection lost during the request: {0}")]
    ServerLost(String),
    #[error("server connection lost inside a transaction; the transaction is rolled back: {0}")]
    ServerLostInTransaction(String),
    #[error("too many client connections (max_client_connections = {0})")]
    TooManyClients(usize),
    #[error("too many client connections from this address (max_client_connections_per_ip = {0})")]
    TooManyClientsFromHost(usize),
    #[error("pgsplit is shutting down")]
    ShuttingDown,
    #[error("terminating connection due to idle-session timeout ({0} ms)")]
    IdleTimeout(u128),
    #[error("terminating connection due to idle-in-transaction timeout ({0} ms); the transaction is rolled back")]
    IdleInTransactionTimeout(u128),
    #[error("internal proxy error: {0}")]
    Internal(String),
    /// currval()/lastval() where the server connection may hold another session's sequence
    /// state: under transaction pooling the nextval() ran on a connection since given back.
    #[error("{0}() cannot see a nextval() from an earlier transaction under pgsplit's transaction pooling (it could return another session's value); use INSERT ... RETURNING, or call nextval() and {0}() in the same transaction")]
    SequenceStateElsewhere(&'static str),
    /// A prepared statement whose text now returns other columns than a Describe showed the
    /// client (a column's type changed since): PostgreSQL's own words for its own statements.
    #[error("cached plan must not change result type")]
    ResultColumnsChanged,
    /// The admin console's query is no command it has; `known` lists those it has.
    #[error("unknown admin command \"{command}\"; try one of: {known}")]
    AdminUnknownCommand { command: String, known: String },
    /// As PostgreSQL's own `SHOW` of a setting that does not exist.
    #[error("unknown SHOW {what}; try one of: {known}")]
    AdminUnknownShow { what: String, known: String },
    #[error("the admin console speaks the simple query protocol only (psql does)")]
    AdminExtendedProtocol,
    /// RELOAD read a configuration that does not validate: the running one stays.
    #[error("configuration rejected, the running one stays: {0}")]
    ReloadRejected(crate::config::ConfigError),
}

impl ClientError {
    /// Exhaustive on purpose: a new variant must choose its SQLSTATE here.
    pub fn sqlstate(&self) -> SqlState {
        match self {
            ClientError::Protocol(ProtocolError::TooLarge { .. }) => SqlState::PROTOCOL_VIOLATION,
            ClientError::Protocol(ProtocolError::UnsupportedProtocol { .. }) => {
                SqlState::FEATURE_NOT_SUPPORTED
            }
            ClientError::Protocol(
                ProtocolError::BadLength { .. }
                | ProtocolError::UnknownTag { .. }
                | ProtocolError::Malformed { .. }
                | ProtocolError::BadStartup(_),
            ) => SqlState::PROTOCOL_VIOLATION,
            ClientError::NoUser => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ClientError::UnknownUser(_) => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ClientError::UnknownDatabase(_) => SqlState::INVALID_CATALOG_NAME,
            ClientError::BadPassword(_) => SqlState::INVALID_PASSWORD,
            ClientError::AuthMalformed { .. } => SqlState::PROTOCOL_VIOLATION,
            ClientError::StartupTimeout(_) => SqlState::PROTOCOL_VIOLATION,
            ClientError::ReplicationUnsupported => SqlState::FEATURE_NOT_SUPPORTED,
            ClientError::Tls(_) => SqlState::PROTOCOL_VIOLATION,
            ClientError::NotAdmin(_) => SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
            ClientError::PoolTimeout { .. } => SqlState::TOO_MANY_CONNECTIONS,
            ClientError::ServerUnreachable { .. } => SqlState::CONNECTION_FAILURE,
            ClientError::ServerLost(_) => SqlState::CONNECTION_FAILURE,
            ClientError::PrimaryDown(_) => SqlState::CONNECTION_FAILURE,
            ClientError::ServerLostInTransaction(_) => SqlState::CONNECTION_FAILURE,
            ClientError::TooManyClients(_) => SqlState::TOO_MANY_CONNECTIONS,
            ClientError::TooManyClientsFromHost(_) => SqlState::TOO_MANY_CONNECTIONS,
            ClientError::ShuttingDown => SqlState::ADMIN_SHUTDOWN,
            ClientError::IdleTimeout(_) => SqlState::IDLE_SESSION_TIMEOUT,
            ClientError::IdleInTransactionTimeout(_) => {
                SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
            }
            ClientError::Internal(_) => SqlState::INTERNAL_ERROR,
            ClientError::SequenceStateElsewhere(_) => SqlState::FEATURE_NOT_SUPPORTED,
            ClientError::ResultColumnsChanged => SqlState::FEATURE_NOT_SUPPORTED,
            ClientError::AdminUnknownCommand { .. } => SqlState::SYNTAX_ERROR,
            ClientError::AdminUnknownShow { .. } => SqlState::UNDEFINED_OBJECT,
            ClientError::AdminExtendedProtocol => SqlState::FEATURE_NOT_SUPPORTED,
            ClientError::ReloadRejected(_) => SqlState::CONFIG_FILE_ERROR,
        }
    }

    /// FATAL ends the client's connection; ERROR leaves the session usable.
    pub fn severity(&self) -> Severity {
        match self {
            ClientError::Protocol(_)
            | ClientError::NoUser
            | ClientError::UnknownUser(_)
            | ClientError::UnknownDatabase(_)
            | ClientError::BadPassword(_)
            | ClientError::AuthMalformed { .. }
            | ClientError::StartupTimeout(_)
            | ClientError::ReplicationUnsupported
            | ClientError::Tls(_)
            | ClientError::NotAdmin(_)
            | ClientError::ServerLostInTransaction(_)
            | ClientError::TooManyClients(_)
            | ClientError::TooManyClientsFromHost(_)
            | ClientError::ShuttingDown
            | ClientError::IdleTimeout(_)
            | ClientError::IdleInTransactionTimeout(_)
            | ClientError::Internal(_) => Severity::Fatal,
            ClientError::PoolTimeout { .. }
            | ClientError::ServerUnreachable { .. }
            | ClientError::PrimaryDown(_)
            | ClientError::ServerLost(_)
            | ClientError::SequenceStateElsewhere(_)
            | ClientError::ResultColumnsChanged
            | ClientError::AdminUnknownCommand { .. }
            | ClientError::AdminUnknownShow { .. }
            | ClientError::AdminExtendedProtocol
            | ClientError::ReloadRejected(_) => Severity::Error,
        }
    }

    /// Writes the ErrorResponse for this error.
    pub fn write(&self, out: &mut bytes::BytesMut) {
        let (severity, code, text) = (self.severity(), self.sqlstate(), self.to_string());
        match self {
            // PostgreSQL's own report of it comes from this routine, which asyncpg looks for.
            ClientError::ResultColumnsChanged => crate::protocol::build::error_response_from(
                out,
                severity,
                code,
                &text,
                "RevalidateCachedQuery",
            ),
            _ => crate::protocol::build::error_response(out, severity, code, &text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(
            ClientError::BadPassword("a".into()).sqlstate().code(),
            "28P01"
        );
        assert_eq!(
            ClientError::UnknownUser("a".into()).sqlstate().code(),
            "28000"
        );
        assert_eq!(
            ClientError::UnknownDatabase("a".into()).sqlstate().code(),
            "3D000"
        );
        assert_eq!(ClientError::TooManyClients(1).sqlstate().code(), "53300");
        assert_eq!(
            ClientError::Protocol(ProtocolError::UnknownTag { tag: 1 })
                .sqlstate()
                .code(),
            "08P01"
        );
        let timeout = ClientError::PoolTimeout {
            pool: "app@127.0.0.1:15432/app (primary)".into(),
            waited_ms: 300,
            size: 1,
        };
        assert_eq!(timeout.sqlstate().code(), "53300");
        assert_eq!(timeout.severity(), Severity::Error);
        let m = timeout.to_string();
        assert!(
            m.contains("(primary)") && m.contains("acquire_timeout_ms = 300 ms"),
            "{m}"
        );
        assert_eq!(
            ClientError::ServerLost("x".into()).severity(),
            Severity::Error
        );
        let unknown = ClientError::AdminUnknownShow {
            what: "FOO".into(),
            known: "SHOW STATS".into(),
        };
        assert_eq!(unknown.sqlstate().code(), "42704");
        assert_eq!(unknown.severity(), Severity::Error);
        let command = ClientError::AdminUnknownCommand {
            command: "x".into(),
            known: String::new(),
        };
        assert_eq!(command.sqlstate().code(), "42601");
    }
}
