//! A client message decoded once, on arrival: its frame and where its fields lie, so routing, the cache probe, stats and translation read them without decoding again.

use super::frame::{Frame, ProtocolError};
use super::messages::{Bind, Parse, Query, Target};
use super::tags::frontend as tag;
use bytes::Bytes;

/// A byte range of the frame's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

impl Span {
    /// `part`, a slice the decoder borrowed from `body`, as offsets into it.
    fn of(body: &[u8], part: &[u8]) -> Span {
        let start = part.as_ptr() as usize - body.as_ptr() as usize;
        Span {
            start: start as u32,
            end: (start + part.len()) as u32,
        }
    }

    fn get(self, body: &[u8]) -> &[u8] {
        &body[self.start as usize..self.end as usize]
    }
}

/// Where the decoded fields lie: what the typed views of messages.rs borrow, kept as
/// offsets so the message owns its bytes and can be queued, copied for a re-send, and read
/// again for free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Query {
        sql: Span,
    },
    Parse {
        name: Span,
        sql: Span,
        param_types: Span,
    },
    Bind {
        portal: Span,
        statement: Span,
        rest: Span,
    },
    Describe {
        kind: u8,
        name: Span,
    },
    Close {
        kind: u8,
        name: Span,
    },
    /// Sync, Flush, Execute, FunctionCall, COPY messages: forwarded as they are.
    Opaque,
}

/// What a client message says, borrowed from its frame.
pub enum Fields<'a> {
    Query(Query<'a>),
    Parse(Parse<'a>),
    Bind(Bind<'a>),
    Describe(Target<'a>),
    Close(Target<'a>),
    Opaque,
}

/// One whole client message, validated and decoded once.
#[derive(Clone, Debug)]
pub struct Message {
    frame: Frame,
    layout: Layout,
}

impl Message {
    /// Decodes the fields the proxy inspects; a malformed Query, Parse, Bind, Describe or
    /// Close is refused here, before any of its request reaches a server.
    pub fn decode(frame: Frame) -> Result<Message, ProtocolError> {
        let body = frame.body();
        let span = |part: &[u8]| Span::of(body, part);
        let layout = match frame.tag() {
            tag::QUERY => Layout::Query {
                sql: span(Query::decode(body)?.sql),
            },
            tag::PARSE => {
                let p = Parse::decode(body)?;
                Layout::Parse {
                    name: span(p.name),
                    sql: span(p.sql),
                    param_types: span(p.param_types),
                }
            }
            tag::BIND => {
                let b = Bind::decode(body)?;
                Layout::Bind {
                    portal: span(b.portal),
                    statement: span(b.statement),
                    rest: span(b.rest),
                }
            }
            tag::DESCRIBE => {
                let t = Target::decode(body, "Describe")?;
                Layout::Describe {
                    kind: t.kind,
                    name: span(t.name),
                }
            }
            tag::CLOSE => {
                let t = Target::decode(body, "Close")?;
                Layout::Close {
                    kind: t.kind,
                    name: span(t.name),
                }
            }
            _ => Layout::Opaque,
        };
        Ok(Message { frame, layout })
    }

    pub fn fields(&self) -> Fields<'_> {
        let body = self.frame.body();
        match self.layout {
            Layout::Query { sql } => Fields::Query(Query { sql: sql.get(body) }),
            Layout::Parse {
                name,
                sql,
                param_types,
            } => Fields::Parse(Parse {
                name: name.get(body),
                sql: sql.get(body),
                param_types: param_types.get(body),
            }),
            Layout::Bind {
                portal,
                statement,
                rest,
            } => Fields::Bind(Bind {
                portal: portal.get(body),
                statement: statement.get(body),
                rest: rest.get(body),
            }),
            Layout::Describe { kind, name } => Fields::Describe(Target {
                kind,
                name: name.get(body),
            }),
            Layout::Close { kind, name } => Fields::Close(Target {
                kind,
                name: name.get(body),
            }),
            Layout::Opaque => Fields::Opaque,
        }
    }

    pub fn query(&self) -> Option<Query<'_>> {
        match self.fields() {
            Fields::Query(q) => Some(q),
            _ => None,
        }
    }

    pub fn parse(&self) -> Option<Parse<'_>> {
        match self.fields() {
            Fields::Parse(p) => Some(p),
            _ => None,
        }
    }

    pub fn bind(&self) -> Option<Bind<'_>> {
        match self.fields() {
            Fields::Bind(b) => Some(b),
            _ => None,
        }
    }

    pub fn describe(&self) -> Option<Target<'_>> {
        match self.fields() {
            Fields::Describe(t) => Some(t),
            _ => None,
        }
    }

    pub fn close(&self) -> Option<Target<'_>> {
        match self.fields() {
            Fields::Close(t) => Some(t),
            _ => None,
        }
    }

    pub fn frame(&self) -> &Frame {
        &self.frame
    }

    pub fn tag(&self) -> u8 {
        self.frame.tag()
    }

    pub fn body(&self) -> &[u8] {
        self.frame.body()
    }

    pub fn raw(&self) -> &Bytes {
        self.frame.raw()
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::build;
    use crate::protocol::frame;
    use crate::protocol::messages::TARGET_STATEMENT;
    use bytes::BytesMut;

    fn one(build_it: impl FnOnce(&mut BytesMut)) -> Result<Message, ProtocolError> {
        let mut out = BytesMut::new();
        build_it(&mut out);
        let f = frame::decode(&mut out, 1 << 20)?
            .ok_or(ProtocolError::Malformed { what: "test frame" })?;
        Message::decode(f)
    }

    #[test]
    fn fields_read_back_what_the_decoder_saw() -> Result<(), ProtocolError> {
        let q = one(|o| build::query(o, "select 1"))?;
        assert_eq!(q.query().map(|q| q.sql), Some(&b"select 1"[..]));
        assert!(q.parse().is_none());

        let p = one(|o| build::parse(o, b"s1", b"select $1", &[0, 1, 0, 0, 0, 23]))?;
        let parsed = p
            .parse()
            .ok_or(ProtocolError::Malformed { what: "Parse" })?;
        assert_eq!(parsed.name, b"s1");
        assert_eq!(parsed.sql, b"select $1");
        assert_eq!(parsed.param_types, [0, 1, 0, 0, 0, 23]);

        let b = one(|o| build::bind(o, b"", b"s1", &[0, 0, 0, 0, 0, 0]))?;
        let bound = b.bind().ok_or(ProtocolError::Malformed { what: "Bind" })?;
        assert_eq!((bound.portal, bound.statement), (&b""[..], &b"s1"[..]));
        assert_eq!(bound.rest, [0, 0, 0, 0, 0, 0]);

        let c = one(|o| build::target(o, tag::CLOSE, TARGET_STATEMENT, b"s1"))?;
        let closed = c
            .close()
            .ok_or(ProtocolError::Malformed { what: "Close" })?;
        assert_eq!((closed.kind, closed.name), (TARGET_STATEMENT, &b"s1"[..]));
        assert!(c.describe().is_none());

        let s = one(build::sync)?;
        assert!(matches!(s.fields(), Fields::Opaque));
        Ok(())
    }

    #[test]
    fn a_malformed_message_is_refused_on_arrival() {
        // A Parse whose parameter count promises more type OIDs than it carries.
        let bad = one(|o| build::parse(o, b"s1", b"select $1", &[0, 2, 0, 0, 0, 23]));
        assert_eq!(bad.err(), Some(ProtocolError::Malformed { what: "Parse" }));
        // A Describe of something that is neither a statement nor a portal.
        let bad = one(|o| build::target(o, tag::DESCRIBE, b'X', b""));
        assert_eq!(
            bad.err(),
            Some(ProtocolError::Malformed { what: "Describe" })
        );
    }
}
