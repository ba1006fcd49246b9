//! Writers for the messages the proxy originates, straight into the caller's buffer.

use super::messages::TxStatus;
use super::sqlstate::{Severity, SqlState};
use bytes::{BufMut, BytesMut};

/// Writes a tag and a placeholder length, runs `body`, then fills the length in.
pub fn message(out: &mut BytesMut, tag: u8, body: impl FnOnce(&mut BytesMut)) {
    out.put_u8(tag);
    let at = out.len();
    out.put_i32(0);
    body(out);
    let len = (out.len() - at) as i32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub fn cstr(out: &mut BytesMut, s: &[u8]) {
    out.put_slice(s);
    out.put_u8(0);
}

pub fn error_response(out: &mut BytesMut, severity: Severity, code: SqlState, text: &str) {
    notice_like(out, b'E', severity, code, text, None);
}

/// An ErrorResponse naming the server routine PostgreSQL raises the same error in (field R):
/// drivers tell some errors apart by it (asyncpg: a cached statement to prepare again).
pub fn error_response_from(
    out: &mut BytesMut,
    severity: Severity,
    code: SqlState,
    text: &str,
    routine: &str,
) {
    notice_like(out, b'E', severity, code, text, Some(routine));
}

pub fn notice_response(out: &mut BytesMut, severity: Severity, code: SqlState, text: &str) {
    notice_like(out, b'N', severity, code, text, None);
}

fn notice_like(
    out: &mut BytesMut,
    tag: u8,
    severity: Severity,
    code: SqlState,
    text: &str,
    routine: Option<&str>,
) {
    message(out, tag, |b| {
        if let Some(r) = routine {
            b.put_u8(b'R');
            cstr(b, r.as_bytes());
        }
        b.put_u8(b'S');
        cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'V');
        cstr(b, severity.as_str().as_bytes());
        b.put_u8(b'C');
        cstr(b, code.code().as_bytes());
        b.put_u8(b'M');
        // A NUL inside the text would end the field early; drop any.
        let clean: Vec<u8> = text.bytes().filter(|&c| c != 0).collect();
        cstr(b, &clean);
        b.put_u8(0);
    });
}

pub fn ready_for_query(out: &mut BytesMut, status: TxStatus) {
    message(out, b'Z', |b| b.put_u8(status.byte()));
}

pub fn parse_complete(out: &mut BytesMut) {
    message(out, b'1', |_| {});
}

pub fn close_complete(out: &mut BytesMut) {
    message(out, b'3', |_| {});
}

pub fn command_complete(out: &mut BytesMut, tag: &str) {
    message(out, b'C', |b| cstr(b, tag.as_bytes()));
}

pub fn parameter_status(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    message(out, b'S', |b| {
        cstr(b, name);
        cstr(b, value);
    });
}

pub fn backend_key_data(out: &mut BytesMut, pid: i32, secret: i32) {
    message(out, b'K', |b| {
        b.put_i32(pid);
        b.put_i32(secret);
    });
}

pub fn auth_ok(out: &mut BytesMut) {
    message(out, b'R', |b| b.put_i32(0));
}

pub fn auth_md5(out: &mut BytesMut, salt: [u8; 4]) {
    message(out, b'R', |b| {
        b.put_i32(5);
        b.put_slice(&salt);
    });
}

pub fn auth_sasl(out: &mut BytesMut, mechanisms: &[&str]) {
    message(out, b'R', |b| {
        b.put_i32(10);
        for m in mechanisms {
            cstr(b, m.as_bytes());
        }
        b.put_u8(0);
    });
}

pub fn auth_sasl_continue(out: &mut BytesMut, data: &[u8]) {
    message(out, b'R', |b| {
        b.put_i32(11);
        b.put_slice(data);
    });
}

pub fn auth_sasl_final(out: &mut BytesMut, data: &[u8]) {
    message(out, b'R', |b| {
        b.put_i32(12);
        b.put_slice(data);
    });
}

/// Parse (F) under another statement name, reusing the client's text and types.
pub fn parse(out: &mut BytesMut, name: &[u8], sql: &[u8], param_types: &[u8]) {
    message(out, b'P', |b| {
        cstr(b, name);
        cstr(b, sql);
        b.put_slice(param_types);
    });
}

/// Bind (F) pointing at another statement name; parameters stay as the client sent them.
pub fn bind(out: &mut BytesMut, portal: &[u8], statement: &[u8], rest: &[u8]) {
    message(out, b'B', |b| {
        cstr(b, portal);
        cstr(b, statement);
        b.put_slice(rest);
    });
}

/// Describe (F) or Close (F) of a statement or portal.
pub fn target(out: &mut BytesMut, tag: u8, kind: u8, name: &[u8]) {
    message(out, tag, |b| {
        b.put_u8(kind);
        cstr(b, name);
    });
}

pub fn query(out: &mut BytesMut, sql: &str) {
    message(out, b'Q', |b| cstr(b, sql.as_bytes()));
}

/// Execute (F) of `portal`, at most `max_rows` rows (0: all).
pub fn execute(out: &mut BytesMut, portal: &[u8], max_rows: i32) {
    message(out, b'E', |b| {
        cstr(b, portal);
        b.put_i32(max_rows);
    });
}

pub fn flush(out: &mut BytesMut) {
    message(out, b'H', |_| {});
}

pub fn sync(out: &mut BytesMut) {
    message(out, b'S', |_| {});
}

/// SSLRequest (F): the untagged request to switch to TLS.
pub fn ssl_request(out: &mut BytesMut) {
    out.put_i32(8);
    out.put_i32(crate::protocol::startup::SSL_REQUEST_CODE);
}

pub fn terminate(out: &mut BytesMut) {
    message(out, b'X', |_| {});
}

/// RowDescription (B) of text columns, for the admin console's result sets.
pub fn row_description(out: &mut BytesMut, columns: &[&str]) {
    message(out, b'T', |b| {
        b.put_i16(columns.len() as i16);
        for c in columns {
            cstr(b, c.as_bytes());
            b.put_i32(0); // table oid
            b.put_i16(0); // column number
            b.put_i32(25); // text
            b.put_i16(-1);
            b.put_i32(-1);
            b.put_i16(0); // text format
        }
    });
}

/// DataRow (B) of text values; `None` is SQL NULL.
pub fn data_row(out: &mut BytesMut, values: &[Option<&str>]) {
    message(out, b'D', |b| {
        b.put_i16(values.len() as i16);
        for v in values {
            match v {
                Some(s) => {
                    b.put_i32(s.len() as i32);
                    b.put_slice(s.as_bytes());
                }
                None => b.put_i32(-1),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::frame::decode;
    use crate::protocol::messages::{error_code, Bind, Parse};

    #[test]
    fn built_messages_decode() {
        let mut out = BytesMut::new();
        error_response(
            &mut out,
            Severity::Error,
            SqlState::PROTOCOL_VIOLATION,
            "bad",
        );
        ready_for_query(&mut out, TxStatus::Idle);
        parse(&mut out, b"__p1", b"select $1", b"\x00\x01\x00\x00\x00\x17");
        bind(&mut out, b"", b"__p1", b"\x00\x00\x00\x00\x00\x00");
        let e = decode(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(e.tag(), b'E');
        assert_eq!(error_code(e.body()), Some(&b"08P01"[..]));
        let z = decode(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(z.body(), b"I");
        let p = decode(&mut out, 1 << 20).unwrap().unwrap();
        let p = Parse::decode(p.body()).unwrap();
        assert_eq!((p.name, p.sql), (&b"__p1"[..], &b"select $1"[..]));
        let b = decode(&mut out, 1 << 20).unwrap().unwrap();
        assert_eq!(Bind::decode(b.body()).unwrap().statement, b"__p1");
    }
}
