//! Simulation evidence for `gramine-direct` instances (which have no quotes): the node
//! plays the hardware, answering one request per launch with evidence for the
//! measurement the backend computed, over the wire format of the sandbox backend's
//! evidence socket (`CELLA_PRELOAD_EVIDENCE`):
//!
//! | direction | bytes | content |
//! |---|---|---|
//! | instance → node | 64 | the report data |
//! | node → instance | 4 | length `n`, unsigned 32-bit big-endian; 0 means refused |
//! | node → instance | `n` | the simulation evidence |
//!
//! Served on a Unix socket (`socket:<path>`, stand-ins without a network) or on TCP on
//! 127.0.0.1 (`tcp:127.0.0.1:<port>`: real Gramine cannot reach a Unix socket of the host).

use std::time::Duration;

use cella_attest::EvidenceSource;
use cella_attest::evidence::{MAX_QUOTE_LEN, REPORT_DATA_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How long the node waits for the instance's request and to send its answer.
pub const EVIDENCE_TIMEOUT: Duration = Duration::from_secs(10);

/// `CELLA_PRELOAD_EVIDENCE` prefix of a Unix socket.
pub const SOCKET_PREFIX: &str = "socket:";

/// A listener for one evidence request.
#[derive(Debug)]
pub enum EvidenceListener {
    /// A Unix socket.
    Unix(tokio::net::UnixListener),
    /// TCP on 127.0.0.1.
    Tcp(tokio::net::TcpListener),
}

fn timed_out(_: tokio::time::error::Elapsed) -> std::io::Error {
    std::io::Error::from(std::io::ErrorKind::TimedOut)
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    source: &dyn EvidenceSource,
) -> Result<(), std::io::Error> {
    let mut report_data = [0u8; REPORT_DATA_LEN];
    tokio::time::timeout(EVIDENCE_TIMEOUT, stream.read_exact(&mut report_data))
        .await
        .map_err(timed_out)??;
    let answer = source
        .evidence(&report_data)
        .map_err(std::io::Error::other)
        .and_then(|e| {
            let len = u32::try_from(e.bytes().len())
                .ok()
                .filter(|&n| n as usize <= MAX_QUOTE_LEN)
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
        .map_err(timed_out)??;
    let _closed = stream.shutdown().await;
    answer.map(|_| ())
}

impl EvidenceListener {
    /// Answers one request with `source`'s evidence, then returns (the caller drops the
    /// listener, so nothing else is answered: the program the instance runs later cannot
    /// ask for evidence of its own).
    ///
    /// # Errors
    ///
    /// The I/O error, a timeout, or the source's failure (the peer is then told it was
    /// refused).
    pub async fn serve_one(&self, source: &dyn EvidenceSource) -> Result<(), std::io::Error> {
        match self {
            Self::Unix(l) => answer(l.accept().await?.0, source).await,
            Self::Tcp(l) => answer(l.accept().await?.0, source).await,
        }
    }
}
