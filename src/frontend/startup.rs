//! The client handshake: SSL/GSSENC negotiation, the startup packet, authentication, and the greeting.

use super::session::Session;
use super::settings::Settings;
use super::stream::ClientStream;
use crate::auth::{md5, scram::ScramExchange, AuthError};
use crate::config::{AuthMethod, ADMIN_DATABASE};
use crate::error::ClientError;
use crate::pool::{PoolSet, ReadNeed, Role};
use crate::protocol::build;
use crate::protocol::frame::{self, Frame};
use crate::protocol::startup::{self as sp, StartupRequest};
use crate::protocol::tags::frontend as tag;
use crate::Shared;
use bytes::{Bytes, BytesMut};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Authentication messages are small; a larger one is hostile.
const MAX_AUTH_MESSAGE: usize = 8192;

/// What the handshake produced.
pub enum Outcome {
    Session(Box<Session>),
    /// An admin logged in to the console database.
    Admin(ClientStream, BytesMut),
    /// A CancelRequest was handled, or the client left quietly.
    Done,
}

/// Runs the handshake; on error the caller sends the ErrorResponse and closes.
pub async fn handshake(
    shared: &Arc<Shared>,
    socket: TcpStream,
    peer: Option<std::net::SocketAddr>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<Outcome, (Option<ClientStream>, ClientError)> {
    let mut stream = ClientStream::Plain(socket);
    let mut rbuf = BytesMut::new();
    let mut negotiated = false;
    let (params, unsupported) = loop {
        let packet = match read_startup(&mut stream, &mut rbuf).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(Outcome::Done),
            Err(e) => return Err((Some(stream), e)),
        };
        let req = match sp::parse(&packet) {
            Ok(r) => r,
            Err(e) => return Err((Some(stream), e.into())),
        };
        match req {
            StartupRequest::Ssl | StartupRequest::GssEnc if negotiated => {
                return Err((
                    Some(stream),
                    ClientError::Protocol(crate::protocol::ProtocolError::BadStartup(
                        "second encryption request",
                    )),
                ))
            }
            StartupRequest::Ssl => {
                negotiated = true;
                // Bytes sent before our answer would bypass TLS: refuse them.
                if !rbuf.is_empty() {
                    return Err((
                        Some(stream),
                        ClientError::Protocol(crate::protocol::ProtocolError::BadStartup(
                            "data after SSLRequest",
                        )),
                    ));
                }
                stream = match (&shared.tls, stream) {
                    (Some(acceptor), ClientStream::Plain(mut tcp)) => {
                        if tcp.write_all(b"S").await.is_err() {
                            return Ok(Outcome::Done);
                        }
                        match acceptor.accept(tcp).await {
                            Ok(tls) => ClientStream::Tls(Box::new(tls)),
                            Err(e) => return Err((None, ClientError::Tls(e.to_string()))),
                        }
                    }
                    (_, mut s) => {
                        if s.write_all(b"N").await.is_err() {
                            return Ok(Outcome::Done);
                        }
                        s
                    }
                };
            }
            StartupRequest::GssEnc => {
                negotiated = true;
                if stream.write_all(b"N").await.is_err() {
                    return Ok(Outcome::Done);
                }
            }
            StartupRequest::Cancel { pid, secret } => {
                if let Some(target) = shared.cancels.lookup(pid, secret) {
                    crate::clients::send_cancel(target).await;
                }
                return Ok(Outcome::Done);
            }
            StartupRequest::Startup {
                params,
                unsupported_options,
                minor,
            } => {
                let _ = minor;
                break (params, unsupported_options);
            }
        }
    };
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let Some(user) = param("user") else {
        return Err((Some(stream), ClientError::NoUser));
    };
    if param("replication").is_some_and(|v| v != "false" && v != "0" && v != "off") {
        return Err((Some(stream), ClientError::ReplicationUnsupported));
    }
    let database = param("database").unwrap_or_else(|| user.clone());
    let mut out = BytesMut::new();
    if !unsupported.is_empty() {
        // NegotiateProtocolVersion: we speak 3.0 and none of the requested options.
        build::message(&mut out, b'v', |b| {
            use bytes::BufMut;
            b.put_i32(sp::PROTOCOL_3_0);
            b.put_i32(unsupported.len() as i32);
            for o in &unsupported {
                build::cstr(b, o.as_bytes());
            }
        });
    }
    let Some(cfg_user) = shared.config.user(&user) else {
        return Err((Some(stream), ClientError::UnknownUser(user)));
    };
    let method = cfg_user.auth;
    let cfg_user = cfg_user.clone();
    if let Err(e) = authenticate(shared, &mut stream, &mut rbuf, &mut out, &user, method).await {
        return Err((Some(stream), e));
    }
    if database == ADMIN_DATABASE {
        if !cfg_user.admin {
            return Err((Some(stream), ClientError::NotAdmin(user)));
        }
        build::auth_ok(&mut out);
        for (name, value) in crate::admin::console::PARAMETERS {
            build::parameter_status(&mut out, name.as_bytes(), value.as_bytes());
        }
        build::backend_key_data(&mut out, 0, 0);
        build::ready_for_query(&mut out, crate::protocol::messages::TxStatus::Idle);
        if stream.write_all_buf(&mut out).await.is_err() {
            return Ok(Outcome::Done);
        }
        return Ok(Outcome::Admin(stream, rbuf));
    }
    if shared.config.database(&database).is_none() {
        return Err((Some(stream), ClientError::UnknownDatabase(database)));
    }
    let pools = shared.pools.get(&database, &user);
    let server_params = match server_params(&pools).await {
        Ok(p) => p,
        Err(e) => return Err((Some(stream), e)),
    };
    build::auth_ok(&mut out);
    for (name, value) in server_params.iter() {
        let client_value = params
            .iter()
            .find(|(n, _)| n.as_bytes().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes());
        build::parameter_status(&mut out, name, client_value.unwrap_or(value));
    }
    let registration = shared.cancels.register(crate::clients::ClientInfo {
        user: user.clone(),
        database: database.clone(),
        application_name: param("application_name").unwrap_or_default(),
        peer,
        connected_at: std::time::SystemTime::now(),
    });
    build::backend_key_data(&mut out, registration.pid, registration.secret);
    build::ready_for_query(&mut out, crate::protocol::messages::TxStatus::Idle);
    if stream.write_all_buf(&mut out).await.is_err() {
        return Ok(Outcome::Done);
    }
    let settings = Settings::from_startup(&params, &server_params);
    let application_name = param("application_name").unwrap_or_default();
    Ok(Outcome::Session(Box::new(Session::new(
        shared.clone(),
        stream,
        rbuf,
        pools,
        user,
        database,
        application_name,
        settings,
        registration,
        shutdown,
    ))))
}

/// The server's ParameterStatus values, learned once per pool set from a primary login.
async fn server_params(pools: &Arc<PoolSet>) -> Result<Arc<Vec<(Bytes, Bytes)>>, ClientError> {
    pools
        .server_params
        .get_or_try_init(|| async {
            let (role, result) = match pools.acquire(Role::Primary, ReadNeed::Any, false).await {
                Ok(l) => (Role::Primary, Ok(l)),
                // Without a primary, a replica's values will do, minus its standby flag.
                Err(_) => (
                    Role::Replica,
                    pools.acquire(Role::Replica, ReadNeed::Any, false).await,
                ),
            };
            let lease = result.map_err(|e| ClientError::ServerUnreachable {
                pool: pools.primary.name.clone(),
                reason: e.to_string(),
            })?;
            let mut params = lease.conn_ref().params.clone();
            if role == Role::Replica {
                for (n, v) in params.iter_mut() {
                    if n.as_ref() == b"in_hot_standby"
                        || n.as_ref() == b"default_transaction_read_only"
                    {
                        *v = Bytes::from_static(b"off");
                    }
                }
            }
            Ok(Arc::new(params))
        })
        .await
        .cloned()
}

async fn authenticate(
    shared: &Arc<Shared>,
    stream: &mut ClientStream,
    rbuf: &mut BytesMut,
    out: &mut BytesMut,
    user: &str,
    method: AuthMethod,
) -> Result<(), ClientError> {
    let Some(secret) = shared.secrets.get(user) else {
        return Err(ClientError::UnknownUser(user.to_string()));
    };
    let malformed = |e: AuthError| match e {
        AuthError::PasswordMismatch => ClientError::BadPassword(user.to_string()),
        other => ClientError::AuthMalformed {
            user: user.to_string(),
            reason: other.to_string(),
        },
    };
    match method {
        AuthMethod::Md5 => {
            let salt = md5::random_salt();
            build::auth_md5(out, salt);
            flush(stream, out).await?;
            let f = read_auth(stream, rbuf).await?;
            let stored = secret.md5.as_deref().unwrap_or("");
            md5::verify(user, stored, salt, f.body()).map_err(malformed)?;
        }
        AuthMethod::ScramSha256 => {
            build::auth_sasl(out, &["SCRAM-SHA-256"]);
            flush(stream, out).await?;
            let f = read_auth(stream, rbuf).await?;
            let initial = crate::protocol::messages::SaslInitialResponse::decode(f.body())?;
            let mut ex = ScramExchange::new(secret.scram.clone());
            let mechanism = std::str::from_utf8(initial.mechanism).unwrap_or("");
            let first = ex
                .client_first(mechanism, initial.data)
                .map_err(malformed)?;
            build::auth_sasl_continue(out, &first);
            flush(stream, out).await?;
            let f = read_auth(stream, rbuf).await?;
            let last = ex.client_final(f.body()).map_err(malformed)?;
            build::auth_sasl_final(out, &last);
        }
    }
    Ok(())
}

async fn flush(stream: &mut ClientStream, out: &mut BytesMut) -> Result<(), ClientError> {
    stream.write_all_buf(out).await.map_err(|e| {
        ClientError::Protocol(crate::protocol::ProtocolError::BadStartup(
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                "client left"
            } else {
                "write failed"
            },
        ))
    })
}

/// Reads one PasswordMessage-family message.
async fn read_auth(stream: &mut ClientStream, rbuf: &mut BytesMut) -> Result<Frame, ClientError> {
    loop {
        if let Some(f) = frame::decode(rbuf, MAX_AUTH_MESSAGE)? {
            if f.tag() != tag::PASSWORD {
                return Err(ClientError::Protocol(
                    crate::protocol::ProtocolError::Malformed { what: "password" },
                ));
            }
            return Ok(f);
        }
        match stream.read_small(rbuf).await {
            Ok(0) | Err(_) => {
                return Err(ClientError::Protocol(
                    crate::protocol::ProtocolError::BadStartup("client left during authentication"),
                ))
            }
            Ok(_) => {}
        }
    }
}

/// Reads one length-prefixed startup packet; `None` if the client left before sending one.
async fn read_startup(
    stream: &mut ClientStream,
    rbuf: &mut BytesMut,
) -> Result<Option<Bytes>, ClientError> {
    loop {
        if let Some(len) = sp::packet_len(rbuf)? {
            if rbuf.len() >= len {
                return Ok(Some(rbuf.split_to(len).freeze()));
            }
        }
        match stream.read_small(rbuf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}
