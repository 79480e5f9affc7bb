//! The fault matrix (issue 6): scripted in-process POP3 and SMTP servers fail at each step of
//! a session in turn — the steps a healthy session takes, recorded first — with a dropped
//! connection, an error reply, garbage, and a stall past the spooler's `timeout` (1 s here).
//! Every case must end in a defined state: the faulty transport reports an error in words (or
//! none, when the fault came after the work was done), nothing is lost or stored/sent twice
//! once the next good flush has run, and a healthy `dir` transport in the same profile moves
//! its mail in the same flush as the fault.
//!
//! `cargo test -p mapispool --test faults -- --nocapture` prints each case's status string.

mod fault_case;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fault_case::{Case, flush};
use mapispool::flush::RecipientReport;
use mapispool::store::Folder;
use mapispool::transport::pop3::codec::stuff;
use mapispool::{FlushFlags, FlushReport, Session, Submission};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// How long a stalled server says nothing: five times the spooler's `timeout` (1 s), then it
/// hangs up.
const STALL: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The server closes the connection instead of answering.
    Drop,
    /// A temporary error: SMTP 4xx, POP3 `-ERR`.
    Temporary,
    /// A permanent error: SMTP 5xx (POP3 has only `-ERR`).
    Permanent,
    /// Bytes that are no reply at all.
    Garbage,
    /// No answer, until long after the spooler's timeout.
    Stall,
}

/// Where and how the server fails, once; after that it is healthy.
struct Plan {
    step: Option<String>,
    fault: Fault,
    /// Every step of every session, in order (to learn a healthy session's steps).
    steps: Vec<String>,
}

enum Gate {
    /// Answer as a healthy server.
    Healthy,
    /// The fault answered (error or garbage); go on reading commands.
    Answered,
    /// Close the connection.
    Close,
}

/// Records `step` and, when it is the planned one, applies the fault. `error` is what this
/// protocol says for a temporary (`.0`) or permanent (`.1`) error at this step.
async fn gate<W: AsyncWrite + Unpin>(
    plan: &Mutex<Plan>,
    step: &str,
    write: &mut W,
    error: (&str, &str),
) -> std::io::Result<Gate> {
    let fault = {
        let mut p = plan.lock().expect("lock");
        p.steps.push(step.to_string());
        if p.step.as_deref() == Some(step) {
            p.step = None;
            Some(p.fault)
        } else {
            None
        }
    };
    Ok(match fault {
        None => Gate::Healthy,
        Some(Fault::Drop) => Gate::Close,
        Some(Fault::Temporary) => {
            write.write_all(error.0.as_bytes()).await?;
            Gate::Answered
        }
        Some(Fault::Permanent) => {
            write.write_all(error.1.as_bytes()).await?;
            Gate::Answered
        }
        Some(Fault::Garbage) => {
            write
                .write_all(b"\x16\x03\x01 \xff\xfe garbage {}}} \x00\r\n")
                .await?;
            Gate::Answered
        }
        Some(Fault::Stall) => {
            tokio::time::sleep(STALL).await;
            Gate::Close
        }
    })
}

async fn listen<F, Fut>(serve: F) -> (u16, tokio::task::JoinHandle<()>)
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
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
// POP3

struct Pop3Server {
    plan: Mutex<Plan>,
    /// Advertise PIPELINING (RFC 2449): the client then sends its RETRs and DELEs at once.
    pipelining: bool,
    /// (UIDL, message); deletions commit at QUIT.
    messages: Mutex<Vec<(String, Vec<u8>)>>,
}

async fn pop3_serve(stream: tokio::net::TcpStream, s: Arc<Pop3Server>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let err = (
        "-ERR [SYS/TEMP] scripted failure\r\n",
        "-ERR scripted failure\r\n",
    );
    match gate(&s.plan, "greeting", &mut write, err).await? {
        Gate::Close => return Ok(()),
        Gate::Answered => {}
        Gate::Healthy => write.write_all(b"+OK scripted POP3 ready\r\n").await?,
    }
    let mut deleted: Vec<usize> = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let (verb, arg) = line.split_once(' ').unwrap_or((line.as_str(), ""));
        let verb = verb.to_ascii_uppercase();
        let step = match verb.as_str() {
            "RETR" | "DELE" | "LIST" | "UIDL" if !arg.is_empty() => format!("{verb} {arg}"),
            _ => verb.clone(),
        };
        match gate(&s.plan, &step, &mut write, err).await? {
            Gate::Close => return Ok(()),
            Gate::Answered => continue,
            Gate::Healthy => {}
        }
        let mut close = false;
        let reply: Vec<u8> = {
            let mut messages = s.messages.lock().expect("lock");
            match verb.as_str() {
                "CAPA" if s.pipelining => b"+OK\r\nUIDL\r\nUSER\r\nPIPELINING\r\n.\r\n".to_vec(),
                "CAPA" => b"+OK\r\nUIDL\r\nUSER\r\n.\r\n".to_vec(),
                "USER" => b"+OK\r\n".to_vec(),
                "PASS" => b"+OK logged in\r\n".to_vec(),
                "STAT" => {
                    let size: usize = messages.iter().map(|(_, b)| b.len()).sum();
                    format!("+OK {} {size}\r\n", messages.len()).into_bytes()
                }
                "UIDL" | "LIST" => {
                    let mut r = b"+OK\r\n".to_vec();
                    for (i, (uidl, body)) in messages.iter().enumerate() {
                        let word = if verb == "UIDL" {
                            uidl.clone()
                        } else {
                            body.len().to_string()
                        };
                        r.extend_from_slice(format!("{} {word}\r\n", i + 1).as_bytes());
                    }
                    r.extend_from_slice(b".\r\n");
                    r
                }
                "RETR" => {
                    let n: usize = arg.trim().parse().unwrap_or(0);
                    match messages.get(n.wrapping_sub(1)) {
                        None => b"-ERR no such message\r\n".to_vec(),
                        Some((_, body)) => {
                            let mut r = b"+OK\r\n".to_vec();
                            r.extend_from_slice(&stuff(body));
                            r
                        }
                    }
                }
                "DELE" => {
                    deleted.push(arg.trim().parse().unwrap_or(0));
                    b"+OK\r\n".to_vec()
                }
                "NOOP" | "RSET" => b"+OK\r\n".to_vec(),
                "QUIT" => {
                    deleted.sort_unstable();
                    deleted.dedup();
                    for n in deleted.iter().rev() {
                        if *n >= 1 && *n <= messages.len() {
                            messages.remove(n - 1);
                        }
                    }
                    close = true;
                    b"+OK bye\r\n".to_vec()
                }
                _ => b"-ERR unknown command\r\n".to_vec(),
            }
        };
        write.write_all(&reply).await?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn pop3_message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: me@local.test\r\nSubject: pop {i}\r\nMessage-ID: <pop{i}@fault.test>\r\n\r\n.\r\n..\r\nline {i}\r\n{}\r\n",
        "p".repeat(3000)
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// SMTP

struct SmtpServer {
    plan: Mutex<Plan>,
    /// Recipients of each message the server accepted (250 after the final dot).
    accepted: Mutex<Vec<Vec<String>>>,
}

async fn smtp_serve(stream: tokio::net::TcpStream, s: Arc<SmtpServer>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let (t, p) = (
        "451 4.3.0 scripted failure\r\n",
        "554 5.3.0 scripted failure\r\n",
    );
    match gate(&s.plan, "greeting", &mut write, (t, p)).await? {
        Gate::Close => return Ok(()),
        Gate::Answered => {}
        Gate::Healthy => write.write_all(b"220 scripted ESMTP\r\n").await?,
    }
    let mut rcpts: Vec<String> = Vec::new();
    // A transaction is open (MAIL accepted), as a real server tracks it.
    let mut mail = false;
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let text = line.trim_end().to_string();
        let verb = text
            .split([' ', ':'])
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let step = match verb.as_str() {
            "RCPT" => format!("RCPT {}", rcpts.len() + 1),
            "HELO" => "EHLO".to_string(),
            v => v.to_string(),
        };
        match gate(&s.plan, &step, &mut write, (t, p)).await? {
            Gate::Close => return Ok(()),
            Gate::Answered => {
                if verb == "RSET" || verb == "MAIL" {
                    rcpts.clear();
                    mail = false;
                }
                continue;
            }
            Gate::Healthy => {}
        }
        match verb.as_str() {
            "EHLO" | "HELO" => {
                write
                    .write_all(
                        b"250-scripted\r\n250-PIPELINING\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n",
                    )
                    .await?
            }
            "AUTH" => write.write_all(b"235 2.7.0 ok\r\n").await?,
            "MAIL" => {
                rcpts.clear();
                mail = true;
                write.write_all(b"250 2.1.0 ok\r\n").await?
            }
            "RCPT" if !mail => write.write_all(b"503 5.5.1 need MAIL first\r\n").await?,
            "DATA" if rcpts.is_empty() => {
                write
                    .write_all(b"554 5.5.1 no valid recipients\r\n")
                    .await?
            }
            "RCPT" => {
                let addr = text
                    .split(['<', '>'])
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                rcpts.push(addr);
                write.write_all(b"250 2.1.5 ok\r\n").await?
            }
            "RSET" | "NOOP" => {
                rcpts.clear();
                mail = false;
                write.write_all(b"250 2.0.0 ok\r\n").await?
            }
            "QUIT" => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
            "DATA" => {
                write.write_all(b"354 go ahead\r\n").await?;
                let mut first = true;
                let mut refused = false;
                loop {
                    line.clear();
                    if read.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    if first {
                        first = false;
                        match gate(&s.plan, "body", &mut write, (t, p)).await? {
                            Gate::Close => return Ok(()),
                            // It answered mid-body: the message is refused, whatever follows.
                            Gate::Answered => refused = true,
                            Gate::Healthy => {}
                        }
                    }
                }
                if refused {
                    return Ok(());
                }
                match gate(&s.plan, "final dot", &mut write, (t, p)).await? {
                    Gate::Close => return Ok(()),
                    Gate::Answered => {}
                    Gate::Healthy => {
                        mail = false;
                        s.accepted
                            .lock()
                            .expect("lock")
                            .push(std::mem::take(&mut rcpts));
                        write.write_all(b"250 2.0.0 queued\r\n").await?
                    }
                }
            }
            _ => write.write_all(b"500 5.5.1 unknown\r\n").await?,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The case: a profile with the faulty transport "mail" and a healthy dir transport "local".

fn error_of(report: &FlushReport, transport: &str) -> Option<String> {
    report
        .transports
        .iter()
        .find(|t| t.transport == transport)
        .and_then(|t| {
            t.error.clone().or_else(|| {
                t.messages
                    .iter()
                    .flat_map(|m| &m.recipients)
                    .find_map(|r| match r {
                        RecipientReport::Delivered { .. } => None,
                        RecipientReport::Deferred { address, error }
                        | RecipientReport::Failed { address, error } => {
                            Some(format!("{address}: {error}"))
                        }
                    })
            })
        })
}

fn message_id(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            l.split_once(':')
                .filter(|(n, _)| n.eq_ignore_ascii_case("message-id"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

async fn inbox(session: &Session) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for m in session.messages(Folder::Inbox).await.expect("Inbox") {
        out.push(session.message_body(&m.entry_id()).await.expect("body"));
    }
    out
}

/// One line per case, for `--nocapture` and RELIABILITY.md.
fn note(protocol: &str, step: &str, fault: Fault, error: &Option<String>) {
    eprintln!(
        "fault: {protocol} {step:<10} {fault:<9?} -> {}",
        error.as_deref().unwrap_or("(no error: the work was done)")
    );
}

// ---------------------------------------------------------------------------------------------
// POP3 matrix

fn pop3_transport(port: u16) -> String {
    format!(
        "[[transport]]\nname = \"mail\"\naddress = \"me@pop.test\"\n[transport.inbound]\nkind = \"pop3\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nallow_plaintext_auth = true\nusername = \"u\"\npassword_command = \"echo pw\"\n"
    )
}

async fn pop3_case(step: Option<&str>, fault: Fault, pipelining: bool) -> Vec<String> {
    let messages: Vec<(String, Vec<u8>)> = (1..=2)
        .map(|i| (format!("uid-{i}"), pop3_message(i)))
        .collect();
    let server = Arc::new(Pop3Server {
        plan: Mutex::new(Plan {
            step: step.map(str::to_string),
            fault,
            steps: Vec::new(),
        }),
        pipelining,
        messages: Mutex::new(messages.clone()),
    });
    let s2 = Arc::clone(&server);
    let (port, task) = listen(move |tcp| pop3_serve(tcp, Arc::clone(&s2))).await;
    let case = Case::new();
    let session = case.logon(&pop3_transport(port)).await;

    let started = std::time::Instant::now();
    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD).await;
    let took = started.elapsed();
    let error = error_of(&report, "mail");
    let name = step.unwrap_or("(none)");
    note("POP3", name, fault, &error);
    assert_eq!(
        case.healthy_delivered(),
        1,
        "POP3 {name} {fault:?}: the dir transport moved its mail in the same flush"
    );
    assert_eq!(error_of(&report, "local"), None);
    let steps = server.plan.lock().expect("lock").steps.clone();
    if let Some(step) = step {
        // Nothing stored twice, nothing half: every Inbox message is one the server has.
        let got = inbox(&session).await;
        let e = error.clone().unwrap_or_default();
        if fault == Fault::Stall && step != "QUIT" {
            // Bounded by the spooler's timeout (1 s), not by the server hanging up (5 s), and
            // named: "no answer to PASS within 1s", and so is every step after login (each read
            // has the limit, not the download as a whole).
            assert!(took < STALL, "POP3 {step} stall: the flush took {took:?}");
            let named = match step {
                "greeting" => "no answer to the connection (no greeting) within 1s".to_string(),
                "CAPA" | "USER" | "PASS" => format!("no answer to {step} within 1s"),
                _ => format!(
                    "no answer to {} within 1s",
                    step.split(' ').next().unwrap_or("")
                ),
            };
            assert!(
                e.contains(&named),
                "POP3 {step} stall: {e:?} lacks {named:?}"
            );
        }
        if step.starts_with("RETR") && fault == Fault::Temporary {
            // Not fatal for the other message, but said (it was skipped without a word).
            assert!(
                e.contains(&format!("refused {step} (UIDL uid-")),
                "POP3 {step} -ERR: reported: {e:?}"
            );
            let mail = report.transports.iter().find(|t| t.transport == "mail");
            assert_eq!(mail.map(|t| t.received), Some(1), "the other message came");
        }
        // No error only when the fault did not matter (an optional CAPA, a last QUIT).
        if error.is_none() {
            assert_eq!(
                got.len(),
                messages.len(),
                "POP3 {step} {fault:?}: no error, yet not everything was stored"
            );
        }
        let mut ids = BTreeMap::new();
        for body in &got {
            assert!(
                messages.iter().any(|(_, m)| m == body),
                "POP3 {step} {fault:?}: a stored message is not one the server sent"
            );
            *ids.entry(message_id(body)).or_insert(0) += 1;
        }
        assert!(ids.values().all(|n| *n == 1), "{step} {fault:?}: {ids:?}");

        // The next good flush: each message exactly once, the server emptied.
        let report = flush(&session, FlushFlags::DOWNLOAD).await;
        assert_eq!(
            error_of(&report, "mail"),
            None,
            "POP3 {step} {fault:?}: the good flush"
        );
        let mut got: Vec<Vec<u8>> = inbox(&session).await;
        got.sort();
        let mut want: Vec<Vec<u8>> = messages.iter().map(|(_, m)| m.clone()).collect();
        want.sort();
        assert_eq!(
            got, want,
            "POP3 {step} {fault:?}: each message exactly once after the good flush"
        );
        assert!(
            server.messages.lock().expect("lock").is_empty(),
            "POP3 {step} {fault:?}: deleted on the server after storing"
        );
    } else {
        assert_eq!(error, None, "the healthy session");
    }
    session.logoff().await;
    task.abort();
    steps
}

async fn pop3_matrix(fault: Fault, pipelining: bool) {
    let steps = pop3_case(None, fault, pipelining).await;
    assert!(steps.len() >= 8, "a healthy session's steps: {steps:?}");
    for step in &steps {
        pop3_case(Some(step), fault, pipelining).await;
    }
    eprintln!(
        "fault: POP3 {fault:?} (pipelining {pipelining}): {} steps: {steps:?}",
        steps.len()
    );
}

#[tokio::test]
async fn pop3_drop_at_each_step() {
    pop3_matrix(Fault::Drop, false).await;
}

#[tokio::test]
async fn pop3_err_at_each_step() {
    pop3_matrix(Fault::Temporary, false).await;
}

#[tokio::test]
async fn pop3_garbage_at_each_step() {
    pop3_matrix(Fault::Garbage, false).await;
}

#[tokio::test]
async fn pop3_stall_at_each_step() {
    pop3_matrix(Fault::Stall, false).await;
}

// The same with PIPELINING advertised: the RETRs (and DELEs) of a batch go out at once, so a
// fault meets commands already sent; still nothing lost, nothing stored twice.

#[tokio::test]
async fn pop3_pipelined_drop_at_each_step() {
    pop3_matrix(Fault::Drop, true).await;
}

#[tokio::test]
async fn pop3_pipelined_err_at_each_step() {
    pop3_matrix(Fault::Temporary, true).await;
}

#[tokio::test]
async fn pop3_pipelined_garbage_at_each_step() {
    pop3_matrix(Fault::Garbage, true).await;
}

#[tokio::test]
async fn pop3_pipelined_stall_at_each_step() {
    pop3_matrix(Fault::Stall, true).await;
}

// ---------------------------------------------------------------------------------------------
// SMTP matrix

fn smtp_transport(port: u16) -> String {
    format!(
        "[[transport]]\nname = \"mail\"\naddress = \"me@smtp.test\"\n[transport.outbound]\nkind = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nallow_plaintext_auth = true\nusername = \"u\"\npassword_command = \"echo pw\"\n"
    )
}

const RCPTS: [&str; 2] = ["one@remote.test", "two@remote.test"];

async fn smtp_case(step: Option<&str>, fault: Fault) -> Vec<String> {
    let server = Arc::new(SmtpServer {
        plan: Mutex::new(Plan {
            step: step.map(str::to_string),
            fault,
            steps: Vec::new(),
        }),
        accepted: Mutex::new(Vec::new()),
    });
    let s2 = Arc::clone(&server);
    let (port, task) = listen(move |tcp| smtp_serve(tcp, Arc::clone(&s2))).await;
    let case = Case::new();
    let session = case.logon(&smtp_transport(port)).await;
    session
        .submit(
            Submission {
                transport: Some("mail".into()),
                ..Submission::default()
            },
            format!(
                "From: me@smtp.test\r\nTo: {}, {}\r\nSubject: faulty\r\nMessage-ID: <smtp@fault.test>\r\n\r\nbody line 1\r\n.dotted\r\n{}\r\n",
                RCPTS[0],
                RCPTS[1],
                "b".repeat(5000)
            )
            .as_bytes(),
        )
        .await
        .expect("submit to mail");

    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD).await;
    let error = error_of(&report, "mail");
    let name = step.unwrap_or("(none)");
    note("SMTP", name, fault, &error);
    // A stall before the body (RSET, MAIL, RCPT, DATA) on the connection opened by `connect`
    // is recovered on a new one, like a drop (no error; delivery checked below); one at QUIT
    // comes after the work.
    if let (Some(step), Fault::Stall, Some(e)) = (step, fault, &error) {
        // The transport names the step it waited for, within the spooler's timeout (1 s).
        let named = match step {
            "greeting" => "the connection (greeting)",
            "EHLO" => "EHLO",
            "AUTH" => "AUTH PLAIN",
            "MAIL" => "MAIL FROM",
            "RCPT 1" | "RCPT 2" => "RCPT TO",
            "DATA" => "DATA",
            // The server stops reading at the body or holds its reply to the dot: either way
            // what is not answered is the end of the message.
            _ => "the end of the message",
        };
        assert!(
            e.contains(&format!("did not answer {named}")) && e.contains("within 1s"),
            "SMTP {step} stall: {e:?} does not name {named:?}"
        );
    }
    assert_eq!(
        case.healthy_delivered(),
        1,
        "SMTP {name} {fault:?}: the dir transport moved its mail in the same flush"
    );
    let steps = server.plan.lock().expect("lock").steps.clone();
    if let Some(step) = step {
        // No error only when the fault did not matter (a reconnect after RSET, a last QUIT).
        if error.is_none() {
            assert_eq!(
                server.accepted.lock().expect("lock").len(),
                1,
                "SMTP {step} {fault:?}: no error, yet not accepted"
            );
        }
        // The next good flush (FORCE: a deferred message is due again at once).
        flush(&session, FlushFlags::UPLOAD | FlushFlags::FORCE).await;
        let queue = session.outgoing_queue().await.expect("queue");
        assert!(
            queue.is_empty(),
            "SMTP {step} {fault:?}: still queued after the good flush"
        );
        // Each recipient got it at most once; one that did not is named in a report.
        let accepted = server.accepted.lock().expect("lock").clone();
        let reports: Vec<String> = inbox(&session)
            .await
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect();
        for rcpt in RCPTS {
            let copies = accepted
                .iter()
                .filter(|r| r.iter().any(|a| a == rcpt))
                .count();
            assert!(copies <= 1, "SMTP {step} {fault:?}: {rcpt} got {copies}");
            if copies == 0 {
                assert!(
                    reports.iter().any(|r| r.contains(rcpt)),
                    "SMTP {step} {fault:?}: {rcpt} got nothing and no report names it"
                );
            }
        }
    } else {
        assert_eq!(error, None, "the healthy session");
        assert_eq!(server.accepted.lock().expect("lock").len(), 1);
    }
    session.logoff().await;
    task.abort();
    steps
}

async fn smtp_matrix(faults: &[Fault]) {
    let steps = smtp_case(None, Fault::Drop).await;
    assert!(steps.len() >= 9, "a healthy session's steps: {steps:?}");
    for fault in faults {
        for step in &steps {
            smtp_case(Some(step), *fault).await;
        }
    }
    eprintln!("fault: SMTP {faults:?}: {} steps: {steps:?}", steps.len());
}

#[tokio::test]
async fn smtp_drop_at_each_step() {
    smtp_matrix(&[Fault::Drop]).await;
}

#[tokio::test]
async fn smtp_4xx_and_5xx_at_each_step() {
    smtp_matrix(&[Fault::Temporary, Fault::Permanent]).await;
}

#[tokio::test]
async fn smtp_garbage_at_each_step() {
    smtp_matrix(&[Fault::Garbage]).await;
}

#[tokio::test]
async fn smtp_stall_at_each_step() {
    smtp_matrix(&[Fault::Stall]).await;
}

// ---------------------------------------------------------------------------------------------
// IMAP: enough of IMAP4rev1 for our client (greeting, LOGIN, SELECT with UIDVALIDITY,
// CAPABILITY, UID FETCH of sizes and of bodies, UID STORE, EXPUNGE, LOGOUT).

struct ImapServer {
    plan: Mutex<Plan>,
    /// Advertise `AUTH=PLAIN`: the client then logs in with AUTHENTICATE PLAIN (a `+`
    /// continuation, then the credentials line) instead of LOGIN.
    auth_plain: bool,
    /// (UID, message, \Deleted); EXPUNGE removes the deleted ones.
    messages: Mutex<Vec<(u32, Vec<u8>, bool)>>,
}

/// The UIDs of `set` (`1:*`, `3,5:7`) among `have`; `n:*` with n above every UID still means
/// the highest, as RFC 3501 says.
fn uid_set(set: &str, have: &[u32]) -> Vec<u32> {
    let top = have.iter().copied().max().unwrap_or(0);
    let num = |s: &str| {
        if s == "*" {
            top
        } else {
            s.parse().unwrap_or(0)
        }
    };
    have.iter()
        .copied()
        .filter(|uid| {
            set.split(',').any(|part| {
                let (a, b) = part.split_once(':').unwrap_or((part, part));
                let (a, b) = (num(a), num(b));
                (a.min(b)..=a.max(b)).contains(uid)
            })
        })
        .collect()
}

/// The range of a partial fetch, `BODY.PEEK[]<origin.len>`: (origin, len).
fn partial(items: &str) -> Option<(usize, usize)> {
    let (_, rest) = items.split_once("[]<")?;
    let (range, _) = rest.split_once('>')?;
    let (origin, len) = range.split_once('.')?;
    Some((origin.parse().ok()?, len.parse().ok()?))
}

async fn imap_serve(stream: tokio::net::TcpStream, s: Arc<ImapServer>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    match gate(
        &s.plan,
        "greeting",
        &mut write,
        (
            "* NO [UNAVAILABLE] scripted failure\r\n",
            "* BYE scripted failure\r\n",
        ),
    )
    .await?
    {
        Gate::Close => return Ok(()),
        Gate::Answered => {}
        Gate::Healthy => {
            let greeting = if s.auth_plain {
                "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] scripted IMAP ready\r\n"
            } else {
                "* OK [CAPABILITY IMAP4rev1] scripted IMAP ready\r\n"
            };
            write.write_all(greeting.as_bytes()).await?
        }
    }
    let capabilities = if s.auth_plain {
        "* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n"
    } else {
        "* CAPABILITY IMAP4rev1\r\n"
    };
    // A command's second time in one session (CAPABILITY before login and after SELECT) is a
    // step of its own.
    let mut seen: Vec<String> = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let mut words = line.splitn(3, ' ');
        let tag = words.next().unwrap_or("*").to_string();
        let verb = words.next().unwrap_or("").to_ascii_uppercase();
        let rest = words.next().unwrap_or("").to_string();
        let (verb, rest) = if verb == "UID" {
            let (sub, args) = rest.split_once(' ').unwrap_or((&rest, ""));
            (
                format!("UID {}", sub.to_ascii_uppercase()),
                args.to_string(),
            )
        } else {
            (verb, rest)
        };
        let step = match verb.as_str() {
            "UID FETCH" if rest.contains("RFC822.SIZE") => "UID FETCH sizes".to_string(),
            "UID FETCH" => "UID FETCH bodies".to_string(),
            v => v.to_string(),
        };
        let times = seen.iter().filter(|s| **s == step).count();
        seen.push(step.clone());
        let step = if times > 0 {
            format!("{step} {}", times + 1)
        } else {
            step
        };
        let no = format!("{tag} NO scripted failure\r\n");
        let bad = format!("{tag} BAD scripted failure\r\n");
        match gate(&s.plan, &step, &mut write, (&no, &bad)).await? {
            Gate::Close => return Ok(()),
            Gate::Answered => continue,
            Gate::Healthy => {}
        }
        if verb == "AUTHENTICATE" {
            // SASL PLAIN without an initial response: a continuation, then the client's
            // credentials on a line of their own — a step that can fail too.
            write.write_all(b"+ \r\n").await?;
            if lines.next_line().await?.is_none() {
                return Ok(());
            }
            match gate(&s.plan, "AUTHENTICATE response", &mut write, (&no, &bad)).await? {
                Gate::Close => return Ok(()),
                Gate::Answered => continue,
                Gate::Healthy => {}
            }
            write
                .write_all(format!("{tag} OK [CAPABILITY IMAP4rev1] logged in\r\n").as_bytes())
                .await?;
            continue;
        }
        let mut close = false;
        let reply: Vec<u8> = {
            let mut messages = s.messages.lock().expect("lock");
            let uids: Vec<u32> = messages.iter().map(|m| m.0).collect();
            let mut r = Vec::new();
            match verb.as_str() {
                "CAPABILITY" => {
                    r.extend_from_slice(capabilities.as_bytes());
                }
                "LOGIN" | "NOOP" => {}
                "SELECT" | "EXAMINE" => {
                    let next = uids.iter().max().copied().unwrap_or(2) + 1;
                    r.extend_from_slice(
                        format!(
                            "* {} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 7] UIDs valid\r\n* OK [UIDNEXT {next}] next\r\n",
                            messages.len()
                        )
                        .as_bytes(),
                    );
                }
                "UID FETCH" => {
                    let (set, items) = rest.split_once(' ').unwrap_or((&rest, ""));
                    for uid in uid_set(set, &uids) {
                        let n = uids.iter().position(|u| *u == uid).unwrap_or(0) + 1;
                        let body = &messages[n - 1].1;
                        if items.contains("RFC822.SIZE") {
                            r.extend_from_slice(
                                format!("* {n} FETCH (UID {uid} RFC822.SIZE {})\r\n", body.len())
                                    .as_bytes(),
                            );
                        } else if let Some((origin, len)) = partial(items) {
                            // A range (`BODY.PEEK[]<origin.len>`), answered with its origin
                            // as RFC 3501 says: `BODY[]<origin>`.
                            let from = origin.min(body.len());
                            let part = &body[from..(from + len).min(body.len())];
                            r.extend_from_slice(
                                format!(
                                    "* {n} FETCH (UID {uid} BODY[]<{origin}> {{{}}}\r\n",
                                    part.len()
                                )
                                .as_bytes(),
                            );
                            r.extend_from_slice(part);
                            r.extend_from_slice(b")\r\n");
                        } else {
                            r.extend_from_slice(
                                format!("* {n} FETCH (UID {uid} BODY[] {{{}}}\r\n", body.len())
                                    .as_bytes(),
                            );
                            r.extend_from_slice(body);
                            r.extend_from_slice(b")\r\n");
                        }
                    }
                }
                "UID STORE" => {
                    let (set, items) = rest.split_once(' ').unwrap_or((&rest, ""));
                    if items.contains("\\Deleted") {
                        for uid in uid_set(set, &uids) {
                            if let Some(m) = messages.iter_mut().find(|m| m.0 == uid) {
                                m.2 = true;
                            }
                        }
                    }
                }
                "EXPUNGE" => {
                    // Highest sequence number first, so each stays valid as they go.
                    for n in (1..=messages.len()).rev() {
                        if messages[n - 1].2 {
                            messages.remove(n - 1);
                            r.extend_from_slice(format!("* {n} EXPUNGE\r\n").as_bytes());
                        }
                    }
                }
                "LOGOUT" => {
                    r.extend_from_slice(b"* BYE logging out\r\n");
                    close = true;
                }
                _ => {
                    r.extend_from_slice(format!("{tag} BAD unknown command\r\n").as_bytes());
                }
            }
            if !r.ends_with(format!("{tag} BAD unknown command\r\n").as_bytes()) {
                r.extend_from_slice(format!("{tag} OK {verb} completed\r\n").as_bytes());
            }
            r
        };
        write.write_all(&reply).await?;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn imap_message(i: usize) -> Vec<u8> {
    format!(
        "From: a@example.com\r\nTo: me@local.test\r\nSubject: imap {i}\r\nMessage-ID: <imap{i}@fault.test>\r\n\r\nline {i}\r\n(parenthesised) {{3}}\r\n{}\r\n",
        "i".repeat(3000)
    )
    .into_bytes()
}

fn imap_transport(port: u16) -> String {
    format!(
        "[[transport]]\nname = \"mail\"\naddress = \"me@imap.test\"\n[transport.inbound]\nkind = \"imap\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nallow_plaintext_auth = true\nusername = \"u\"\npassword_command = \"echo pw\"\nafter_download = \"delete\"\n"
    )
}

async fn imap_case(step: Option<&str>, fault: Fault, auth_plain: bool) -> Vec<String> {
    let messages: Vec<Vec<u8>> = (1..=2).map(imap_message).collect();
    let server = Arc::new(ImapServer {
        plan: Mutex::new(Plan {
            step: step.map(str::to_string),
            fault,
            steps: Vec::new(),
        }),
        auth_plain,
        messages: Mutex::new(
            messages
                .iter()
                .enumerate()
                .map(|(i, m)| (i as u32 + 1, m.clone(), false))
                .collect(),
        ),
    });
    let s2 = Arc::clone(&server);
    let (port, task) = listen(move |tcp| imap_serve(tcp, Arc::clone(&s2))).await;
    let case = Case::new();
    let session = case.logon(&imap_transport(port)).await;

    let started = std::time::Instant::now();
    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD).await;
    let took = started.elapsed();
    let error = error_of(&report, "mail");
    let name = step.unwrap_or("(none)");
    note("IMAP", name, fault, &error);
    assert_eq!(
        case.healthy_delivered(),
        1,
        "IMAP {name} {fault:?}: the dir transport moved its mail in the same flush"
    );
    assert_eq!(error_of(&report, "local"), None);
    let steps = server.plan.lock().expect("lock").steps.clone();
    if let Some(step) = step {
        if fault == Fault::Stall && step != "LOGOUT" {
            // Bounded by the spooler's timeout (1 s), not the server's hanging up (5 s).
            assert!(
                took < STALL,
                "IMAP {step} stall: the flush took {took:?}, the server gave up first"
            );
            let e = error.as_deref().unwrap_or_default();
            assert!(
                e.contains("1s"),
                "IMAP {step} stall: reported as a timeout: {e}"
            );
        }
        let got = inbox(&session).await;
        if error.is_none() {
            assert_eq!(
                got.len(),
                messages.len(),
                "IMAP {step} {fault:?}: no error, yet not everything was stored"
            );
        }
        let mut ids = BTreeMap::new();
        for body in &got {
            assert!(
                messages.contains(body),
                "IMAP {step} {fault:?}: a stored message is not one the server sent"
            );
            *ids.entry(message_id(body)).or_insert(0) += 1;
        }
        assert!(ids.values().all(|n| *n == 1), "{step} {fault:?}: {ids:?}");

        // The next good flush: each message exactly once, the server emptied.
        let report = flush(&session, FlushFlags::DOWNLOAD).await;
        assert_eq!(
            error_of(&report, "mail"),
            None,
            "IMAP {step} {fault:?}: the good flush"
        );
        let mut got = inbox(&session).await;
        got.sort();
        let mut want = messages.clone();
        want.sort();
        assert_eq!(
            got, want,
            "IMAP {step} {fault:?}: each message exactly once after the good flush"
        );
        assert!(
            server.messages.lock().expect("lock").is_empty(),
            "IMAP {step} {fault:?}: deleted on the server after storing"
        );
    } else {
        assert_eq!(error, None, "the healthy session");
        assert_eq!(inbox(&session).await.len(), messages.len());
    }
    session.logoff().await;
    task.abort();
    steps
}

async fn imap_matrix(fault: Fault) {
    let steps = imap_case(None, fault, false).await;
    assert!(steps.len() >= 8, "a healthy session's steps: {steps:?}");
    for step in &steps {
        imap_case(Some(step), fault, false).await;
    }
    eprintln!("fault: IMAP {fault:?}: {} steps: {steps:?}", steps.len());
    // The same session logging in with AUTHENTICATE PLAIN: its two steps (the command and
    // the credentials after the `+`) fail in turn too; the rest of the session is as above.
    let steps = imap_case(None, fault, true).await;
    let auth: Vec<&String> = steps
        .iter()
        .filter(|s| s.starts_with("AUTHENTICATE"))
        .collect();
    assert_eq!(
        auth,
        ["AUTHENTICATE", "AUTHENTICATE response"],
        "a healthy AUTHENTICATE PLAIN session's steps: {steps:?}"
    );
    assert!(!steps.iter().any(|s| s == "LOGIN"), "{steps:?}");
    for step in auth {
        imap_case(Some(step), fault, true).await;
    }
}

#[tokio::test]
async fn imap_drop_at_each_step() {
    imap_matrix(Fault::Drop).await;
}

#[tokio::test]
async fn imap_no_at_each_step() {
    imap_matrix(Fault::Temporary).await;
}

#[tokio::test]
async fn imap_bad_at_each_step() {
    imap_matrix(Fault::Permanent).await;
}

#[tokio::test]
async fn imap_garbage_at_each_step() {
    imap_matrix(Fault::Garbage).await;
}

#[tokio::test]
async fn imap_stall_at_each_step() {
    imap_matrix(Fault::Stall).await;
}

/// Found by the fuzz target `imap_responses`: imap-proto 0.17 panics on a byte that is not
/// UTF-8 right after a response code (`* OK [UNSEEN 1]\xff`). A server that sends one is at
/// fault: the flush reports it for that transport, the spooler goes on, the `dir` transport
/// delivers, nothing is stored half.
#[tokio::test]
async fn imap_a_response_that_panics_the_parser_is_an_error() {
    async fn serve(stream: tokio::net::TcpStream) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"* OK [CAPABILITY IMAP4rev1] hostile IMAP ready\r\n")
            .await?;
        while let Some(line) = lines.next_line().await? {
            let tag = line.split(' ').next().unwrap_or("*").to_string();
            let verb = line.split(' ').nth(1).unwrap_or("").to_ascii_uppercase();
            let mut r = Vec::new();
            match verb.as_str() {
                "CAPABILITY" => r.extend_from_slice(b"* CAPABILITY IMAP4rev1\r\n"),
                "SELECT" => r.extend_from_slice(
                    b"* 1 EXISTS\r\n* OK [UNSEEN 1]\xff first unseen\r\n* OK [UIDVALIDITY 7] ok\r\n",
                ),
                _ => {}
            }
            r.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            write.write_all(&r).await?;
        }
        Ok(())
    }
    let (port, task) = listen(serve).await;
    let case = Case::new();
    let session = case.logon(&imap_transport(port)).await;
    let report = flush(&session, FlushFlags::UPLOAD | FlushFlags::DOWNLOAD).await;
    let error = error_of(&report, "mail");
    note("IMAP", "SELECT", Fault::Garbage, &error);
    let e = error.expect("an error for the hostile server");
    assert!(e.contains("the IMAP parser cannot take"), "{e}");
    assert_eq!(case.healthy_delivered(), 1, "the dir transport delivered");
    assert!(inbox(&session).await.is_empty());
    session.logoff().await;
    task.abort();
}

/// The same parser panic on the IDLE path (`idle_wait`, the daemon's IDLE watcher): in the
/// answer to EXAMINE, and pushed during the IDLE. An error the watcher reconnects after, not a
/// panic that ends it; the session is gone then ("not connected" next time, no panic).
#[tokio::test]
async fn imap_idle_a_response_that_panics_the_parser_is_an_error() {
    use mapispool::profile::{AfterDownload, Credential, ImapConfig, Security};
    use mapispool::transport::imap::ImapInbound;
    // `in_idle`: the hostile bytes come as a push during IDLE, else in the EXAMINE answer.
    async fn serve(stream: tokio::net::TcpStream, in_idle: bool) -> std::io::Result<()> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        write
            .write_all(b"* OK [CAPABILITY IMAP4rev1 IDLE] hostile IMAP ready\r\n")
            .await?;
        let hostile = b"* OK [UNSEEN 1]\xff first unseen\r\n";
        while let Some(line) = lines.next_line().await? {
            let tag = line.split(' ').next().unwrap_or("*").to_string();
            let verb = line.split(' ').nth(1).unwrap_or("").to_ascii_uppercase();
            let mut r = Vec::new();
            match verb.as_str() {
                "CAPABILITY" => r.extend_from_slice(b"* CAPABILITY IMAP4rev1 IDLE\r\n"),
                "EXAMINE" => {
                    r.extend_from_slice(b"* 1 EXISTS\r\n");
                    if !in_idle {
                        r.extend_from_slice(hostile);
                    }
                    r.extend_from_slice(b"* OK [UIDVALIDITY 7] ok\r\n");
                }
                "IDLE" => {
                    write.write_all(b"+ idling\r\n").await?;
                    write.write_all(hostile).await?;
                    continue;
                }
                _ => {}
            }
            r.extend_from_slice(format!("{tag} OK done\r\n").as_bytes());
            write.write_all(&r).await?;
        }
        Ok(())
    }
    for in_idle in [false, true] {
        let (port, task) = listen(move |tcp| serve(tcp, in_idle)).await;
        let config = ImapConfig {
            host: "127.0.0.1".into(),
            port,
            security: Security::None,
            username: Some("u".into()),
            credential: Some(Credential::Command("echo pw".into())),
            auth: None,
            folder: "INBOX".into(),
            after_download: AfterDownload::Seen,
            idle: true,
            ca_file: None,
            insecure_skip_verify: false,
            allow_plaintext_auth: true,
        };
        let mut imap = ImapInbound::new(&config, "mail", "me@imap.test", false);
        imap.set_timeout(Duration::from_secs(1));
        imap.connect().await.expect("connect");
        let e = tokio::time::timeout(STALL, imap.idle_wait(Duration::from_secs(3)))
            .await
            .expect("the IDLE ends")
            .expect_err("an error for the hostile server");
        note(
            "IMAP",
            if in_idle { "IDLE" } else { "EXAMINE" },
            Fault::Garbage,
            &Some(e.message.clone()),
        );
        assert!(e.message.contains("the IMAP parser cannot take"), "{e}");
        let again = imap
            .idle_wait(Duration::from_secs(1))
            .await
            .expect_err("no session");
        assert!(again.message.contains("not connected"), "{again}");
        task.abort();
    }
}
