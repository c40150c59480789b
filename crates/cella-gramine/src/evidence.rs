//! Simulation evidence for `gramine-direct` instances over TCP on 127.0.0.1 (Gramine
//! cannot reach a Unix socket of the host): the wire format of
//! `cella_preload::evidence` (64 bytes of report data in; a 4-byte big-endian length and
//! the evidence out, length 0 for a refusal), one request per launch.

use cella_attest::EvidenceSource;
use cella_attest::evidence::REPORT_DATA_LEN;
use cella_preload::evidence::{EVIDENCE_TIMEOUT, MAX_EVIDENCE_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Answers one request on `listener` with `source`'s evidence, then returns (the caller
/// drops the listener, so nothing else is answered).
///
/// # Errors
///
/// The I/O error, a timeout, or the source's failure (the peer is then told it was
/// refused).
pub async fn serve_one_tcp(
    listener: &TcpListener,
    source: &dyn EvidenceSource,
) -> Result<(), std::io::Error> {
    let timeout = |_| std::io::Error::from(std::io::ErrorKind::TimedOut);
    let (mut stream, _) = listener.accept().await?;
    let mut report_data = [0u8; REPORT_DATA_LEN];
    tokio::time::timeout(EVIDENCE_TIMEOUT, stream.read_exact(&mut report_data))
        .await
        .map_err(timeout)??;
    let answer = source
        .evidence(&report_data)
        .map_err(std::io::Error::other)
        .and_then(|e| {
            let len = u32::try_from(e.bytes().len())
                .ok()
                .filter(|&n| n as usize <= MAX_EVIDENCE_LEN)
                .ok_or_else(|| std::io::Error::other("evidence over the wire's limit"))?;
            Ok((len, e))
        });
    let mut reply = Vec::new();
    match &answer {
        Ok((len, e)) => {
            reply.extend_from_slice(&len.to_be_bytes());
            reply.extend_from_slice(e.bytes());
        }
        Err(_) => reply.extend_from_slice(&0u32.to_be_bytes()),
    }
    tokio::time::timeout(EVIDENCE_TIMEOUT, stream.write_all(&reply))
        .await
        .map_err(timeout)??;
    let _closed = stream.shutdown().await;
    answer.map(|_| ())
}
