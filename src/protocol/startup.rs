//! The untagged first message of a connection: StartupMessage, SSLRequest, GSSENCRequest or CancelRequest (F).

use super::frame::{ProtocolError, Reader};

pub const SSL_REQUEST_CODE: i32 = 80877103;
pub const GSSENC_REQUEST_CODE: i32 = 80877104;
pub const CANCEL_REQUEST_CODE: i32 = 80877102;
pub const PROTOCOL_3_0: i32 = 196608;
/// Startup packets are small; PostgreSQL itself refuses anything over 10,000 bytes.
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum StartupRequest {
    Ssl,
    GssEnc,
    Cancel {
        pid: i32,
        secret: i32,
    },
    Startup {
        minor: u16,
        params: Vec<(String, String)>,
        /// `_pq_.` protocol options, which the proxy does not support and reports back.
        unsupported_options: Vec<String>,
    },
}

/// Length of the packet at the front of `buf`, once its four length bytes are there.
pub fn packet_len(buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if len < 8 || len as usize > MAX_STARTUP_LEN {
        return Err(ProtocolError::BadStartup("invalid length"));
    }
    Ok(Some(len as usize))
}

/// Parses a whole packet (length included).
pub fn parse(packet: &[u8]) -> Result<StartupRequest, ProtocolError> {
    let mut r = Reader::new(&packet[4..], "startup packet");
    let code = r
        .i32()
        .map_err(|_| ProtocolError::BadStartup("truncated"))?;
    match code {
        SSL_REQUEST_CODE => Ok(StartupRequest::Ssl),
        GSSENC_REQUEST_CODE => Ok(StartupRequest::GssEnc),
        CANCEL_REQUEST_CODE => {
            let pid = r
                .i32()
                .map_err(|_| ProtocolError::BadStartup("truncated"))?;
            let secret = r
                .i32()
                .map_err(|_| ProtocolError::BadStartup("truncated"))?;
            Ok(StartupRequest::Cancel { pid, secret })
        }
        v => {
            let major = (v >> 16) as u16;
            let minor = (v & 0xffff) as u16;
            if major != 3 {
                return Err(ProtocolError::UnsupportedProtocol { major, minor });
            }
            let mut params = Vec::new();
            let mut unsupported_options = Vec::new();
            loop {
                let name = r
                    .cstr()
                    .map_err(|_| ProtocolError::BadStartup("unterminated parameter"))?;
                if name.is_empty() {
                    break;
                }
                let value = r
                    .cstr()
                    .map_err(|_| ProtocolError::BadStartup("missing parameter value"))?;
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| ProtocolError::BadStartup("parameter name is not UTF-8"))?;
                let value = String::from_utf8(value.to_vec())
                    .map_err(|_| ProtocolError::BadStartup("parameter value is not UTF-8"))?;
                if name.starts_with("_pq_.") {
                    unsupported_options.push(name);
                } else {
                    params.push((name, value));
                }
            }
            Ok(StartupRequest::Startup {
                minor,
                params,
                unsupported_options,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        p.extend_from_slice(&((8 + rest.len()) as i32).to_be_bytes());
        p.extend_from_slice(&code.to_be_bytes());
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn startup_params() {
        let p = packet(PROTOCOL_3_0, b"user\0app\0database\0app\0\0");
        assert_eq!(packet_len(&p).unwrap(), Some(p.len()));
        match parse(&p).unwrap() {
            StartupRequest::Startup { minor, params, .. } => {
                assert_eq!(minor, 0);
                assert_eq!(params[0], ("user".into(), "app".into()));
                assert_eq!(params[1], ("database".into(), "app".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn special_requests() {
        assert_eq!(
            parse(&packet(SSL_REQUEST_CODE, b"")).unwrap(),
            StartupRequest::Ssl
        );
        assert_eq!(
            parse(&packet(GSSENC_REQUEST_CODE, b"")).unwrap(),
            StartupRequest::GssEnc
        );
        let mut rest = 7i32.to_be_bytes().to_vec();
        rest.extend_from_slice(&9i32.to_be_bytes());
        assert_eq!(
            parse(&packet(CANCEL_REQUEST_CODE, &rest)).unwrap(),
            StartupRequest::Cancel { pid: 7, secret: 9 }
        );
    }

    #[test]
    fn hostile_packets() {
        assert!(packet_len(&[0, 0, 0, 2]).is_err());
        assert!(packet_len(&[0x7f, 0, 0, 0]).is_err());
        assert!(parse(&packet(PROTOCOL_3_0, b"user\0app")).is_err());
        assert!(parse(&packet(2 << 16, b"\0")).is_err());
        assert!(parse(&packet(PROTOCOL_3_0, b"user\0\xff\xfe\0\0")).is_err());
    }
}
