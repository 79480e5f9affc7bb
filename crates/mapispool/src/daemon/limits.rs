//! What one client may cost the daemon: a cap on connections (a [`Semaphore`], as mini-redis
//! does: past the cap, new connections wait in the listen backlog until one closes) and an idle
//! limit (a connection with no request in progress that neither sends nor takes a byte for
//! [`IDLE_TIMEOUT`] is closed: a client that connects and says nothing, or a watcher that
//! stopped reading).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// At most this many client connections at once: far more than a person's commands and
/// scripts open, few enough that a runaway client cannot take all of the daemon's memory or
/// file descriptors.
pub const MAX_CONNECTIONS: usize = 2048;

/// How long a connection may sit with no request in progress and no byte either way.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Raises this process's soft limit on open files to its hard limit (as Go's runtime does at
/// start): the usual soft limit, 1024, is below [`MAX_CONNECTIONS`] plus the store's files.
/// Failing to raise it only means connections past it wait (accept fails, and is retried).
pub fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                tracing::debug!("cannot raise the open-file limit");
            }
        }
    }
}

/// The daemon's socket, handing out connections only while fewer than `MAX_CONNECTIONS` are
/// open.
pub struct LimitedListener {
    inner: UnixListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl LimitedListener {
    pub fn new(inner: UnixListener, max: usize, idle: Duration) -> LimitedListener {
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            idle,
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Conn<UnixStream>;
    type Addr = tokio::net::unix::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so acquiring can only wait.
        let permit = Arc::clone(&self.permits).acquire_owned().await.ok();
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (Conn::new(io, self.idle, permit), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Requests in progress on one connection: while there are any, it is never idle (a flush
/// may take minutes without a byte on the socket).
#[derive(Debug, Default)]
pub struct ConnState {
    in_flight: AtomicUsize,
}

impl ConnState {
    /// Counts a request in until the guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(Arc::clone(self))
    }
}

/// A request in progress (see [`ConnState::busy`]).
pub struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A client connection: the stream, its slot under the cap (given back when dropped), and its
/// idle timer. Idle, a read or write fails with `TimedOut`, and hyper closes the connection.
pub struct Conn<I> {
    io: I,
    state: Arc<ConnState>,
    idle: Pin<Box<Sleep>>,
    limit: Duration,
    _permit: Option<OwnedSemaphorePermit>,
}

impl<I> Conn<I> {
    pub fn new(io: I, limit: Duration, permit: Option<OwnedSemaphorePermit>) -> Conn<I> {
        Conn {
            io,
            state: Arc::default(),
            idle: Box::pin(tokio::time::sleep(limit)),
            limit,
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &I {
        &self.io
    }

    pub fn state(&self) -> Arc<ConnState> {
        Arc::clone(&self.state)
    }

    fn touch(&mut self) {
        let next = Instant::now() + self.limit;
        self.idle.as_mut().reset(next);
    }

    /// `Err(TimedOut)` once idle; otherwise the timer is armed to wake this task.
    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while self.idle.as_mut().poll(cx).is_ready() {
            if self.state.in_flight.load(Ordering::SeqCst) == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client connection was idle too long",
                ));
            }
            self.touch();
        }
        Ok(())
    }

    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.check_idle(cx) {
            Ok(()) => Poll::Pending,
            Err(e) => Poll::Ready(Err(e)),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Conn<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Conn<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.touch();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_idle_limit() {
        let (client, server) = tokio::io::duplex(64);
        let mut conn = Conn::new(server, IDLE_TIMEOUT, None);
        let started = Instant::now();
        let mut buf = [0u8; 8];
        let err = conn.read(&mut buf).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), IDLE_TIMEOUT);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn traffic_and_requests_in_progress_keep_it_open() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = Conn::new(server, IDLE_TIMEOUT, None);
        let mut buf = [0u8; 8];
        // A byte just before the limit starts it again.
        tokio::time::sleep(IDLE_TIMEOUT - Duration::from_secs(1)).await;
        client.write_all(b"x").await.expect("write");
        assert_eq!(conn.read(&mut buf).await.expect("read"), 1);
        let quiet_since = Instant::now();
        // A request in progress (a long flush): no byte for ten limits, still open.
        let busy = conn.state().busy();
        let read = conn.read(&mut buf);
        tokio::pin!(read);
        assert!(
            tokio::time::timeout(IDLE_TIMEOUT * 10, &mut read)
                .await
                .is_err(),
            "closed while a request was in progress"
        );
        drop(busy);
        let err = read.await.expect_err("idle once the request is done");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(quiet_since.elapsed() >= IDLE_TIMEOUT * 10);
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_that_stopped_reading_is_cut_off() {
        // The client never reads: the pipe fills, the write waits, and the limit ends it.
        let (client, server) = tokio::io::duplex(16);
        let mut conn = Conn::new(server, IDLE_TIMEOUT, None);
        let err = conn.write_all(&[b'x'; 64]).await.expect_err("idle");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test]
    async fn the_cap_holds_connections_back_until_one_closes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let mut listener =
            LimitedListener::new(UnixListener::bind(&path).expect("bind"), 2, IDLE_TIMEOUT);
        let _clients: Vec<_> =
            futures_util::future::join_all((0..3).map(|_| UnixStream::connect(&path))).await;
        use axum::serve::Listener;
        let (first, _) = listener.accept().await;
        let (_second, _) = listener.accept().await;
        assert!(
            tokio::time::timeout(Duration::from_millis(200), listener.accept())
                .await
                .is_err(),
            "a third connection past a cap of 2"
        );
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), listener.accept())
            .await
            .expect("the third once the first closed");
    }
}
