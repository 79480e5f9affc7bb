//! STARTTLS faults (issue 6), for SMTP and IMAP: a scripted server offers STARTTLS, agrees
//! ("220 Ready" / "OK Begin TLS"), then (a) drops the connection, (b) sends garbage instead of
//! a TLS ServerHello, (c) stalls past the spooler's `timeout` (1 s); and (d) completes a real
//! rustls handshake (an rcgen CA in the profile's `ca_file`) and refuses AUTH / LOGIN under
//! TLS. Each case: the flush reports a TLS, timeout or auth error naming the step; nothing is
//! lost (the message stays queued and the next good flush sends it; the server's mail is
//! fetched by the next good flush); a healthy `dir` transport in the same profile delivers in
//! the same flush as the fault.
//!
//! `cargo test -p mapispool --test tls_faults -- --nocapture` prints each case's error.

mod fault_case;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fault_case::{Case, flush};
use mapispool::store::Folder;
use mapispool::{FlushFlags, FlushReport, Session, Submission};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How long a stalled server says nothing: five times the spooler's `timeout`.
const STALL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TlsFault {
    /// The connection closed right after agreeing to STARTTLS.
    Drop,
    /// Bytes that are no TLS ServerHello.
    Garbage,
    /// No ServerHello at all, until long after the spooler's timeout.
    Stall,
    /// A good handshake, then AUTH (SMTP) / LOGIN (IMAP) refused under TLS.
    AuthRefused,
}

const FAULTS: [TlsFault; 4] = [
    TlsFault::Drop,
    TlsFault::Garbage,
    TlsFault::Stall,
    TlsFault::AuthRefused,
];

/// A CA and a leaf it signed for 127.0.0.1: (the CA's PEM, the server's TLS config).
fn ca_and_server() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("ca key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let key = KeyPair::generate().expect("leaf key");
    let params =
        CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).expect("leaf params");
    let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
    let leaf = params.signed_by(&key, &issuer).expect("leaf cert");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone(), ca.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .expect("server config");
    (ca.pem(), Arc::new(config))
}

/// What a scripted server shares with the test: the fault (taken once it happened) and what
/// it accepted (SMTP: messages after the final dot).
struct Script {
    fault: Mutex<Option<TlsFault>>,
    tls: Arc<rustls::ServerConfig>,
    accepted: Mutex<usize>,
}

impl Script {
    /// Takes the fault if it is `one_of`.
    fn take(&self, one_of: &[TlsFault]) -> Option<TlsFault> {
        let mut f = self.fault.lock().expect("lock");
        f.take_if(|f| one_of.contains(f))
    }
}

/// After agreeing to STARTTLS: the fault, or the server's side of the handshake (`None` when
/// the connection is over).
async fn after_starttls(
    tcp: TcpStream,
    s: &Script,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let mut tcp = tcp;
    match s.take(&[TlsFault::Drop, TlsFault::Garbage, TlsFault::Stall]) {
        Some(TlsFault::Drop) => None,
        Some(TlsFault::Garbage) => {
            let _ = tcp
                .write_all(b"garbage instead of a ServerHello {}}} \x00\xff\r\n")
                .await;
            // Until the client gives up.
            let mut sink = Vec::new();
            let _ = tokio::time::timeout(STALL, tcp.read_to_end(&mut sink)).await;
            None
        }
        Some(_) => {
            tokio::time::sleep(STALL).await;
            None
        }
        None => tokio_rustls::TlsAcceptor::from(Arc::clone(&s.tls))
            .accept(tcp)
            .await
            .ok(),
    }
}

async fn listen<F, Fut>(serve: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    (port, task)
}

// ---------------------------------------------------------------------------------------------
// SMTP

async fn smtp_serve(tcp: TcpStream, s: Arc<Script>) {
    let mut io = BufReader::new(tcp);
    if io.write_all(b"220 scripted ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let verb = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = match verb.split(' ').next().unwrap_or("") {
            "EHLO" => b"250-scripted\r\n250-STARTTLS\r\n250 8BITMIME\r\n",
            "STARTTLS" => {
                let _ = io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await;
                if let Some(tls) = after_starttls(io.into_inner(), &s).await {
                    smtp_under_tls(tls, &s).await;
                }
                return;
            }
            "QUIT" => {
                let _ = io.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"530 5.7.0 must issue a STARTTLS command first\r\n",
        };
        if io.write_all(reply).await.is_err() {
            return;
        }
    }
}

async fn smtp_under_tls<S: AsyncRead + AsyncWrite + Unpin>(stream: S, s: &Script) {
    let mut io = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let verb = line.trim_end().to_ascii_uppercase();
        let verb = verb.split([' ', ':']).next().unwrap_or("");
        let reply: &[u8] = match verb {
            "EHLO" => b"250-scripted.tls\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n",
            "AUTH" if s.take(&[TlsFault::AuthRefused]).is_some() => {
                b"535 5.7.8 scripted: authentication credentials invalid\r\n"
            }
            "AUTH" => b"235 2.7.0 ok\r\n",
            "MAIL" | "RCPT" | "RSET" | "NOOP" => b"250 ok\r\n",
            "DATA" => {
                let _ = io.write_all(b"354 go ahead\r\n").await;
                let _ = io.flush().await;
                loop {
                    line.clear();
                    if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                }
                *s.accepted.lock().expect("lock") += 1;
                b"250 2.0.0 queued\r\n"
            }
            "QUIT" => {
                let _ = io.write_all(b"221 bye\r\n").await;
                let _ = io.flush().await;
                return;
            }
            _ => b"500 unknown\r\n",
        };
        if io.write_all(reply).await.is_err() || io.flush().await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// IMAP: greeting, STARTTLS, then under TLS CAPABILITY, LOGIN, SELECT, UID FETCH, UID STORE,
// LOGOUT; one message (UID 1) that stays on the server (`after_download` is `\Seen`).

fn imap_message() -> Vec<u8> {
    b"From: a@example.com\r\nTo: me@local.test\r\nSubject: over tls\r\nMessage-ID: <imaptls@fault.test>\r\n\r\nfetched after the fault\r\n".to_vec()
}

async fn imap_serve(tcp: TcpStream, s: Arc<Script>) {
    let mut io = BufReader::new(tcp);
    if io
        .write_all(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] scripted IMAP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.trim_end().splitn(3, ' ');
        let tag = words.next().unwrap_or("*").to_string();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        if verb == "STARTTLS" {
            let ok = format!("{tag} OK Begin TLS negotiation now\r\n");
            let _ = io.write_all(ok.as_bytes()).await;
            if let Some(tls) = after_starttls(io.into_inner(), &s).await {
                imap_under_tls(tls, &s).await;
            }
            return;
        }
        let no = format!("{tag} BAD STARTTLS first\r\n");
        if io.write_all(no.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn imap_under_tls<S: AsyncRead + AsyncWrite + Unpin>(stream: S, s: &Script) {
    let mut io = BufReader::new(stream);
    let body = imap_message();
    let mut line = String::new();
    loop {
        line.clear();
        if io.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut words = line.trim_end().splitn(3, ' ');
        let tag = words.next().unwrap_or("*").to_string();
        let mut verb = words.next().unwrap_or("").to_ascii_uppercase();
        let rest = words.next().unwrap_or("").to_string();
        if verb == "UID" {
            verb = format!(
                "UID {}",
                rest.split(' ').next().unwrap_or("").to_uppercase()
            );
        }
        let mut r = Vec::new();
        let mut close = false;
        match verb.as_str() {
            "CAPABILITY" => r.extend_from_slice(b"* CAPABILITY IMAP4rev1\r\n"),
            "LOGIN" if s.take(&[TlsFault::AuthRefused]).is_some() => {
                r.extend_from_slice(
                    format!("{tag} NO [AUTHENTICATIONFAILED] scripted: invalid credentials\r\n")
                        .as_bytes(),
                );
            }
            "SELECT" | "EXAMINE" => r.extend_from_slice(
                b"* 1 EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n* OK [UIDNEXT 2] next\r\n",
            ),
            "UID FETCH" if rest.contains("RFC822.SIZE") => r.extend_from_slice(
                format!("* 1 FETCH (UID 1 RFC822.SIZE {})\r\n", body.len()).as_bytes(),
            ),
            "UID FETCH" => {
                r.extend_from_slice(format!("* 1 FETCH (UID 1 BODY[] {{{}}}\r\n", body.len()).as_bytes());
                r.extend_from_slice(&body);
                r.extend_from_slice(b")\r\n");
            }
            "LOGOUT" => {
                r.extend_from_slice(b"* BYE logging out\r\n");
                close = true;
            }
            _ => {}
        }
        if !r.ends_with(b"invalid credentials\r\n") {
            r.extend_from_slice(format!("{tag} OK {verb} completed\r\n").as_bytes());
        }
        if io.write_all(&r).await.is_err() || io.flush().await.is_err() || close {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The case: a profile with the STARTTLS transport "mail" and a healthy dir transport "local".

/// The transport's error, or the first recipient's when the message was deferred or failed.
fn error_of(report: &FlushReport, transport: &str) -> Option<String> {
    use mapispool::flush::RecipientReport;
    let t = report
        .transports
        .iter()
        .find(|t| t.transport == transport)?;
    t.error.clone().or_else(|| {
        t.messages
            .iter()
            .flat_map(|m| &m.recipients)
            .find_map(|r| match r {
                RecipientReport::Delivered { .. } => None,
                RecipientReport::Deferred { error, .. } | RecipientReport::Failed { error, .. } => {
                    Some(error.clone())
                }
            })
    })
}

async fn inbox(session: &Session) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in session.messages(Folder::Inbox).await.expect("Inbox") {
        out.push(session.message_body(&m.entry_id()).await.expect("body"));
    }
    out
}

/// What the error must say for `fault` (`login`: the refusal's words for this protocol).
fn check_error(protocol: &str, fault: TlsFault, e: &str, took: Duration, login: &str) {
    eprintln!("tls fault: {protocol} {fault:?} (took {took:.1?}) -> {e}");
    let want: &[&str] = match (protocol, fault) {
        ("SMTP", TlsFault::Stall) => &["TLS handshake with 127.0.0.1:", "took longer than 1s"],
        (_, TlsFault::Stall) => &[
            "took longer than 1s",
            "stalled at the TLS handshake after STARTTLS",
        ],
        (_, TlsFault::Drop | TlsFault::Garbage) => &["TLS handshake with 127.0.0.1 failed"],
        (_, TlsFault::AuthRefused) => &[login],
    };
    for w in want {
        assert!(e.contains(w), "{protocol} {fault:?}: {e:?} lacks {w:?}");
    }
    // Bounded by the spooler's timeout, not by the server hanging up.
    assert!(
        took < STALL,
        "{protocol} {fault:?}: the flush took {took:?}"
    );
}

async fn smtp_case(fault: TlsFault) {
    let (ca, tls) = ca_and_server();
    let script = Arc::new(Script {
        fault: Mutex::new(Some(fault)),
        tls,
        accepted: Mutex::new(0),
    });
    let s2 = Arc::clone(&script);
    let (port, task) = listen(move |tcp| smtp_serve(tcp, Arc::clone(&s2))).await;
    let case = Case::new();
    let ca_file = case.file("ca.pem", &ca);
    let session = case
        .logon(&format!(
            "[[transport]]\nname = \"mail\"\naddress = \"me@smtp.test\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"u\"\npassword_command = \"echo pw\"\n",
            ca_file.display()
        ))
        .await;
    session
        .submit(
            Submission {
                transport: Some("mail".into()),
                ..Submission::default()
            },
            &b"From: me@smtp.test\r\nTo: one@remote.test\r\nSubject: over tls\r\nMessage-ID: <smtptls@fault.test>\r\n\r\nbody\r\n"[..],
        )
        .await
        .expect("submit to mail");

    let started = Instant::now();
    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD).await;
    let took = started.elapsed();
    let e = error_of(&report, "mail").unwrap_or_else(|| panic!("SMTP {fault:?}: no error"));
    check_error("SMTP", fault, &e, took, "535 5.7.8");
    assert_eq!(error_of(&report, "local"), None);
    assert_eq!(case.healthy_delivered(), 1, "SMTP {fault:?}: dir delivered");
    assert_eq!(*script.accepted.lock().expect("lock"), 0);
    assert_eq!(
        session.outgoing_queue().await.expect("queue").len(),
        1,
        "SMTP {fault:?}: still queued"
    );

    // The next good flush (FORCE: a deferred message is due again at once) sends it, once.
    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::FORCE).await;
    assert_eq!(
        error_of(&report, "mail"),
        None,
        "SMTP {fault:?}: good flush"
    );
    assert!(session.outgoing_queue().await.expect("queue").is_empty());
    assert_eq!(*script.accepted.lock().expect("lock"), 1, "sent once");
    assert!(
        script.fault.lock().expect("lock").is_none(),
        "the fault ran"
    );
    session.logoff().await;
    task.abort();
}

async fn imap_case(fault: TlsFault) {
    let (ca, tls) = ca_and_server();
    let script = Arc::new(Script {
        fault: Mutex::new(Some(fault)),
        tls,
        accepted: Mutex::new(0),
    });
    let s2 = Arc::clone(&script);
    let (port, task) = listen(move |tcp| imap_serve(tcp, Arc::clone(&s2))).await;
    let case = Case::new();
    let ca_file = case.file("ca.pem", &ca);
    let session = case
        .logon(&format!(
            "[[transport]]\nname = \"mail\"\naddress = \"me@imap.test\"\n[transport.inbound]\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"starttls\"\nca_file = \"{}\"\nusername = \"u\"\npassword_command = \"echo pw\"\n",
            ca_file.display()
        ))
        .await;

    let started = Instant::now();
    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD).await;
    let took = started.elapsed();
    let e = error_of(&report, "mail").unwrap_or_else(|| panic!("IMAP {fault:?}: no error"));
    check_error(
        "IMAP",
        fault,
        &e,
        took,
        "refused the login of \"u\" (LOGIN)",
    );
    assert_eq!(error_of(&report, "local"), None);
    assert_eq!(case.healthy_delivered(), 1, "IMAP {fault:?}: dir delivered");
    assert!(inbox(&session).await.is_empty(), "IMAP {fault:?}: nothing");

    // The next good flush fetches the server's message, once.
    let report = flush(&session, FlushFlags::DOWNLOAD).await;
    assert_eq!(
        error_of(&report, "mail"),
        None,
        "IMAP {fault:?}: good flush"
    );
    assert_eq!(
        inbox(&session).await,
        vec![imap_message()],
        "IMAP {fault:?}"
    );
    assert!(
        script.fault.lock().expect("lock").is_none(),
        "the fault ran"
    );
    session.logoff().await;
    task.abort();
}

#[tokio::test]
async fn smtp_starttls_faults() {
    for fault in FAULTS {
        smtp_case(fault).await;
    }
}

#[tokio::test]
async fn imap_starttls_faults() {
    for fault in FAULTS {
        imap_case(fault).await;
    }
}
