//! Backend messages for tests that hand-make the frontend's: reading them whole, showing them in assertion messages, and the Bind the protocol crate does not build bare.

use bytes::{BufMut, BytesMut};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// One backend message: its tag and body.
pub type Msg = (u8, Vec<u8>);

/// Reads backend messages until `done` says the last one ends the reply; all of them, in order.
/// Panics, naming what came, when nothing arrives for 20 s or the proxy closes.
pub async fn read_while(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    mut done: impl FnMut(u8) -> bool,
) -> Vec<Msg> {
    let mut msgs = Vec::new();
    loop {
        while buf.len() >= 5 {
            let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
            if buf.len() < 1 + len {
                break;
            }
            let frame = buf.split_to(1 + len);
            msgs.push((frame[0], frame[5..].to_vec()));
            if done(frame[0]) {
                return msgs;
            }
        }
        let read = tokio::time::timeout(Duration::from_secs(20), s.read_buf(buf)).await;
        let n = read.unwrap_or_else(|_| panic!("no reply within 20 s; saw {}", show(&msgs)));
        assert!(n.unwrap() > 0, "proxy closed; saw {}", show(&msgs));
    }
}

/// Reads backend messages up to and including the first with tag `until`.
pub async fn read_until(s: &mut TcpStream, buf: &mut BytesMut, until: u8) -> Vec<Msg> {
    read_while(s, buf, |t| t == until).await
}

/// Reads backend messages up to and including the `n`th ReadyForQuery.
pub async fn read_ready(s: &mut TcpStream, buf: &mut BytesMut, mut n: usize) -> Vec<Msg> {
    read_while(s, buf, |t| {
        n -= usize::from(t == b'Z');
        n == 0
    })
    .await
}

/// Tags, with the fields of any ErrorResponse, for assertions and their messages.
pub fn show(msgs: &[Msg]) -> String {
    msgs.iter()
        .map(|(t, b)| match t {
            b'E' => format!("E({})", String::from_utf8_lossy(b).replace('\0', " ")),
            _ => char::from(*t).to_string(),
        })
        .collect()
}

/// Tags alone.
pub fn tags(msgs: &[Msg]) -> String {
    msgs.iter().map(|(t, _)| char::from(*t)).collect()
}

/// How many ErrorResponses.
pub fn errors(msgs: &[Msg]) -> usize {
    msgs.iter().filter(|(t, _)| *t == b'E').count()
}

/// The columns of each DataRow, as text (NULL as "").
pub fn rows(msgs: &[Msg]) -> Vec<Vec<String>> {
    msgs.iter()
        .filter(|(t, _)| *t == b'D')
        .map(|(_, b)| {
            let n = i16::from_be_bytes([b[0], b[1]]) as usize;
            let mut at = 2;
            let mut cols = Vec::with_capacity(n);
            for _ in 0..n {
                let len = i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
                at += 4;
                let len = len.max(0) as usize;
                cols.push(String::from_utf8_lossy(&b[at..at + len]).into_owned());
                at += len;
            }
            cols
        })
        .collect()
}

/// The first column of each DataRow.
pub fn first_column(msgs: &[Msg]) -> Vec<String> {
    rows(msgs)
        .into_iter()
        .filter_map(|r| r.into_iter().next())
        .collect()
}

/// Bind of `statement` to `portal`: no parameters, text results.
pub fn bind(portal: &str, statement: &str, out: &mut BytesMut) {
    let mut body = BytesMut::new();
    body.put_slice(portal.as_bytes());
    body.put_u8(0);
    body.put_slice(statement.as_bytes());
    body.put_u8(0);
    body.put_slice(&[0, 0, 0, 0, 0, 0]);
    out.put_u8(b'B');
    out.put_u32(4 + body.len() as u32);
    out.put_slice(&body);
}
