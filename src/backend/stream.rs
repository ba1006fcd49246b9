//! The byte stream to one server: plain TCP or TLS, with the non-blocking calls the session's loop uses.

use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

pub type ServerStream = super::MaybeTls<TlsStream<TcpStream>>;

/// What one turn of [`ServerStream::io`] did.
#[derive(Debug)]
pub enum ServerIo {
    /// Bytes read into the read buffer; 0 means the server closed the connection.
    Read(usize),
    /// Bytes of the write buffer the stream took.
    Wrote(usize),
    ReadFailed(io::Error),
    WriteFailed(io::Error),
}

impl ServerStream {
    pub fn is_tls(&self) -> bool {
        matches!(self, ServerStream::Tls(_))
    }

    /// Waits until the server sent bytes or, with `want_write`, took some of `out`.
    ///
    /// Cancel safe: a read lands in `rbuf` and a write is reported in the same poll that makes it,
    /// so dropping the future loses nothing. Over TLS it also pushes out ciphertext that an
    /// earlier [`try_write`](Self::try_write) left in the TLS buffer.
    pub async fn io(&mut self, rbuf: &mut BytesMut, out: &[u8], want_write: bool) -> ServerIo {
        std::future::poll_fn(|cx| {
            if want_write {
                match pin!(self.write(out)).poll(cx) {
                    Poll::Ready(Ok(n)) => return Poll::Ready(ServerIo::Wrote(n)),
                    Poll::Ready(Err(e)) => return Poll::Ready(ServerIo::WriteFailed(e)),
                    Poll::Pending => {}
                }
            }
            if self.is_tls() {
                if let Poll::Ready(Err(e)) = Pin::new(&mut *self).poll_flush(cx) {
                    return Poll::Ready(ServerIo::WriteFailed(e));
                }
            }
            // AsyncRead: a short read clears tokio's readiness, so no empty read follows.
            match pin!(self.read_buf(rbuf)).poll(cx) {
                Poll::Ready(Ok(n)) => Poll::Ready(ServerIo::Read(n)),
                Poll::Ready(Err(e)) => Poll::Ready(ServerIo::ReadFailed(e)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    /// Writes what the socket takes now; `WouldBlock` if nothing. Over TLS the ciphertext may
    /// stay partly buffered until the next [`io`](Self::io).
    pub fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ServerStream::Plain(s) => s.try_write(buf),
            ServerStream::Tls(s) => poll_now(|cx| Pin::new(s.as_mut()).poll_write(cx, buf)),
        }
    }

    /// Reads what is there now; `WouldBlock` if nothing, `Ok(0)` if the server closed.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            ServerStream::Plain(s) => s.try_read(buf),
            ServerStream::Tls(s) => {
                let mut rb = ReadBuf::new(buf);
                poll_now(|cx| Pin::new(s.as_mut()).poll_read(cx, &mut rb))?;
                Ok(rb.filled().len())
            }
        }
    }

    /// Writes all of `buf` and flushes it out of the TLS buffer, for the proxy's own messages.
    pub async fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write_all(buf).await?;
        self.flush().await
    }
}

/// Polls once without a task to wake: `Pending` becomes `WouldBlock`.
fn poll_now<T>(f: impl FnOnce(&mut Context<'_>) -> Poll<io::Result<T>>) -> io::Result<T> {
    let mut cx = Context::from_waker(Waker::noop());
    match f(&mut cx) {
        Poll::Ready(r) => r,
        Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
    }
}
