//! The API's TCP listener with limits that `axum::serve` does not set: at most
//! [`MAX_CONNECTIONS`] open connections (further clients wait in the kernel's accept queue), and
//! a connection on which the client sends nothing for [`IDLE_TIMEOUT`] is closed (slow or stuck
//! clients, idle keep-alives). The per-request deadline is a middleware (`api::mod`).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Open API connections at most.
pub const MAX_CONNECTIONS: usize = 1024;
/// A connection whose client sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A [`TcpListener`] that caps open connections and times out idle ones.
#[derive(Debug)]
pub struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle: Duration,
}

impl LimitedListener {
    /// Wraps `inner`: at most `max` connections at once, each closed after `idle` without input.
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        Self { inner, slots: Arc::new(Semaphore::new(max.max(1))), idle }
    }

    /// Connection slots free right now.
    pub fn free_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// Waits for a free slot, then for a connection.
    pub async fn accept_limited(&mut self) -> (LimitedStream, std::net::SocketAddr) {
        let permit = loop {
            if let Ok(p) = Arc::clone(&self.slots).acquire_owned().await {
                break p;
            }
            // The semaphore is never closed; yield rather than spin if it ever were.
            tokio::task::yield_now().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((s, addr)) => {
                    let _ = s.set_nodelay(true);
                    let deadline = Box::pin(tokio::time::sleep(self.idle));
                    return (LimitedStream { inner: s, _permit: permit, idle: self.idle, deadline }, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.accept_limited().await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: holds its slot until dropped; reads fail with `TimedOut` once the
/// client has been silent for the idle timeout.
#[derive(Debug)]
pub struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    let next = tokio::time::Instant::now() + self.idle;
                    self.deadline.as_mut().reset(next);
                }
                Poll::Ready(r)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "client idle too long")))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// A connection holds its slot until dropped; a silent client is cut off after the idle
    /// timeout while one that talks is served.
    #[tokio::test]
    async fn caps_and_idle_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut l = LimitedListener::new(l, 2, Duration::from_millis(300));
        let mut talker = TcpStream::connect(addr).await.unwrap();
        let (mut a, _) = l.accept_limited().await;
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (mut b, _) = l.accept_limited().await;
        assert_eq!(l.free_slots(), 0, "two connections hold both slots");
        talker.write_all(b"hi").await.unwrap();
        let mut buf = [0u8; 2];
        a.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi");
        let err = b.read(&mut [0u8; 8]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(b);
        assert_eq!(l.free_slots(), 1, "a closed connection frees its slot");
    }
}
