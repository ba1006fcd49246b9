//! The client's byte stream: plain TCP or TLS, with buffers released while the client is idle.

use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

pub type ClientStream = crate::backend::MaybeTls<TlsStream<TcpStream>>;

/// Bytes read per call while a request is in flight.
const READ_CHUNK: usize = 16 * 1024;
const HANDSHAKE_CHUNK: usize = 512;

/// Room left in a read buffer below which the next read first makes a full chunk of room.
const MIN_READ_ROOM: usize = 2 * 1024;

/// Between messages, the room left after the last one will do unless it is nearly gone;
/// mid-message (a large one, a COPY stream) a full chunk. Asking for a whole chunk between
/// requests made each request's next read reallocate: the bytes already split off as messages
/// keep the allocation shared, so it cannot be reclaimed.
fn reserve_room(buf: &mut BytesMut, chunk: usize) {
    if !buf.is_empty() || buf.capacity() < MIN_READ_ROOM.min(chunk) {
        buf.reserve(chunk);
    }
}

/// Appends the first `n` bytes of what was read to `to`, making room at once for all of it:
/// most of it is forwarded too, and growing message by message from an empty buffer (as each
/// request's answer does) reallocates several times.
pub(super) fn append(to: &mut BytesMut, read: &[u8], n: usize) {
    if to.capacity() - to.len() < n {
        to.reserve(read.len());
    }
    to.extend_from_slice(&read[..n]);
}

impl ClientStream {
    /// Reads more bytes into `buf`; an empty `buf` is allocated only once data is ready, so an
    /// idle client holds no read buffer. Cancel safe: no bytes are lost if the future is dropped.
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_chunk(cx, buf, READ_CHUNK)).await
    }

    /// Like [`read_into`](Self::read_into) with a smaller reservation, for the handshake: its
    /// messages are tiny, and thousands of clients logging in at once would otherwise each
    /// allocate a full chunk that the allocator keeps after they go idle.
    pub async fn read_small(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_chunk(cx, buf, HANDSHAKE_CHUNK)).await
    }

    /// Polled rather than awaited so the future an idle session waits in holds no readiness
    /// or read future of its own (each idle client's task is sized by what it awaits).
    fn poll_read_chunk(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
        chunk: usize,
    ) -> Poll<io::Result<usize>> {
        match self {
            ClientStream::Plain(s) => {
                if buf.capacity() == 0 {
                    if let Err(e) = ready!(s.poll_read_ready(cx)) {
                        return Poll::Ready(Err(e));
                    }
                }
                reserve_room(buf, chunk);
                // AsyncRead rather than try_read: after a short read tokio clears the readiness
                // itself, so the next wait goes to epoll instead of costing a read that finds
                // the socket empty (one syscall less per message).
                pin!(s.read_buf(buf)).poll(cx)
            }
            ClientStream::Tls(s) => {
                reserve_room(buf, chunk);
                pin!(s.read_buf(buf)).poll(cx)
            }
        }
    }

    pub async fn write_all_buf(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        match self {
            ClientStream::Plain(s) => s.write_all(buf).await?,
            ClientStream::Tls(s) => {
                s.write_all(buf).await?;
                s.flush().await?;
            }
        }
        buf.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_between_requests_uses_the_room_left_and_mid_message_makes_a_chunk() {
        let mut buf = BytesMut::new();
        reserve_room(&mut buf, READ_CHUNK);
        assert!(
            buf.capacity() >= READ_CHUNK,
            "an empty buffer gets a whole chunk"
        );
        buf.extend_from_slice(&[0; 100]);
        let message = buf.split_to(100).freeze();
        let room = buf.capacity();
        reserve_room(&mut buf, READ_CHUNK);
        assert_eq!(
            buf.capacity(),
            room,
            "the room left is used without reallocating"
        );
        buf.extend_from_slice(&[0; 10]);
        reserve_room(&mut buf, READ_CHUNK);
        assert!(
            buf.capacity() - buf.len() >= READ_CHUNK,
            "a partial message gets a chunk"
        );
        drop(message);
    }

    #[test]
    fn an_answer_appended_to_an_empty_buffer_takes_room_for_all_that_was_read() {
        let read = vec![7u8; 300];
        let mut to = BytesMut::new();
        append(&mut to, &read, 40);
        assert_eq!(&to[..], &read[..40]);
        assert!(to.capacity() >= 300);
        let cap = to.capacity();
        append(&mut to, &read[40..], 260);
        assert_eq!(to.len(), 300);
        assert_eq!(to.capacity(), cap, "the rest fits without growing");
    }
}
