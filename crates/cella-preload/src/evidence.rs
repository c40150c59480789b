//! Evidence over a Unix socket: how an instance of the `sandbox` backend gets simulation
//! evidence. The node plays the hardware (as an AESM would for SGX): the backend serves a
//! per-launch socket that answers exactly one request with evidence for exactly the
//! measurement it computed for the instance, over the instance's report data.
//!
//! Wire format (both directions on one connection, then closed):
//!
//! | direction | bytes | content |
//! |---|---|---|
//! | instance → node | 64 | the report data |
//! | node → instance | 4 | length `n` of the evidence, unsigned 32-bit big-endian, `1 ≤ n ≤` [`MAX_EVIDENCE_LEN`]; 0 means refused |
//! | node → instance | `n` | the simulation evidence (`cella_attest::sim` encoding) |
//!
//! The server answers one request and then stops listening, so the program the instance
//! later runs cannot ask for evidence of its own (its report data, the instance's
//! measurement).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cella_attest::evidence::{EvidenceError, MAX_QUOTE_LEN};
use cella_attest::{Evidence, EvidenceSource, Platform, REPORT_DATA_LEN, ReportData};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// The value of `CELLA_PRELOAD_EVIDENCE` that selects this source is `socket:<path>`.
pub const SOCKET_PREFIX: &str = "socket:";

/// Largest evidence accepted: the same bound as a quote (simulation evidence is a few
/// hundred bytes).
pub const MAX_EVIDENCE_LEN: usize = MAX_QUOTE_LEN;

/// How long either side waits for the other before giving up.
pub const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Gets simulation evidence from the node over a Unix socket.
#[derive(Debug, Clone)]
pub struct SocketEvidenceSource {
    path: PathBuf,
}

impl SocketEvidenceSource {
    /// A source asking the socket at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The socket asked.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn device_error(&self, source: std::io::Error) -> EvidenceError {
        EvidenceError::Device {
            path: self.path.clone(),
            source,
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> EvidenceError {
        EvidenceError::MalformedQuote {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

impl EvidenceSource for SocketEvidenceSource {
    fn platform(&self) -> Platform {
        Platform::Sim
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        let mut stream = UnixStream::connect(&self.path).map_err(|e| self.device_error(e))?;
        stream
            .set_read_timeout(Some(EVIDENCE_TIMEOUT))
            .and_then(|()| stream.set_write_timeout(Some(EVIDENCE_TIMEOUT)))
            .map_err(|e| self.device_error(e))?;
        stream
            .write_all(report_data)
            .map_err(|e| self.device_error(e))?;
        let mut len = [0u8; 4];
        stream
            .read_exact(&mut len)
            .map_err(|e| self.device_error(e))?;
        let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
        if len == 0 {
            return Err(self.malformed("the node refused to give evidence"));
        }
        if len > MAX_EVIDENCE_LEN {
            return Err(self.malformed(format!(
                "the node announced {len} bytes of evidence, over the limit of {MAX_EVIDENCE_LEN}"
            )));
        }
        let mut evidence = vec![0u8; len];
        stream
            .read_exact(&mut evidence)
            .map_err(|e| self.device_error(e))?;
        Ok(Evidence::Sim(evidence))
    }
}

/// The evidence service could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ServeEvidenceError {
    /// Accepting, reading or writing failed, or the instance was too slow.
    #[error("evidence socket: {0}")]
    Io(#[from] std::io::Error),
    /// The source could not make evidence.
    #[error("making evidence: {0}")]
    Evidence(#[from] EvidenceError),
    /// The source made evidence larger than the wire allows.
    #[error("evidence of {0} bytes is over the limit of {MAX_EVIDENCE_LEN}")]
    TooLarge(usize),
}

/// Serves one request on `listener`: accepts one connection, reads the 64 bytes of report
/// data (within [`EVIDENCE_TIMEOUT`]), answers with `source`'s evidence over it, and
/// returns. The caller drops the listener afterwards, so no second request is answered.
///
/// # Errors
///
/// [`ServeEvidenceError`] if the connection fails or the evidence cannot be made (the
/// instance is then told it was refused, when the connection still works).
pub async fn serve_one(
    listener: &UnixListener,
    source: &dyn EvidenceSource,
) -> Result<(), ServeEvidenceError> {
    let (mut stream, _) = listener.accept().await?;
    let mut report_data = [0u8; REPORT_DATA_LEN];
    tokio::time::timeout(EVIDENCE_TIMEOUT, stream.read_exact(&mut report_data))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let answer = match source.evidence(&report_data) {
        Ok(e) if e.bytes().len() <= MAX_EVIDENCE_LEN => Ok(e),
        Ok(e) => Err(ServeEvidenceError::TooLarge(e.bytes().len())),
        Err(e) => Err(e.into()),
    };
    let mut reply = Vec::new();
    match &answer {
        Ok(e) => {
            let len = u32::try_from(e.bytes().len()).unwrap_or(0);
            reply.extend_from_slice(&len.to_be_bytes());
            reply.extend_from_slice(e.bytes());
        }
        Err(_) => reply.extend_from_slice(&0u32.to_be_bytes()),
    }
    tokio::time::timeout(EVIDENCE_TIMEOUT, stream.write_all(&reply))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _closed = stream.shutdown().await;
    answer.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use cella_attest::Measurement;
    use cella_attest::sim::{SimEvidence, SimEvidenceSource, SimSigner};

    fn sim() -> (SimEvidenceSource, Measurement) {
        let m = Measurement::sha256(b"instance");
        let signer = Arc::new(SimSigner::generate().unwrap());
        (SimEvidenceSource::new(signer, m), m)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_request_gets_evidence_for_the_measurement_and_report_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evidence.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let (source, measurement) = sim();
        let server = tokio::spawn(async move {
            let r = serve_one(&listener, &source).await;
            drop(listener);
            r
        });
        let client = SocketEvidenceSource::new(&path);
        let rd = [7u8; REPORT_DATA_LEN];
        let evidence = tokio::task::spawn_blocking(move || client.evidence(&rd))
            .await
            .unwrap()
            .unwrap();
        server.await.unwrap().unwrap();
        let Evidence::Sim(bytes) = evidence else {
            panic!("not simulation evidence")
        };
        let parsed = SimEvidence::parse(&bytes).unwrap();
        assert_eq!(parsed.statement.measurement, measurement);
        assert_eq!(parsed.statement.report_data, rd);
        // The listener is gone: a second request cannot be answered.
        std::fs::remove_file(&path).unwrap();
        let again = SocketEvidenceSource::new(&path).evidence(&rd);
        assert!(
            matches!(again, Err(EvidenceError::Device { .. })),
            "{again:?}"
        );
    }

    /// Answers one connection with `reply` after reading the report data.
    fn fake_node(path: &Path, reply: Vec<u8>) -> std::thread::JoinHandle<()> {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut rd = [0u8; REPORT_DATA_LEN];
            s.read_exact(&mut rd).unwrap();
            let _ignored = s.write_all(&reply);
        })
    }

    #[test]
    fn refusals_oversized_and_truncated_replies_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let rd = [1u8; REPORT_DATA_LEN];
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (0u32.to_be_bytes().to_vec(), "refused"),
            (u32::MAX.to_be_bytes().to_vec(), "over the limit"),
            (
                [&5u32.to_be_bytes()[..], b"ab"].concat(),
                "attestation device",
            ),
            (vec![0, 0], "attestation device"),
        ];
        for (i, (reply, expect)) in cases.into_iter().enumerate() {
            let path = dir.path().join(format!("{i}.sock"));
            let node = fake_node(&path, reply);
            let err = SocketEvidenceSource::new(&path).evidence(&rd).unwrap_err();
            node.join().unwrap();
            let text = format!("{err}");
            assert!(text.contains(expect), "case {i}: {text}");
        }
        let missing = SocketEvidenceSource::new(dir.path().join("none.sock")).evidence(&rd);
        assert!(matches!(missing, Err(EvidenceError::Device { .. })));
    }

    #[derive(Debug)]
    struct Broken;
    impl EvidenceSource for Broken {
        fn platform(&self) -> Platform {
            Platform::Sim
        }
        fn evidence(&self, _: &ReportData) -> Result<Evidence, EvidenceError> {
            Err(EvidenceError::Measure {
                path: "/x".into(),
                source: std::io::Error::other("broken"),
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failing_source_is_a_refusal_on_the_wire() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move { serve_one(&listener, &Broken).await });
        let client = SocketEvidenceSource::new(&path);
        let got = tokio::task::spawn_blocking(move || client.evidence(&[0; REPORT_DATA_LEN]))
            .await
            .unwrap();
        assert!(format!("{}", got.unwrap_err()).contains("refused"));
        assert!(matches!(
            server.await.unwrap(),
            Err(ServeEvidenceError::Evidence(_))
        ));
    }
}
