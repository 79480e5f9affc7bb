//! What a submission is, shared by the session and the local API's client and server: the
//! envelope a caller gives ([`Submission`]) and what `submit` answers ([`Submitted`]).

use mapi::{EntryId, MapiError, MapiResult};
use serde::{Deserialize, Serialize};

/// How a message is submitted: what the envelope is, beyond what its headers say.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Submission {
    /// The envelope sender (SMTP `MAIL FROM`): an address, or `""` (also `"<>"`) for the null
    /// sender; `None` takes the address of the transport it leaves by (the account that
    /// authenticates), never the `From:` header's. It also chooses the transport, as the
    /// `From:` address does without it.
    pub from: Option<String>,
    /// Envelope recipients; empty takes `To:`, `Cc:` and `Bcc:` from the headers. Each takes
    /// its recipient type (`PR_DISPLAY_TO`, `_CC`, `_BCC`) from the header naming it; one no
    /// header names is a blind (`MAPI_BCC`) recipient.
    pub recipients: Vec<String>,
    /// Also take the header recipients when `recipients` is given (sendmail's `-t`).
    pub recipients_from_headers: bool,
    /// The transport to leave by; `None` routes by sender, then profile order.
    pub transport: Option<String>,
    /// `PR_DEFERRED_DELIVERY_TIME`: not before this time (FILETIME ticks on the wire).
    #[serde(with = "opt_filetime")]
    pub deferred_until: Option<mapi::FileTime>,
    /// `PR_DELETE_AFTER_SUBMIT`: delete instead of keeping a copy in Sent Items.
    pub delete_after_submit: bool,
    /// Delivery status notifications to ask the server for (RFC 3461 `NOTIFY=`, sent only to
    /// servers that offer DSN): `NEVER`, or some of `SUCCESS`, `FAILURE`, `DELAY`
    /// comma-separated (any case). `None`: the server's default (failures only).
    /// `Return-Receipt-To:` or `Disposition-Notification-To:` headers are something else (the
    /// recipient's client answers those) and are not read for this.
    #[serde(default)]
    pub dsn_notify: Option<String>,
    /// RFC 3461 `RET=`: how much of the message a notification returns, `FULL` or `HDRS`.
    #[serde(default)]
    pub dsn_ret: Option<String>,
    /// The sender's display name for the `From:` header `submit` writes when the message has
    /// none (sendmail's `-F`); RFC 2047-encoded when not ASCII. Unused when it has one. The
    /// transport's `display_name` when `None` and `from` is not given.
    #[serde(default)]
    pub sender_name: Option<String>,
}

/// `dsn_notify` and `dsn_ret` of a [`Submission`], upper case and checked.
///
/// Errors: `MAPI_E_INVALID_PARAMETER` naming the bad value.
pub fn dsn_request(
    notify: Option<&str>,
    ret: Option<&str>,
) -> MapiResult<(Option<String>, Option<String>)> {
    let notify = match notify {
        None => None,
        Some(text) => {
            let words: Vec<String> = text
                .split(',')
                .map(|w| w.trim().to_ascii_uppercase())
                .collect();
            let known = |w: &str| matches!(w, "SUCCESS" | "FAILURE" | "DELAY");
            let ok = if words.iter().any(|w| w == "NEVER") {
                words.len() == 1
            } else {
                words.iter().all(|w| known(w))
            };
            if !ok {
                return Err(MapiError::invalid_parameter(format!(
                    "delivery notification {text:?}: use NEVER, or some of SUCCESS, FAILURE and DELAY separated by commas"
                )));
            }
            let mut words = words;
            words.dedup();
            Some(words.join(","))
        }
    };
    let ret = match ret.map(|r| r.trim().to_ascii_uppercase()) {
        None => None,
        Some(r) if r == "FULL" || r == "HDRS" => Some(r),
        Some(r) => {
            return Err(MapiError::invalid_parameter(format!(
                "delivery notification return {r:?}: use FULL (the whole message) or HDRS (its headers)"
            )));
        }
    };
    Ok((notify, ret))
}

/// What `submit` answers: the queued message's entry ID and what it was filed as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub entry_id: EntryId,
    pub subject: String,
    /// The transport it will leave by.
    pub transport: Option<String>,
    pub size: u64,
}

impl Submitted {
    pub fn entry_id(&self) -> EntryId {
        self.entry_id.clone()
    }
}

/// `FileTime` as FILETIME ticks in JSON.
mod opt_filetime {
    use mapi::FileTime;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<FileTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&t.0),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FileTime>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(FileTime))
    }
}
