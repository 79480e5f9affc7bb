//! The daemon's web listener (`[web] listen`): the local API's routes over TCP, plus a live
//! status page and `/metrics`.
//!
//! Access, checked before any route ([`guard`]):
//! - with `token_file` (required off loopback, see the profile): every request carries the token
//!   as `Authorization: Bearer TOKEN` or in the cookie a visit to `/?token=TOKEN` sets; otherwise
//!   401;
//! - without a token the listener is on loopback, and the `Host` must name it (`127.0.0.1:PORT`,
//!   `localhost:PORT`, `[::1]:PORT`), so a web page on another site cannot reach it through a
//!   DNS name rebound to 127.0.0.1; otherwise 403;
//! - anything but GET/HEAD is an action: it must come from the page's own origin (`Origin`
//!   equal to `http://HOST`) and carry the page's CSRF token in `x-csrf-token`; otherwise 403.
//!   GET routes only read, and an action route answers a GET with 405 (axum's method routing).
//!
//! The page (`/`, with `/app.js` and `/app.css`, embedded in the binary) reads `/web/state` and
//! follows `/web/events`: server-sent events from the status table's notifications, the ones
//! `mapispool watch` reads. Its buttons POST to the same routes the CLI uses (`/v1/flush`,
//! `/v1/validate`, `/v1/abort`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mapi::constants::{bits_text, name_of};
use mapi::{MapiError, MapiResult, PropValue, Row};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{ApiResult, EVENT_BUFFER, Shared, current, routes};
use crate::profile::WebConfig;
use crate::store::Folder;

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("app.js");
const STYLE: &str = include_str!("app.css");

/// How many Inbox messages the page lists, newest first.
const INBOX_ROWS: usize = 20;

/// The cookie a visit to `/?token=...` sets, so the page's own requests carry the token.
const TOKEN_COOKIE: &str = "mapispool_token";

/// Who may use the listener: its token (if any), the page's CSRF token, and its address.
struct Access {
    token: Option<String>,
    csrf: String,
    listen: SocketAddr,
}

/// A bound web listener, not yet serving.
pub struct Listener {
    tcp: TcpListener,
    access: Arc<Access>,
}

impl Listener {
    /// Reads the token (refusing one that others may read), makes the CSRF token, and binds
    /// `listen`.
    ///
    /// Errors: `MAPI_E_NO_ACCESS` for a token file that is missing, empty, or readable or
    /// writable by group or others, and for an address that cannot be bound.
    pub async fn bind(config: &WebConfig) -> MapiResult<Listener> {
        let token = match &config.token_file {
            Some(path) => Some(read_token(path).await?),
            None => None,
        };
        let tcp = TcpListener::bind(config.listen).await.map_err(|e| {
            MapiError::no_access(format!(
                "cannot listen on {} ([web] listen in the profile): {e}",
                config.listen
            ))
        })?;
        let listen = tcp.local_addr().unwrap_or(config.listen);
        tracing::info!(%listen, token = token.is_some(), "web listener bound");
        Ok(Listener {
            tcp,
            access: Arc::new(Access {
                token,
                csrf: random_hex().await?,
                listen,
            }),
        })
    }

    /// Serves the page and the API on the listener until the task is aborted.
    pub(crate) fn serve(self, state: Shared) -> tokio::task::JoinHandle<()> {
        let app = router(state, self.access);
        tokio::spawn(async move {
            if let Err(e) = axum::serve(self.tcp, app).await {
                tracing::error!(error = %e, "the web listener stopped");
            }
        })
    }
}

async fn read_token(path: &std::path::Path) -> MapiResult<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = tokio::fs::metadata(path).await.map_err(|e| {
        MapiError::no_access(format!(
            "cannot read the web token file {} ([web] token_file): {e}",
            path.display()
        ))
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(MapiError::no_access(format!(
            "the web token file {} has mode {mode:03o}; others could read it: chmod 600 it",
            path.display()
        )));
    }
    let text = tokio::fs::read_to_string(path).await.map_err(|e| {
        MapiError::no_access(format!(
            "cannot read the web token file {}: {e}",
            path.display()
        ))
    })?;
    let token = text.trim().to_string();
    if token.is_empty() {
        return Err(MapiError::no_access(format!(
            "the web token file {} is empty: write a long random token into it",
            path.display()
        )));
    }
    Ok(token)
}

/// 32 bytes from the kernel's random source, as hex: no crate in our tree offers a CSPRNG
/// directly, and /dev/urandom is what they would read.
async fn random_hex() -> MapiResult<String> {
    use tokio::io::AsyncReadExt;
    let mut bytes = [0u8; 32];
    let mut f = tokio::fs::File::open("/dev/urandom")
        .await
        .map_err(|e| MapiError::call_failed(format!("cannot open /dev/urandom: {e}")))?;
    f.read_exact(&mut bytes)
        .await
        .map_err(|e| MapiError::call_failed(format!("cannot read /dev/urandom: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn router(state: Shared, access: Arc<Access>) -> Router {
    routes()
        .route("/", get(page))
        .route(
            "/app.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/app.css", get(|| async { asset("text/css", STYLE) }))
        .route("/web/state", get(page_state))
        .route("/web/events", get(events))
        .layer(middleware::from_fn_with_state(access.clone(), guard))
        .with_state(state)
        .layer(axum::Extension(access))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn refuse(status: StatusCode, why: &str) -> Response {
    (status, Json(json!({ "error": why }))).into_response()
}

async fn guard(State(access): State<Arc<Access>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = header_text(headers, header::HOST).unwrap_or("");
    match &access.token {
        Some(token) => {
            let bearer = header_text(headers, header::AUTHORIZATION)
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| same(t.trim(), token));
            let cookie = headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|c| c.trim().split_once('='))
                .any(|(k, v)| k == TOKEN_COOKIE && same(v, token));
            if !bearer && !cookie {
                // `/?token=...` lets a browser in: the token moves into a cookie, out of the
                // address bar and the history.
                let offered = request
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("token=")));
                if request.method() == Method::GET
                    && request.uri().path() == "/"
                    && offered.is_some_and(|t| same(t, token))
                {
                    return (
                        StatusCode::SEE_OTHER,
                        [
                            (header::LOCATION, "/".to_string()),
                            (
                                header::SET_COOKIE,
                                format!(
                                    "{TOKEN_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
                                ),
                            ),
                        ],
                    )
                        .into_response();
                }
                return (
                    StatusCode::UNAUTHORIZED,
                    [(header::WWW_AUTHENTICATE, "Bearer")],
                    Json(json!({
                        "error": "this listener needs its token: Authorization: Bearer TOKEN, or open /?token=TOKEN once"
                    })),
                )
                    .into_response();
            }
        }
        None => {
            let port = access.listen.port();
            let ours = [
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
                access.listen.to_string(),
            ];
            if !ours.iter().any(|h| h.eq_ignore_ascii_case(host)) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    "the Host header does not name this listener",
                );
            }
        }
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let origin = header_text(headers, header::ORIGIN).unwrap_or("");
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            return refuse(
                StatusCode::FORBIDDEN,
                "actions are taken only from this listener's own page (Origin)",
            );
        }
        if !header_text(headers, "x-csrf-token").is_some_and(|t| same(t, &access.csrf)) {
            return refuse(
                StatusCode::FORBIDDEN,
                "the action lacks the page's CSRF token (x-csrf-token); reload the page",
            );
        }
    }
    next.run(request).await
}

async fn page(axum::Extension(access): axum::Extension<Arc<Access>>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        PAGE.replace("{{CSRF}}", &access.csrf),
    )
        .into_response()
}

/// A row with MAPI's names: `{PR_NAME: value}`, plus `PR_NAME_text` with the names of the bits
/// or of the value where the tag has them (`AVAILABLE|OUTBOUND_ENABLED`).
pub(crate) fn named_row(row: &Row) -> Value {
    let mut obj = serde_json::Map::new();
    for p in &row.props {
        let label = p
            .tag
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("0x{:08X}", p.tag.0));
        let value = match &p.value {
            PropValue::Long(v) => {
                if let Some(text) = bits_text(p.tag, i64::from(*v))
                    .or_else(|| name_of(p.tag, i64::from(*v)).map(str::to_string))
                {
                    obj.insert(format!("{label}_text"), json!(text));
                }
                json!(v)
            }
            PropValue::I2(v) => json!(v),
            PropValue::I8(v) | PropValue::Currency(v) => json!(v),
            PropValue::Boolean(b) => json!(b),
            PropValue::Double(x) | PropValue::AppTime(x) => json!(x),
            PropValue::String8(s) | PropValue::Unicode(s) => json!(s),
            PropValue::SysTime(t) => json!(t.to_rfc3339()),
            PropValue::Binary(b) => json!(b.iter().map(|x| format!("{x:02X}")).collect::<String>()),
            _ => continue,
        };
        obj.insert(label, value);
    }
    Value::Object(obj)
}

/// Everything the page shows at once: the status table, the outgoing queue by recipient, the
/// Inbox's newest messages, the last flushes, and sent/received per transport per minute over
/// the last hour.
async fn page_state(State(state): State<Shared>) -> ApiResult<Json<Value>> {
    let session = current(&state).await;
    let status: Vec<Value> = session.board().rows().iter().map(named_row).collect();
    let queue: Vec<Value> = session
        .outgoing_queue()
        .await?
        .iter()
        .flat_map(|q| q.recipient_rows())
        .map(|r| named_row(&r))
        .collect();
    let mut inbox = session.messages(Folder::Inbox).await?;
    inbox.sort_by_key(|m| std::cmp::Reverse(m.delivery_time.map(|t| t.0)));
    let inbox: Vec<Value> = inbox
        .iter()
        .take(INBOX_ROWS)
        .map(|m| named_row(&m.to_row()))
        .collect();
    let (flushes, hour) = match session.spooler() {
        Some(s) => (s.metrics().recent_flushes(), s.metrics().last_hour()),
        None => Default::default(),
    };
    let hour: Vec<Value> = hour
        .into_iter()
        .map(|(transport, minutes)| json!({ "transport": transport, "minutes": minutes }))
        .collect();
    Ok(Json(json!({
        "status": status,
        "queue": queue,
        "inbox": inbox,
        "flushes": flushes,
        "hour": hour,
        "now": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    })))
}

/// The status table's changes as server-sent events (`event: row`, data `{"event", "row"}`).
/// A reader that falls [`EVENT_BUFFER`] changes behind is cut off, and every stream ends when a
/// reload replaces the session; the browser's `EventSource` connects again by itself, and the
/// page reads the whole state afresh then.
async fn events(State(state): State<Shared>) -> impl IntoResponse {
    let session = current(&state).await;
    let (tx, rx) = mpsc::channel::<Event>(EVENT_BUFFER);
    let lagged = Arc::new(AtomicBool::new(false));
    let sink_lagged = Arc::clone(&lagged);
    let mut view = session.status_table();
    view.advise(Arc::new(move |n: &mapi::table::TableNotification| {
        let data = json!({ "event": n.event.value(), "row": named_row(&n.row) }).to_string();
        if let Err(mpsc::error::TrySendError::Full(_)) =
            tx.try_send(Event::default().event("row").data(data))
        {
            sink_lagged.store(true, Ordering::SeqCst);
        }
    }));
    let mut generation = state.generation.subscribe();
    let seen = *generation.borrow_and_update();
    let start = Some((rx, view, lagged, generation));
    let stream = futures_util::stream::unfold(start, move |now| async move {
        let (mut rx, view, lagged, mut generation) = now?;
        if lagged.load(Ordering::SeqCst) {
            return None;
        }
        let event = tokio::select! {
            event = rx.recv() => event?,
            // A reload replaced the session: end, and the page connects to the new one.
            _ = generation.wait_for(|g| *g != seen) => return None,
        };
        Some((
            Ok::<_, Infallible>(event),
            Some((rx, view, lagged, generation)),
        ))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
