//! Status objects (`IMAPIStatus`): what `OpenEntry` on a status row's `PR_ENTRYID` gives. A
//! part of the session, as MAPI's status objects belong to an `IMAPISession`.
//! Every method checks `PR_RESOURCE_METHODS` first: a method whose bit is absent is
//! `MAPI_E_NO_SUPPORT`, as MAPI requires.

use mapi::constants::{
    STATUS_CHANGE_PASSWORD, STATUS_FLUSH_QUEUES, STATUS_SETTINGS_DIALOG, STATUS_VALIDATE_STATE,
};
use mapi::tag::PR_RESOURCE_METHODS;
use mapi::{EntryId, MapiError, MapiResult, Row};

use super::{Backend, Session};
use crate::flush::{FlushFlags, FlushReport};
use crate::status::StatusKind;
use crate::transport::probe::TransportCheck;

/// An open status object. Its properties come from the session's status table (a live mirror
/// of the daemon's when there is one); its methods run where the spooler runs.
#[derive(Clone)]
pub struct Status {
    session: Session,
    kind: StatusKind,
}

impl Status {
    pub(crate) fn new(session: Session, kind: StatusKind) -> Status {
        Status { session, kind }
    }

    pub fn kind(&self) -> &StatusKind {
        &self.kind
    }

    pub fn entry_id(&self) -> EntryId {
        self.kind.entry_id()
    }

    /// `IMAPIProp::GetProps` with every property: the object's status row as it is now.
    pub fn props(&self) -> Row {
        self.session.board().row(&self.kind).unwrap_or_default()
    }

    /// `PR_RESOURCE_METHODS`.
    pub fn methods(&self) -> i32 {
        self.session
            .board()
            .long(&self.kind, PR_RESOURCE_METHODS)
            .unwrap_or(0)
    }

    fn require(&self, bit: i32, method: &str) -> MapiResult<()> {
        if self.methods() & bit == 0 {
            return Err(MapiError::no_support(format!(
                "{} has no {method} (its PR_RESOURCE_METHODS lacks it){}",
                self.describe(),
                // Only a transport can be flushed through the spooler by naming it.
                if method == "FlushQueues" && matches!(self.kind, StatusKind::Transport(_)) {
                    "; flush it through the spooler's status object, naming its entry ID as the target"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    fn describe(&self) -> String {
        match &self.kind {
            StatusKind::Subsystem => "the MAPI subsystem".to_string(),
            StatusKind::Spooler => "the spooler".to_string(),
            StatusKind::Store => "the message store".to_string(),
            StatusKind::Transport(name) => format!("transport \"{name}\""),
        }
    }

    /// `IMAPIStatus::ValidateState`: see [`crate::spooler::Spooler::validate_state`].
    pub async fn validate_state(&self, flags: u32) -> MapiResult<()> {
        self.validate_state_checks(flags).await.map(|_| ())
    }

    /// [`Status::validate_state`], returning each transport's check step by step (none for
    /// `FORCE_XP_CONNECT`/`FORCE_XP_DISCONNECT`, which check nothing), for a caller that shows
    /// them, as `mapispool validate` does.
    pub async fn validate_state_checks(&self, flags: u32) -> MapiResult<Vec<TransportCheck>> {
        self.require(STATUS_VALIDATE_STATE, "ValidateState")?;
        match self.session.backend() {
            Backend::Local(spooler) => spooler.validate_state(&self.kind, flags).await,
            Backend::Remote { client, .. } => client.validate(&self.entry_id(), flags).await,
        }
    }

    /// `IMAPIStatus::SettingsDialog`: no object here offers a dialog, so this is always
    /// `MAPI_E_NO_SUPPORT`; settings live in the profile file.
    pub fn settings_dialog(&self, _flags: u32) -> MapiResult<()> {
        self.require(STATUS_SETTINGS_DIALOG, "SettingsDialog")?;
        Err(MapiError::no_support("settings live in the profile file"))
    }

    /// `IMAPIStatus::ChangePassword`: passwords live with their `password_command` or secrets
    /// file, so no object offers this and it is `MAPI_E_NO_SUPPORT`.
    pub fn change_password(&self, _old: &str, _new: &str, _flags: u32) -> MapiResult<()> {
        self.require(STATUS_CHANGE_PASSWORD, "ChangePassword")?;
        Err(MapiError::no_support(
            "passwords live with the transport's credential source",
        ))
    }

    /// `IMAPIStatus::FlushQueues`.
    ///
    /// On the spooler: every transport, or the one `target` names, synchronously unless
    /// `FLUSH_ASYNC_OK`. On a transport (only when its `PR_RESOURCE_METHODS` has
    /// `STATUS_FLUSH_QUEUES`, else `MAPI_E_NO_SUPPORT`): that transport; `target` must be
    /// `None` there (`MAPI_E_INVALID_PARAMETER`), and `FLUSH_ASYNC_OK` is ignored because only
    /// the spooler runs flushes asynchronously.
    pub async fn flush_queues(
        &self,
        target: Option<&EntryId>,
        flags: FlushFlags,
    ) -> MapiResult<FlushReport> {
        self.require(STATUS_FLUSH_QUEUES, "FlushQueues")?;
        let spooler = match self.session.backend() {
            Backend::Local(spooler) => spooler,
            // The daemon's own status object makes the same checks and does the work.
            Backend::Remote { client, .. } => {
                return client.flush(&self.entry_id(), target, flags).await;
            }
        };
        match &self.kind {
            StatusKind::Spooler => spooler.flush_queues(target, flags).await,
            StatusKind::Transport(_) => {
                if target.is_some() {
                    return Err(MapiError::invalid_parameter(
                        "a transport's FlushQueues takes no target transport; only the spooler's does",
                    ));
                }
                let flags = mapi_flags_without_async(flags);
                spooler
                    .flush_queues(Some(&self.kind.entry_id()), flags)
                    .await
            }
            // No other object has the bit, so `require` has already answered.
            _ => Err(MapiError::no_support(format!(
                "{} has no FlushQueues",
                self.describe()
            ))),
        }
    }
}

fn mapi_flags_without_async(flags: FlushFlags) -> FlushFlags {
    FlushFlags(flags.0 & !FlushFlags::ASYNC_OK.0)
}
