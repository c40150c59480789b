//! The node's sealing key: AES-256-GCM protection for values the node keeps on disk
//! (metadata store records, file keys and other secrets at rest).
//!
//! The key lives in a 32-byte file readable only by its owner ([`SealingKey::load_or_create`]
//! refuses a file with broader permissions). A sealed value is
//! `version (1) ‖ random nonce (12) ‖ ciphertext ‖ tag (16)`; the associated data is the
//! version byte followed by the caller's context bytes, so a value sealed for one
//! record cannot be replayed as another. The format is in `docs/formats/sealed-file.md`,
//! section "Sealed value".
//!
//! The AES key schedule is built once per [`SealingKey`]. `ring` keeps it in a type
//! without `Zeroize`, so it is not wiped on drop; the raw key bytes are not kept at all.
//! Random 96-bit nonces bound the number of values one key should seal to 2^32 (NIST
//! SP 800-38D); rotate the key before that.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::aead::{self, Aad, LessSafeKey, Nonce};
use zeroize::Zeroizing;

use crate::support::{self, fill_random, read_full};

/// Length in bytes of the sealing key and of its key file.
pub const SEALING_KEY_LEN: usize = 32;
/// Version byte of sealed values made by this build.
pub const SEALED_VALUE_VERSION: u8 = 1;
/// Length of a sealed value's random nonce.
pub const SEALED_VALUE_NONCE_LEN: usize = aead::NONCE_LEN;
/// Bytes a sealed value adds to its plaintext: version, nonce and tag.
pub const SEALED_VALUE_OVERHEAD: usize = 1 + SEALED_VALUE_NONCE_LEN + aead::MAX_TAG_LEN;
/// Permission bits the key file may have: read and write for its owner, nothing else.
const KEY_FILE_MODE: u32 = 0o600;

/// The node's sealing key.
pub struct SealingKey {
    key: LessSafeKey,
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealingKey(<redacted>)")
    }
}

/// Loading or creating the sealing key file failed. Each variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadSealingKeyError {
    /// The key file exists but could not be opened or read.
    #[error("cannot read sealing key file {}", path.display())]
    Read {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The key file did not exist and could not be created and written.
    #[error("cannot create sealing key file {}", path.display())]
    Create {
        /// The key file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The path exists but is not a regular file.
    #[error("sealing key file {} is not a regular file", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// The key file does not hold exactly 32 bytes.
    #[error(
        "sealing key file {} has {len} bytes; a sealing key file holds exactly {SEALING_KEY_LEN}",
        path.display()
    )]
    WrongLength {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// The key file grants more than read and write to its owner.
    #[error(
        "sealing key file {} has mode {mode:04o}; it must be 0600 or narrower (chmod 600 it)",
        path.display()
    )]
    BroadPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Unsealing a sealed value failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealValueError {
    /// Shorter than version, nonce and tag together.
    #[error("sealed value too short: {len} bytes, at least {SEALED_VALUE_OVERHEAD} needed")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// A version byte this build does not know.
    #[error("sealed value has unknown version {version}")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
    },
    /// Wrong key, wrong associated data, or altered bytes.
    #[error("sealed value failed authentication (wrong key or context, or corrupted)")]
    AuthenticationFailed,
}

impl SealingKey {
    /// A fresh random key that lives only in memory (for tests and ephemeral nodes).
    ///
    /// # Panics
    ///
    /// If the OS random source fails.
    pub fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        fill_random(bytes.as_mut());
        Self::from_key_bytes(&bytes)
    }

    /// Loads the key from `path`, or, if no file is there, creates it with a fresh random
    /// key, mode 0600, and syncs it (and its directory) to disk.
    ///
    /// # Errors
    ///
    /// [`LoadSealingKeyError`]: the file cannot be read or created, is not a regular
    /// file, is not 32 bytes, or has permissions broader than 0600.
    pub fn load_or_create(path: &Path) -> Result<Self, LoadSealingKeyError> {
        match File::open(path) {
            Ok(file) => Self::load(path, file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match Self::create(path) {
                // Another process created it since we looked: use theirs.
                Err(LoadSealingKeyError::Create { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists =>
                {
                    let file = File::open(path).map_err(|source| LoadSealingKeyError::Read {
                        path: path.to_owned(),
                        source,
                    })?;
                    Self::load(path, file)
                }
                other => other,
            },
            Err(source) => Err(LoadSealingKeyError::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn load(path: &Path, mut file: File) -> Result<Self, LoadSealingKeyError> {
        let read_err = |source| LoadSealingKeyError::Read {
            path: path.to_owned(),
            source,
        };
        // Checked on the open file, so the checks and the read see the same inode.
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(LoadSealingKeyError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & !KEY_FILE_MODE != 0 {
            return Err(LoadSealingKeyError::BroadPermissions {
                path: path.to_owned(),
                mode,
            });
        }
        // One spare byte shows a file that grew past 32 bytes since `metadata`.
        let mut bytes = Zeroizing::new([0u8; SEALING_KEY_LEN + 1]);
        let len = read_full(&mut file, bytes.as_mut()).map_err(read_err)?;
        if meta.len() != SEALING_KEY_LEN as u64 || len != SEALING_KEY_LEN {
            return Err(LoadSealingKeyError::WrongLength {
                path: path.to_owned(),
                len: meta.len().max(len as u64),
            });
        }
        let mut key = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        key.copy_from_slice(&bytes[..SEALING_KEY_LEN]);
        Ok(Self::from_key_bytes(&key))
    }

    fn create(path: &Path) -> Result<Self, LoadSealingKeyError> {
        let create_err = |source| LoadSealingKeyError::Create {
            path: path.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(KEY_FILE_MODE)
            .open(path)
            .map_err(create_err)?;
        let mut bytes = Zeroizing::new([0u8; SEALING_KEY_LEN]);
        fill_random(bytes.as_mut());
        let written = file
            .write_all(bytes.as_ref())
            .and_then(|()| file.sync_all())
            .and_then(|()| sync_parent_dir(path));
        if let Err(source) = written {
            // A short key file would make every later start fail: remove it. If even
            // that fails, the WrongLength error at the next start names the file.
            drop(file);
            let _removed = std::fs::remove_file(path);
            return Err(create_err(source));
        }
        Ok(Self::from_key_bytes(&bytes))
    }

    fn from_key_bytes(bytes: &[u8; SEALING_KEY_LEN]) -> Self {
        Self {
            key: support::aes_256_gcm_key(bytes),
        }
    }

    /// Seals `plaintext` for the context `aad` (for example the record's table and key):
    /// `version ‖ nonce ‖ ciphertext ‖ tag`, with a fresh random nonce.
    ///
    /// # Panics
    ///
    /// If the OS random source fails, or `plaintext` is over AES-GCM's 64 GiB limit.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = support::random_array();
        self.seal_with_nonce(nonce, aad, plaintext)
    }

    fn seal_with_nonce(
        &self,
        nonce: [u8; SEALED_VALUE_NONCE_LEN],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(plaintext.len() + SEALED_VALUE_OVERHEAD);
        out.push(SEALED_VALUE_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let body = 1 + SEALED_VALUE_NONCE_LEN;
        let tag = support::seal_in_place(
            &self.key,
            nonce,
            &value_aad(SEALED_VALUE_VERSION, aad),
            &mut out[body..],
        );
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// Verifies and decrypts a value sealed by [`seal`](Self::seal) with the same `aad`.
    ///
    /// # Errors
    ///
    /// [`UnsealValueError::TooShort`], [`UnsealValueError::UnknownVersion`] or
    /// [`UnsealValueError::AuthenticationFailed`].
    pub fn unseal(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, UnsealValueError> {
        if sealed.len() < SEALED_VALUE_OVERHEAD {
            return Err(UnsealValueError::TooShort { len: sealed.len() });
        }
        let version = sealed[0];
        if version != SEALED_VALUE_VERSION {
            return Err(UnsealValueError::UnknownVersion { version });
        }
        let (nonce, body) = sealed[1..].split_at(SEALED_VALUE_NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| UnsealValueError::TooShort { len: sealed.len() })?;
        let mut out = body.to_vec();
        let plain_len = self
            .key
            .open_in_place(nonce, Aad::from(value_aad(version, aad)), &mut out)
            .map_err(|_| UnsealValueError::AuthenticationFailed)?
            .len();
        out.truncate(plain_len);
        Ok(out)
    }
}

/// The AEAD associated data of a sealed value: its version byte, then the caller's
/// context.
fn value_aad(version: u8, aad: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + aad.len());
    out.push(version);
    out.extend_from_slice(aad);
    out
}

/// Makes a newly created directory entry durable.
fn sync_parent_dir(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn set_mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn key_file_is_created_0600_and_reloads_to_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.key");
        let created = SealingKey::load_or_create(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(meta.len(), 32);

        let reloaded = SealingKey::load_or_create(&path).unwrap();
        let sealed = created.seal(b"ctx", b"record");
        assert_eq!(reloaded.unseal(b"ctx", &sealed).unwrap(), b"record");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 32, "not rewritten");

        let other = SealingKey::load_or_create(&dir.path().join("other.key")).unwrap();
        assert_eq!(
            other.unseal(b"ctx", &sealed),
            Err(UnsealValueError::AuthenticationFailed)
        );
    }

    #[test]
    fn key_file_of_wrong_length_is_rejected_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0usize, 31, 33, 64] {
            let path = dir.path().join(format!("len{len}.key"));
            std::fs::write(&path, vec![1u8; len]).unwrap();
            set_mode(&path, 0o600);
            let err = SealingKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(&err, LoadSealingKeyError::WrongLength { path: p, len: l } if p == &path && *l == len as u64),
                "{err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(&len.to_string()),
                "{msg}"
            );
        }
    }

    #[test]
    fn key_file_with_broad_permissions_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sealing.key");
        SealingKey::load_or_create(&path).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o700, 0o660, 0o4600] {
            set_mode(&path, mode);
            let err = SealingKey::load_or_create(&path).unwrap_err();
            assert!(
                matches!(&err, LoadSealingKeyError::BroadPermissions { path: p, mode: m } if p == &path && *m == mode),
                "{mode:o}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
        }
        // Narrower than 0600 is fine.
        set_mode(&path, 0o400);
        SealingKey::load_or_create(&path).unwrap();
    }

    #[test]
    fn key_path_that_is_a_directory_or_in_a_missing_directory_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let err = SealingKey::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(err, LoadSealingKeyError::NotAFile { .. }),
            "{err:?}"
        );
        let missing = dir.path().join("no/such/dir/sealing.key");
        let err = SealingKey::load_or_create(&missing).unwrap_err();
        assert!(
            matches!(&err, LoadSealingKeyError::Create { path, .. } if path == &missing),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(
            format!("{:?}", SealingKey::generate()),
            "SealingKey(<redacted>)"
        );
    }

    #[test]
    fn value_round_trip_and_fresh_nonces() {
        let key = SealingKey::generate();
        for plaintext in [&b""[..], b"x", &[0xab; 1000]] {
            let sealed = key.seal(b"table/key", plaintext);
            assert_eq!(sealed.len(), plaintext.len() + SEALED_VALUE_OVERHEAD);
            assert_eq!(sealed[0], SEALED_VALUE_VERSION);
            assert_eq!(key.unseal(b"table/key", &sealed).unwrap(), plaintext);
        }
        assert_ne!(key.seal(b"", b"same"), key.seal(b"", b"same"));
    }

    #[test]
    fn value_vector_from_the_spec() {
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = 0x20 + u8::try_from(i).unwrap();
        }
        let key = SealingKey::from_key_bytes(&bytes);
        let nonce: [u8; 12] = std::array::from_fn(|i| u8::try_from(i).unwrap());
        let sealed = key.seal_with_nonce(nonce, b"table/key", b"secret");
        assert_eq!(
            hex::encode(&sealed),
            "01000102030405060708090a0b2f373ed52f4126f4ea10404146509490aa639325adc4"
        );
        assert_eq!(key.unseal(b"table/key", &sealed).unwrap(), b"secret");
    }

    #[test]
    fn value_with_wrong_context_or_any_flipped_bit_fails() {
        let key = SealingKey::generate();
        let sealed = key.seal(b"table/a", b"payload");
        assert_eq!(
            key.unseal(b"table/b", &sealed),
            Err(UnsealValueError::AuthenticationFailed)
        );
        assert_eq!(
            key.unseal(b"", &sealed),
            Err(UnsealValueError::AuthenticationFailed)
        );
        for byte in 0..sealed.len() {
            for bit in 0..8 {
                let mut bad = sealed.clone();
                bad[byte] ^= 1 << bit;
                let expected = if byte == 0 {
                    UnsealValueError::UnknownVersion { version: bad[0] }
                } else {
                    UnsealValueError::AuthenticationFailed
                };
                assert_eq!(
                    key.unseal(b"table/a", &bad),
                    Err(expected),
                    "byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn value_too_short_is_rejected_before_anything_else() {
        let key = SealingKey::generate();
        let sealed = key.seal(b"", b"");
        assert_eq!(sealed.len(), SEALED_VALUE_OVERHEAD);
        for len in 0..SEALED_VALUE_OVERHEAD {
            assert_eq!(
                key.unseal(b"", &sealed[..len]),
                Err(UnsealValueError::TooShort { len })
            );
        }
        let mut future = sealed.clone();
        future[0] = 2;
        assert_eq!(
            key.unseal(b"", &future),
            Err(UnsealValueError::UnknownVersion { version: 2 })
        );
    }
}
