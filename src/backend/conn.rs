//! Opening and logging in to a PostgreSQL server (SCRAM-SHA-256, md5, cleartext or trust).

use super::prepared::ServerPrepared;
use super::stream::ServerStream;
use crate::config::{Keepalive, SslMode};
use crate::protocol::frame::{self, HEADER_LEN};
use crate::protocol::messages::{error_field, TxStatus};
use bytes::{Bytes, BytesMut};
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::frontend;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

#[derive(Debug, Error)]
pub enum BackendError {
    #[error("cannot connect to server {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("timed out connecting to server {addr}")]
    ConnectTimeout { addr: String },
    #[error("server {addr} refused the login: {message}")]
    Refused {
        addr: String,
        code: String,
        message: String,
    },
    #[error("server {addr} asked for a password but none is configured for user {user}")]
    NoPassword { addr: String, user: String },
    #[error("server {addr} asked for unsupported authentication {method}")]
    UnsupportedAuth { addr: String, method: String },
    #[error("server {addr} sent an invalid message during login")]
    Protocol { addr: String },
    #[error("server {addr} does not accept TLS, and server_sslmode = \"{mode}\" requires it")]
    TlsRefused { addr: String, mode: &'static str },
    #[error("TLS handshake with server {addr} failed: {source}")]
    TlsHandshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("server {addr} stopped answering (its health check timed out)")]
    Stalled { addr: String },
    /// The pool already has its size of connections open on other workers; never reaches a
    /// client: the pool makes room and asks again, within the acquire timeout.
    #[error("the pool has all its connections open")]
    PoolFull,
    #[error("server connection lost: {0}")]
    Io(#[from] std::io::Error),
}

/// What a pool needs to open one of its connections.
#[derive(Clone, Debug)]
pub struct LoginParams {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<String>,
    pub database: String,
    pub connect_timeout: Duration,
    pub tls: ServerTls,
    pub keepalive: Option<Keepalive>,
}

/// How to secure a server connection: the sslmode and, unless disabled, the rustls connector.
#[derive(Clone)]
pub struct ServerTls {
    pub mode: SslMode,
    connector: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode.as_str())
    }
}

impl ServerTls {
    pub fn disabled() -> ServerTls {
        ServerTls {
            mode: SslMode::Disable,
            connector: None,
        }
    }

    /// Builds the connector once (reading the CA file), so connecting costs no file I/O.
    pub fn from_config(
        c: &crate::config::ServerTlsConfig,
    ) -> Result<ServerTls, crate::auth::tls::TlsConfigError> {
        let config = match c.mode {
            SslMode::Disable => return Ok(ServerTls::disabled()),
            SslMode::Prefer | SslMode::Require => {
                crate::auth::tls::client_config(c.ca_file.as_deref(), false)?
            }
            SslMode::VerifyFull => crate::auth::tls::client_config(c.ca_file.as_deref(), true)?,
        };
        Ok(ServerTls {
            mode: c.mode,
            connector: Some(tokio_rustls::TlsConnector::from(config)),
        })
    }
}

impl LoginParams {
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A logged-in server connection, idle at ReadyForQuery when in a pool.
pub struct ServerConn {
    pub stream: ServerStream,
    /// Bytes read from the server and not yet handled.
    pub rbuf: BytesMut,
    /// ParameterStatus values the server reported at login.
    pub params: Vec<(Bytes, Bytes)>,
    pub backend_pid: i32,
    pub backend_secret: i32,
    pub prepared: ServerPrepared,
    /// Hash of the session settings last applied to this connection (0: the login defaults).
    pub settings_hash: u64,
    /// The session whose unnamed statement the server holds (0: none known).
    pub unnamed_owner: u64,
    /// Set when the connection must not be reused: lost, mid-request, or its state unknown.
    pub broken: bool,
    pub created: Instant,
    pub id: u64,
    pub addr: String,
}

impl ServerConn {
    pub async fn connect(p: &LoginParams, max_prepared: usize) -> Result<ServerConn, BackendError> {
        let addr = p.addr();
        // One deadline for TCP, TLS and login together: a server that accepts the connection
        // but answers nothing costs `connect_timeout` in all, not once per step.
        let deadline = tokio::time::Instant::now() + p.connect_timeout;
        let stream =
            tokio::time::timeout_at(deadline, TcpStream::connect((p.host.as_str(), p.port)))
                .await
                .map_err(|_| BackendError::ConnectTimeout { addr: addr.clone() })?
                .map_err(|source| BackendError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
        stream.set_nodelay(true)?;
        if let Some(k) = &p.keepalive {
            k.apply(&stream);
        }
        let stream = tokio::time::timeout_at(deadline, negotiate_tls(stream, p))
            .await
            .map_err(|_| BackendError::ConnectTimeout { addr: addr.clone() })??;
        let mut conn = ServerConn {
            stream,
            rbuf: BytesMut::with_capacity(8192),
            params: Vec::new(),
            backend_pid: 0,
            backend_secret: 0,
            prepared: ServerPrepared::new(max_prepared),
            settings_hash: 0,
            unnamed_owner: 0,
            broken: false,
            created: Instant::now(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            addr,
        };
        tokio::time::timeout_at(deadline, conn.login(p))
            .await
            .map_err(|_| BackendError::ConnectTimeout {
                addr: conn.addr.clone(),
            })??;
        Ok(conn)
    }

    async fn login(&mut self, p: &LoginParams) -> Result<(), BackendError> {
        let mut out = BytesMut::new();
        frontend::startup_message(
            // No application_name: the server's default ('') is what a client that sets none
            // must read, and what RESET gives back to a client that set one.
            [("user", p.user.as_str()), ("database", p.database.as_str())],
            &mut out,
        )?;
        self.stream.send(&out).await?;
        let mut scram: Option<ScramSha256> = None;
        loop {
            let (tag, body) = self.read_login_message().await?;
            match tag {
                b'R' => {
                    let code = read_i32(&body).ok_or_else(|| self.protocol_error())?;
                    out.clear();
                    match code {
                        0 => {}
                        3 => {
                            let pw = self.password(p)?;
                            frontend::password_message(pw.as_bytes(), &mut out)?;
                        }
                        5 => {
                            let salt: [u8; 4] = body
                                .get(4..8)
                                .and_then(|s| s.try_into().ok())
                                .ok_or_else(|| self.protocol_error())?;
                            let pw = self.password(p)?;
                            let hash = postgres_protocol::authentication::md5_hash(
                                p.user.as_bytes(),
                                pw.as_bytes(),
                                salt,
                            );
                            frontend::password_message(hash.as_bytes(), &mut out)?;
                        }
                        10 => {
                            let mechanisms = &body[4..];
                            let offers_scram = mechanisms
                                .split(|&b| b == 0)
                                .any(|m| m == sasl::SCRAM_SHA_256.as_bytes());
                            if !offers_scram {
                                return Err(BackendError::UnsupportedAuth {
                                    addr: self.addr.clone(),
                                    method: String::from_utf8_lossy(mechanisms).into_owned(),
                                });
                            }
                            let pw = self.password(p)?;
                            let s = ScramSha256::new(pw.as_bytes(), ChannelBinding::unsupported());
                            frontend::sasl_initial_response(
                                sasl::SCRAM_SHA_256,
                                s.message(),
                                &mut out,
                            )?;
                            scram = Some(s);
                        }
                        11 => {
                            let s = scram.as_mut().ok_or_else(|| self.protocol_error())?;
                            s.update(&body[4..]).map_err(|_| self.protocol_error())?;
                            frontend::sasl_response(s.message(), &mut out)?;
                        }
                        12 => {
                            let mut s = scram.take().ok_or_else(|| self.protocol_error())?;
                            s.finish(&body[4..]).map_err(|_| self.protocol_error())?;
                        }
                        other => {
                            return Err(BackendError::UnsupportedAuth {
                                addr: self.addr.clone(),
                                method: format!("code {other}"),
                            })
                        }
                    }
                    if !out.is_empty() {
                        self.stream.send(&out).await?;
                    }
                }
                b'S' => {
                    let (name, value) = crate::protocol::messages::parameter_status(&body)
                        .map_err(|_| self.protocol_error())?;
                    self.params
                        .push((Bytes::copy_from_slice(name), Bytes::copy_from_slice(value)));
                }
                b'K' => {
                    self.backend_pid = read_i32(&body).ok_or_else(|| self.protocol_error())?;
                    self.backend_secret = read_i32(body.get(4..).unwrap_or(&[]))
                        .ok_or_else(|| self.protocol_error())?;
                }
                b'Z' => return Ok(()),
                b'E' => {
                    let field = |f| {
                        error_field(&body, f)
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default()
                    };
                    return Err(BackendError::Refused {
                        addr: self.addr.clone(),
                        code: field(b'C'),
                        message: field(b'M'),
                    });
                }
                // NoticeResponse and NegotiateProtocolVersion need no answer.
                _ => {}
            }
        }
    }

    fn password<'a>(&self, p: &'a LoginParams) -> Result<&'a str, BackendError> {
        p.password
            .as_deref()
            .ok_or_else(|| BackendError::NoPassword {
                addr: self.addr.clone(),
                user: p.user.clone(),
            })
    }

    fn protocol_error(&self) -> BackendError {
        BackendError::Protocol {
            addr: self.addr.clone(),
        }
    }

    async fn read_login_message(&mut self) -> Result<(u8, Bytes), BackendError> {
        loop {
            if let Some(f) =
                frame::decode(&mut self.rbuf, 1 << 20).map_err(|_| self.protocol_error())?
            {
                let tag = f.tag();
                let body = f.into_raw().slice(HEADER_LEN..);
                return Ok((tag, body));
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(BackendError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// Runs one simple query the proxy itself issued and discards its results.
    ///
    /// Used for session resets between clients; an error leaves the connection marked broken.
    pub async fn run_internal(&mut self, sql: &str) -> Result<TxStatus, BackendError> {
        let mut out = BytesMut::new();
        crate::protocol::build::query(&mut out, sql);
        self.stream.send(&out).await?;
        let mut failed = None;
        loop {
            let (tag, body) = self.read_login_message().await?;
            match tag {
                b'E' => {
                    failed = Some(
                        error_field(&body, b'M')
                            .map(|m| String::from_utf8_lossy(m).into_owned())
                            .unwrap_or_default(),
                    )
                }
                b'Z' => {
                    let status = TxStatus::from_body(&body).ok_or_else(|| self.protocol_error())?;
                    if let Some(message) = failed {
                        self.broken = true;
                        return Err(BackendError::Refused {
                            addr: self.addr.clone(),
                            code: String::new(),
                            message,
                        });
                    }
                    return Ok(status);
                }
                _ => {}
            }
        }
    }

    /// Runs one simple query the proxy itself issued and returns the first column of its first
    /// row as text (`None` for no row or NULL). The connection must be idle.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, BackendError> {
        let mut out = BytesMut::new();
        crate::protocol::build::query(&mut out, sql);
        self.stream.send(&out).await?;
        let mut value = None;
        let mut failed = None;
        loop {
            let (tag, body) = self.read_login_message().await?;
            match tag {
                b'D' if value.is_none() => value = Some(first_column(&body)),
                b'E' => {
                    failed = Some(
                        error_field(&body, b'M')
                            .map(|m| String::from_utf8_lossy(m).into_owned())
                            .unwrap_or_default(),
                    )
                }
                b'Z' => {
                    if let Some(message) = failed {
                        self.broken = true;
                        return Err(BackendError::Refused {
                            addr: self.addr.clone(),
                            code: String::new(),
                            message,
                        });
                    }
                    return Ok(value.flatten());
                }
                _ => {}
            }
        }
    }

    /// Sends Terminate so the server ends the backend cleanly instead of logging an EOF.
    pub async fn terminate(mut self) {
        let mut out = BytesMut::new();
        crate::protocol::build::terminate(&mut out);
        let _ = self.stream.send(&out).await;
    }

    pub fn param(&self, name: &[u8]) -> Option<&Bytes> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }
}

/// SSLRequest and, if the server agrees, the TLS handshake; libpq's sslmode semantics.
async fn negotiate_tls(
    mut stream: TcpStream,
    p: &LoginParams,
) -> Result<ServerStream, BackendError> {
    let Some(connector) = &p.tls.connector else {
        return Ok(ServerStream::Plain(stream));
    };
    let mut req = BytesMut::new();
    crate::protocol::build::ssl_request(&mut req);
    stream.write_all(&req).await?;
    // Exactly one byte: anything the server sent after it would be unauthenticated plaintext
    // that must not be read as if it came through TLS (CVE-2021-23222).
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {}
        b'N' if p.tls.mode == SslMode::Prefer => return Ok(ServerStream::Plain(stream)),
        b'N' => {
            return Err(BackendError::TlsRefused {
                addr: p.addr(),
                mode: p.tls.mode.as_str(),
            })
        }
        _ => return Err(BackendError::Protocol { addr: p.addr() }),
    }
    let name = ServerName::try_from(p.host.clone()).map_err(|e| BackendError::TlsHandshake {
        addr: p.addr(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    let tls =
        connector
            .connect(name, stream)
            .await
            .map_err(|source| BackendError::TlsHandshake {
                addr: p.addr(),
                source,
            })?;
    Ok(ServerStream::Tls(Box::new(tls)))
}

fn read_i32(b: &[u8]) -> Option<i32> {
    Some(i32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

/// The first column of a DataRow body as text; `None` for NULL or a malformed row.
fn first_column(body: &[u8]) -> Option<String> {
    let mut r = crate::protocol::frame::Reader::new(body, "DataRow");
    if r.i16().ok()? < 1 {
        return None;
    }
    let len = usize::try_from(r.i32().ok()?).ok()?;
    std::str::from_utf8(r.bytes(len).ok()?)
        .ok()
        .map(str::to_string)
}
