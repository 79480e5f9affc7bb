//! `mapispool submit`, `abort` and `show`: putting messages into the queue, taking them out,
//! and reading one.

use std::io::Write;

use anyhow::{Context, Result};
use mapi::FileTime;
use mapispool::{Session, Submission, SubmitSession};
use serde_json::json;

use crate::cli::{AbortArgs, ShowArgs, SubmitArgs};
use crate::exit::{BadInput, Exit};

/// Queues a message from stdin or `--file`; it is durable when this prints its entry ID.
pub async fn run(session: SubmitSession, args: &SubmitArgs, quiet: bool) -> Result<Exit> {
    let deferred_until = match &args.defer_until {
        Some(text) => Some(
            crate::when::parse(text, FileTime::now().unix_seconds())
                .map_err(|e| BadInput(format!("--defer-until: {e}")))?,
        ),
        None => None,
    };
    // Checked here too, so a typo is a usage error before anything is read.
    mapispool::session::dsn_request(args.notify.as_deref(), args.ret.as_deref())
        .map_err(|e| BadInput(format!("--notify/--ret: {}", e.cause)))?;
    let submission = Submission {
        from: args.from.clone(),
        recipients: args.recipients.clone(),
        recipients_from_headers: args.from_headers,
        transport: args.transport.clone(),
        deferred_until,
        delete_after_submit: args.delete_after_submit,
        dsn_notify: args.notify.clone(),
        dsn_ret: args.ret.clone(),
        sender_name: None,
    };
    let record = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| BadInput(format!("cannot read {}: {e}", path.display())))?;
            session.submit(submission, ReadInPlace(file)).await?
        }
        None => {
            session
                .submit(submission, ReadInPlace(std::io::stdin()))
                .await?
        }
    };
    session.logoff().await;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "entry_id": record.entry_id().to_string(),
                "subject": record.subject,
                "transport": record.transport,
                "size": record.size,
            }))?
        );
    } else if !quiet {
        outln!("{}", record.entry_id());
    }
    Ok(Exit::Done)
}

/// A blocking reader read in place, on the runtime's own thread, for a one-shot command
/// (`submit`, `sendmail`) whose runtime has that one thread and nothing to do but wait for this
/// input: tokio's stdin and files hand every read to a blocking-pool thread instead, which costs
/// a thread start and two thread switches per read for no gain here. Never for a runtime that
/// serves other work while the input trickles in.
pub(crate) struct ReadInPlace<R>(pub R);

impl<R: std::io::Read + Unpin> tokio::io::AsyncRead for ReadInPlace<R> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let reader = &mut self.get_mut().0;
        let dst = buf.initialize_unfilled();
        loop {
            match reader.read(dst) {
                Ok(n) => {
                    buf.advance(n);
                    return std::task::Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return std::task::Poll::Ready(Err(e)),
            }
        }
    }
}

/// Takes a message out of the queue (`AbortSubmit`).
pub async fn abort(session: &Session, args: &AbortArgs, quiet: bool) -> Result<Exit> {
    let id = crate::ids::message(session, &args.entry_id, "ENTRYID").await?;
    session.abort_submit(&id).await?;
    if args.json {
        outln!("{}", json!({ "entry_id": id.to_string(), "aborted": true }));
    } else if !quiet {
        outln!("{id}: taken out of the queue (it stays in the Outbox, unsent)");
    }
    Ok(Exit::Done)
}

/// Queues again a message `abort` took out of the queue.
pub async fn resubmit(session: &Session, args: &AbortArgs, quiet: bool) -> Result<Exit> {
    let id = crate::ids::message(session, &args.entry_id, "ENTRYID").await?;
    session.resubmit(&id).await?;
    if args.json {
        outln!(
            "{}",
            json!({ "entry_id": id.to_string(), "resubmitted": true })
        );
    } else if !quiet {
        outln!("{id}: queued again (it goes at the next flush or schedule)");
    }
    Ok(Exit::Done)
}

/// Moves a message that is not queued to Deleted Items.
pub async fn delete(session: &Session, args: &AbortArgs, quiet: bool) -> Result<Exit> {
    let id = crate::ids::message(session, &args.entry_id, "ENTRYID").await?;
    session.delete_message(&id).await?;
    if args.json {
        outln!("{}", json!({ "entry_id": id.to_string(), "deleted": true }));
    } else if !quiet {
        outln!("{id}: moved to Deleted Items");
    }
    Ok(Exit::Done)
}

/// Prints a message's raw text.
pub async fn show(session: &Session, args: &ShowArgs) -> Result<Exit> {
    let id = crate::ids::message(session, &args.entry_id, "ENTRYID").await?;
    let body = session.message_body(&id).await?;
    std::io::stdout()
        .write_all(&body)
        .context("cannot write to stdout")?;
    Ok(Exit::Done)
}
