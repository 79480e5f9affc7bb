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

/// The password for a login, or why there is none.
pub(crate) async fn password(
    credential: Option<&crate::profile::Credential>,
    transport: &str,
    allow_prompt: bool,
) -> Result<Secret, TransportError> {
    match credential {
        Some(c) => credential::resolve(c, transport, allow_prompt).await,
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
