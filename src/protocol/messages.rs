//! Typed, borrowing views of the messages the proxy inspects; everything else stays raw bytes.

use super::frame::{ProtocolError, Reader};

/// Query (F): one simple-protocol request, possibly several statements.
pub struct Query<'a> {
    pub sql: &'a [u8],
}

impl<'a> Query<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Query");
        let sql = r.cstr()?;
        Ok(Query { sql })
    }
}

/// SASLInitialResponse (F): the mechanism the client chose and its first message (-1: none).
pub struct SaslInitialResponse<'a> {
    pub mechanism: &'a [u8],
    pub data: &'a [u8],
}

impl<'a> SaslInitialResponse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "SASLInitialResponse");
        let mechanism = r.cstr()?;
        let len = r.i32()?;
        let data = if len < 0 {
            &[][..]
        } else {
            r.bytes(len as usize)?
        };
        Ok(SaslInitialResponse { mechanism, data })
    }
}

/// Parse (F): names a statement and gives its text and parameter types.
pub struct Parse<'a> {
    pub name: &'a [u8],
    pub sql: &'a [u8],
    /// The parameter-type count and OIDs, kept raw so a renamed copy can reuse them.
    pub param_types: &'a [u8],
}

impl<'a> Parse<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Parse");
        let name = r.cstr()?;
        let sql = r.cstr()?;
        let param_types = r.rest();
        let mut check = Reader::new(param_types, "Parse");
        let n = check.i16()?;
        if n < 0 {
            return Err(ProtocolError::Malformed { what: "Parse" });
        }
        check.bytes(n as usize * 4)?;
        if !check.is_empty() {
            return Err(ProtocolError::Malformed { what: "Parse" });
        }
        Ok(Parse {
            name,
            sql,
            param_types,
        })
    }
}

/// Bind (F): the portal and statement names; the parameters stay raw.
pub struct Bind<'a> {
    pub portal: &'a [u8],
    pub statement: &'a [u8],
    /// Formats, values and result formats, forwarded unchanged.
    pub rest: &'a [u8],
}

impl<'a> Bind<'a> {
    pub fn decode(body: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, "Bind");
        let portal = r.cstr()?;
        let statement = r.cstr()?;
        let rest = r.rest();
        Ok(Bind {
            portal,
            statement,
            rest,
        })
    }
}

/// Describe (F) and Close (F) share a shape: 'S' (statement) or 'P' (portal), then a name.
pub struct Target<'a> {
    pub kind: u8,
    pub name: &'a [u8],
}

pub const TARGET_STATEMENT: u8 = b'S';
pub const TARGET_PORTAL: u8 = b'P';

impl<'a> Target<'a> {
    pub fn decode(body: &'a [u8], what: &'static str) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(body, what);
        let kind = r.u8()?;
        if kind != TARGET_STATEMENT && kind != TARGET_PORTAL {
            return Err(ProtocolError::Malformed { what });
        }
        let name = r.cstr()?;
        Ok(Target { kind, name })
    }
}

/// Transaction status carried by ReadyForQuery (B).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxStatus {
    Idle,
    InTransaction,
    Failed,
}

impl TxStatus {
    pub fn from_body(body: &[u8]) -> Option<TxStatus> {
        match body.first() {
            Some(b'I') => Some(TxStatus::Idle),
            Some(b'T') => Some(TxStatus::InTransaction),
            Some(b'E') => Some(TxStatus::Failed),
            _ => None,
        }
    }

    pub fn byte(&self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InTransaction => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// Rows affected or returned, from a CommandComplete (B) tag such as "SELECT 5" or "INSERT 0 3".
pub fn command_rows(body: &[u8]) -> u64 {
    let tag = body.strip_suffix(&[0]).unwrap_or(body);
    let last = tag.rsplit(|&b| b == b' ').next().unwrap_or(&[]);
    if last.is_empty() || !last.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    last.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// The SQLSTATE field ('C') of an ErrorResponse or NoticeResponse body.
pub fn error_code(body: &[u8]) -> Option<&[u8]> {
    error_field(body, b'C')
}

/// One field of an ErrorResponse or NoticeResponse body.
pub fn error_field(body: &[u8], field: u8) -> Option<&[u8]> {
    let mut r = Reader::new(body, "ErrorResponse");
    loop {
        let code = r.u8().ok()?;
        if code == 0 {
            return None;
        }
        let value = r.cstr().ok()?;
        if code == field {
            return Some(value);
        }
    }
}

/// A ParameterStatus (B) body: name and value.
pub fn parameter_status(body: &[u8]) -> Result<(&[u8], &[u8]), ProtocolError> {
    let mut r = Reader::new(body, "ParameterStatus");
    Ok((r.cstr()?, r.cstr()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_rows_from_tags() {
        assert_eq!(command_rows(b"SELECT 5\0"), 5);
        assert_eq!(command_rows(b"INSERT 0 3\0"), 3);
        assert_eq!(command_rows(b"BEGIN\0"), 0);
        assert_eq!(command_rows(b"COPY 1000000\0"), 1_000_000);
        assert_eq!(command_rows(b""), 0);
    }

    #[test]
    fn parse_views() {
        let p = Parse::decode(b"s1\0select $1\0\x00\x01\x00\x00\x00\x17").unwrap();
        assert_eq!(p.name, b"s1");
        assert_eq!(p.sql, b"select $1");
        assert!(Parse::decode(b"s1\0select\0\x00\x02\x00\x00\x00\x17").is_err());
        assert!(Parse::decode(b"s1\0select").is_err());
        let b = Bind::decode(b"\0s1\0\x00\x00\x00\x00\x00\x00").unwrap();
        assert_eq!(b.statement, b"s1");
        assert_eq!(b.portal, b"");
        assert!(Target::decode(b"X\0", "Describe").is_err());
    }

    #[test]
    fn error_fields() {
        let body = b"SERROR\0C42P01\0Mno such table\0\0";
        assert_eq!(error_code(body), Some(&b"42P01"[..]));
        assert_eq!(error_field(body, b'M'), Some(&b"no such table"[..]));
        assert_eq!(error_code(b"SERROR\0"), None);
    }
}
