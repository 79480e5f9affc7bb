//! The daemon: one spooler for a profile, its schedules, and the local API clients use. It
//! serves an in-process [`Session`] over the socket [`crate::ipc`] names, speaking the messages
//! of `ipc::api`; `limits.rs` bounds what one client may cost it (a connection cap, an idle
//! limit). Above `session` and `ipc`, which never import it.
//!
//! Routes (all JSON unless said; errors are `{"code", "name", "cause"}` with an HTTP status):
//! - `GET  /v1/hello` — API version, profile, pid
//! - `GET  /v1/status` — the status table's rows
//! - `GET  /v1/events` — status-row changes as JSON lines, as they happen; an empty line every
//!   [`HEARTBEAT`] when nothing changes. A subscriber that falls [`EVENT_BUFFER`] changes
//!   behind (it stopped reading) is dropped as `tokio::sync::broadcast` drops a lagging
//!   receiver: its stream gets `{"lagged":true}` and ends, and the client subscribes again and
//!   reads the table afresh ([`crate::ipc::client`] does). The daemon never holds more than that
//!   per subscriber.
//! - `POST /v1/flush` `{on, target, flags}` — `FlushQueues` on the status object `on`; the
//!   flush runs as its own task (`Spooler::start_flush`), so a client that hangs up mid-flush
//!   stops only its wait for the report, never the flush
//! - `POST /v1/flush-message` `{entry_id, flags}` — flush one queued message (`postqueue -i`)
//! - `POST /v1/flush-group` `{group, flags}` — flush a send/receive group
//! - `POST /v1/validate` `{on, flags}` — `ValidateState`
//! - `POST /v1/submit` — the raw message as the body, the envelope as a JSON header
//!   `x-mapispool-submission`; answers when the message is durable
//! - `POST /v1/submit-batch` — several messages in one body, each framed by
//!   [`encode_batch_frame`](crate::ipc::wire::encode_batch_frame) with its own envelope; answers
//!   `{"results": [...]}`, one `/v1/submit` answer or `{"error": ...}` per message in order,
//!   once every accepted one is durable (they share commits, so a batch costs about one fsync)
//! - `GET  /v1/queue`, `GET /v1/queue/recipients` (one row per recipient),
//!   `GET /v1/folders/{name}` — rows; `POST /v1/abort`, `/v1/resubmit`, `/v1/delete`
//!   `{entry_id}`
//! - `GET  /v1/cluster` — the cluster view's rows: every spooler node of the store's queue,
//!   alive or not, and the shared queue's counts (`Session::cluster_table`)
//! - `GET  /v1/messages/{entry_id}` — the raw message
//! - `GET  /metrics` — the spooler's metrics in the Prometheus text format
//!
//! Connections: at most [`limits::MAX_CONNECTIONS`] at once (more wait to be accepted), and one
//! with no request in progress and no traffic for [`limits::IDLE_TIMEOUT`] is closed.

mod limits;
pub mod web;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::IncomingStream;
use futures_util::TryStreamExt;
use mapi::restriction::Restriction;
use mapi::{EntryId, MapiCode, MapiError, MapiResult};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::{RwLock, mpsc, watch};

use crate::ipc::api::{
    AbortRequest, EntryIds, Event, FlushGroupRequest, FlushMessageRequest, FlushRequest, Rows,
    SUBMISSION_HEADER, ValidateRequest,
};
use crate::ipc::wire::{WireError, decode_batch, row_to_wire};
use crate::ipc::{
    API_VERSION, DaemonLock, canonical_store, create_private_dir, current_uid, socket_path,
};
use limits::{ConnState, LimitedListener};

use crate::flush::{FlushFlags, FlushReport};
use crate::profile::Profile;
use crate::session::Session;
use crate::store::{Folder, QueueFilter};
use crate::submission::Submission;

/// What the process running the daemon tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// SIGHUP: read the profile again; keep the old one if the new one is invalid.
    Reload,
    /// SIGTERM / SIGINT: finish what is in flight and stop.
    Shutdown,
}

pub(crate) struct ServerState {
    pub(crate) session: RwLock<Session>,
    profile_path: PathBuf,
    /// Bumped when the profile is reloaded, so event streams of the old session end and
    /// clients subscribe again.
    pub(crate) generation: watch::Sender<u64>,
}

pub(crate) type Shared = Arc<ServerState>;

/// A MAPI error as an HTTP answer.
pub(crate) struct ApiError(MapiError);

impl From<MapiError> for ApiError {
    fn from(e: MapiError) -> ApiError {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            MapiCode::InvalidParameter
            | MapiCode::InvalidEntryId
            | MapiCode::UnknownFlags
            | MapiCode::NoRecipients
            | MapiCode::CorruptData
            | MapiCode::TooComplex => StatusCode::BAD_REQUEST,
            MapiCode::NoAccess => StatusCode::FORBIDDEN,
            MapiCode::NotFound | MapiCode::UnknownEntryId | MapiCode::NotInQueue => {
                StatusCode::NOT_FOUND
            }
            MapiCode::Busy | MapiCode::UnableToAbort | MapiCode::Submitted => StatusCode::CONFLICT,
            MapiCode::NoSupport => StatusCode::NOT_IMPLEMENTED,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, Json(WireError::from(&self.0))).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// How many status changes wait for one event subscriber before it counts as lagging.
pub(crate) const EVENT_BUFFER: usize = 1024;

/// How often an idle event stream sends an empty line, so that a watcher that reads it is
/// never closed as idle.
pub(crate) const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(20);

/// The uid of the process at the other end of a connection (`SO_PEERCRED`), and the
/// connection's count of requests in progress.
#[derive(Debug, Clone)]
struct Peer {
    uid: Option<u32>,
    conn: Arc<ConnState>,
}

impl Connected<IncomingStream<'_, LimitedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Peer {
        Peer {
            uid: stream.io().get_ref().peer_cred().ok().map(|c| c.uid()),
            conn: stream.io().state(),
        }
    }
}

/// Refuses callers of another uid, even if the socket's mode were relaxed.
async fn only_our_user(
    ConnectInfo(peer): ConnectInfo<Peer>,
    request: Request,
    next: Next,
) -> Response {
    if peer.uid != Some(current_uid()) {
        tracing::warn!(uid = ?peer.uid, "refused a client of another user");
        return ApiError(MapiError::no_access(format!(
            "this spooler belongs to uid {}; uid {} may not use it",
            current_uid(),
            peer.uid
                .map(|u| u.to_string())
                .unwrap_or_else(|| "unknown".into())
        )))
        .into_response();
    }
    // A request in progress keeps its connection from counting as idle.
    let _busy = peer.conn.busy();
    next.run(request).await
}

fn router(state: Shared) -> Router {
    routes()
        .layer(middleware::from_fn(only_our_user))
        .with_state(state)
}

/// The API's routes, shared by the Unix socket and the web listener (each adds its own access
/// check).
pub(crate) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/hello", get(hello))
        .route("/v1/status", get(status))
        .route("/v1/events", get(events))
        .route("/v1/flush", post(flush))
        .route("/v1/flush-message", post(flush_message))
        .route("/v1/flush-group", post(flush_group))
        .route("/v1/validate", post(validate))
        .route("/v1/submit", post(submit))
        .route("/v1/submit-batch", post(submit_batch))
        .route("/v1/queue", get(queue))
        .route("/v1/cluster", get(cluster))
        .route("/v1/queue/recipients", get(queue_recipients))
        .route("/v1/abort", post(abort))
        .route("/v1/resubmit", post(resubmit))
        .route("/v1/delete", post(delete))
        .route("/v1/folders/{name}", get(folder))
        .route("/v1/entry-ids/{prefix}", get(entry_ids))
        .route("/v1/messages/{entry_id}", get(message))
        .route("/metrics", get(metrics))
}

pub(crate) async fn current(state: &Shared) -> Session {
    state.session.read().await.clone()
}

async fn hello(State(state): State<Shared>) -> Json<Value> {
    Json(json!({
        "api": API_VERSION,
        "profile": state.profile_path.display().to_string(),
        "pid": std::process::id(),
    }))
}

async fn status(State(state): State<Shared>) -> Json<Rows> {
    let session = current(&state).await;
    Json(Rows {
        rows: session.board().rows().iter().map(row_to_wire).collect(),
    })
}

async fn events(State(state): State<Shared>) -> Response {
    let session = current(&state).await;
    let (tx, rx) = mpsc::channel::<String>(EVENT_BUFFER);
    let lagged = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sink_lagged = Arc::clone(&lagged);
    let mut view = session.status_table();
    view.advise(Arc::new(move |n: &mapi::table::TableNotification| {
        if sink_lagged.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let event = Event {
            event: n.event.value(),
            row: row_to_wire(&n.row),
        };
        if let Ok(mut line) = serde_json::to_string(&event) {
            line.push('\n');
            if let Err(mpsc::error::TrySendError::Full(_)) = tx.try_send(line) {
                // The subscriber fell too far behind: it will be told, and dropped.
                sink_lagged.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }));
    let mut generation = state.generation.subscribe();
    let seen = *generation.borrow_and_update();
    // `None` once the stream has said it lagged.
    let start = Some((rx, view, seen));
    let stream = futures_util::stream::unfold(start, move |now| {
        let mut generation = generation.clone();
        let lagged = Arc::clone(&lagged);
        async move {
            let (mut rx, view, seen) = now?;
            // What is buffered goes first; then, if changes were lost, the end.
            let line = match rx.try_recv() {
                Ok(line) => Some(line),
                Err(_) if lagged.load(std::sync::atomic::Ordering::SeqCst) => {
                    return Some((Ok::<_, Infallible>("{\"lagged\":true}\n".to_string()), None));
                }
                Err(_) => tokio::select! {
                    line = rx.recv() => line,
                    // A reload replaced the session: end the stream; the client subscribes
                    // again.
                    _ = generation.wait_for(|g| *g != seen) => None,
                    () = tokio::time::sleep(HEARTBEAT) => Some("\n".to_string()),
                },
            }?;
            Some((Ok(line), Some((rx, view, seen))))
        }
    });
    Response::builder()
        .header("content-type", "application/x-ndjson")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn entry_id(text: &str) -> MapiResult<EntryId> {
    text.parse::<EntryId>()
}

async fn flush(
    State(state): State<Shared>,
    Json(req): Json<FlushRequest>,
) -> ApiResult<Json<FlushReport>> {
    let session = current(&state).await;
    let status = session.open_status(&entry_id(&req.on)?)?;
    let target = req.target.as_deref().map(entry_id).transpose()?;
    Ok(Json(
        status
            .flush_queues(target.as_ref(), FlushFlags(req.flags))
            .await?,
    ))
}

async fn flush_message(
    State(state): State<Shared>,
    Json(req): Json<FlushMessageRequest>,
) -> ApiResult<Json<FlushReport>> {
    let session = current(&state).await;
    Ok(Json(
        session
            .flush_message(&entry_id(&req.entry_id)?, FlushFlags(req.flags))
            .await?,
    ))
}

async fn flush_group(
    State(state): State<Shared>,
    Json(req): Json<FlushGroupRequest>,
) -> ApiResult<Json<FlushReport>> {
    let session = current(&state).await;
    Ok(Json(
        session
            .flush_group(&req.group, FlushFlags(req.flags))
            .await?,
    ))
}

async fn validate(
    State(state): State<Shared>,
    Json(req): Json<ValidateRequest>,
) -> ApiResult<Json<Value>> {
    let session = current(&state).await;
    let checks = session
        .open_status(&entry_id(&req.on)?)?
        .validate_state_checks(req.flags)
        .await?;
    Ok(Json(json!({ "ok": true, "checks": checks })))
}

async fn submit(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<Value>> {
    let submission: Submission = match headers.get(SUBMISSION_HEADER) {
        Some(h) => serde_json::from_slice(h.as_bytes()).map_err(|e| {
            MapiError::invalid_parameter(format!("bad {SUBMISSION_HEADER} header: {e}"))
        })?,
        None => Submission::default(),
    };
    let stream = body
        .into_data_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    let reader = tokio_util::io::StreamReader::new(stream);
    let session = current(&state).await;
    let record = session.submit(submission, reader).await?;
    Ok(Json(submitted_json(&record)))
}

/// The most a `/v1/submit-batch` body may hold: it is read whole. Larger messages go one by one
/// through `/v1/submit`, which streams.
pub(crate) const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

async fn submit_batch(State(state): State<Shared>, body: Body) -> ApiResult<Json<Value>> {
    let bytes = http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_BATCH_BYTES))
        .await
        .map_err(|e| {
            MapiError::invalid_parameter(format!(
                "cannot read the batch (at most {MAX_BATCH_BYTES} bytes; send larger messages one by one): {e}"
            ))
        })?
        .to_bytes();
    let frames = decode_batch(&bytes)
        .map_err(|e| MapiError::invalid_parameter(format!("bad batch: {e}")))?;
    let mut items = Vec::with_capacity(frames.len());
    for (i, (envelope, message)) in frames.into_iter().enumerate() {
        let submission = if envelope.is_empty() {
            Submission::default()
        } else {
            serde_json::from_slice(envelope).map_err(|e| {
                MapiError::invalid_parameter(format!("bad envelope of message {i}: {e}"))
            })?
        };
        items.push((submission, message));
    }
    let session = current(&state).await;
    let results: Vec<Value> = session
        .submit_batch(items)
        .await?
        .iter()
        .map(|r| match r {
            Ok(record) => submitted_json(record),
            Err(e) => json!({ "error": WireError::from(e) }),
        })
        .collect();
    Ok(Json(json!({ "results": results })))
}

fn submitted_json(record: &crate::submission::Submitted) -> Value {
    json!({
        "entry_id": record.entry_id().to_string(),
        "subject": record.subject,
        "transport": record.transport,
        "size": record.size,
    })
}

async fn cluster(State(state): State<Shared>) -> ApiResult<Json<Rows>> {
    let session = current(&state).await;
    let rows = session
        .cluster_rows()
        .await?
        .iter()
        .map(row_to_wire)
        .collect();
    Ok(Json(Rows { rows }))
}

#[derive(Deserialize)]
struct QueueQuery {
    /// A restriction in the `--where` text form: only the rows it matches are sent.
    #[serde(rename = "where")]
    where_: Option<String>,
}

async fn queue(
    State(state): State<Shared>,
    Query(query): Query<QueueQuery>,
) -> ApiResult<Json<Rows>> {
    let session = current(&state).await;
    let Some(text) = query.where_ else {
        let rows = session
            .outgoing_queue()
            .await?
            .iter()
            .map(|q| row_to_wire(&q.to_row()))
            .collect();
        return Ok(Json(Rows { rows }));
    };
    let restriction = Restriction::parse(&text).map_err(|e| {
        MapiError::new(
            MapiCode::InvalidParameter,
            format!("where is not a restriction: {e}"),
        )
    })?;
    let mut rows = Vec::new();
    for entry in session
        .outgoing_queue_matching(&QueueFilter::from_restriction(&restriction))
        .await?
    {
        let row = entry.to_row();
        if restriction.evaluate(&row)? {
            rows.push(row_to_wire(&row));
        }
    }
    Ok(Json(Rows { rows }))
}

async fn queue_recipients(State(state): State<Shared>) -> ApiResult<Json<Rows>> {
    let session = current(&state).await;
    let rows = session
        .outgoing_queue()
        .await?
        .iter()
        .flat_map(|q| q.recipient_rows())
        .map(|r| row_to_wire(&r))
        .collect();
    Ok(Json(Rows { rows }))
}

async fn resubmit(
    State(state): State<Shared>,
    Json(req): Json<AbortRequest>,
) -> ApiResult<Json<Value>> {
    let session = current(&state).await;
    session.resubmit(&entry_id(&req.entry_id)?).await?;
    Ok(Json(json!({ "resubmitted": true })))
}

async fn delete(
    State(state): State<Shared>,
    Json(req): Json<AbortRequest>,
) -> ApiResult<Json<Value>> {
    let session = current(&state).await;
    session.delete_message(&entry_id(&req.entry_id)?).await?;
    Ok(Json(json!({ "deleted": true })))
}

async fn abort(
    State(state): State<Shared>,
    Json(req): Json<AbortRequest>,
) -> ApiResult<Json<Value>> {
    let session = current(&state).await;
    session.abort_submit(&entry_id(&req.entry_id)?).await?;
    Ok(Json(json!({ "aborted": true })))
}

async fn folder(
    State(state): State<Shared>,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Rows>> {
    let folder = Folder::parse(&name)
        .ok_or_else(|| MapiError::not_found(format!("there is no folder \"{name}\"")))?;
    let session = current(&state).await;
    let rows = session
        .folder_rows(folder)
        .await?
        .iter()
        .map(row_to_wire)
        .collect();
    Ok(Json(Rows { rows }))
}

#[derive(Deserialize)]
struct EntryIdsQuery {
    /// The most entry IDs to send (the total is counted all the same).
    limit: Option<u32>,
}

async fn entry_ids(
    State(state): State<Shared>,
    UrlPath(prefix): UrlPath<String>,
    Query(query): Query<EntryIdsQuery>,
) -> ApiResult<Json<EntryIds>> {
    let session = current(&state).await;
    let (ids, total) = session
        .message_entry_ids(&prefix, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(EntryIds {
        entry_ids: ids.iter().map(EntryId::to_string).collect(),
        total,
    }))
}

async fn message(State(state): State<Shared>, UrlPath(id): UrlPath<String>) -> ApiResult<Vec<u8>> {
    let session = current(&state).await;
    Ok(session.message_body(&entry_id(&id)?).await?)
}

/// `/metrics`: the spooler's counters, and the queue and store as they are now, in the
/// Prometheus text format.
async fn metrics(State(state): State<Shared>) -> ApiResult<Response> {
    let session = current(&state).await;
    let spooler = session
        .spooler()
        .ok_or_else(|| MapiError::no_support("this session has no spooler to count"))?;
    use crate::store::Store;
    let queue = spooler.store().queue_counts().await?;
    let text = spooler
        .metrics()
        .render(&queue, session.profile().store.path());
    Ok((
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        text,
    )
        .into_response())
}

/// Runs the daemon for the profile at `profile_path` until `Control::Shutdown` (or the control
/// channel closes): takes the profile's lock, serves the API on its socket, and flushes on the
/// profile's schedules. On `Control::Reload` it reads the profile again and switches to it if
/// it is valid, keeping the old one (and logging why) if not.
///
/// `ready` is called with the socket path once clients can connect.
///
/// Errors: `MAPI_E_BUSY` if a spooler already serves this profile's store (whatever profile
/// path named it); profile and store errors
/// at start.
pub async fn run_daemon(
    profile_path: &Path,
    mut control: mpsc::Receiver<Control>,
    ready: impl FnOnce(&Path),
) -> MapiResult<()> {
    let profile_path =
        std::path::absolute(profile_path).unwrap_or_else(|_| profile_path.to_path_buf());
    let profile = load(&profile_path).await?;
    let store = crate::ipc::daemon_anchor(&profile);
    let socket = socket_path(&store);
    if let Some(dir) = socket.parent() {
        create_private_dir(dir)?;
    }
    let label = crate::ipc::store_label(&profile);
    let _lock = DaemonLock::acquire_named(&store, &socket, &label).await?;
    // Bound before the spooler starts: a web listener that cannot start stops the daemon.
    let web = match &profile.web {
        Some(config) => Some(web::Listener::bind(config).await?),
        None => None,
    };
    let session = Session::logon_local(profile).await?;

    // We hold the lock, so a socket file left here is a dead daemon's.
    let _ = std::fs::remove_file(&socket);
    let listener = UnixListener::bind(&socket)
        .map_err(|e| MapiError::no_access(format!("cannot listen on {}: {e}", socket.display())))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| {
            MapiError::no_access(format!("cannot make {} private: {e}", socket.display()))
        })?;
    }
    let (generation, _) = watch::channel(0u64);
    let state = Arc::new(ServerState {
        session: RwLock::new(session),
        profile_path: profile_path.clone(),
        generation,
    });
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    limits::raise_open_file_limit();
    let listener = LimitedListener::new(listener, limits::MAX_CONNECTIONS, limits::IDLE_TIMEOUT);
    let app = router(state.clone()).into_make_service_with_connect_info::<Peer>();
    let server = tokio::spawn(async move {
        let result = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = server_stopped.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "the local API stopped");
        }
    });
    let web = web.map(|w| w.serve(state.clone()));
    tracing::info!(socket = %socket.display(), "spooler daemon ready");
    ready(&socket);

    loop {
        let session = current(&state).await;
        let mut got = None;
        let until_told = async {
            got = control.recv().await;
        };
        match session.spooler() {
            Some(spooler) => spooler.run_schedules(until_told).await,
            // The daemon always logs on locally; without a spooler there is nothing to schedule.
            None => until_told.await,
        }
        match got {
            Some(Control::Reload) => match load(&profile_path).await {
                // The lock and the socket belong to the store: another store is another daemon.
                Ok(profile) if !same_store(&profile, &store) => tracing::error!(
                    store = %label,
                    "the reloaded profile names another store; keeping the old profile (restart the daemon to switch stores)"
                ),
                Ok(profile) => match Session::logon_local(profile).await {
                    Ok(new) => {
                        let old = std::mem::replace(&mut *state.session.write().await, new);
                        state.generation.send_modify(|g| *g += 1);
                        old.logoff().await;
                        tracing::info!("profile reloaded");
                    }
                    Err(e) => tracing::error!(error = %e, "reload failed; keeping the old profile"),
                },
                Err(e) => {
                    tracing::error!(error = %e, "the new profile is invalid; keeping the old one")
                }
            },
            Some(Control::Shutdown) | None => break,
        }
    }
    let _ = stop_server.send(());
    if let Some(web) = web {
        // Its event streams never end on their own; nothing on it outlives the daemon.
        web.abort();
    }
    state.generation.send_modify(|g| *g += 1);
    let _ = server.await;
    current(&state).await.logoff().await;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

fn same_store(profile: &Profile, store: &Path) -> bool {
    canonical_store(&crate::ipc::daemon_anchor(profile)) == canonical_store(store)
}

/// Reads and checks the profile on a blocking thread: a SIGHUP reload must not stall the
/// runtime's workers on a slow file system.
async fn load(path: &Path) -> MapiResult<Profile> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || Profile::load(&path))
        .await
        .map_err(|e| MapiError::call_failed(format!("reading the profile stopped: {e}")))?
        .map_err(|e| MapiError::new(MapiCode::Unconfigured, e.to_string()))
}
