//! TLS for every network transport (SMTP, IMAP, POP3): one rustls client configuration per
//! account, and a handshake whose failures say what to do about them.
//!
//! - Crypto: rustls with the `ring` provider only (no aws-lc-rs: no C/CMake build, and we need
//!   no FIPS). The provider is passed explicitly, so no process-wide default has to be installed.
//! - Trust: the Mozilla roots from `webpki-roots`, plus the account's `ca_file` (PEM). We chose
//!   webpki-roots over rustls-platform-verifier because it is pure data (no system trust store
//!   to find, the same answer on a developer's machine and on CI, and a lighter build); a private
//!   or corporate CA goes in `ca_file`.
//! - `insecure_skip_verify`: a verifier that accepts any certificate, named
//!   [`DangerousAcceptAnyCertificate`], for test servers only; every handshake that uses it
//!   logs a warning.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::transport_error::{TransportError, TransportErrorKind};

pub use rustls::ClientConfig as TlsClientConfig;
pub use tokio_rustls::client::TlsStream;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(message: String) -> TransportError {
    TransportError::new(TransportErrorKind::Tls, message)
}

/// The client configuration for one account: webpki roots plus `ca_file`, or (tests only) no
/// verification at all. `ca_file` is read with `tokio::fs`, off the runtime's threads.
pub async fn client_config(
    ca_file: Option<&Path>,
    insecure_skip_verify: bool,
) -> Result<Arc<ClientConfig>, TransportError> {
    let ca = match ca_file {
        Some(path) if !insecure_skip_verify => Some((
            path,
            tokio::fs::read(path)
                .await
                .map_err(|e| tls_error(format!("cannot read ca_file {}: {e}", path.display())))?,
        )),
        _ => None,
    };
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("cannot set up TLS: {e}")))?;
    let config = if insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(DangerousAcceptAnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some((path, bytes)) = &ca {
            add_ca_file(&mut roots, path, bytes)?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn add_ca_file(roots: &mut RootCertStore, path: &Path, bytes: &[u8]) -> Result<(), TransportError> {
    let mut added = 0usize;
    for cert in CertificateDer::pem_slice_iter(bytes) {
        let cert = cert.map_err(|e| {
            tls_error(format!(
                "ca_file {} is not PEM certificates: {e}",
                path.display()
            ))
        })?;
        roots.add(cert).map_err(|e| {
            tls_error(format!(
                "ca_file {} holds a certificate that cannot be a CA: {e}",
                path.display()
            ))
        })?;
        added += 1;
    }
    if added == 0 {
        return Err(tls_error(format!(
            "ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(())
}

/// The TLS handshake on `stream` (a fresh TCP connection for implicit TLS, or one that just got
/// its STARTTLS go-ahead), checking the certificate against `host`.
pub async fn connect_tls<S>(
    stream: S,
    host: &str,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<S>, TransportError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| tls_error(format!("\"{host}\" is not a host name TLS can check")))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    connector
        .connect(name, stream)
        .await
        .map_err(|e| handshake_error(host, &e))
}

/// The words for a failed handshake: what went wrong, with which host, and what to do.
fn handshake_error(host: &str, e: &std::io::Error) -> TransportError {
    let inner = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let message = match inner {
        Some(rustls::Error::InvalidCertificate(cert)) => {
            use rustls::CertificateError as C;
            match cert {
                C::UnknownIssuer | C::BadSignature | C::UnhandledCriticalExtension => format!(
                    "certificate for {host} is not trusted ({cert:?}): set ca_file to your CA, or insecure_skip_verify = true for tests only"
                ),
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "certificate presented by {host} is not for that name: connect with the name on the certificate, set ca_file, or insecure_skip_verify = true for tests only"
                ),
                C::Expired | C::ExpiredContext { .. } => format!(
                    "certificate for {host} has expired: the server's administrator must renew it (check this machine's clock too)"
                ),
                C::NotValidYet | C::NotValidYetContext { .. } => {
                    format!("certificate for {host} is not valid yet: check this machine's clock")
                }
                C::Revoked => format!("certificate for {host} has been revoked"),
                other => format!(
                    "certificate for {host} was refused ({other:?}): set ca_file to your CA, or insecure_skip_verify = true for tests only"
                ),
            }
        }
        Some(other) => format!(
            "TLS handshake with {host} failed: {other}; check the port and security setting (\"tls\" for implicit TLS such as 465/993/995, \"starttls\" for 587/143/110)"
        ),
        None => format!(
            "TLS handshake with {host} failed: {e}; check the port and security setting (\"tls\" for implicit TLS such as 465/993/995, \"starttls\" for 587/143/110)"
        ),
    };
    tls_error(message)
}

/// Accepts any server certificate: `insecure_skip_verify = true`, for test servers only. Still
/// checks the handshake signatures (so the session is encrypted to whoever holds the key), but
/// not who that is. Every use logs a warning.
#[derive(Debug)]
pub struct DangerousAcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for DangerousAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        tracing::warn!(
            server = %server_name.to_str(),
            "insecure_skip_verify = true: accepting the server's certificate without checking it; anyone on the path can read this connection (tests only)"
        );
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// A self-signed CA and a leaf for `127.0.0.1`/`localhost` signed by it: (CA PEM, server
    /// config).
    pub(crate) fn test_server() -> (String, Arc<rustls::ServerConfig>) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
        let ca_key = KeyPair::generate().expect("ca key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).expect("ca cert");
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("leaf params");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = params.signed_by(&key, &issuer).expect("leaf cert");
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone(), ca.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .expect("server config");
        (ca.pem(), Arc::new(server))
    }

    async fn serve_once(server: Arc<rustls::ServerConfig>) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((tcp, _)) = listener.accept().await {
                let acceptor = tokio_rustls::TlsAcceptor::from(server);
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"hello").await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        port
    }

    #[tokio::test]
    async fn trusts_the_ca_file_and_refuses_without_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca_pem, server) = test_server();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca_pem).expect("write ca");

        let port = serve_once(server.clone()).await;
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let config = client_config(Some(&ca_path), false).await.expect("config");
        let mut tls = connect_tls(tcp, "127.0.0.1", config)
            .await
            .expect("trusted");
        let mut got = String::new();
        tls.read_to_string(&mut got).await.expect("read");
        assert_eq!(got, "hello");

        let port = serve_once(server.clone()).await;
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let config = client_config(None, false).await.expect("config");
        let e = connect_tls(tcp, "127.0.0.1", config)
            .await
            .expect_err("untrusted");
        assert_eq!(e.kind, TransportErrorKind::Tls);
        assert!(
            e.message
                .contains("certificate for 127.0.0.1 is not trusted")
                && e.message.contains("ca_file"),
            "{}",
            e.message
        );

        let port = serve_once(server).await;
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let config = client_config(None, true).await.expect("config");
        connect_tls(tcp, "127.0.0.1", config)
            .await
            .expect("insecure accepts anything");
    }

    #[tokio::test]
    async fn garbage_instead_of_a_handshake_is_a_tls_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            if let Ok((mut tcp, _)) = listener.accept().await {
                let _ = tcp.write_all(b"220 this is not TLS at all\r\n").await;
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
            }
        });
        let tcp = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let e = connect_tls(
            tcp,
            "127.0.0.1",
            client_config(None, false).await.expect("config"),
        )
        .await
        .expect_err("garbage");
        assert_eq!(e.kind, TransportErrorKind::Tls);
        assert!(e.message.contains("127.0.0.1"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_ca_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "nothing here\n").expect("write");
        let e = client_config(Some(&path), false)
            .await
            .expect_err("refused");
        assert_eq!(e.kind, TransportErrorKind::Tls);
        assert!(e.message.contains("no PEM certificate"), "{}", e.message);
        let e = client_config(Some(&dir.path().join("missing.pem")), false)
            .await
            .expect_err("missing");
        assert!(e.message.contains("cannot read ca_file"), "{}", e.message);
    }
}
