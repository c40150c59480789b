//! What the pre-load module does differently inside Gramine:
//!
//! - **The instance's encryption key.** `/cella` is an encrypted mount whose key the
//!   manifest names (`CELLA_PRELOAD_INSTANCE_KEY`) but does not contain: the pre-load
//!   module draws 16 random bytes inside the enclave and writes them to
//!   `/dev/attestation/keys/<name>` before it creates any file there. Gramine hands its
//!   keys to child processes, so the program (a new enclave) reads and writes the same
//!   files; the host sees only ciphertext, under a key no other instance has.
//! - **Evidence over TCP** (`gramine-direct` only, which has no quotes): the node's
//!   simulation evidence at `CELLA_PRELOAD_EVIDENCE=tcp:127.0.0.1:<port>`, since Gramine
//!   cannot reach a Unix socket of the host. Same wire format as
//!   `socket:<path>` (64 bytes of report data in; a 4-byte big-endian length, 0 for a
//!   refusal, and the evidence out).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cella_attest::evidence::{EvidenceError, MAX_QUOTE_LEN};
use cella_attest::{Evidence, EvidenceSource, Platform, ReportData};
use ring::rand::SecureRandom;

/// The variable naming the encryption key of the work directory.
pub const INSTANCE_KEY_ENV: &str = "CELLA_PRELOAD_INSTANCE_KEY";
/// The `CELLA_PRELOAD_EVIDENCE` prefix of a TCP evidence endpoint.
pub const TCP_PREFIX: &str = "tcp:";
/// Length of a Gramine encrypted-files key.
pub const KEY_LEN: usize = 16;
/// How long the instance waits for the node's evidence.
const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a fresh random key named `name` under `<attestation_dir>/keys/`. The file is
/// never created: outside Gramine (or with a key the manifest does not name) this fails.
///
/// # Errors
///
/// A sentence naming the key and the failure.
pub fn provision_instance_key(attestation_dir: &Path, name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with('_')
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        // Names starting with '_' are Gramine's sealing keys, shared by every instance.
        return Err(format!(
            "{INSTANCE_KEY_ENV} {name:?} is not a key name of our own (letters, digits, '_' \
             and '-', not starting with '_')"
        ));
    }
    let mut key = [0u8; KEY_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| "the random number generator failed".to_owned())?;
    let path: PathBuf = attestation_dir.join("keys").join(name);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(&key))
        .map_err(|e| format!("provisioning the instance key at {}: {e}", path.display()))
}

/// Simulation evidence from the node over TCP on a loopback address.
#[derive(Debug, Clone)]
pub struct TcpEvidenceSource {
    addr: SocketAddr,
}

impl TcpEvidenceSource {
    /// Parses `tcp:<loopback address>:<port>`.
    ///
    /// # Errors
    ///
    /// A sentence if it is not one.
    pub fn parse(value: &str) -> Result<Self, String> {
        match crate::endpoint::Endpoint::parse(value) {
            Ok(crate::endpoint::Endpoint::Tcp(addr)) => Ok(Self { addr }),
            Ok(_) => Err(format!("{value:?} is not a tcp: endpoint")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn device(&self, source: std::io::Error) -> EvidenceError {
        EvidenceError::Device {
            path: PathBuf::from(format!("{TCP_PREFIX}{}", self.addr)),
            source,
        }
    }
}

impl EvidenceSource for TcpEvidenceSource {
    fn platform(&self) -> Platform {
        Platform::Sim
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        let mut s =
            TcpStream::connect_timeout(&self.addr, EVIDENCE_TIMEOUT).map_err(|e| self.device(e))?;
        s.set_read_timeout(Some(EVIDENCE_TIMEOUT))
            .and_then(|()| s.set_write_timeout(Some(EVIDENCE_TIMEOUT)))
            .and_then(|()| s.write_all(report_data))
            .map_err(|e| self.device(e))?;
        let mut len = [0u8; 4];
        s.read_exact(&mut len).map_err(|e| self.device(e))?;
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        let malformed = |reason: String| EvidenceError::MalformedQuote {
            path: PathBuf::from(format!("{TCP_PREFIX}{}", self.addr)),
            reason,
        };
        if len == 0 {
            return Err(malformed("the node refused to give evidence".into()));
        }
        if len > MAX_QUOTE_LEN {
            return Err(malformed(format!(
                "the node announced {len} bytes of evidence, over the limit of {MAX_QUOTE_LEN}"
            )));
        }
        let mut evidence = vec![0u8; len];
        s.read_exact(&mut evidence).map_err(|e| self.device(e))?;
        Ok(Evidence::Sim(evidence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_fresh_key_into_an_existing_key_file_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("keys")).unwrap();
        let key = dir.path().join("keys/cella_instance");
        std::fs::write(&key, b"").unwrap();
        provision_instance_key(dir.path(), "cella_instance").unwrap();
        let first = std::fs::read(&key).unwrap();
        assert_eq!(first.len(), KEY_LEN);
        provision_instance_key(dir.path(), "cella_instance").unwrap();
        assert_ne!(std::fs::read(&key).unwrap(), first, "a fresh key each time");
        // Not inside Gramine: the key file does not exist and is not created.
        let err = provision_instance_key(dir.path(), "other").unwrap_err();
        assert!(err.contains("other"), "{err}");
        assert!(!dir.path().join("keys/other").exists());
        for bad in ["", "_sgx_mrenclave", "../x", "a/b"] {
            assert!(provision_instance_key(dir.path(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tcp_evidence_round_trip_and_refusal() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let node = std::thread::spawn(move || {
            for reply in [&[0u8, 0, 0, 3, 1, 2, 3][..], &[0, 0, 0, 0]] {
                let (mut s, _) = listener.accept().unwrap();
                let mut rd = [0u8; 64];
                s.read_exact(&mut rd).unwrap();
                s.write_all(reply).unwrap();
            }
        });
        let source = TcpEvidenceSource::parse(&format!("tcp:{addr}")).unwrap();
        assert_eq!(source.platform(), Platform::Sim);
        assert_eq!(
            source.evidence(&[9; 64]).unwrap(),
            Evidence::Sim(vec![1, 2, 3])
        );
        let refused = source.evidence(&[9; 64]).unwrap_err();
        assert!(
            refused.to_string().contains("refused") || format!("{refused:?}").contains("refused")
        );
        node.join().unwrap();
        assert!(TcpEvidenceSource::parse("tcp:10.1.1.1:5").is_err());
        assert!(TcpEvidenceSource::parse("/run/x.sock").is_err());
    }
}
