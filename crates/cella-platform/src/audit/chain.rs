//! The chain's byte format and its verification (`docs/formats/audit.md`).
//!
//! An entry's hash is SHA-256 over [`ENTRY_DOMAIN`], a zero byte, and the entry's fields
//! in a fixed order, every integer big-endian and every string length-prefixed, ending
//! with the previous entry's hash. A checkpoint signs [`CHECKPOINT_DOMAIN`], a zero byte,
//! its number, the entry it covers and that entry's hash, and its time.

use cella_attest::Policy;
use cella_attest::policy::roles;
use cella_attest::signed::SignedError;
use cella_types::Digest;

use super::{AuditAction, AuditCheckpoint, AuditEntry};

/// Domain separation of an entry's hash input.
pub const ENTRY_DOMAIN: &[u8] = b"cella-audit-entry-v1";
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

/// The bytes an entry's hash is taken over (everything but the hash itself).
pub fn entry_bytes(e: &AuditEntry) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(ENTRY_DOMAIN);
    out.push(0);
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
    out.extend_from_slice(e.prev_hash.as_bytes());
    out
}

/// The hash of `e`: SHA-256 of [`entry_bytes`].
pub fn entry_hash(e: &AuditEntry) -> Digest {
    Digest::of(&entry_bytes(e))
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
/// genesis entry; every checkpoint is signed by a key whose evidence satisfies the
/// `node` role of `policy` at the checkpoint's time, and names the hash the entries have
/// at its position.
///
/// # Errors
///
/// [`ChainError`] for the first entry where the chain breaks (entries are checked before
/// checkpoints), or the first checkpoint that fails.
pub fn verify_chain(
    entries: &[AuditEntry],
    checkpoints: &[AuditCheckpoint],
    policy: &Policy,
) -> Result<VerifiedChain, ChainError> {
    let first = entries.first().ok_or(ChainError::Empty)?;
    if first.action != AuditAction::Genesis {
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
        if e.seq != expected {
            return Err(broken(EntryBreak::Sequence {
                expected,
                found: e.seq,
            }));
        }
        if e.prev_hash != prev {
            return Err(broken(EntryBreak::PrevHash));
        }
        if entry_hash(e) != e.hash {
            return Err(broken(EntryBreak::Hash));
        }
        prev = e.hash;
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
        if covered.is_none_or(|e| e.hash != c.head_hash) {
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
