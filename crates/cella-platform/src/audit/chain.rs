//! The chain's byte format and its verification (`docs/formats/audit.md`).
//!
//! An entry's body hash is SHA-256 over [`ENTRY_DOMAIN`], a zero byte, a random salt and
//! the entry's fields in a fixed order, every integer big-endian and every string
//! length-prefixed. Its hash, the chain's link, is SHA-256 over [`LINK_DOMAIN`], a zero
//! byte, its number, its body hash and the previous entry's hash: an export for a
//! participant shows the entries it may not see as their links alone (number, body hash,
//! previous hash), so it can check the whole chain without reading them. A checkpoint signs [`CHECKPOINT_DOMAIN`], a zero byte,
//! its number, the entry it covers and that entry's hash, and its time.

use cella_attest::Policy;
use cella_attest::policy::roles;
use cella_attest::signed::SignedError;
use cella_types::Digest;

use super::{AuditAction, AuditCheckpoint, AuditEntry, ExportedEntry};

/// Domain separation of an entry's body hash.
pub const ENTRY_DOMAIN: &[u8] = b"cella-audit-entry-v1";
/// Domain separation of a chain link's hash.
pub const LINK_DOMAIN: &[u8] = b"cella-audit-link-v1";
/// Domain separation of a checkpoint's signed message.
pub const CHECKPOINT_DOMAIN: &[u8] = b"cella-audit-checkpoint-v1";
/// The `prev_hash` of the first entry: 32 zero bytes.
pub const GENESIS_PREV: Digest = Digest::from_bytes([0; 32]);

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // Entries are built by the node from bounded ids and names; a length past u32 is
    // not representable and is written saturated, which no honest entry reaches.
    out.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes());
}

fn put_strs(out: &mut Vec<u8>, items: &[String]) {
    put_len(out, items.len());
    for s in items {
        put_str(out, s);
    }
}

/// The bytes an entry's body hash is taken over: its salt and contents (everything but
/// its place in the chain).
pub fn entry_bytes(e: &AuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(ENTRY_DOMAIN);
    out.push(0);
    out.extend_from_slice(e.salt.as_bytes());
    out.extend_from_slice(&e.seq.to_be_bytes());
    out.extend_from_slice(&e.at_ms.to_be_bytes());
    put_str(&mut out, &e.actor);
    put_str(&mut out, e.action.name());
    put_strs(&mut out, &e.objects);
    put_strs(&mut out, &e.parties);
    match &e.task_digest {
        Some(d) => {
            out.push(1);
            out.extend_from_slice(d.as_bytes());
        }
        None => out.push(0),
    }
    out.push(e.outcome.code());
    out
}

/// The body hash of `e`: SHA-256 of [`entry_bytes`]. The salt makes it hiding: a
/// redacted entry shows only this hash, which cannot be checked against a guess.
pub fn body_hash(e: &AuditEntry) -> Digest {
    Digest::of(&entry_bytes(e))
}

/// The bytes a link's hash is taken over: the entry's number, its body hash and the
/// hash of the entry before.
pub fn link_bytes(seq: u64, body: &Digest, prev_hash: &Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(LINK_DOMAIN.len() + 1 + 8 + 64);
    out.extend_from_slice(LINK_DOMAIN);
    out.push(0);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(body.as_bytes());
    out.extend_from_slice(prev_hash.as_bytes());
    out
}

/// The hash of `e`: SHA-256 of [`link_bytes`] over its body hash.
pub fn entry_hash(e: &AuditEntry) -> Digest {
    Digest::of(&link_bytes(e.seq, &body_hash(e), &e.prev_hash))
}

/// The message a checkpoint's signature covers.
pub fn checkpoint_message(number: u64, entry_seq: u64, head_hash: &Digest, at_ms: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 1 + 8 * 3 + 32);
    out.extend_from_slice(CHECKPOINT_DOMAIN);
    out.push(0);
    out.extend_from_slice(&number.to_be_bytes());
    out.extend_from_slice(&entry_seq.to_be_bytes());
    out.extend_from_slice(head_hash.as_bytes());
    out.extend_from_slice(&at_ms.to_be_bytes());
    out
}

/// Why an entry breaks the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryBreak {
    /// The entry at this position has another sequence number: an entry before it was
    /// removed, or entries were reordered.
    #[error("sequence number {found} where {expected} was due (an entry removed or moved)")]
    Sequence {
        /// The number due at this position.
        expected: u64,
        /// The number found.
        found: u64,
    },
    /// Its `prev_hash` is not the previous entry's hash: the previous entry was edited
    /// (and its own hash recomputed), or entries were removed or moved.
    #[error("its prev_hash is not the hash of the entry before")]
    PrevHash,
    /// Its hash is not the hash of its contents: the entry was edited.
    #[error("its hash does not match its contents (the entry was edited)")]
    Hash,
    /// The first entry is not a genesis entry.
    #[error("the chain does not start with a genesis entry")]
    NoGenesis,
}

/// The trail does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The export holds no entries.
    #[error("the export holds no audit entries")]
    Empty,
    /// The chain breaks at entry `seq` (the sequence number due at that position).
    #[error("the audit chain breaks at entry {seq}: {reason}")]
    Entry {
        /// The first entry where the chain breaks.
        seq: u64,
        /// Why.
        reason: EntryBreak,
    },
    /// A checkpoint's signature or evidence does not verify.
    #[error("checkpoint {number} (over entry {entry_seq}) is not signed by an attested node key")]
    CheckpointSignature {
        /// The checkpoint.
        number: u64,
        /// The entry it claims to cover.
        entry_seq: u64,
        /// Why.
        #[source]
        source: Box<SignedError>,
    },
    /// A validly signed checkpoint names a head the entries do not have: entry
    /// `entry_seq` (or one before it) was changed, or the entries stop before it.
    #[error(
        "checkpoint {number} signed entry {entry_seq} with another hash than the export's: the trail breaks at or before entry {entry_seq}"
    )]
    CheckpointMismatch {
        /// The checkpoint.
        number: u64,
        /// The entry it covers.
        entry_seq: u64,
    },
    /// A checkpoint's bytes are malformed (not hex).
    #[error("checkpoint {number} is malformed: {reason}")]
    CheckpointMalformed {
        /// The checkpoint.
        number: u64,
        /// What is wrong.
        reason: String,
    },
}

/// What a verified trail proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// Entries checked, all linked.
    pub entries: u64,
    /// Checkpoints whose signature and head verified.
    pub checkpoints: u64,
    /// The last entry a verified checkpoint covers (0: none): entries after it are
    /// linked but not yet signed, so their removal from the tail would not show.
    pub sealed_through: u64,
}

/// Verifies an exported trail: the entries, in the order given, form one chain from a
/// genesis entry (a redacted entry's link is checked from its body hash, a full entry's
/// body hash from its contents); every checkpoint is signed by a key whose evidence
/// satisfies the `node` role of `policy` at the checkpoint's time, and names the hash
/// the entries have at its position.
///
/// # Errors
///
/// [`ChainError`] for the first entry where the chain breaks (entries are checked before
/// checkpoints), or the first checkpoint that fails.
pub fn verify_chain(
    entries: &[ExportedEntry],
    checkpoints: &[AuditCheckpoint],
    policy: &Policy,
) -> Result<VerifiedChain, ChainError> {
    let first = entries.first().ok_or(ChainError::Empty)?;
    if let ExportedEntry::Full(e) = first
        && e.action != AuditAction::Genesis
    {
        return Err(ChainError::Entry {
            seq: 1,
            reason: EntryBreak::NoGenesis,
        });
    }
    let mut prev = GENESIS_PREV;
    for (expected, e) in (1u64..).zip(entries) {
        let broken = |reason| ChainError::Entry {
            seq: expected,
            reason,
        };
        let link = e.link();
        if link.seq != expected {
            return Err(broken(EntryBreak::Sequence {
                expected,
                found: link.seq,
            }));
        }
        if link.prev_hash != prev {
            return Err(broken(EntryBreak::PrevHash));
        }
        let body = match e {
            ExportedEntry::Full(full) => body_hash(full),
            ExportedEntry::Redacted(r) => r.body_hash,
        };
        if Digest::of(&link_bytes(link.seq, &body, &link.prev_hash)) != link.hash {
            return Err(broken(EntryBreak::Hash));
        }
        prev = link.hash;
    }
    let mut sealed_through = 0;
    for c in checkpoints {
        let signature = c
            .signature()
            .map_err(|reason| ChainError::CheckpointMalformed {
                number: c.number,
                reason,
            })?;
        let message = checkpoint_message(c.number, c.entry_seq, &c.head_hash, c.at_ms);
        cella_attest::signed::verify(policy, roles::NODE, c.at_ms / 1000, &message, &signature)
            .map_err(|source| ChainError::CheckpointSignature {
                number: c.number,
                entry_seq: c.entry_seq,
                source: Box::new(source),
            })?;
        let covered = usize::try_from(c.entry_seq)
            .ok()
            .and_then(|s| s.checked_sub(1))
            .and_then(|i| entries.get(i));
        if covered.is_none_or(|e| e.link().hash != c.head_hash) {
            return Err(ChainError::CheckpointMismatch {
                number: c.number,
                entry_seq: c.entry_seq,
            });
        }
        sealed_through = sealed_through.max(c.entry_seq);
    }
    Ok(VerifiedChain {
        entries: entries.len() as u64,
        checkpoints: checkpoints.len() as u64,
        sealed_through,
    })
}
