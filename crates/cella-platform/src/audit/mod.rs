//! The audit trail: one append-only entry per state change, written in the same
//! transaction as the change, so the trail and the state never disagree.
//!
//! The entries form a hash chain ([`chain`], specified byte by byte in
//! `docs/formats/audit.md`): each carries the hash of the one before, so editing,
//! removing or reordering an entry breaks every link after it. The node signs the head of
//! the chain with its attested key in checkpoints ([`checkpoint`]), at an interval and on
//! shutdown, which makes the trail verifiable offline against the attestation policy.
//!
//! Stores written before the chain existed keep their old entries (table `audit`,
//! unchained) untouched; the chain starts with a [`AuditAction::Genesis`] entry that
//! records how many such legacy entries there were.

pub mod chain;
pub mod checkpoint;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use cella_store::{Record, WriteTx, seq_key};
use cella_types::{Digest, Function, Task, UserName};
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::page::{Listed, Page, PageRequest, Position};
use crate::{Platform, PlatformError, Result, now_ms, policy};

pub use chain::{ChainError, EntryBreak, GENESIS_PREV, VerifiedChain, verify_chain};
pub use checkpoint::{
    AuditCheckpoint, AuditExport, EXPORT_FORMAT, ExportItem, ExportedEntry, Link, RedactedEntry,
};

macro_rules! audit_actions {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What an audited change did. Each action has a stable name, which is what the
        /// trail records and what the chain hashes: renaming a variant never changes it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AuditAction {
            $($(#[$doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stable name recorded in the trail.
            pub const fn name(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $name,)*
                }
            }
        }
    };
}

audit_actions! {
    /// The start of the chain (its first entry).
    Genesis => "genesis",
    /// The first admin was created.
    BootstrapAdmin => "bootstrap_admin",
    /// A user logged in.
    Login => "login",
    /// A user logged out.
    Logout => "logout",
    /// An admin registered a user.
    RegisterUser => "register_user",
    /// A password was changed.
    ChangePassword => "change_password",
    /// A function was registered.
    RegisterFunction => "register_function",
    /// A function was updated.
    UpdateFunction => "update_function",
    /// A function was disabled.
    DisableFunction => "disable_function",
    /// A function was deleted.
    DeleteFunction => "delete_function",
    /// An input file was uploaded to the node.
    UploadInput => "upload_input",
    /// An input file at a URL was registered.
    RegisterInput => "register_input",
    /// An output file was registered.
    RegisterOutput => "register_output",
    /// A file was deleted.
    DeleteFile => "delete_file",
    /// A task was created.
    CreateTask => "create_task",
    /// Files were assigned to a task's slots.
    AssignData => "assign_data",
    /// A participant approved a task digest.
    ApproveTask => "approve_task",
    /// The creator invoked a task.
    InvokeTask => "invoke_task",
    /// A participant canceled a task.
    CancelTask => "cancel_task",
    /// A task's function returned and its outputs were stored.
    TaskFinished => "task_finished",
    /// A task failed (the function's fault or the node's).
    TaskFailed => "task_failed",
    /// A task that was running when the node stopped was recovered at start.
    RecoverTask => "recover_task",
    /// A worker's lease on a task expired and the task was put back.
    LeaseLost => "lease_lost",
}

impl AuditAction {
    /// The outcome an entry of this action records: the failure of a task or of its
    /// lease is [`Outcome::Failed`]; every other audited change succeeded (refused
    /// requests change no state and write no entry).
    pub const fn outcome(self) -> Outcome {
        match self {
            Self::TaskFailed | Self::LeaseLost => Outcome::Failed,
            _ => Outcome::Succeeded,
        }
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no audit action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAction(pub String);

impl FromStr for AuditAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, UnknownAction> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| UnknownAction(s.chars().take(64).collect()))
    }
}

impl Serialize for AuditAction {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for AuditAction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether the audited change succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It did what it was asked.
    Succeeded,
    /// It ended in failure (a failed task, a lost lease).
    Failed,
}

impl Outcome {
    /// Its name on the wire and in exports.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// The outcome named `name`, if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Succeeded, Self::Failed]
            .into_iter()
            .find(|o| o.name() == name)
    }

    /// The byte the chain hashes for it.
    pub const fn code(self) -> u8 {
        match self {
            Self::Succeeded => 0,
            Self::Failed => 1,
        }
    }
}

/// One entry of the chained audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the chain, from 1 (the genesis entry).
    pub seq: u64,
    /// When, milliseconds since the Unix epoch, by the node's clock.
    pub at_ms: u64,
    /// Who acted: a user name, or `node` for the platform's own actions.
    pub actor: String,
    /// What they did.
    pub action: AuditAction,
    /// The ids (or names) of the objects concerned, the main one first.
    pub objects: Vec<String>,
    /// The users the entry concerns (a task's participants, an object's owner), sorted:
    /// besides the actor and admins, they alone see it.
    pub parties: Vec<String>,
    /// The task digest involved (approved, invoked, run), where there is one.
    pub task_digest: Option<Digest>,
    /// Whether the change succeeded.
    pub outcome: Outcome,
    /// 32 random bytes hashed with the contents, so that the body hash a redacted entry
    /// shows cannot be checked against a guess of its contents.
    pub salt: Digest,
    /// The hash of the entry before ([`GENESIS_PREV`] for the first).
    pub prev_hash: Digest,
    /// This entry's hash ([`chain::entry_hash`]).
    pub hash: Digest,
}

impl Record for AuditEntry {
    const TABLE: &'static str = "audit_chain";
    fn key(&self) -> String {
        seq_key(self.seq)
    }
}

impl Listed for AuditEntry {
    fn position(&self) -> Position {
        chain_position(self.seq)
    }
}

/// The list position of entry `seq`: lists follow the chain's order, not the node's
/// clock (which can step back).
pub(crate) fn chain_position(seq: u64) -> Position {
    Position {
        created_ms: 0,
        id: seq_key(seq),
    }
}

/// A fresh salt for an entry.
fn salt() -> Result<Digest> {
    Ok(Digest::from_bytes(crate::auth::random_bytes::<32>()?))
}

/// The last entry of the chain, so an append needs one read, not a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChainHead {
    /// The last entry's sequence number.
    pub(crate) seq: u64,
    /// The last entry's hash.
    pub(crate) hash: Digest,
}

/// The one key of the [`ChainHead`] table.
const HEAD_KEY: &str = "head";

impl Record for ChainHead {
    const TABLE: &'static str = "audit_chain_head";
    fn key(&self) -> String {
        HEAD_KEY.into()
    }
}

/// An entry of the audit trail as written before the hash chain: only counted, for the
/// genesis entry.
#[derive(Debug, Serialize, Deserialize)]
struct LegacyEntry {
    seq: u64,
}

impl Record for LegacyEntry {
    const TABLE: &'static str = "audit";
    fn key(&self) -> String {
        seq_key(self.seq)
    }
}

/// The object of the genesis entry: `legacy-entries:<n>`, the number of unchained
/// entries the store held when the chain started.
const LEGACY_OBJECT_PREFIX: &str = "legacy-entries:";

/// The user name recorded for the platform's own actions.
pub(crate) const NODE_ACTOR: &str = "node";

/// What an entry is about: its objects, the users it concerns and the task digest.
#[derive(Debug, Clone, Default)]
pub(crate) struct Subject {
    objects: Vec<String>,
    parties: BTreeSet<String>,
    task_digest: Option<Digest>,
}

impl Subject {
    /// A task (and its function), concerning its participants, with the digest involved.
    pub(crate) fn task(task: &Task, digest: Option<Digest>) -> Self {
        Self {
            objects: vec![task.id().to_string(), task.function_id().to_string()],
            parties: task.participants().iter().map(|u| u.to_string()).collect(),
            task_digest: digest,
        }
    }

    /// A task the node ran (or tried to), with the digest its participants approved: a
    /// task only runs once every approval names its current digest.
    pub(crate) fn ran(task: &Task) -> Self {
        Self::task(task, task.approvals().values().next().copied())
    }

    /// A function, concerning its owner.
    pub(crate) fn function(f: &Function) -> Self {
        Self::owned(f.id.to_string(), &f.owner)
    }

    /// An object `id` (a file), concerning its owner.
    pub(crate) fn owned(id: String, owner: &UserName) -> Self {
        Self {
            objects: vec![id],
            parties: [owner.to_string()].into(),
            task_digest: None,
        }
    }

    /// A user account, concerning that user.
    pub(crate) fn user(name: &UserName) -> Self {
        Self::owned(name.to_string(), name)
    }
}

/// Appends an entry for `user` doing `action` to `subject`, inside the caller's
/// transaction.
pub(crate) fn audit(
    tx: &mut WriteTx<'_>,
    user: &UserName,
    action: AuditAction,
    subject: Subject,
) -> Result<(), PlatformError> {
    audit_as(tx, user.as_str(), action, subject)
}

/// As [`audit`], with a free-form actor such as [`NODE_ACTOR`].
pub(crate) fn audit_as(
    tx: &mut WriteTx<'_>,
    actor: &str,
    action: AuditAction,
    subject: Subject,
) -> Result<(), PlatformError> {
    let head = chain_head(tx)?;
    append(tx, &head, actor, action, subject).map(drop)
}

/// The head of the chain, writing the genesis entry first if the chain has none.
pub(crate) fn chain_head(tx: &mut WriteTx<'_>) -> Result<ChainHead> {
    if let Some(head) = tx.get::<ChainHead>(HEAD_KEY)? {
        return Ok(head);
    }
    let legacy = tx.count::<LegacyEntry>()?;
    let start = ChainHead {
        seq: 0,
        hash: GENESIS_PREV,
    };
    let genesis = Subject {
        objects: vec![format!("{LEGACY_OBJECT_PREFIX}{legacy}")],
        ..Subject::default()
    };
    append(tx, &start, NODE_ACTOR, AuditAction::Genesis, genesis)
}

fn append(
    tx: &mut WriteTx<'_>,
    head: &ChainHead,
    actor: &str,
    action: AuditAction,
    subject: Subject,
) -> Result<ChainHead> {
    let seq = head
        .seq
        .checked_add(1)
        .ok_or_else(|| PlatformError::node("the audit chain's sequence number is exhausted"))?;
    let mut entry = AuditEntry {
        seq,
        at_ms: now_ms(),
        actor: actor.to_owned(),
        action,
        objects: subject.objects,
        parties: subject.parties.into_iter().collect(),
        task_digest: subject.task_digest,
        outcome: action.outcome(),
        salt: salt()?,
        prev_hash: head.hash,
        hash: GENESIS_PREV,
    };
    entry.hash = chain::entry_hash(&entry);
    let next = ChainHead {
        seq,
        hash: entry.hash,
    };
    tx.put(&entry)?;
    tx.put(&next)?;
    Ok(next)
}

/// Which entries a caller asks for; every filter set must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries about this object id (any of their objects).
    pub object: Option<String>,
    /// Entries about this task.
    pub task: Option<cella_types::TaskId>,
    /// Entries by this actor.
    pub actor: Option<String>,
    /// Entries at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Entries before this time (ms since the epoch).
    pub until_ms: Option<u64>,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEntry) -> bool {
        let task = self.task.map(|t| t.to_string());
        self.object.as_ref().is_none_or(|o| e.objects.contains(o))
            && task.as_ref().is_none_or(|t| e.objects.first() == Some(t))
            && self.actor.as_ref().is_none_or(|a| &e.actor == a)
            && self.since_ms.is_none_or(|s| e.at_ms >= s)
            && self.until_ms.is_none_or(|u| e.at_ms < u)
    }
}

impl Platform {
    /// One page of the audit entries `caller` may see ([`policy::may_read_audit`]) that
    /// match `filter`, in chain order (or newest first).
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn list_audit_entries(
        &self,
        caller: &Caller,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> Result<Page<AuditEntry>> {
        let entries = self.store.read(|tx| tx.list::<AuditEntry>())?;
        let visible = entries
            .into_iter()
            .filter(|e| filter.matches(e) && policy::may_read_audit(caller, e))
            .collect();
        Ok(page.select(visible))
    }

    /// Writes the genesis entry of a store that has no chain yet.
    pub(crate) fn start_audit_chain(&self) -> Result<()> {
        self.store.write(|tx| chain_head(tx).map(drop))
    }
}

#[cfg(test)]
mod tests;
