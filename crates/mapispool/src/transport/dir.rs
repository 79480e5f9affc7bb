//! The directory transport (`kind = "dir"`), the embedded default: a post-office directory on
//! this machine that several profiles share, so mail moves with no server at all.
//!
//! Layout of a post office:
//! ```text
//! <root>/tmp/                   staging: a message is written and fsynced here first
//! <root>/<mailbox>/new/<file>   one file per delivered message, one mailbox per address
//! ```
//! Delivery is atomic per recipient: the staged file is hard-linked into each mailbox (a link
//! appears whole or not at all) and the mailbox directory is fsynced before the recipient counts
//! as delivered. A mailbox exists once a profile with that address has logged on; an address
//! without one is unknown in this post office, a permanent failure, as an SMTP server's 550 is.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mapi::constants::{MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN, MAPI_REASON_TRANSFER_IMPOSSIBLE};
use tokio::fs;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use super::{
    ChunkSource, DownloadSummary, Envelope, InboundSink, RecipientResult, TransportError,
    TransportErrorKind,
};
use crate::message::{HeaderSummary, MAX_HEADER_BYTES, header_block};

/// The directory name of an address's mailbox: the address in lower case, with every byte
/// outside a safe set written as `%XX`, so no address can name a path outside the post office.
pub fn mailbox_name(address: &str) -> String {
    let mut name = String::with_capacity(address.len());
    for b in address.to_lowercase().bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'@' | b'-' | b'_' | b'+' | b'=' => name.push(b as char),
            b'.' if !name.is_empty() => name.push('.'),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    name
}

/// A name no other delivery on this machine uses: time, process, and a counter.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{nanos}.{}.{n}.eml", std::process::id())
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> TransportError {
    TransportError::new(
        TransportErrorKind::Temporary,
        format!("{what} {}: {e}", path.display()),
    )
}

/// fsync a directory, so the names created in it survive a power cut.
async fn sync_dir(path: &Path) -> std::io::Result<()> {
    fs::File::open(path).await?.sync_all().await
}

/// The outbound side: delivers into the post office's mailboxes.
#[derive(Debug)]
pub struct DirOutbound {
    root: PathBuf,
}

impl DirOutbound {
    pub fn new(root: impl Into<PathBuf>) -> DirOutbound {
        DirOutbound { root: root.into() }
    }

    /// Makes sure the post office and its staging directory exist.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        let tmp = self.root.join("tmp");
        crate::private::create_dir_all_async(&tmp)
            .await
            .map_err(|e| io_error("cannot open the post office at", &self.root, &e))
    }

    /// Delivers one message to every envelope recipient, with a result per recipient.
    ///
    /// A failure to stage the message at all is a whole-message `TransportError` (temporary);
    /// a recipient without a mailbox fails permanently; a failure to link into one mailbox
    /// defers that recipient only.
    pub async fn send(
        &mut self,
        envelope: &Envelope,
        body: impl ChunkSource,
    ) -> Result<Vec<RecipientResult>, TransportError> {
        // Bcc never reaches the post office (wire.rs): a recipient's copy is what SMTP sends.
        let mut body = super::wire::Outgoing::prepare(body).await?;
        let name = unique_name();
        let staged = self.root.join("tmp").join(&name);
        let result = self
            .deliver_staged(envelope, &mut body, &staged, &name)
            .await;
        // The staged copy is only a source for the links; losing it after a crash loses nothing.
        let _ = fs::remove_file(&staged).await;
        result
    }

    async fn deliver_staged(
        &mut self,
        envelope: &Envelope,
        body: &mut impl ChunkSource,
        staged: &Path,
        name: &str,
    ) -> Result<Vec<RecipientResult>, TransportError> {
        // 0600 whatever the umask; the mailbox links share this inode, so its mode.
        let file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(crate::private::FILE_MODE)
            .open(staged)
            .await
            .map_err(|e| io_error("cannot stage the message in", staged, &e))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        while let Some(chunk) = body.next_chunk().await.map_err(mapi_failure)? {
            out.write_all(&chunk)
                .await
                .map_err(|e| io_error("cannot write the message to", staged, &e))?;
        }
        out.flush()
            .await
            .map_err(|e| io_error("cannot write the message to", staged, &e))?;
        out.into_inner()
            .sync_all()
            .await
            .map_err(|e| io_error("cannot fsync", staged, &e))?;

        let mut results = Vec::with_capacity(envelope.recipients.len());
        let mut touched: Vec<PathBuf> = Vec::new();
        for rcpt in &envelope.recipients {
            let mailbox = self.root.join(mailbox_name(&rcpt.address));
            let new_dir = mailbox.join("new");
            if !fs::try_exists(&new_dir).await.unwrap_or(false) {
                results.push(RecipientResult::Failed {
                    error: format!(
                        "550 5.1.1 <{}>: no such mailbox in the post office {}",
                        rcpt.address,
                        self.root.display()
                    ),
                    reason: MAPI_REASON_TRANSFER_IMPOSSIBLE,
                    diag: MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN,
                });
                continue;
            }
            let target = new_dir.join(name);
            match fs::hard_link(staged, &target).await {
                // A second recipient with the same mailbox (an address given twice) already has it.
                Ok(()) => {
                    if !touched.contains(&new_dir) {
                        touched.push(new_dir);
                    }
                    results.push(RecipientResult::Delivered);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    results.push(RecipientResult::Delivered)
                }
                Err(e) => results.push(RecipientResult::Deferred {
                    error: format!("cannot deliver into {}: {e}", new_dir.display()),
                }),
            }
        }
        // Only an fsynced directory entry is a delivery; until then the recipient is not done.
        for dir in &touched {
            if let Err(e) = sync_dir(dir).await {
                for (rcpt, result) in envelope.recipients.iter().zip(results.iter_mut()) {
                    if self.root.join(mailbox_name(&rcpt.address)).join("new") == *dir {
                        *result = RecipientResult::Deferred {
                            error: format!("cannot fsync {}: {e}", dir.display()),
                        };
                    }
                }
            }
        }
        Ok(results)
    }

    pub async fn close(&mut self) {}
}

/// The inbound side: picks up what was delivered to the profile's own addresses.
#[derive(Debug)]
pub struct DirInbound {
    root: PathBuf,
    addresses: Vec<String>,
}

impl DirInbound {
    pub fn new(root: impl Into<PathBuf>, addresses: Vec<String>) -> DirInbound {
        DirInbound {
            root: root.into(),
            addresses,
        }
    }

    /// Creates the mailboxes of the profile's addresses, so others can deliver to them.
    pub async fn connect(&mut self) -> Result<(), TransportError> {
        for address in &self.addresses {
            let new_dir = self.root.join(mailbox_name(address)).join("new");
            crate::private::create_dir_all_async(&new_dir)
                .await
                .map_err(|e| io_error("cannot create the mailbox", &new_dir, &e))?;
        }
        Ok(())
    }

    /// Moves every waiting message into the store through `sink`, oldest first. A file is removed
    /// from the post office only after the store has it durably.
    pub async fn download(
        &mut self,
        sink: &impl InboundSink,
    ) -> Result<DownloadSummary, TransportError> {
        let mut waiting = Vec::new();
        for address in &self.addresses {
            let mailbox = mailbox_name(address);
            let new_dir = self.root.join(&mailbox).join("new");
            let mut entries = match fs::read_dir(&new_dir).await {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error("cannot list the mailbox", &new_dir, &e)),
            };
            let mut names = Vec::new();
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(|e| io_error("cannot list the mailbox", &new_dir, &e))?
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    names.push(name);
                }
            }
            // Names start with the delivery time, so this is arrival order.
            names.sort();
            waiting.extend(
                names
                    .into_iter()
                    .map(|n| (mailbox.clone(), new_dir.clone(), n)),
            );
        }

        let total = waiting.len();
        let mut summary = DownloadSummary::default();
        let mut touched: Vec<PathBuf> = Vec::new();
        let mut picked_up: Vec<PathBuf> = Vec::new();
        for (done, (mailbox, new_dir, name)) in waiting.into_iter().enumerate() {
            let path = new_dir.join(&name);
            let server_id = format!("{mailbox}/{name}");
            let stored = if sink.already_have(&server_id).await.map_err(mapi_failure)? {
                false
            } else {
                let (summary_of, size) = read_summary(&path).await?;
                let file = fs::File::open(&path)
                    .await
                    .map_err(|e| io_error("cannot read", &path, &e))?;
                sink.deliver(&server_id, &summary_of, size, file)
                    .await
                    .map_err(mapi_failure)?
            };
            if stored {
                summary.received += 1;
            } else {
                summary.skipped += 1;
            }
            picked_up.push(path);
            if !touched.contains(&new_dir) {
                touched.push(new_dir);
            }
            sink.progress(done + 1, total);
        }
        // One fsync makes every stored message durable; only then do the files go.
        sink.sync().await.map_err(mapi_failure)?;
        for path in picked_up {
            fs::remove_file(&path)
                .await
                .map_err(|e| io_error("cannot remove the delivered file", &path, &e))?;
        }
        for dir in touched {
            // A removal that is lost in a power cut only brings a message back, which the store
            // then skips as a duplicate; so a failure here is worth a log line, not an error.
            if let Err(e) = sync_dir(&dir).await {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot fsync the mailbox");
            }
        }
        Ok(summary)
    }

    pub async fn close(&mut self) {}
}

fn mapi_failure(e: mapi::MapiError) -> TransportError {
    TransportError::store("the store failed", &e)
}

/// The header summary and size of a delivered file. A file whose headers cannot be read is
/// still taken in, with an empty summary: dropping mail because it is odd would lose it.
async fn read_summary(path: &Path) -> Result<(HeaderSummary, u64), TransportError> {
    let mut file = fs::File::open(path)
        .await
        .map_err(|e| io_error("cannot read", path, &e))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| io_error("cannot read", path, &e))?
        .len();
    let mut head = Vec::new();
    (&mut file)
        .take(MAX_HEADER_BYTES as u64)
        .read_to_end(&mut head)
        .await
        .map_err(|e| io_error("cannot read", path, &e))?;
    let summary = header_block(&head)
        .and_then(|h| HeaderSummary::parse(h).ok())
        .unwrap_or_default();
    Ok((summary, size))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::AsyncRead;

    use super::*;
    use crate::transport::EnvelopeRecipient;

    /// What the sink got: server ID, subject, bytes.
    type Stored = (String, Option<String>, Vec<u8>);

    #[derive(Default)]
    struct MemorySink {
        stored: Mutex<Vec<Stored>>,
    }

    impl InboundSink for MemorySink {
        async fn already_have(&self, server_id: &str) -> mapi::MapiResult<bool> {
            Ok(self
                .stored
                .lock()
                .map(|s| s.iter().any(|(id, _, _)| id == server_id))
                .unwrap_or(false))
        }
        async fn deliver(
            &self,
            server_id: &str,
            summary: &HeaderSummary,
            _size: u64,
            mut body: impl AsyncRead + Unpin + Send,
        ) -> mapi::MapiResult<bool> {
            let mut bytes = Vec::new();
            body.read_to_end(&mut bytes)
                .await
                .map_err(|e| mapi::MapiError::disk_error(e.to_string()))?;
            if let Ok(mut s) = self.stored.lock() {
                s.push((server_id.to_string(), summary.subject.clone(), bytes));
            }
            Ok(true)
        }
        fn progress(&self, _done: usize, _total: usize) {}
    }

    fn envelope(rcpts: &[&str]) -> Envelope {
        Envelope {
            from: "a@example.com".into(),
            recipients: rcpts
                .iter()
                .enumerate()
                .map(|(i, a)| EnvelopeRecipient {
                    rowid: i as i64,
                    address: a.to_string(),
                })
                .collect(),
            size: 0,
            dsn: None,
        }
    }

    #[test]
    fn mailbox_names_stay_inside_the_post_office() {
        assert_eq!(mailbox_name("Bob@Example.com"), "bob@example.com");
        // One path segment, never "." or "..": the slash is encoded and a leading dot too.
        assert_eq!(mailbox_name("../../etc@x"), "%2E.%2F..%2Fetc@x");
        assert_eq!(mailbox_name("a/b@x"), "a%2Fb@x");
        assert!(!mailbox_name(".hidden@x").starts_with('.'));
    }

    #[tokio::test]
    async fn delivers_to_known_mailboxes_and_fails_unknown_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inbound = DirInbound::new(dir.path(), vec!["bob@example.com".into()]);
        inbound.connect().await.expect("mailboxes");
        let mut out = DirOutbound::new(dir.path());
        out.connect().await.expect("connect");
        let msg = b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n";
        let results = out
            .send(
                &envelope(&["BOB@example.com", "nobody@example.com"]),
                &msg[..],
            )
            .await
            .expect("send");
        assert_eq!(results[0], RecipientResult::Delivered);
        assert!(matches!(
            &results[1],
            RecipientResult::Failed { diag, .. } if *diag == MAPI_DIAG_MAIL_RECIPIENT_UNKNOWN
        ));

        let sink = MemorySink::default();
        let got = inbound.download(&sink).await.expect("download");
        assert_eq!(
            got,
            DownloadSummary {
                received: 1,
                skipped: 0,
                refused: Vec::new(),
            }
        );
        let first = sink.stored.lock().expect("lock")[0].clone();
        assert_eq!(first.1.as_deref(), Some("hi"));
        assert_eq!(first.2, msg);
        // Nothing is left to bring twice, and the staging area is empty.
        let again = inbound.download(&sink).await.expect("download");
        assert_eq!(again, DownloadSummary::default());
        let mut tmp = fs::read_dir(dir.path().join("tmp")).await.expect("tmp");
        assert!(tmp.next_entry().await.expect("list").is_none());
    }

    #[tokio::test]
    async fn a_file_already_stored_is_skipped_and_cleaned_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inbound = DirInbound::new(dir.path(), vec!["bob@example.com".into()]);
        inbound.connect().await.expect("mailboxes");
        let mut out = DirOutbound::new(dir.path());
        out.connect().await.expect("connect");
        out.send(&envelope(&["bob@example.com"]), &b"Subject: x\r\n\r\n"[..])
            .await
            .expect("send");
        let new_dir = dir.path().join("bob@example.com").join("new");
        let mut entries = std::fs::read_dir(&new_dir).expect("list");
        let name = entries
            .next()
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .expect("one file");
        // As after a crash between storing and removing: the store has it already.
        let sink = MemorySink::default();
        sink.stored.lock().expect("lock").push((
            format!("bob@example.com/{name}"),
            None,
            Vec::new(),
        ));
        let got = inbound.download(&sink).await.expect("download");
        assert_eq!(
            got,
            DownloadSummary {
                received: 0,
                skipped: 1,
                refused: Vec::new(),
            }
        );
        assert!(std::fs::read_dir(&new_dir).expect("list").next().is_none());
    }

    #[tokio::test]
    async fn a_broken_mailbox_defers_only_its_recipient() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut inbound = DirInbound::new(
            dir.path(),
            vec!["ok@example.com".into(), "broken@example.com".into()],
        );
        inbound.connect().await.expect("mailboxes");
        // A file where the mailbox's new/ directory should be: linking into it fails.
        let broken = dir.path().join("broken@example.com").join("new");
        std::fs::remove_dir(&broken).expect("rmdir");
        std::fs::write(&broken, b"not a directory").expect("file");
        let mut out = DirOutbound::new(dir.path());
        out.connect().await.expect("connect");
        let results = out
            .send(
                &envelope(&["ok@example.com", "broken@example.com"]),
                &b"Subject: x\r\n\r\n"[..],
            )
            .await
            .expect("send");
        assert_eq!(results[0], RecipientResult::Delivered);
        assert!(matches!(results[1], RecipientResult::Deferred { .. }));
    }
}
