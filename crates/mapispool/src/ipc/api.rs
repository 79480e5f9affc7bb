//! The local API's messages: the request and answer bodies both ends speak (the daemon's
//! server and the session's client), apart from either end.

use serde::{Deserialize, Serialize};

use super::wire::{WireRow, row_from_wire};

#[derive(Serialize, Deserialize)]
pub(crate) struct Rows {
    pub rows: Vec<WireRow>,
}

/// One status-row change on the events stream.
#[derive(Serialize, Deserialize)]
pub(crate) struct Event {
    pub event: u32,
    pub row: WireRow,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FlushRequest {
    pub on: String,
    pub target: Option<String>,
    pub flags: u32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FlushMessageRequest {
    pub entry_id: String,
    pub flags: u32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct FlushGroupRequest {
    pub group: String,
    pub flags: u32,
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ValidateRequest {
    pub on: String,
    pub flags: u32,
}

/// The header that carries a submission's envelope.
pub(crate) const SUBMISSION_HEADER: &str = "x-mapispool-submission";

/// The body of `POST /v1/abort`, `/v1/resubmit` and `/v1/delete`: one message.
#[derive(Serialize, Deserialize)]
pub(crate) struct AbortRequest {
    pub entry_id: String,
}

/// The answer of `GET /v1/entry-ids/{prefix}?limit=N`: the first entry IDs of messages that
/// start with the prefix (at most N), and how many there are in all.
#[derive(Serialize, Deserialize)]
pub(crate) struct EntryIds {
    pub entry_ids: Vec<String>,
    pub total: u64,
}

pub(crate) fn rows_from(rows: &Rows) -> Vec<mapi::Row> {
    rows.rows.iter().map(row_from_wire).collect()
}
