//! Framing: a message is a tag byte, a 4-byte length that counts itself, and a body.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Bytes of tag plus length that precede every body.
pub const HEADER_LEN: usize = 5;

/// One whole message as it arrived, header included, so it can be forwarded untouched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    raw: Bytes,
}

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("invalid message length {len} for message type '{}'", char::from(*tag))]
    BadLength { tag: u8, len: i64 },
    #[error("message of type '{}' is {len} bytes, over the limit of {max}", char::from(*tag))]
    TooLarge { tag: u8, len: usize, max: usize },
    #[error("invalid frontend message type {tag}")]
    UnknownTag { tag: u8 },
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    #[error("invalid startup packet: {0}")]
    BadStartup(&'static str),
    #[error("unsupported frontend protocol {major}.{minor}")]
    UnsupportedProtocol { major: u16, minor: u16 },
}

impl Frame {
    /// Wraps a complete raw message; callers guarantee the header is consistent.
    pub fn from_raw(raw: Bytes) -> Frame {
        debug_assert!(raw.len() >= HEADER_LEN);
        Frame { raw }
    }

    pub fn tag(&self) -> u8 {
        self.raw[0]
    }

    pub fn body(&self) -> &[u8] {
        &self.raw[HEADER_LEN..]
    }

    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    pub fn len(&self) -> usize {
        self.raw.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
}

/// Reads a message header at the start of `buf`: the tag and the body length.
///
/// Returns `Ok(None)` while fewer than five bytes are buffered, so a partial
/// frame costs nothing until it is complete.
pub fn peek_header(buf: &[u8], max: usize) -> Result<Option<(u8, usize)>, ProtocolError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = i32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength {
            tag,
            len: i64::from(len),
        });
    }
    let body = len as usize - 4;
    if body > max {
        return Err(ProtocolError::TooLarge {
            tag,
            len: body,
            max,
        });
    }
    Ok(Some((tag, body)))
}

/// Splits one whole frame off the front of `buf`, if it is all there.
pub fn decode(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, ProtocolError> {
    match peek_header(buf, max)? {
        Some((_, body)) if buf.len() >= HEADER_LEN + body => {
            let raw = buf.split_to(HEADER_LEN + body).freeze();
            Ok(Some(Frame { raw }))
        }
        Some((_, body)) => {
            // Reserve once for the rest of a large frame instead of growing in steps.
            buf.reserve(HEADER_LEN + body - buf.len());
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Like [`decode`], but also rejects tags a client may not send.
pub fn decode_frontend(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, ProtocolError> {
    if let Some(&tag) = buf.first() {
        if !super::tags::frontend::is_known(tag) {
            return Err(ProtocolError::UnknownTag { tag });
        }
    }
    decode(buf, max)
}

/// A cursor over a message body for the typed views.
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn err(&self) -> ProtocolError {
        ProtocolError::Malformed { what: self.what }
    }

    /// A NUL-terminated string, without its terminator.
    pub fn cstr(&mut self) -> Result<&'a [u8], ProtocolError> {
        let end = self
            .buf
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::Malformed { what: self.what })?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    pub fn u8(&mut self) -> Result<u8, ProtocolError> {
        if self.buf.is_empty() {
            return Err(self.err());
        }
        let v = self.buf[0];
        self.buf = &self.buf[1..];
        Ok(v)
    }

    pub fn i16(&mut self) -> Result<i16, ProtocolError> {
        if self.buf.len() < 2 {
            return Err(self.err());
        }
        let v = (&self.buf[..2]).get_i16();
        self.buf = &self.buf[2..];
        Ok(v)
    }

    pub fn i32(&mut self) -> Result<i32, ProtocolError> {
        if self.buf.len() < 4 {
            return Err(self.err());
        }
        let v = (&self.buf[..4]).get_i32();
        self.buf = &self.buf[4..];
        Ok(v)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        if self.buf.len() < n {
            return Err(self.err());
        }
        let s = &self.buf[..n];
        self.buf = &self.buf[n..];
        Ok(s)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn msg(tag: u8, body: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(tag);
        b.put_i32(body.len() as i32 + 4);
        b.put_slice(body);
        b
    }

    #[test]
    fn partial_frames_wait() {
        let whole = msg(b'Q', b"select 1\0");
        for cut in 0..whole.len() {
            let mut b = BytesMut::from(&whole[..cut]);
            assert_eq!(decode(&mut b, 1024), Ok(None));
            assert_eq!(b.len(), cut);
        }
        let mut b = whole.clone();
        let f = decode(&mut b, 1024).unwrap().unwrap();
        assert_eq!(f.tag(), b'Q');
        assert_eq!(f.body(), b"select 1\0");
        assert!(b.is_empty());
    }

    #[test]
    fn two_frames_in_one_read() {
        let mut b = msg(b'S', b"");
        b.extend_from_slice(&msg(b'X', b""));
        assert_eq!(decode(&mut b, 16).unwrap().unwrap().tag(), b'S');
        assert_eq!(decode(&mut b, 16).unwrap().unwrap().tag(), b'X');
        assert_eq!(decode(&mut b, 16), Ok(None));
    }

    #[test]
    fn bad_lengths_are_errors() {
        let mut b = BytesMut::from(&[b'Q', 0, 0, 0, 3][..]);
        assert!(matches!(
            decode(&mut b, 1024),
            Err(ProtocolError::BadLength { .. })
        ));
        let mut b = BytesMut::from(&[b'Q', 0xff, 0xff, 0xff, 0xff][..]);
        assert!(matches!(
            decode(&mut b, 1024),
            Err(ProtocolError::BadLength { .. })
        ));
        let mut b = BytesMut::from(&[b'Q', 0x10, 0, 0, 0][..]);
        assert!(matches!(
            decode(&mut b, 1024),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_frontend_tag() {
        let mut b = msg(b'z', b"");
        assert_eq!(
            decode_frontend(&mut b, 16),
            Err(ProtocolError::UnknownTag { tag: b'z' })
        );
    }

    #[test]
    fn reader_rejects_truncation() {
        let mut r = Reader::new(b"abc", "Parse");
        assert!(r.cstr().is_err());
        let mut r = Reader::new(b"ab\0\x00", "Parse");
        assert_eq!(r.cstr().unwrap(), b"ab");
        assert!(r.i16().is_err());
    }
}
