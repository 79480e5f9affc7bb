//! A scripted in-process SMTP server for fault tests: tokio on 127.0.0.1:0, with knobs for each
//! fault (per-recipient replies, 421 on a reused connection, a drop in DATA, a slow greeting,
//! malformed replies, garbage after STARTTLS, AUTH, a limit on recipients per transaction),
//! recording what it accepted and every byte it read (`wire`). What it advertises is `ehlo`:
//! leave out `8BITMIME`, `SMTPUTF8` or `PIPELINING` to play a server without them.

#![allow(dead_code)] // each test file uses a different part of this module

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message: sender, accepted recipients, the body as it came (dot-stuffed).
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub rcpts: Vec<String>,
    pub data: Vec<u8>,
}

#[derive(Clone)]
pub struct Knobs {
    pub greeting_delay: Duration,
    pub ehlo: Vec<String>,
    /// The RCPT reply for an address.
    pub rcpt: Arc<dyn Fn(&str) -> String + Send + Sync>,
    /// The final reply for the n-th message (0-based, over all connections).
    pub final_reply: Arc<dyn Fn(usize) -> String + Send + Sync>,
    /// Answer the first RSET or MAIL on a reused connection with 421 and hang up (once
    /// overall): a server that timed the connection out between two messages.
    pub reused_421_once: bool,
    /// Drop the connection in the middle of DATA of the n-th message (once).
    pub drop_in_data: Option<usize>,
    /// Read the whole n-th message, its `.` included, then drop the connection without a
    /// reply (once): the client cannot know whether it was taken.
    pub drop_after_dot: Option<usize>,
    /// Reply to MAIL FROM with these raw bytes.
    pub mail_reply: Option<String>,
    /// After STARTTLS's 220, send garbage instead of a TLS handshake.
    pub starttls_garbage: bool,
    /// AUTH PLAIN credentials that succeed.
    pub auth: Option<(String, String)>,
    /// The most RCPTs one transaction takes; the next get `452 4.5.3` (as Postfix's
    /// `smtpd_recipient_limit` does).
    pub max_rcpts: Option<usize>,
}

impl Default for Knobs {
    fn default() -> Self {
        Knobs {
            greeting_delay: Duration::ZERO,
            ehlo: vec![
                "PIPELINING".into(),
                "SIZE 10000000".into(),
                "8BITMIME".into(),
            ],
            rcpt: Arc::new(|_| "250 2.1.5 Ok".into()),
            final_reply: Arc::new(|_| "250 2.0.0 Ok: queued".into()),
            reused_421_once: false,
            drop_in_data: None,
            drop_after_dot: None,
            mail_reply: None,
            starttls_garbage: false,
            auth: None,
            max_rcpts: None,
        }
    }
}

#[derive(Default)]
pub struct Log {
    pub received: Vec<Received>,
    pub connections: usize,
    pub commands: Vec<String>,
    /// Every byte read from every connection, in order (connections one after another).
    pub wire: Vec<u8>,
    /// Per command line and per end of data (`.`), in order: the bytes the client had already
    /// sent behind it when it was read, before any reply to it. A client in lock-step leaves
    /// none; one that pipelines leaves the rest of its group (RFC 2920).
    pub ahead: Vec<(String, Vec<u8>)>,
    /// How many RCPT commands were answered `452 4.5.3`.
    pub too_many: usize,
    /// Connections open now, and the most that were open at once.
    pub open: usize,
    pub peak_open: usize,
    messages_started: usize,
    reused_421_done: bool,
    drop_done: bool,
    drop_after_dot_done: bool,
}

pub struct FakeSmtp {
    pub port: u16,
    pub log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSmtp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSmtp {
    pub async fn start(knobs: Knobs) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let log = Arc::new(Mutex::new(Log::default()));
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let knobs = knobs.clone();
                let log = l.clone();
                tokio::spawn(async move {
                    {
                        let mut l = log.lock().expect("log");
                        l.open += 1;
                        l.peak_open = l.peak_open.max(l.open);
                    }
                    let _ = serve(tcp, knobs, log.clone()).await;
                    log.lock().expect("log").open -= 1;
                });
            }
        });
        FakeSmtp { port, log, task }
    }

    pub fn received(&self) -> Vec<Received> {
        self.log.lock().expect("log").received.clone()
    }
    pub fn connections(&self) -> usize {
        self.log.lock().expect("log").connections
    }
    pub fn peak_open(&self) -> usize {
        self.log.lock().expect("log").peak_open
    }
    pub fn commands(&self) -> Vec<String> {
        self.log.lock().expect("log").commands.clone()
    }
    pub fn wire(&self) -> Vec<u8> {
        self.log.lock().expect("log").wire.clone()
    }
    pub fn ahead(&self) -> Vec<(String, Vec<u8>)> {
        self.log.lock().expect("log").ahead.clone()
    }
}

async fn serve(tcp: TcpStream, knobs: Knobs, log: Arc<Mutex<Log>>) -> std::io::Result<()> {
    let mut io = BufReader::new(tcp);
    let reused_marker = {
        let mut l = log.lock().expect("log");
        l.connections += 1;
        l.connections
    };
    let _ = reused_marker;
    tokio::time::sleep(knobs.greeting_delay).await;
    io.get_mut().write_all(b"220 fake.test ESMTP\r\n").await?;
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut transactions_here = 0usize;
    let mut line;
    loop {
        let mut raw = Vec::new();
        if io.read_until(b'\n', &mut raw).await? == 0 {
            return Ok(());
        }
        // SMTPUTF8 commands carry UTF-8; anything else 8-bit is kept as it came in `wire`.
        line = String::from_utf8_lossy(&raw).into_owned();
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        {
            let mut l = log.lock().expect("log");
            l.wire.extend_from_slice(&raw);
            let shown = if upper.starts_with("AUTH") {
                "AUTH ***".to_string()
            } else {
                cmd.clone()
            };
            l.ahead.push((shown.clone(), io.buffer().to_vec()));
            l.commands.push(shown);
        }
        let reply: String = if upper.starts_with("EHLO") {
            let mut lines = vec!["fake.test".to_string()];
            lines.extend(knobs.ehlo.iter().cloned());
            if knobs.auth.is_some() {
                lines.push("AUTH PLAIN LOGIN".into());
            }
            let n = lines.len();
            lines
                .iter()
                .enumerate()
                .map(|(i, l)| format!("250{}{l}\r\n", if i + 1 == n { ' ' } else { '-' }))
                .collect()
        } else if upper.starts_with("STARTTLS") {
            io.get_mut().write_all(b"220 2.0.0 go ahead\r\n").await?;
            if knobs.starttls_garbage {
                io.get_mut()
                    .write_all(b"this is not a TLS handshake\r\n")
                    .await?;
                let mut buf = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut io, &mut buf).await;
            }
            return Ok(());
        } else if upper.starts_with("AUTH PLAIN ") {
            let (user, pass) = knobs.auth.clone().unwrap_or_default();
            let want = b64(format!("\0{user}\0{pass}").as_bytes());
            if cmd[11..].trim() == want {
                "235 2.7.0 Authentication successful\r\n".into()
            } else {
                "535 5.7.8 Error: authentication failed: bad password\r\n".into()
            }
        } else if (upper.starts_with("RSET") || upper.starts_with("MAIL FROM:")) && {
            let mut l = log.lock().expect("log");
            let fire = knobs.reused_421_once && transactions_here > 0 && !l.reused_421_done;
            if fire {
                l.reused_421_done = true;
            }
            fire
        } {
            io.get_mut()
                .write_all(b"421 4.4.2 fake.test Error: timeout exceeded\r\n")
                .await?;
            return Ok(());
        } else if upper.starts_with("RSET") {
            from.clear();
            rcpts.clear();
            "250 2.0.0 Ok\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = cmd[10..].to_string();
            rcpts.clear();
            match &knobs.mail_reply {
                Some(raw) => raw.clone(),
                None => "250 2.1.0 Ok\r\n".into(),
            }
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..]
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            let full = knobs.max_rcpts.is_some_and(|max| rcpts.len() >= max);
            let r = if full {
                log.lock().expect("log").too_many += 1;
                "452 4.5.3 Error: too many recipients".to_string()
            } else {
                (knobs.rcpt)(&addr)
            };
            if r.starts_with('2') {
                rcpts.push(addr);
            }
            format!("{r}\r\n")
        } else if upper == "DATA" {
            if rcpts.is_empty() {
                "554 5.5.1 Error: no valid recipients\r\n".into()
            } else {
                io.get_mut()
                    .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    .await?;
                let n = {
                    let mut l = log.lock().expect("log");
                    l.messages_started += 1;
                    l.messages_started - 1
                };
                let mut data = Vec::new();
                let mut dl = Vec::new();
                loop {
                    dl.clear();
                    if io.read_until(b'\n', &mut dl).await? == 0 {
                        return Ok(());
                    }
                    log.lock().expect("log").wire.extend_from_slice(&dl);
                    if dl == b".\r\n" {
                        let mut l = log.lock().expect("log");
                        l.ahead.push((".".into(), io.buffer().to_vec()));
                        if knobs.drop_after_dot == Some(n) && !l.drop_after_dot_done {
                            l.drop_after_dot_done = true;
                            return Ok(());
                        }
                        break;
                    }
                    data.extend_from_slice(&dl);
                    let drop_now = {
                        let mut l = log.lock().expect("log");
                        let fire = knobs.drop_in_data == Some(n) && !l.drop_done;
                        if fire {
                            l.drop_done = true;
                        }
                        fire
                    };
                    if drop_now {
                        return Ok(());
                    }
                }
                transactions_here += 1;
                let r = (knobs.final_reply)(n);
                if r.starts_with('2') {
                    log.lock().expect("log").received.push(Received {
                        from: from.clone(),
                        rcpts: rcpts.clone(),
                        data,
                    });
                }
                format!("{r}\r\n")
            }
        } else if upper == "QUIT" {
            io.get_mut().write_all(b"221 2.0.0 Bye\r\n").await?;
            return Ok(());
        } else {
            "502 5.5.2 Error: command not recognized\r\n".into()
        };
        io.get_mut().write_all(reply.as_bytes()).await?;
    }
}

fn b64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(A[(n >> 18) as usize & 63] as char);
        out.push(A[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}
