//! A scripted in-process IMAP server that can misbehave at every step of a download: leave a
//! UID out of its FETCH answer (and still say OK), answer without the UID or with one that does
//! not parse, announce a huge literal, lie about sizes, answer `NO [TRYCREATE]` to a move into
//! a folder that does not exist, hang up at any command. Enough of IMAP4rev1 for our client:
//! greeting, CAPABILITY, LOGIN, SELECT, UID FETCH (sizes, whole bodies, ranges), UID STORE,
//! EXPUNGE / UID EXPUNGE, UID MOVE, UID COPY, CREATE, LOGOUT. Used by imap.rs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// The server's state and its misbehaviour, shared with the test.
#[derive(Default)]
pub struct Imap {
    /// INBOX: (UID, message, \Deleted), UIDs ascending.
    pub messages: Vec<(u32, Vec<u8>, bool)>,
    pub next_uid: u32,
    /// Folders besides INBOX.
    pub folders: BTreeSet<String>,
    /// What other folders hold (moved or copied there).
    pub moved: Vec<(String, Vec<u8>)>,
    /// Messages that left INBOX (expunged or moved), in order.
    pub removed: Vec<Vec<u8>>,
    /// UID → how many more FETCH answers (of the body) leave it out, with a tagged OK.
    pub omit: BTreeMap<u32, u32>,
    /// UID → how many more body answers carry no UID item.
    pub no_uid: BTreeMap<u32, u32>,
    /// UID → how many more body answers carry a UID that does not parse (`UID 7x`).
    pub bad_uid: BTreeMap<u32, u32>,
    /// UID → how many more whole-body answers announce `{500000000}` and then hang up.
    pub huge_literal: BTreeMap<u32, u32>,
    /// UID → the RFC822.SIZE the listing gives instead of the real one.
    pub lie_size: BTreeMap<u32, u64>,
    /// CREATE is refused.
    pub refuse_create: bool,
    /// How many more UID STOREs are answered `NO`.
    pub refuse_store: u32,
    /// A UID STORE that arrives while a UID FETCH of bodies is being answered is answered in
    /// the middle of it, after the FETCH's first response (as a server running the two side
    /// by side would): the STORE's tagged reply comes between FETCH answers.
    pub store_midway: bool,
    /// Messages flagged `\Seen` by a STORE answered OK, in order.
    pub flagged: Vec<Vec<u8>>,
    /// Each session hangs up without an answer at its command number N (1 is the first).
    pub drop_at: Option<usize>,
    /// Answers to UID FETCH go out this many bytes at a time with this pause between: a slow
    /// but steady server.
    pub pace: Option<(usize, std::time::Duration)>,
    /// Every command line, for checks.
    pub seen: Vec<String>,
}

impl Imap {
    pub fn add(&mut self, body: Vec<u8>) -> u32 {
        self.next_uid = self.next_uid.max(1);
        let uid = self.next_uid;
        self.next_uid += 1;
        self.messages.push((uid, body, false));
        uid
    }
}

fn take(map: &mut BTreeMap<u32, u32>, uid: u32) -> bool {
    match map.get_mut(&uid) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
}

/// Starts the server on a free port of 127.0.0.1.
pub async fn start(state: Arc<Mutex<Imap>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let _ = serve(stream, state).await;
            });
        }
    });
    port
}

/// The UIDs of `set` among `have`; `n:*` above every UID still means the highest (RFC 3501).
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

/// `BODY.PEEK[]<origin.len>`: (origin, len).
fn partial(items: &str) -> Option<(usize, usize)> {
    let (_, rest) = items.split_once("[]<")?;
    let (range, _) = rest.split_once('>')?;
    let (origin, len) = range.split_once('.')?;
    Some((origin.parse().ok()?, len.parse().ok()?))
}

fn mailbox_name(arg: &str) -> String {
    arg.trim().trim_matches('"').to_string()
}

async fn serve(stream: tokio::net::TcpStream, state: Arc<Mutex<Imap>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"* OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] scripted IMAP ready\r\n")
        .await?;
    let mut commands = 0usize;
    // `store_midway`: a command read while a FETCH answer was half out, and that answer's rest,
    // written after the command's own reply.
    let mut pushed: Option<String> = None;
    let mut tail: Option<Vec<u8>> = None;
    loop {
        let line = match pushed.take() {
            Some(line) => line,
            None => match lines.next_line().await? {
                Some(line) => line,
                None => break,
            },
        };
        commands += 1;
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
        let mut close = false;
        // Where the first FETCH response of a body FETCH's answer ends.
        let mut first_end: Option<usize> = None;
        let reply: Vec<u8> = {
            let mut s = state.lock().expect("lock");
            s.seen.push(line.clone());
            if s.drop_at == Some(commands) {
                return Ok(());
            }
            let uids: Vec<u32> = s.messages.iter().map(|m| m.0).collect();
            let ok = format!("{tag} OK {verb} completed\r\n");
            let mut r = Vec::new();
            match verb.as_str() {
                "CAPABILITY" => {
                    r.extend_from_slice(b"* CAPABILITY IMAP4rev1 UIDPLUS MOVE\r\n");
                    r.extend_from_slice(ok.as_bytes());
                }
                "LOGIN" | "NOOP" => r.extend_from_slice(ok.as_bytes()),
                "SELECT" | "EXAMINE" => {
                    r.extend_from_slice(
                        format!(
                            "* {} EXISTS\r\n* 0 RECENT\r\n* FLAGS (\\Seen \\Deleted)\r\n* OK [UIDVALIDITY 9] UIDs valid\r\n* OK [UIDNEXT {}] next\r\n",
                            s.messages.len(),
                            s.next_uid.max(1)
                        )
                        .as_bytes(),
                    );
                    r.extend_from_slice(ok.as_bytes());
                }
                "UID FETCH" => {
                    let (set, items) = rest.split_once(' ').unwrap_or((&rest, ""));
                    for uid in uid_set(set, &uids) {
                        let n = uids.iter().position(|u| *u == uid).unwrap_or(0) + 1;
                        let body = s.messages[n - 1].1.clone();
                        if items.contains("RFC822.SIZE") {
                            let size = s.lie_size.get(&uid).copied().unwrap_or(body.len() as u64);
                            r.extend_from_slice(
                                format!("* {n} FETCH (UID {uid} RFC822.SIZE {size})\r\n")
                                    .as_bytes(),
                            );
                            continue;
                        }
                        if take(&mut s.omit, uid) {
                            continue;
                        }
                        let uid_item = if take(&mut s.no_uid, uid) {
                            String::new()
                        } else if take(&mut s.bad_uid, uid) {
                            format!("UID {uid}x ")
                        } else {
                            format!("UID {uid} ")
                        };
                        let (section, part) = match partial(items) {
                            Some((origin, len)) => {
                                let from = origin.min(body.len());
                                (
                                    format!("BODY[]<{origin}>"),
                                    body[from..(from + len).min(body.len())].to_vec(),
                                )
                            }
                            None => {
                                if take(&mut s.huge_literal, uid) {
                                    r.extend_from_slice(
                                        format!("* {n} FETCH ({uid_item}BODY[] {{500000000}}\r\n")
                                            .as_bytes(),
                                    );
                                    r.extend_from_slice(&body[..body.len().min(100)]);
                                    close = true;
                                    break;
                                }
                                ("BODY[]".to_string(), body)
                            }
                        };
                        r.extend_from_slice(
                            format!("* {n} FETCH ({uid_item}{section} {{{}}}\r\n", part.len())
                                .as_bytes(),
                        );
                        r.extend_from_slice(&part);
                        r.extend_from_slice(b")\r\n");
                        first_end.get_or_insert(r.len());
                    }
                    if !close {
                        r.extend_from_slice(ok.as_bytes());
                    }
                }
                "UID STORE" if s.refuse_store > 0 => {
                    s.refuse_store -= 1;
                    r.extend_from_slice(format!("{tag} NO scripted: flags refused\r\n").as_bytes());
                }
                "UID STORE" => {
                    let (set, items) = rest.split_once(' ').unwrap_or((&rest, ""));
                    if items.contains("\\Seen") {
                        for uid in uid_set(set, &uids) {
                            if let Some(m) = s.messages.iter().find(|m| m.0 == uid) {
                                let body = m.1.clone();
                                s.flagged.push(body);
                            }
                        }
                    }
                    if items.contains("\\Deleted") {
                        for uid in uid_set(set, &uids) {
                            if let Some(m) = s.messages.iter_mut().find(|m| m.0 == uid) {
                                m.2 = true;
                            }
                        }
                    }
                    r.extend_from_slice(ok.as_bytes());
                }
                "EXPUNGE" | "UID EXPUNGE" => {
                    let only: Option<Vec<u32>> =
                        (verb == "UID EXPUNGE").then(|| uid_set(&rest, &uids));
                    for n in (1..=s.messages.len()).rev() {
                        let (uid, _, deleted) = &s.messages[n - 1];
                        if *deleted && only.as_ref().is_none_or(|o| o.contains(uid)) {
                            let (_, body, _) = s.messages.remove(n - 1);
                            s.removed.push(body);
                            r.extend_from_slice(format!("* {n} EXPUNGE\r\n").as_bytes());
                        }
                    }
                    r.extend_from_slice(ok.as_bytes());
                }
                "UID MOVE" | "UID COPY" => {
                    let (set, folder) = rest.split_once(' ').unwrap_or((&rest, ""));
                    let folder = mailbox_name(folder);
                    if !s.folders.contains(&folder) {
                        r.extend_from_slice(
                            format!("{tag} NO [TRYCREATE] Mailbox doesn't exist: {folder}\r\n")
                                .as_bytes(),
                        );
                    } else {
                        for uid in uid_set(set, &uids) {
                            let n = s.messages.iter().position(|m| m.0 == uid).unwrap_or(0);
                            let body = s.messages[n].1.clone();
                            s.moved.push((folder.clone(), body.clone()));
                            if verb == "UID MOVE" {
                                s.messages.remove(n);
                                s.removed.push(body);
                                r.extend_from_slice(format!("* {} EXPUNGE\r\n", n + 1).as_bytes());
                            }
                        }
                        r.extend_from_slice(ok.as_bytes());
                    }
                }
                "CREATE" => {
                    if s.refuse_create {
                        r.extend_from_slice(
                            format!("{tag} NO [NOPERM] scripted: no folders for you\r\n")
                                .as_bytes(),
                        );
                    } else {
                        s.folders.insert(mailbox_name(&rest));
                        r.extend_from_slice(ok.as_bytes());
                    }
                }
                "LOGOUT" => {
                    r.extend_from_slice(b"* BYE logging out\r\n");
                    r.extend_from_slice(ok.as_bytes());
                    close = true;
                }
                _ => r.extend_from_slice(format!("{tag} BAD unknown command\r\n").as_bytes()),
            }
            r
        };
        let (pace, midway) = {
            let s = state.lock().expect("lock");
            (s.pace, s.store_midway)
        };
        if let (true, Some(at), false) = (midway && verb == "UID FETCH", first_end, close) {
            // The first FETCH response out; a STORE sent behind this FETCH is answered before
            // the rest of it.
            write.write_all(&reply[..at]).await?;
            let next =
                tokio::time::timeout(std::time::Duration::from_millis(300), lines.next_line());
            if let Ok(Ok(Some(next))) = next.await {
                let store = next.to_ascii_uppercase().contains(" UID STORE ");
                pushed = Some(next);
                if store {
                    tail = Some(reply[at..].to_vec());
                    continue;
                }
            }
            write.write_all(&reply[at..]).await?;
            continue;
        }
        match pace {
            Some((bytes, pause)) if verb == "UID FETCH" => {
                for chunk in reply.chunks(bytes) {
                    write.write_all(chunk).await?;
                    tokio::time::sleep(pause).await;
                }
            }
            _ => write.write_all(&reply).await?,
        }
        if let Some(rest) = tail.take() {
            write.write_all(&rest).await?;
        }
        if close {
            return Ok(());
        }
    }
    Ok(())
}
