//! Runtime images: a named, measured set of files a workload runs on (`python3`: the
//! interpreter and its standard library; `native`: nothing but the pre-load module), and
//! the command line that starts a workload on it.
//!
//! Each file is listed with its SHA-256, as Gramine's `sgx.trusted_files`. The image's
//! **manifest digest** covers its name, its command line and every file entry; it is one
//! of the three inputs of an instance's measurement ([`crate::backend::instance_measurement`]).

use std::fmt;

use cella_preload::receipt::sha256;
use serde::{Deserialize, Serialize};

/// The workload's main file, as laid out in the workload directory: the function's
/// payload.
pub const PROGRAM_FILE: &str = "program";

/// A file of a runtime image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// Its path inside the instance.
    pub path: String,
    /// Its SHA-256, 64 hex digits.
    pub sha256: String,
}

/// A runtime image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeImage {
    /// Its name, as functions name it in their `runtime`.
    pub name: String,
    /// The command line that starts a workload, run in the workload directory, where the
    /// payload is the file [`PROGRAM_FILE`]: `["./program"]` for a native binary,
    /// `["/usr/bin/python3", "program"]` for a Python script.
    pub argv: Vec<String>,
    /// The image's files.
    #[serde(default)]
    pub files: Vec<ImageFile>,
}

impl RuntimeImage {
    /// The image for static native binaries: no files, the payload run as `./program`.
    pub fn native() -> Self {
        Self {
            name: "native".into(),
            argv: vec![format!("./{PROGRAM_FILE}")],
            files: Vec::new(),
        }
    }

    /// SHA-256 over the image's canonical description: `cella-runtime-image-v1`, the name,
    /// each argv entry, then each file's path and digest, every item followed by a zero
    /// byte, files sorted by path.
    pub fn manifest_digest(&self) -> [u8; 32] {
        let mut bytes = b"cella-runtime-image-v1\0".to_vec();
        let mut push = |s: &str| {
            bytes.extend_from_slice(s.as_bytes());
            bytes.push(0);
        };
        push(&self.name);
        push(&self.argv.len().to_string());
        for a in &self.argv {
            push(a);
        }
        let mut files: Vec<&ImageFile> = self.files.iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for f in files {
            push(&f.path);
            push(&f.sha256.to_ascii_lowercase());
        }
        sha256(&bytes)
    }

    /// Checks the image's description.
    ///
    /// # Errors
    ///
    /// What is wrong, naming the image.
    pub fn validate(&self) -> Result<(), String> {
        if !cella_preload::protocol::valid_name(&self.name) {
            return Err(format!(
                "runtime image name {:?} is not a valid name",
                self.name
            ));
        }
        if self.argv.is_empty() {
            return Err(format!("runtime image {:?} has an empty argv", self.name));
        }
        for f in &self.files {
            let ok = f.sha256.len() == 64 && f.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if !ok {
                return Err(format!(
                    "runtime image {:?}: file {:?} needs a SHA-256 of 64 hex digits",
                    self.name, f.path
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for RuntimeImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} files)", self.name, self.files.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_digest_covers_every_field_and_ignores_file_order() {
        let a = RuntimeImage {
            name: "py".into(),
            argv: vec!["/usr/bin/python3".into(), "program".into()],
            files: vec![
                ImageFile {
                    path: "/a".into(),
                    sha256: "00".repeat(32),
                },
                ImageFile {
                    path: "/b".into(),
                    sha256: "11".repeat(32),
                },
            ],
        };
        a.validate().unwrap();
        let mut reordered = a.clone();
        reordered.files.reverse();
        assert_eq!(a.manifest_digest(), reordered.manifest_digest());
        let mut b = a.clone();
        b.name = "py2".into();
        assert_ne!(a.manifest_digest(), b.manifest_digest());
        let mut b = a.clone();
        b.argv[1] = "prog".into();
        assert_ne!(a.manifest_digest(), b.manifest_digest());
        let mut b = a.clone();
        b.files[0].sha256 = "22".repeat(32);
        assert_ne!(a.manifest_digest(), b.manifest_digest());
        // Argument boundaries are part of the digest.
        let mut b = a.clone();
        b.argv = vec!["/usr/bin/python3program".into()];
        assert_ne!(a.manifest_digest(), b.manifest_digest());
        let mut b = a.clone();
        b.files[0].sha256 = "zz".into();
        assert!(b.validate().is_err());
        assert!(RuntimeImage::native().validate().is_ok());
    }
}
