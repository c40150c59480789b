//! Checkpoints: the node signs (checkpoint number, last entry, its hash, time) with its
//! attested RA-TLS key, at an interval and on shutdown, so the chain's head is vouched
//! for by attested code and the trail can be checked offline with the attestation
//! policy alone (`cella audit verify`).

use std::sync::Arc;

use cella_attest::renew::CertResolver;
use cella_attest::signed::AttestedSignature;
use cella_store::{Record, seq_key};
use cella_types::Digest;
use serde::{Deserialize, Serialize};

use super::chain::{body_hash, checkpoint_message};
use super::{AuditEntry, chain_head};
use crate::auth::Caller;
use crate::page::{Listed, Page, PageRequest, Position};
use crate::{Platform, PlatformError, Result, now_ms, policy};

/// The value of [`AuditExport::format`].
pub const EXPORT_FORMAT: &str = "cella-audit-export-v1";

/// A signed statement of the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditCheckpoint {
    /// The checkpoint's number, from 1.
    pub number: u64,
    /// The last entry it covers.
    pub entry_seq: u64,
    /// That entry's hash.
    pub head_hash: Digest,
    /// When it was signed, ms since the epoch (the time its evidence is judged at).
    pub at_ms: u64,
    /// The node's RA-TLS certificate (DER, hex) whose key signed it.
    pub cert: String,
    /// The TLS signature scheme's code point.
    pub scheme: u16,
    /// The signature over [`checkpoint_message`], hex.
    pub signature: String,
}

impl Record for AuditCheckpoint {
    const TABLE: &'static str = "audit_checkpoint";
    fn key(&self) -> String {
        seq_key(self.number)
    }
}

impl AuditCheckpoint {
    /// The signature with its certificate, decoded.
    ///
    /// # Errors
    ///
    /// A message naming the field that is not hex.
    pub fn signature(&self) -> Result<AttestedSignature, String> {
        Ok(AttestedSignature {
            cert_der: hex::decode(&self.cert).map_err(|e| format!("cert: {e}"))?,
            scheme: self.scheme,
            signature: hex::decode(&self.signature).map_err(|e| format!("signature: {e}"))?,
        })
    }
}

/// A trail as exported for offline verification: every entry in chain order (in full
/// where the exporter may read it, else as its link) and every checkpoint, as JSON
/// (`cella audit export`, `docs/formats/audit.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// The entries, in chain order.
    pub entries: Vec<ExportedEntry>,
    /// The checkpoints, in order.
    pub checkpoints: Vec<AuditCheckpoint>,
}

/// An entry of an export: in full, or only its link in the chain when the exporter may
/// not read it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExportedEntry {
    /// An entry the exporter may read.
    Full(AuditEntry),
    /// An entry the exporter may not read.
    Redacted(RedactedEntry),
}

/// The link of an entry whose contents are withheld: enough to check the chain through
/// it, nothing of what it records (its body hash is salted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedactedEntry {
    /// Its position in the chain.
    pub seq: u64,
    /// The hash of its body ([`super::chain::body_hash`]).
    pub body_hash: Digest,
    /// The hash of the entry before.
    pub prev_hash: Digest,
    /// Its hash.
    pub hash: Digest,
}

/// An entry's place in the chain, full or redacted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Its position.
    pub seq: u64,
    /// The hash of the entry before, as it claims.
    pub prev_hash: Digest,
    /// Its hash, as it claims.
    pub hash: Digest,
}

impl ExportedEntry {
    /// The entry's place in the chain.
    pub fn link(&self) -> Link {
        match self {
            Self::Full(e) => Link {
                seq: e.seq,
                prev_hash: e.prev_hash,
                hash: e.hash,
            },
            Self::Redacted(r) => Link {
                seq: r.seq,
                prev_hash: r.prev_hash,
                hash: r.hash,
            },
        }
    }
}

/// One step of an export: an entry and the checkpoints over it (a checkpoint covers the
/// head it was written at, so each lands with exactly one entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportItem {
    /// The entry.
    pub entry: ExportedEntry,
    /// The checkpoints whose head it is, in order.
    pub checkpoints: Vec<AuditCheckpoint>,
}

impl Listed for ExportItem {
    fn position(&self) -> Position {
        super::chain_position(self.entry.link().seq)
    }
}

impl Platform {
    /// Signs audit checkpoints with `signer`'s current key from now on (the node's
    /// RA-TLS identity, renewed on its timer).
    pub fn set_audit_signer(&self, signer: Arc<CertResolver>) {
        *self
            .audit_signer
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(signer);
    }

    /// Writes a checkpoint over the chain's current head now, unless the last
    /// checkpoint already covers it; returns the checkpoint that covers the head.
    ///
    /// # Errors
    ///
    /// [`PlatformError::WrongState`] when the node has no attested key
    /// ([`Platform::set_audit_signer`]), [`PlatformError::Node`] when signing
    /// fails, or a store error.
    pub fn write_audit_checkpoint(&self) -> Result<AuditCheckpoint> {
        let signer = self
            .audit_signer
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                PlatformError::WrongState(
                    "the node has no attested key to sign audit checkpoints with".into(),
                )
            })?;
        self.store.write(|tx| {
            let head = chain_head(tx)?;
            let last = tx.list::<AuditCheckpoint>()?.pop();
            let number = match last {
                Some(last) if last.entry_seq == head.seq => return Ok(last),
                Some(last) => last.number + 1,
                None => 1,
            };
            let at_ms = now_ms();
            let message = checkpoint_message(number, head.seq, &head.hash, at_ms);
            let signed = signer
                .sign(&message)
                .map_err(|e| PlatformError::node(format!("signing an audit checkpoint: {e}")))?;
            let checkpoint = AuditCheckpoint {
                number,
                entry_seq: head.seq,
                head_hash: head.hash,
                at_ms,
                cert: hex::encode(&signed.cert_der),
                scheme: signed.scheme,
                signature: hex::encode(&signed.signature),
            };
            tx.put(&checkpoint)?;
            Ok(checkpoint)
        })
    }

    /// Every checkpoint, in order. They hold hashes and the node's certificate only, so
    /// any authenticated caller may read them.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn list_audit_checkpoints(&self) -> Result<Vec<AuditCheckpoint>> {
        Ok(self.store.read(|tx| tx.list::<AuditCheckpoint>())?)
    }

    /// One page of the whole trail as `caller` may export it, in chain order: the
    /// entries it may read ([`policy::may_read_audit`]) in full, every other one as its
    /// link, each with the checkpoints over it. Every caller sees every link, so anyone
    /// can verify the chain offline.
    ///
    /// # Errors
    ///
    /// A store error.
    pub fn export_audit_trail(
        &self,
        caller: &Caller,
        page: &PageRequest,
    ) -> Result<Page<ExportItem>> {
        let (entries, checkpoints) = self.store.read(|tx| {
            Ok::<_, cella_store::StoreError>((
                tx.list::<AuditEntry>()?,
                tx.list::<AuditCheckpoint>()?,
            ))
        })?;
        let mut over: std::collections::BTreeMap<u64, Vec<AuditCheckpoint>> =
            std::collections::BTreeMap::new();
        for c in checkpoints {
            over.entry(c.entry_seq).or_default().push(c);
        }
        // The page is chosen first (an entry and its item share their position), so
        // only its own entries are hashed for redaction.
        let page = page.select(entries);
        let items = page
            .items
            .into_iter()
            .map(|e| ExportItem {
                checkpoints: over.remove(&e.seq).unwrap_or_default(),
                entry: if policy::may_read_audit(caller, &e) {
                    ExportedEntry::Full(e)
                } else {
                    ExportedEntry::Redacted(RedactedEntry {
                        seq: e.seq,
                        body_hash: body_hash(&e),
                        prev_hash: e.prev_hash,
                        hash: e.hash,
                    })
                },
            })
            .collect();
        Ok(Page {
            items,
            more: page.more,
        })
    }
}
