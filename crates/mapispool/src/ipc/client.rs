//! The client side of the local API: what a `Session` uses when a spooler daemon runs.
//! One short HTTP/1 connection per call over the Unix socket (cheap locally, and nothing to
//! keep alive), plus one long-lived connection for status events.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use mapi::{EntryId, MapiCode, MapiError, MapiResult, Row};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::io::AsyncRead;
use tokio::net::UnixStream;

use super::api::{
    AbortRequest, EntryIds, Event, FlushGroupRequest, FlushMessageRequest, FlushRequest, Rows,
    SUBMISSION_HEADER, ValidateRequest, rows_from,
};
use super::wire::{WireError, encode_batch_frame, row_from_wire};
use super::{API_VERSION, DaemonState, current_uid, daemon_state};
use crate::flush::{FlushFlags, FlushReport};
use crate::status::StatusBoard;
use crate::submission::Submission;

type ReqBody = BoxBody<Bytes, std::io::Error>;

/// Refuses a recorded socket that is not this user's: the lock file names where to connect,
/// and a socket someone else made would receive our messages.
fn check_socket_is_ours(socket: &Path) -> MapiResult<()> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.uid() != current_uid() => Err(MapiError::no_access(format!(
            "the spooler socket {} belongs to another user; not connecting",
            socket.display()
        ))),
        // Missing: `connect_to` waits for it, then says the daemon does not answer.
        _ => Ok(()),
    }
}

/// A live stream of the daemon's status-row changes (see [`Client::subscribe`]).
pub struct Events(hyper::Response<hyper::body::Incoming>);

/// A connection point to a running spooler daemon.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

fn unreachable(socket: &Path, e: impl std::fmt::Display) -> MapiError {
    MapiError::network_error(format!(
        "cannot reach the spooler at {}: {e}",
        socket.display()
    ))
}

impl Client {
    /// Connects to the daemon serving the store at `store`, found through the lock beside the
    /// store (see [`crate::ipc`]), so every process with the profile finds it whatever its
    /// environment: `Ok(None)` when none runs; an error when one holds the store but does not
    /// answer (the caller must not then open the store behind its back), or answers but is not
    /// a mapispool spooler of this API version, or refuses us.
    pub async fn for_store(store: &Path) -> MapiResult<Option<Client>> {
        let mut waited = 0;
        loop {
            match daemon_state(store) {
                DaemonState::None => return Ok(None),
                // Whether a daemon serves the store is unknown: opening it ourselves could
                // work behind one's back.
                DaemonState::Unknown(why) => {
                    return Err(MapiError::no_access(format!(
                        "{why}; cannot tell whether a spooler daemon serves this store"
                    )));
                }
                DaemonState::Running {
                    socket: Some(socket),
                    ..
                } => {
                    check_socket_is_ours(&socket)?;
                    return Client::connect_to(&socket).await;
                }
                // Just starting: it writes its socket right after taking the lock.
                DaemonState::Running { socket: None, pid } if waited >= 50 => {
                    return Err(MapiError::network_error(format!(
                        "a spooler daemon ({}) holds the store {} but never said where it listens; stop it and start it again",
                        pid.map_or_else(|| "unknown pid".into(), |p| format!("pid {p}")),
                        store.display()
                    )));
                }
                DaemonState::Running { socket: None, .. } => {
                    waited += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Connects to `socket` of a daemon known to hold its store's lock: one that does not listen
    /// yet is starting, so it is given a moment before that is an error.
    async fn connect_to(socket: &Path) -> MapiResult<Option<Client>> {
        let mut attempt = 0;
        loop {
            match UnixStream::connect(socket).await {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    return Err(MapiError::no_access(format!(
                        "a spooler runs at {} but this user may not use it: {e}",
                        socket.display()
                    )));
                }
                // Starting up, or its accept queue is full: give it a moment.
                Err(_) if attempt < 50 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(MapiError::network_error(format!(
                        "a spooler daemon serves this store but does not answer on {}: {e}; stop it and start it again",
                        socket.display()
                    )));
                }
            }
        }
        let client = Client {
            socket: socket.to_path_buf(),
        };
        let hello: Value = client.call(Method::GET, "/v1/hello", None::<&()>).await?;
        match hello.get("api").and_then(Value::as_u64) {
            Some(v) if v == u64::from(API_VERSION) => Ok(Some(client)),
            other => Err(MapiError::new(
                MapiCode::Version,
                format!(
                    "the spooler at {} speaks API {other:?}, this client {API_VERSION}; restart the spooler with this version",
                    socket.display()
                ),
            )),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: ReqBody,
        header: Option<(&str, String)>,
    ) -> MapiResult<hyper::Response<hyper::body::Incoming>> {
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(&self.socket, e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&self.socket, e))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "mapispool");
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let request = request
            .body(body)
            .map_err(|e| MapiError::call_failed(format!("cannot build the request: {e}")))?;
        sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&self.socket, e))
    }

    /// Reads a whole answer; an error status becomes the MAPI error the daemon sent.
    async fn answer(&self, response: hyper::Response<hyper::body::Incoming>) -> MapiResult<Bytes> {
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&self.socket, e))?
            .to_bytes();
        if status == StatusCode::OK {
            return Ok(bytes);
        }
        match serde_json::from_slice::<WireError>(&bytes) {
            Ok(e) => Err(e.into()),
            Err(_) => Err(MapiError::call_failed(format!(
                "the spooler answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            ))),
        }
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> MapiResult<T> {
        let body = match body {
            Some(b) => serde_json::to_vec(b)
                .map_err(|e| MapiError::call_failed(format!("cannot encode the request: {e}")))?,
            None => Vec::new(),
        };
        let body = Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed();
        let response = self
            .send(
                method,
                path,
                body,
                Some(("content-type", "application/json".to_string())),
            )
            .await?;
        let bytes = self.answer(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            MapiError::call_failed(format!(
                "the spooler's answer to {path} is not understood: {e}"
            ))
        })
    }

    pub async fn status_rows(&self) -> MapiResult<Vec<Row>> {
        let rows: Rows = self.call(Method::GET, "/v1/status", None::<&()>).await?;
        Ok(rows_from(&rows))
    }

    /// Subscribes to the daemon's status-row changes. Once this returns, every change is
    /// delivered: the daemon advises its table before it answers.
    pub async fn subscribe(&self) -> MapiResult<Events> {
        let response = self
            .send(
                Method::GET,
                "/v1/events",
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
                None,
            )
            .await?;
        if response.status() != StatusCode::OK {
            self.answer(response).await?;
            return Err(MapiError::call_failed(
                "the spooler refused the event stream",
            ));
        }
        Ok(Events(response))
    }

    /// Keeps `board` a live mirror of the daemon's status table, starting from `events` (taken
    /// before `board` was filled, so nothing falls between): applies every row change, and
    /// after a reload (the stream ends) subscribes and fetches the table again. Ends when the
    /// daemon is gone.
    pub async fn mirror(self, board: StatusBoard, mut events: Events) {
        loop {
            let mut body = events.0.into_body();
            let mut pending = Vec::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                pending.extend_from_slice(data);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(event) = serde_json::from_slice::<Event>(&line)
                        && !event.row.is_empty()
                    {
                        board.replace(row_from_wire(&event.row));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            events = match self.subscribe().await {
                Ok(e) => e,
                Err(_) => return,
            };
            if let Ok(rows) = self.status_rows().await {
                for row in rows {
                    board.replace(row);
                }
            }
        }
    }

    pub async fn flush(
        &self,
        on: &EntryId,
        target: Option<&EntryId>,
        flags: FlushFlags,
    ) -> MapiResult<FlushReport> {
        let request = FlushRequest {
            on: on.to_string(),
            target: target.map(EntryId::to_string),
            flags: flags.0,
        };
        self.call(Method::POST, "/v1/flush", Some(&request)).await
    }

    pub async fn flush_message(&self, id: &EntryId, flags: FlushFlags) -> MapiResult<FlushReport> {
        let request = FlushMessageRequest {
            entry_id: id.to_string(),
            flags: flags.0,
        };
        self.call(Method::POST, "/v1/flush-message", Some(&request))
            .await
    }

    pub async fn flush_group(&self, group: &str, flags: FlushFlags) -> MapiResult<FlushReport> {
        let request = FlushGroupRequest {
            group: group.to_string(),
            flags: flags.0,
        };
        self.call(Method::POST, "/v1/flush-group", Some(&request))
            .await
    }

    /// `ValidateState` in the daemon; the transports' checks it made.
    pub async fn validate(
        &self,
        on: &EntryId,
        flags: u32,
    ) -> MapiResult<Vec<crate::transport::probe::TransportCheck>> {
        #[derive(serde::Deserialize)]
        struct Reply {
            #[serde(default)]
            checks: Vec<crate::transport::probe::TransportCheck>,
        }
        let request = ValidateRequest {
            on: on.to_string(),
            flags,
        };
        let reply: Reply = self
            .call(Method::POST, "/v1/validate", Some(&request))
            .await?;
        Ok(reply.checks)
    }

    /// Streams a message to the daemon; returns once the daemon has it durably.
    pub async fn submit(
        &self,
        submission: &Submission,
        body: impl AsyncRead + Send + Sync + Unpin + 'static,
    ) -> MapiResult<Value> {
        let header = serde_json::to_string(submission)
            .map_err(|e| MapiError::call_failed(format!("cannot encode the envelope: {e}")))?;
        let stream = tokio_util::io::ReaderStream::new(body).map_ok(Frame::data);
        let body = BodyExt::boxed(StreamBody::new(stream));
        let response = self
            .send(
                Method::POST,
                "/v1/submit",
                body,
                Some((SUBMISSION_HEADER, header)),
            )
            .await?;
        let bytes = self.answer(response).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            MapiError::call_failed(format!("the spooler's answer is not understood: {e}"))
        })
    }

    /// Sends several messages in one `/v1/submit-batch` request; returns the daemon's answer
    /// for each, in order, once every accepted one is durable.
    pub async fn submit_batch(&self, items: &[(Submission, &[u8])]) -> MapiResult<Vec<Value>> {
        let mut body = Vec::with_capacity(items.iter().map(|(_, m)| m.len() + 64).sum());
        for (submission, message) in items {
            let envelope = serde_json::to_vec(submission)
                .map_err(|e| MapiError::call_failed(format!("cannot encode the envelope: {e}")))?;
            encode_batch_frame(&mut body, &envelope, message);
        }
        let body = Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed();
        let response = self
            .send(Method::POST, "/v1/submit-batch", body, None)
            .await?;
        let bytes = self.answer(response).await?;
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            MapiError::call_failed(format!("the spooler's answer is not understood: {e}"))
        })?;
        match answer.get("results").and_then(Value::as_array) {
            Some(results) if results.len() == items.len() => Ok(results.clone()),
            _ => Err(MapiError::call_failed(
                "the spooler did not answer for every message of the batch",
            )),
        }
    }

    pub async fn cluster_rows(&self) -> MapiResult<Vec<Row>> {
        let rows: Rows = self.call(Method::GET, "/v1/cluster", None::<&()>).await?;
        Ok(rows_from(&rows))
    }

    pub async fn queue_rows(&self) -> MapiResult<Vec<Row>> {
        let rows: Rows = self.call(Method::GET, "/v1/queue", None::<&()>).await?;
        Ok(rows_from(&rows))
    }

    /// The queue's rows that `restriction` (in the `--where` text form) matches, chosen by
    /// the daemon.
    pub async fn queue_rows_where(&self, restriction: &str) -> MapiResult<Vec<Row>> {
        let path = format!("/v1/queue?where={}", percent_encode(restriction));
        let rows: Rows = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(rows_from(&rows))
    }

    pub async fn queue_recipient_rows(&self) -> MapiResult<Vec<Row>> {
        let rows: Rows = self
            .call(Method::GET, "/v1/queue/recipients", None::<&()>)
            .await?;
        Ok(rows_from(&rows))
    }

    /// [`crate::Session::message_entry_ids`], answered by the daemon.
    pub async fn message_entry_ids(
        &self,
        prefix: &str,
        limit: u32,
    ) -> MapiResult<(Vec<EntryId>, u64)> {
        let path = format!("/v1/entry-ids/{}?limit={limit}", percent_encode(prefix));
        let answer: EntryIds = self.call(Method::GET, &path, None::<&()>).await?;
        let ids = answer
            .entry_ids
            .iter()
            .map(|id| {
                id.parse::<EntryId>().map_err(|e| {
                    MapiError::call_failed(format!("the daemon sent a bad entry ID: {}", e.cause))
                })
            })
            .collect::<MapiResult<Vec<_>>>()?;
        Ok((ids, answer.total))
    }

    pub async fn folder_rows(&self, folder: &str) -> MapiResult<Vec<Row>> {
        let rows: Rows = self
            .call(Method::GET, &format!("/v1/folders/{folder}"), None::<&()>)
            .await?;
        Ok(rows_from(&rows))
    }

    pub async fn resubmit(&self, id: &EntryId) -> MapiResult<()> {
        let request = AbortRequest {
            entry_id: id.to_string(),
        };
        let _: Value = self
            .call(Method::POST, "/v1/resubmit", Some(&request))
            .await?;
        Ok(())
    }

    pub async fn delete_message(&self, id: &EntryId) -> MapiResult<()> {
        let request = AbortRequest {
            entry_id: id.to_string(),
        };
        let _: Value = self
            .call(Method::POST, "/v1/delete", Some(&request))
            .await?;
        Ok(())
    }

    pub async fn abort(&self, id: &EntryId) -> MapiResult<()> {
        let request = AbortRequest {
            entry_id: id.to_string(),
        };
        let _: Value = self.call(Method::POST, "/v1/abort", Some(&request)).await?;
        Ok(())
    }

    pub async fn message(&self, id: &EntryId) -> MapiResult<Vec<u8>> {
        let response = self
            .send(
                Method::GET,
                &format!("/v1/messages/{id}"),
                Full::new(Bytes::new())
                    .map_err(|never| match never {})
                    .boxed(),
                None,
            )
            .await?;
        Ok(self.answer(response).await?.to_vec())
    }
}

/// `text` for a URL's query: everything but RFC 3986's unreserved characters as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
