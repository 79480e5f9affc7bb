//! What the network transports share: a connection in clear or under TLS, connecting with
//! errors a user can act on, the TLS handshake with the account's trust settings, and the
//! password for a login. SMTP, IMAP and POP3 differ in what they say, not in how they connect.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::{TransportError, TransportErrorKind};
use crate::credential::{self, Secret};
use crate::tls;

/// How long connecting, the TLS handshake, the greeting and the login may take together.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to a mail server, plain or TLS; shared by every network transport.
#[derive(Debug)]
pub(crate) enum MailStream {
    Plain(TcpStream),
    Tls(Box<tls::TlsStream<TcpStream>>),
}

impl AsyncRead for MailStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MailStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_flush(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MailStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MailStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// The TLS handshake on `stream` for `host`, with the account's trust settings.
pub(crate) async fn start_tls(
    stream: TcpStream,
    host: &str,
    ca_file: Option<&std::path::Path>,
    insecure_skip_verify: bool,
) -> Result<MailStream, TransportError> {
    let config = tls::client_config(ca_file, insecure_skip_verify).await?;
    let tls = tls::connect_tls(stream, host, Arc::clone(&config)).await?;
    Ok(MailStream::Tls(Box::new(tls)))
}

/// The password for a login, or why there is none. A `password_command` runs at most `limit`
/// (the profile's `[spooler] timeout`), then is killed with its process group.
pub(crate) async fn password(
    credential: Option<&crate::profile::Credential>,
    transport: &str,
    allow_prompt: bool,
    limit: std::time::Duration,
) -> Result<Secret, TransportError> {
    match credential {
        Some(c) => credential::resolve_within(c, transport, allow_prompt, limit).await,
        None => Err(TransportError::new(
            TransportErrorKind::Auth,
            format!(
                "transport \"{transport}\" has no password; set password_command, password_file, password_env or password_prompt"
            ),
        )),
    }
}

/// Opens the TCP connection, with errors that say what to check.
pub(crate) async fn tcp_connect(
    host: &str,
    port: u16,
    limit: Duration,
) -> Result<TcpStream, TransportError> {
    let server = format!("{host}:{port}");
    let connect = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| {
                TransportError::new(
                    TransportErrorKind::Connect,
                    format!("cannot connect to {server}: cannot resolve {host}: {e}"),
                )
            })?
            .collect();
        if addrs.is_empty() {
            return Err(TransportError::new(
                TransportErrorKind::Connect,
                format!("cannot connect to {server}: {host} has no address"),
            ));
        }
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(s) => {
                    // Commands are few and buffered already; do not let Nagle hold the last one.
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.map(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused — is the server running?".to_string()
            }
            _ => e.to_string(),
        });
        Err(TransportError::new(
            TransportErrorKind::Connect,
            format!(
                "cannot connect to {server}: {}",
                e.unwrap_or_else(|| "no address worked".into())
            ),
        ))
    };
    tokio::time::timeout(limit, connect).await.map_err(|_| {
        TransportError::new(
            TransportErrorKind::Connect,
            format!(
                "cannot connect to {server}: no answer within {}",
                humantime::format_duration(limit)
            ),
        )
    })?
}

/// A stream on which each read or write may wait at most `limit` for the server: the
/// spooler's `[spooler] timeout` as an inactivity limit. A message that streams steadily for
/// longer than the limit goes on; a server that stops sending (or taking) bytes for the limit
/// fails the operation with [`io::ErrorKind::TimedOut`]. The clock starts when an operation
/// first has to wait, not when the last one ended, so time the caller spends elsewhere (the
/// store writing a batch) is not counted against the server.
#[derive(Debug)]
pub(crate) struct Inactivity<S> {
    inner: S,
    /// `None`: wait as long as it takes (an IMAP IDLE, bounded by its own renewal).
    limit: Option<Duration>,
    /// The clocks of a waiting read (`[0]`) and write (`[1]`), and whether each runs.
    timers: [Pin<Box<tokio::time::Sleep>>; 2],
    waiting: [bool; 2],
}

impl<S> Inactivity<S> {
    pub(crate) fn new(inner: S, limit: Duration) -> Inactivity<S> {
        Inactivity {
            inner,
            limit: Some(limit),
            timers: [
                Box::pin(tokio::time::sleep(limit)),
                Box::pin(tokio::time::sleep(limit)),
            ],
            waiting: [false, false],
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.inner
    }

    /// Changes the limit for the operations from now on; `None` lifts it.
    pub(crate) fn set_limit(&mut self, limit: Option<Duration>) {
        self.limit = limit;
        self.waiting = [false, false];
    }

    /// Polls the clock of an operation that could not go on: `Ready(error)` once it waited
    /// `limit`.
    fn expired(&mut self, cx: &mut Context<'_>, which: usize) -> Poll<io::Error> {
        let Some(limit) = self.limit else {
            return Poll::Pending;
        };
        if !self.waiting[which] {
            self.waiting[which] = true;
            let deadline = tokio::time::Instant::now() + limit;
            self.timers[which].as_mut().reset(deadline);
        }
        match self.timers[which].as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.waiting[which] = false;
                Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the server sent nothing for {} (the profile's [spooler] timeout)",
                        humantime::format_duration(limit)
                    ),
                ))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// What an operation (`which`: 0 read, 1 write) gives back: its result, which stops its
    /// clock, or a wait that the clock may end.
    fn settle<T>(
        &mut self,
        cx: &mut Context<'_>,
        which: usize,
        poll: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match poll {
            Poll::Ready(r) => {
                self.waiting[which] = false;
                Poll::Ready(r)
            }
            Poll::Pending => self.expired(cx, which).map(Err),
        }
    }
}

use std::future::Future as _;

impl<S: AsyncRead + Unpin> AsyncRead for Inactivity<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        this.settle(cx, 0, poll)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Inactivity<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.settle(cx, 1, poll)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.settle(cx, 1, poll)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
