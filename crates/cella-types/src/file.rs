//! Input and output files: where their ciphertext lives, how it is encrypted, who owns it.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::{Digest, InputFileId, OutputFileId, UserName};

/// How a file is encrypted. One codec per variant; Teaclave's schemas can be added later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileSchema {
    /// Cella's sealed stream format (`docs/formats/sealed-file.md`).
    CellaSealedV1,
}

impl FileSchema {
    /// The schema's wire name.
    pub const fn as_str(self) -> &'static str {
        match self {
            FileSchema::CellaSealedV1 => "cella-sealed-v1",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        (s == "cella-sealed-v1").then_some(FileSchema::CellaSealedV1)
    }
}

/// A file key as held by the platform: secret bytes that are zeroized on drop and never
/// printed. The store seals every record that holds one.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop, Serialize, Deserialize)]
pub struct KeyMaterial(#[serde(with = "hex_bytes")] Vec<u8>);

impl KeyMaterial {
    /// Wraps key bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyMaterial(<redacted>)")
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// Where a file's ciphertext lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// In the node's own blob store, named by the file id.
    Blob,
    /// At a URL the node reads (`file://` for now).
    Url(String),
}

/// A registered input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// The file's id.
    pub id: InputFileId,
    /// The data owner who registered it.
    pub owner: UserName,
    /// Where its ciphertext lives.
    pub location: Location,
    /// SHA-256 of the whole ciphertext: the file's identity in tasks.
    pub ciphertext_digest: Digest,
    /// Ciphertext length in bytes.
    pub size: u64,
    /// How it is encrypted.
    pub schema: FileSchema,
    /// Its key.
    pub key: KeyMaterial,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

/// What an execution wrote into an output file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputContent {
    /// SHA-256 of the ciphertext written.
    pub ciphertext_digest: Digest,
    /// Ciphertext length in bytes.
    pub size: u64,
    /// The task that wrote it.
    pub task: crate::TaskId,
    /// Which of the output's blobs holds this content, for outputs in the node's blob
    /// store: each run writes a blob of its own, named by a fresh version, and the commit
    /// that records the content is what makes it the output. `None` in records written
    /// before versions existed, whose blob carries the output's id alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// A registered output file: a place and a key for a task's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The file's id.
    pub id: OutputFileId,
    /// The data owner who registered it.
    pub owner: UserName,
    /// Where the ciphertext will be written.
    pub location: Location,
    /// How it will be encrypted.
    pub schema: FileSchema,
    /// The key the output is encrypted under.
    pub key: KeyMaterial,
    /// Set once a task has written it; outputs are write-once.
    pub content: Option<OutputContent>,
    /// The task the output is assigned to: an output goes to one task at a time, so a
    /// second unfinished task cannot be given it. A reservation whose task has ended
    /// (failed or canceled without writing) no longer holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserved_by: Option<crate::TaskId>,
    /// Creation time, milliseconds since the Unix epoch.
    pub created_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_redacted_and_round_trips() {
        let k = KeyMaterial::new(vec![0xab; 32]);
        assert_eq!(format!("{k:?}"), "KeyMaterial(<redacted>)");
        let json = serde_json::to_string(&k).unwrap();
        assert_eq!(serde_json::from_str::<KeyMaterial>(&json).unwrap(), k);
        assert_eq!(
            FileSchema::parse("cella-sealed-v1"),
            Some(FileSchema::CellaSealedV1)
        );
        assert_eq!(FileSchema::parse("aes-gcm-128"), None);
    }
}
