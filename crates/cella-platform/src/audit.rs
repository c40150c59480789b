//! The audit trail: one append-only record per state change, written in the same
//! transaction as the change, so the trail and the state never disagree.

use cella_store::{Record, WriteTx, seq_key};
use cella_types::UserName;
use serde::{Deserialize, Serialize};

use crate::{PlatformError, now_ms};

/// One audited action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the trail.
    pub seq: u64,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who acted (`node` for the platform's own actions).
    pub user: String,
    /// What they did (`register_function`, `approve`, `task_finished`, …).
    pub action: String,
    /// The object's id or name.
    pub object: String,
}

impl Record for AuditEntry {
    const TABLE: &'static str = "audit";
    fn key(&self) -> String {
        seq_key(self.seq)
    }
}

/// The user name recorded for the platform's own actions.
pub(crate) const NODE_ACTOR: &str = "node";

/// Appends an entry for `user` doing `action` to `object`, inside the caller's
/// transaction.
pub(crate) fn audit(
    tx: &mut WriteTx<'_>,
    user: &UserName,
    action: &str,
    object: &str,
) -> Result<(), PlatformError> {
    audit_as(tx, user.as_str(), action, object)
}

/// As [`audit`], with a free-form actor such as [`NODE_ACTOR`].
pub(crate) fn audit_as(
    tx: &mut WriteTx<'_>,
    user: &str,
    action: &str,
    object: &str,
) -> Result<(), PlatformError> {
    let seq = tx.next_seq(AuditEntry::TABLE)?;
    tx.put(&AuditEntry {
        seq,
        at_ms: now_ms(),
        user: user.to_owned(),
        action: action.to_owned(),
        object: object.to_owned(),
    })?;
    Ok(())
}
