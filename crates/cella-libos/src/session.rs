//! The executor's side of a session, as explicit typed states (sans I/O, in the manner of
//! rustls's `Expect*` states): each `handle(self, …)` consumes the state it is called on
//! and returns the next one, or the reason the session is over.
//!
//! ```text
//! ExpectAttested ──(verified evidence, Hello)──► Attested ──deploy()──► ExpectStarted
//!      ──Started──► Running ──Log / output Chunk──► Running
//!                           ──Finished (receipt verified)──► Done
//! Done ──reset()──► ExpectReset ──Hello──► Attested   (reuse = same-function only)
//! any state ──Error / unexpected message / bad receipt──► SessionError
//! ```
//!
//! [`ExpectAttested::handle`] takes a [`VerifiedEvidence`], which only `cella-attest`'s
//! verifier can build: a session cannot reach `Attested` with an unverified peer. The
//! receipt is checked against what *this* side sent (task, workload, inputs, command) and
//! received (outputs, return value, exit), and against the attested key and measurement,
//! before [`Done`] exists.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use cella_attest::{Measurement, VerifiedEvidence};
use cella_executor::LogBuffer;
use cella_executor::receipt::{LibosReceipt, Receipt};
use cella_preload::protocol::{
    Body, ChunkTarget, Deploy, Envelope, ErrorCode, ExitStatus, Finished, LOG_BURST_BYTES,
    LOG_RATE_BYTES_PER_SEC, LogStream, MAX_CHUNK_LEN, MAX_LOG_LINE_BYTES, MAX_RETURN_VALUE_BYTES,
    PROTOCOL_VERSION, ResourceUsage,
};
use cella_preload::receipt::{
    Entry, RECEIPT_FORMAT, ReceiptBody, command_digest, sha256, verify_signature,
};
use prost::Message;

use crate::backend::NONCE_LEN;

/// Log bytes accepted from an instance in any one-second window: twice what its own
/// token bucket lets through (burst plus one second of rate), so that frames bunched up
/// in transit never trip it, while a pre-load module that ignores its budget does.
pub const MAX_LOG_BYTES_PER_WINDOW: u64 = 2 * (LOG_BURST_BYTES + LOG_RATE_BYTES_PER_SEC);
const LOG_WINDOW: Duration = Duration::from_secs(1);

/// Why a session ended without a verified `Finished`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The instance sent something the protocol does not allow here.
    #[error("protocol violation by the instance: {0}")]
    Protocol(String),
    /// The instance speaks another protocol version.
    #[error("the instance speaks protocol version {got}, the executor speaks {PROTOCOL_VERSION}")]
    Version {
        /// Its version.
        got: u32,
    },
    /// The instance's attested identity is not the one expected.
    #[error("attestation: {0}")]
    Attestation(String),
    /// The instance gave up with `Error`.
    #[error("{message}")]
    Instance {
        /// Its code.
        code: ErrorCode,
        /// Its message.
        message: String,
    },
    /// An output over the limit.
    #[error(
        "output slot {slot:?} would hold {size} bytes, over the limit of {limit} bytes per slot"
    )]
    OutputTooLarge {
        /// The slot.
        slot: String,
        /// The size it reached.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The receipt does not match what was run.
    #[error("receipt: {0}")]
    Receipt(String),
}

fn unexpected(body: Option<Body>, state: &str) -> SessionError {
    match body {
        Some(Body::Error(e)) => SessionError::Instance {
            code: ErrorCode::try_from(e.code).unwrap_or(ErrorCode::Unspecified),
            message: e.message,
        },
        Some(other) => SessionError::Protocol(format!("{} while {state}", other.name())),
        None => SessionError::Protocol(format!("a frame without message while {state}")),
    }
}

/// Lines of stderr kept for the reason of a failed task.
pub const STDERR_TAIL_LINES: usize = 5;

/// Waiting for the instance's attested channel and its `Hello`.
#[derive(Debug)]
pub struct ExpectAttested {
    nonce: [u8; NONCE_LEN],
    expected: Measurement,
}

impl ExpectAttested {
    /// A session with an instance launched with `nonce`, which must measure `expected`.
    pub fn new(nonce: [u8; NONCE_LEN], expected: Measurement) -> Self {
        Self { nonce, expected }
    }

    /// Takes the peer's verified evidence, its certificate and its first message.
    ///
    /// # Errors
    ///
    /// [`SessionError::Attestation`] for another measurement or nonce,
    /// [`SessionError::Version`] or [`SessionError::Protocol`] for a bad first message.
    pub fn handle(
        self,
        peer: VerifiedEvidence,
        cert_der: Vec<u8>,
        first: Envelope,
    ) -> Result<Attested, SessionError> {
        if peer.measurement() != self.expected {
            return Err(SessionError::Attestation(format!(
                "the instance measures {}, but {} is expected for its runtime image",
                peer.measurement(),
                self.expected
            )));
        }
        if peer.nonce() != Some(&self.nonce[..]) {
            return Err(SessionError::Attestation(
                "the instance's evidence does not carry this launch's nonce (stale or replayed)"
                    .into(),
            ));
        }
        match first.body {
            Some(Body::Hello(h)) if h.protocol_version == PROTOCOL_VERSION => Ok(Attested {
                peer,
                cert_der,
                nonce: self.nonce,
                preload_version: h.preload_version,
                runs: 0,
            }),
            Some(Body::Hello(h)) => Err(SessionError::Version {
                got: h.protocol_version,
            }),
            other => Err(unexpected(other, "expecting Hello")),
        }
    }
}

/// An attested instance, ready for one `Deploy` (this is what the pool keeps warm).
#[derive(Debug)]
pub struct Attested {
    peer: VerifiedEvidence,
    cert_der: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    preload_version: String,
    /// Runs the instance has finished (more than 0 only after `Reset`).
    runs: u32,
}

/// `Reset` sent after a `Done`; waiting for the instance's new `Hello`.
#[derive(Debug)]
pub struct ExpectReset {
    next: Attested,
}

impl ExpectReset {
    /// Takes the instance's answer to `Reset`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Instance`] if it gave up (it could not wipe its files),
    /// [`SessionError::Version`] or [`SessionError::Protocol`] for anything but `Hello`.
    pub fn handle(self, msg: Envelope) -> Result<Attested, SessionError> {
        match msg.body {
            Some(Body::Hello(h)) if h.protocol_version == PROTOCOL_VERSION => Ok(self.next),
            Some(Body::Hello(h)) => Err(SessionError::Version {
                got: h.protocol_version,
            }),
            other => Err(unexpected(other, "expecting Hello after Reset")),
        }
    }
}

/// What the executor sent, to hold the instance's answers against.
#[derive(Debug)]
struct Expectations {
    peer: VerifiedEvidence,
    cert_der: Vec<u8>,
    nonce: [u8; NONCE_LEN],
    preload_version: String,
    run_index: u32,
    task_id: String,
    function_id: String,
    workload: Vec<Entry>,
    inputs: Vec<Entry>,
    outputs: Vec<String>,
    command: [u8; 32],
    max_output_bytes: u64,
}

impl Attested {
    /// The instance's attested measurement.
    pub fn measurement(&self) -> Measurement {
        self.peer.measurement()
    }

    /// The pre-load module's self-reported version (for logs only).
    pub fn preload_version(&self) -> &str {
        &self.preload_version
    }

    /// Runs the instance has finished so far.
    pub fn runs(&self) -> u32 {
        self.runs
    }

    /// Records that `deploy` is being sent (the caller sends it and its chunks).
    pub fn deploy(self, deploy: &Deploy) -> ExpectStarted {
        let entries = |files: &[cella_preload::protocol::FileMeta]| {
            files
                .iter()
                .map(|f| Entry {
                    name: f.name.clone(),
                    sha256: f.sha256.clone(),
                })
                .collect()
        };
        ExpectStarted {
            exp: Box::new(Expectations {
                peer: self.peer,
                cert_der: self.cert_der,
                nonce: self.nonce,
                preload_version: self.preload_version,
                run_index: self.runs + 1,
                task_id: deploy.task_id.clone(),
                function_id: deploy.function_id.clone(),
                workload: entries(&deploy.files),
                inputs: entries(&deploy.inputs),
                outputs: deploy.outputs.clone(),
                command: command_digest(&deploy.argv, &deploy.env),
                max_output_bytes: deploy.limits.unwrap_or_default().max_output_bytes,
            }),
        }
    }
}

/// `Deploy` sent; waiting for `Started`.
#[derive(Debug)]
pub struct ExpectStarted {
    exp: Box<Expectations>,
}

impl ExpectStarted {
    /// Takes the instance's answer to `Deploy`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Instance`] if it gave up (a digest mismatch, a layout failure),
    /// [`SessionError::Protocol`] for anything but `Started`.
    pub fn handle(self, msg: Envelope) -> Result<Running, SessionError> {
        match msg.body {
            Some(Body::Started(_)) => Ok(Running {
                outputs: vec![Vec::new(); self.exp.outputs.len()],
                exp: self.exp,
                log: LogBuffer::new(),
                window_start: None,
                window_bytes: 0,
                stderr_tail: VecDeque::new(),
            }),
            other => Err(unexpected(other, "expecting Started")),
        }
    }
}

/// The workload runs: log lines and output chunks arrive, then `Finished`.
#[derive(Debug)]
pub struct Running {
    exp: Box<Expectations>,
    outputs: Vec<Vec<u8>>,
    log: LogBuffer,
    window_start: Option<Instant>,
    window_bytes: u64,
    stderr_tail: VecDeque<String>,
}

/// The next state of a running session.
#[derive(Debug)]
pub enum Progress {
    /// Still running.
    Running(Running),
    /// Finished, receipt verified.
    Done(Box<Done>),
}

/// A verified end of a run.
#[derive(Debug)]
pub struct Done {
    /// How the program ended.
    pub exit: ExitStatus,
    /// The outputs by slot (empty if the program failed).
    pub outputs: BTreeMap<String, Vec<u8>>,
    /// The return value.
    pub return_value: Vec<u8>,
    /// The log.
    pub log: LogBuffer,
    /// The program's last lines of stderr (at most [`STDERR_TAIL_LINES`]), for the
    /// reason of a failed task.
    pub stderr_tail: Vec<String>,
    /// Lines the instance dropped for its rate limit.
    pub log_dropped: u64,
    /// What the instance measured.
    pub usage: ResourceUsage,
    /// The self-contained receipt bundle, encoded ([`LibosReceipt`]).
    pub receipt: Vec<u8>,
    /// The decoded receipt body.
    pub body: ReceiptBody,
    /// The instance, to serve another task of the same function after a `Reset`.
    next: Option<Attested>,
}

impl Done {
    /// Records that `Reset` is being sent: the instance is to serve another task of the
    /// same function. `None` if it was already called.
    pub fn reset(&mut self) -> Option<ExpectReset> {
        self.next.take().map(|next| ExpectReset { next })
    }
}

impl Running {
    /// The log so far.
    pub fn log(&self) -> &LogBuffer {
        &self.log
    }

    /// Takes the next message; `now` is for the log rate limit.
    ///
    /// # Errors
    ///
    /// [`SessionError`] for an `Error`, a message out of place, a log over its rate, an
    /// output over its limit, or a `Finished` whose receipt does not hold.
    pub fn handle(mut self, msg: Envelope, now: Instant) -> Result<Progress, SessionError> {
        match msg.body {
            Some(Body::Log(l)) => {
                if l.line.len() > MAX_LOG_LINE_BYTES {
                    return Err(SessionError::Protocol(format!(
                        "a log line of {} bytes, over {MAX_LOG_LINE_BYTES}",
                        l.line.len()
                    )));
                }
                if LogStream::try_from(l.stream).is_err() {
                    return Err(SessionError::Protocol(format!("log stream {}", l.stream)));
                }
                let start = *self.window_start.get_or_insert(now);
                if now.duration_since(start) >= LOG_WINDOW {
                    self.window_start = Some(now);
                    self.window_bytes = 0;
                }
                self.window_bytes += u64::try_from(l.line.len()).unwrap_or(u64::MAX).max(1);
                if self.window_bytes > MAX_LOG_BYTES_PER_WINDOW {
                    return Err(SessionError::Protocol(format!(
                        "log over {MAX_LOG_BYTES_PER_WINDOW} bytes in one second (the pre-load module ignores its rate limit)"
                    )));
                }
                if l.stream == LogStream::Stderr as i32 {
                    if self.stderr_tail.len() == STDERR_TAIL_LINES {
                        self.stderr_tail.pop_front();
                    }
                    self.stderr_tail.push_back(l.line.clone());
                }
                self.log.push(&l.line);
                Ok(Progress::Running(self))
            }
            Some(Body::Chunk(c)) => {
                if ChunkTarget::try_from(c.target) != Ok(ChunkTarget::Output) {
                    return Err(SessionError::Protocol(format!(
                        "a Chunk for target {} while running",
                        c.target
                    )));
                }
                if c.data.len() > MAX_CHUNK_LEN {
                    return Err(SessionError::Protocol(format!(
                        "a Chunk of {} bytes, over {MAX_CHUNK_LEN}",
                        c.data.len()
                    )));
                }
                let index = usize::try_from(c.index).unwrap_or(usize::MAX);
                let (Some(buf), Some(slot)) =
                    (self.outputs.get_mut(index), self.exp.outputs.get(index))
                else {
                    return Err(SessionError::Protocol(format!(
                        "a Chunk for output index {}, of {} outputs",
                        c.index,
                        self.exp.outputs.len()
                    )));
                };
                let size = u64::try_from(buf.len() + c.data.len()).unwrap_or(u64::MAX);
                if size > self.exp.max_output_bytes {
                    return Err(SessionError::OutputTooLarge {
                        slot: slot.clone(),
                        size,
                        limit: self.exp.max_output_bytes,
                    });
                }
                buf.extend_from_slice(&c.data);
                Ok(Progress::Running(self))
            }
            Some(Body::Finished(f)) => self.finish(f).map(|d| Progress::Done(Box::new(d))),
            other => Err(unexpected(other, "running")),
        }
    }

    fn finish(self, f: Finished) -> Result<Done, SessionError> {
        let exp = *self.exp;
        let exit = f
            .exit
            .ok_or_else(|| SessionError::Protocol("Finished without an exit status".into()))?;
        if f.return_value.len() > MAX_RETURN_VALUE_BYTES {
            return Err(SessionError::Protocol(format!(
                "a return value of {} bytes, over {MAX_RETURN_VALUE_BYTES}",
                f.return_value.len()
            )));
        }
        let received: Vec<Entry> = if exit.success() {
            if f.outputs.len() != exp.outputs.len() {
                return Err(SessionError::Protocol(format!(
                    "Finished lists {} outputs, {} were declared",
                    f.outputs.len(),
                    exp.outputs.len()
                )));
            }
            let mut entries = Vec::with_capacity(f.outputs.len());
            for ((meta, slot), data) in f.outputs.iter().zip(&exp.outputs).zip(&self.outputs) {
                let digest = sha256(data);
                if &meta.slot != slot
                    || meta.size != u64::try_from(data.len()).unwrap_or(u64::MAX)
                    || meta.sha256 != digest
                {
                    return Err(SessionError::Protocol(format!(
                        "Finished describes output {slot:?} otherwise than its chunks"
                    )));
                }
                entries.push(Entry::new(slot.clone(), digest));
            }
            entries
        } else {
            if !f.outputs.is_empty() || self.outputs.iter().any(|o| !o.is_empty()) {
                return Err(SessionError::Protocol(
                    "outputs from a program that failed".into(),
                ));
            }
            Vec::new()
        };
        let spki = exp.peer.public_key_spki();
        if !verify_signature(spki, &f.receipt, &f.signature) {
            return Err(SessionError::Receipt(
                "the signature does not verify with the instance's attested key".into(),
            ));
        }
        let body = ReceiptBody::decode(&f.receipt[..])
            .map_err(|e| SessionError::Receipt(format!("malformed body: {e}")))?;
        let mismatch = |field: &str| SessionError::Receipt(format!("{field} is not what was run"));
        if body.format != RECEIPT_FORMAT {
            return Err(mismatch("format"));
        }
        if body.task_id != exp.task_id {
            return Err(mismatch("task_id"));
        }
        if body.function_id != exp.function_id {
            return Err(mismatch("function_id"));
        }
        if body.measurement != exp.peer.measurement().as_bytes() {
            return Err(mismatch("measurement"));
        }
        if body.nonce != exp.nonce {
            return Err(mismatch("nonce"));
        }
        if body.workload != exp.workload {
            return Err(mismatch("workload"));
        }
        if body.inputs != exp.inputs {
            return Err(mismatch("inputs"));
        }
        if body.outputs != received {
            return Err(mismatch("outputs"));
        }
        if body.exit != Some(exit) {
            return Err(mismatch("exit"));
        }
        if body.return_value_sha256 != sha256(&f.return_value) {
            return Err(mismatch("return_value_sha256"));
        }
        if body.command_sha256 != exp.command {
            return Err(mismatch("command_sha256"));
        }
        if body.run_index != exp.run_index {
            return Err(mismatch("run_index"));
        }
        let next = Attested {
            peer: exp.peer,
            cert_der: exp.cert_der.clone(),
            nonce: exp.nonce,
            preload_version: exp.preload_version,
            runs: exp.run_index,
        };
        let bundle = Receipt::Libos(LibosReceipt::new(exp.cert_der, f.receipt, f.signature))
            .to_bytes()
            .map_err(|e| SessionError::Receipt(e.to_string()))?;
        let outputs = if exit.success() {
            exp.outputs.into_iter().zip(self.outputs).collect()
        } else {
            BTreeMap::new()
        };
        Ok(Done {
            exit,
            outputs,
            return_value: f.return_value,
            log: self.log,
            stderr_tail: self.stderr_tail.into(),
            log_dropped: f.log_dropped,
            usage: f.usage.unwrap_or_default(),
            receipt: bundle,
            body,
            next: Some(next),
        })
    }
}

#[cfg(test)]
mod tests {
    //! The states driven in memory, without a channel: an attested peer made with the
    //! real issuer and verifier, and messages built by hand.

    use std::sync::Arc;

    use cella_attest::ratls::issue_certificate;
    use cella_attest::sim::{SimEvidenceSource, SimSigner};
    use cella_preload::protocol::{
        Cancel, Chunk, ErrorMsg, FileMeta, Hello, Limits, Log, OutputMeta, Started,
    };
    use cella_preload::receipt::ReceiptSigner;

    use super::*;
    use crate::attest::ExecutorAttestation;

    const NONCE: [u8; NONCE_LEN] = [7; NONCE_LEN];

    /// An instance's identity and the executor's session with it, up to `Attested`.
    fn attested_pair(
        nonce_in_cert: [u8; NONCE_LEN],
    ) -> (Result<Attested, SessionError>, ReceiptSigner) {
        let hardware = Arc::new(SimSigner::generate().unwrap());
        let measurement = Measurement::sha256(b"instance");
        let source = SimEvidenceSource::new(Arc::clone(&hardware), measurement);
        let cert = issue_certificate(
            &source,
            Some(nonce_in_cert.to_vec()),
            rustls::pki_types::UnixTime::now(),
            Duration::from_secs(60),
        )
        .unwrap();
        let signer = ReceiptSigner::from_pkcs8(cert.key_pkcs8.secret_pkcs8_der()).unwrap();
        let attestation =
            ExecutorAttestation::simulated(hardware, Measurement::sha256(b"executor"));
        let verifier = attestation.instance_verifier(measurement).unwrap();
        let peer = verifier
            .verify_certificate(
                cella_attest::policy::roles::LIBOS_INSTANCE,
                &cert.cert_der,
                Some(&nonce_in_cert[..]),
            )
            .unwrap();
        let hello: Envelope = Body::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            preload_version: "test".into(),
        })
        .into();
        let session =
            ExpectAttested::new(NONCE, measurement).handle(peer, cert.cert_der.to_vec(), hello);
        (session, signer)
    }

    fn deploy() -> Deploy {
        Deploy {
            protocol_version: PROTOCOL_VERSION,
            task_id: "task-1".into(),
            function_id: "function-1".into(),
            function_name: "f".into(),
            files: vec![FileMeta {
                name: "program".into(),
                size: 1,
                sha256: sha256(b"p").to_vec(),
                executable: true,
            }],
            inputs: vec![],
            outputs: vec!["out".into()],
            argv: vec!["./program".into()],
            env: vec![],
            limits: Some(Limits {
                max_output_bytes: 8,
                deadline_ms: 1000,
            }),
        }
    }

    fn running() -> (Running, ReceiptSigner, Deploy) {
        let (attested, signer) = attested_pair(NONCE);
        let d = deploy();
        let running = attested
            .unwrap()
            .deploy(&d)
            .handle(Body::Started(Started {}).into())
            .unwrap();
        (running, signer, d)
    }

    fn chunk(index: u32, data: &[u8]) -> Envelope {
        Body::Chunk(Chunk {
            target: ChunkTarget::Output as i32,
            index,
            data: data.to_vec(),
        })
        .into()
    }

    /// A `Finished` for output `out` = `data`, with the body altered by `alter` before
    /// it is signed.
    fn finished(
        signer: &ReceiptSigner,
        d: &Deploy,
        data: &[u8],
        alter: impl Fn(&mut ReceiptBody),
    ) -> Envelope {
        let exit = ExitStatus {
            code: Some(0),
            signal: None,
        };
        let mut body = ReceiptBody {
            format: RECEIPT_FORMAT.into(),
            task_id: d.task_id.clone(),
            function_id: d.function_id.clone(),
            measurement: Measurement::sha256(b"instance").as_bytes().to_vec(),
            nonce: NONCE.to_vec(),
            workload: vec![Entry::new("program", sha256(b"p"))],
            inputs: vec![],
            outputs: vec![Entry::new("out", sha256(data))],
            exit: Some(exit),
            return_value_sha256: sha256(b"").to_vec(),
            command_sha256: command_digest(&d.argv, &d.env).to_vec(),
            signed_at_unix_secs: 1,
            run_index: 1,
        };
        alter(&mut body);
        let receipt = body.encode_to_vec();
        let signature = signer.sign(&receipt).unwrap();
        Body::Finished(Finished {
            exit: Some(exit),
            outputs: vec![OutputMeta {
                slot: "out".into(),
                size: data.len() as u64,
                sha256: sha256(data).to_vec(),
            }],
            usage: None,
            return_value: vec![],
            log_dropped: 0,
            receipt,
            signature,
        })
        .into()
    }

    fn step(r: Running, msg: Envelope) -> Result<Progress, SessionError> {
        r.handle(msg, Instant::now())
    }

    #[test]
    fn attestation_checks_the_nonce_and_the_first_message() {
        assert!(attested_pair(NONCE).0.is_ok());
        let (stale, _) = attested_pair([8; NONCE_LEN]);
        assert!(matches!(stale, Err(SessionError::Attestation(m)) if m.contains("nonce")));
    }

    #[test]
    fn a_run_reaches_done_with_a_verified_receipt() {
        let (r, signer, d) = running();
        let Progress::Running(r) = step(
            r,
            Body::Log(Log {
                stream: 1,
                line: "hi".into(),
            })
            .into(),
        )
        .unwrap() else {
            panic!()
        };
        let Progress::Running(r) = step(r, chunk(0, b"abc")).unwrap() else {
            panic!()
        };
        let Progress::Done(done) = step(r, finished(&signer, &d, b"abc", |_| {})).unwrap() else {
            panic!()
        };
        assert_eq!(done.outputs["out"], b"abc");
        assert_eq!(done.log.lines(), ["hi"]);
        let bundle = LibosReceipt::decode(&done.receipt[..]).unwrap();
        assert_eq!(bundle.format, cella_executor::receipt::BUNDLE_FORMAT);
    }

    /// A run that reached `Done`, with its signer and `Deploy`.
    fn a_done_run() -> (Box<Done>, ReceiptSigner, Deploy) {
        let (r, signer, d) = running();
        let Progress::Running(r) = step(r, chunk(0, b"abc")).unwrap() else {
            panic!()
        };
        let Progress::Done(done) = step(r, finished(&signer, &d, b"abc", |_| {})).unwrap() else {
            panic!()
        };
        (done, signer, d)
    }

    #[test]
    fn reset_serves_a_second_run_whose_receipt_counts_it() {
        let (mut done, _, _) = a_done_run();
        // Only Hello answers Reset.
        let refused = done
            .reset()
            .unwrap()
            .handle(Body::Started(Started {}).into());
        assert!(done.reset().is_none(), "a second Reset of one run");
        assert!(matches!(refused, Err(SessionError::Protocol(m)) if m.contains("after Reset")));

        let (mut done, signer, d) = a_done_run();
        let hello = Body::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            preload_version: "v".into(),
        });
        let again = done.reset().unwrap().handle(hello.into()).unwrap();
        assert_eq!(again.runs(), 1);
        let run2 = |alter: fn(&mut ReceiptBody)| {
            let r = again_running(&again, &d);
            let Progress::Running(r) = step(r, chunk(0, b"xyz")).unwrap() else {
                panic!()
            };
            step(r, finished(&signer, &d, b"xyz", alter))
        };
        // The second run's receipt must say it is the second run: a receipt claiming
        // a fresh instance is refused.
        assert!(matches!(
            run2(|b| b.run_index = 1),
            Err(SessionError::Receipt(m)) if m.contains("run_index")
        ));
        assert!(matches!(run2(|b| b.run_index = 2), Ok(Progress::Done(_))));
    }

    /// A second deployment on an instance rebuilt from `again`'s parts (the states are
    /// consumed, so the test clones what it needs through a fresh `Attested`).
    fn again_running(again: &Attested, d: &Deploy) -> Running {
        Attested {
            peer: again.peer.clone(),
            cert_der: again.cert_der.clone(),
            nonce: again.nonce,
            preload_version: again.preload_version.clone(),
            runs: again.runs,
        }
        .deploy(d)
        .handle(Body::Started(Started {}).into())
        .unwrap()
    }

    #[test]
    fn out_of_place_and_oversized_messages_end_the_session() {
        let (attested, _) = attested_pair(NONCE);
        let r = attested.unwrap().deploy(&deploy()).handle(
            Body::Log(Log {
                stream: 0,
                line: "early".into(),
            })
            .into(),
        );
        assert!(
            matches!(r, Err(SessionError::Protocol(m)) if m.contains("Log while expecting Started"))
        );
        let (attested, _) = attested_pair(NONCE);
        let r = attested
            .unwrap()
            .deploy(&deploy())
            .handle(Body::Error(ErrorMsg::new(ErrorCode::DigestMismatch, "bad digest")).into());
        assert!(matches!(
            r,
            Err(SessionError::Instance {
                code: ErrorCode::DigestMismatch,
                ..
            })
        ));

        let (r, _, _) = running();
        let long = Body::Log(Log {
            stream: 0,
            line: "x".repeat(MAX_LOG_LINE_BYTES + 1),
        });
        assert!(matches!(
            step(r, long.into()),
            Err(SessionError::Protocol(_))
        ));
        let (r, _, _) = running();
        assert!(matches!(
            step(r, chunk(1, b"x")),
            Err(SessionError::Protocol(_))
        ));
        let (r, _, _) = running();
        assert_eq!(
            step(r, chunk(0, b"123456789")).err(),
            Some(SessionError::OutputTooLarge {
                slot: "out".into(),
                size: 9,
                limit: 8
            })
        );
        let (r, _, _) = running();
        assert!(matches!(
            step(
                r,
                Body::Cancel(Cancel {
                    reason: String::new()
                })
                .into()
            ),
            Err(SessionError::Protocol(_))
        ));
    }

    #[test]
    fn a_finished_that_differs_from_what_ran_is_refused() {
        type Alter = fn(&mut ReceiptBody);
        let cases: [(&str, Alter); 8] = [
            ("task_id", |b| b.task_id.push('x')),
            ("function_id", |b| b.function_id.push('x')),
            ("measurement", |b| b.measurement[0] ^= 1),
            ("nonce", |b| b.nonce[0] ^= 1),
            ("workload", |b| b.workload[0].sha256[0] ^= 1),
            ("outputs", |b| b.outputs[0].sha256[0] ^= 1),
            ("exit", |b| b.exit = None),
            ("command_sha256", |b| b.command_sha256[0] ^= 1),
        ];
        for (field, alter) in cases {
            let (r, signer, d) = running();
            let Progress::Running(r) = step(r, chunk(0, b"abc")).unwrap() else {
                panic!()
            };
            let err = step(r, finished(&signer, &d, b"abc", alter)).err();
            assert!(
                matches!(&err, Some(SessionError::Receipt(m)) if m.starts_with(field)),
                "{field}: {err:?}"
            );
        }
        // Output chunks that differ from what Finished describes.
        let (r, signer, d) = running();
        let Progress::Running(r) = step(r, chunk(0, b"abd")).unwrap() else {
            panic!()
        };
        assert!(matches!(
            step(r, finished(&signer, &d, b"abc", |_| {})),
            Err(SessionError::Protocol(m)) if m.contains("otherwise than its chunks")
        ));
    }
}
