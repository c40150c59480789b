//! The sidecar protocol's messages, derived with [`prost::Message`] (there is no `.proto`
//! build step: `docs/libos-protocol.md` is the specification, with every field number,
//! and `tests::field_numbers_match_the_spec` pins the encoding to it).
//!
//! Every frame carries exactly one [`Envelope`]; its `body` says which message it is.
//! Messages are only *decoded* here; whether one is allowed at a given point of a session
//! is the business of the state machines (the executor's `cella_libos::session` and the
//! instance's [`crate::instance`]), and [`super::check_deploy`] checks what the encoding cannot
//! say (names, sizes, counts).

/// One frame's message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Envelope {
    /// The message; a frame without one is malformed.
    #[prost(oneof = "Body", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9")]
    pub body: Option<Body>,
}

/// The messages, by the field number that carries them in an [`Envelope`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Body {
    /// Instance → executor, first message after the TLS handshake.
    #[prost(message, tag = "1")]
    Hello(Hello),
    /// Executor → instance: what to run.
    #[prost(message, tag = "2")]
    Deploy(Deploy),
    /// Either way: bulk content of a file announced in a `Deploy` or `Finished`.
    #[prost(message, tag = "3")]
    Chunk(Chunk),
    /// Instance → executor: the workload is laid out, verified and started.
    #[prost(message, tag = "4")]
    Started(Started),
    /// Instance → executor: one line of the workload's log.
    #[prost(message, tag = "5")]
    Log(Log),
    /// Executor → instance: stop the workload.
    #[prost(message, tag = "6")]
    Cancel(Cancel),
    /// Instance → executor: the workload ended; its outputs were sent as chunks before.
    #[prost(message, tag = "7")]
    Finished(Finished),
    /// Either way: the sender gives up, and says why. The channel closes after it.
    #[prost(message, tag = "8")]
    Error(ErrorMsg),
    /// Executor → instance, only right after `Finished`: wipe the run's files and serve
    /// another task of the same function; the instance answers with `Hello`.
    #[prost(message, tag = "9")]
    Reset(Reset),
}

impl Body {
    /// The message's name, as in the specification.
    pub fn name(&self) -> &'static str {
        match self {
            Body::Hello(_) => "Hello",
            Body::Deploy(_) => "Deploy",
            Body::Chunk(_) => "Chunk",
            Body::Started(_) => "Started",
            Body::Log(_) => "Log",
            Body::Cancel(_) => "Cancel",
            Body::Finished(_) => "Finished",
            Body::Error(_) => "Error",
            Body::Reset(_) => "Reset",
        }
    }
}

impl From<Body> for Envelope {
    fn from(body: Body) -> Self {
        Self { body: Some(body) }
    }
}

/// The instance's first message: which protocol it speaks.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Hello {
    /// The protocol version, [`super::PROTOCOL_VERSION`].
    #[prost(uint32, tag = "1")]
    pub protocol_version: u32,
    /// The pre-load module's version, for the node's log only (it is not trusted: the
    /// measurement is what identifies the pre-load module).
    #[prost(string, tag = "2")]
    pub preload_version: String,
}

/// A file sent to the instance: announced here, its bytes follow in [`Chunk`]s.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct FileMeta {
    /// The file name inside its directory (a slot name for inputs).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its size in bytes.
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// Its SHA-256, 32 bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub sha256: Vec<u8>,
    /// Whether it is laid out executable (workload files only).
    #[prost(bool, tag = "4")]
    pub executable: bool,
}

/// An environment variable of the workload.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct EnvVar {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Limits the instance enforces on the workload.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Limits {
    /// Largest content of one output slot, in bytes.
    #[prost(uint64, tag = "1")]
    pub max_output_bytes: u64,
    /// The task's wall-clock budget, in milliseconds (the executor enforces it too).
    #[prost(uint64, tag = "2")]
    pub deadline_ms: u64,
}

/// What to run: the executor's only request.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Deploy {
    /// The protocol version, [`super::PROTOCOL_VERSION`].
    #[prost(uint32, tag = "1")]
    pub protocol_version: u32,
    /// The task being run (bound into the receipt).
    #[prost(string, tag = "2")]
    pub task_id: String,
    /// The function being run (bound into the receipt).
    #[prost(string, tag = "3")]
    pub function_id: String,
    /// The workload's files, laid out read-only in the workload directory.
    #[prost(message, repeated, tag = "4")]
    pub files: Vec<FileMeta>,
    /// The inputs by slot, laid out read-only in the input directory.
    #[prost(message, repeated, tag = "5")]
    pub inputs: Vec<FileMeta>,
    /// The output slots; the workload writes each as a file in the output directory.
    #[prost(string, repeated, tag = "6")]
    pub outputs: Vec<String>,
    /// The command line. `argv[0]` is resolved as the pre-load module documents.
    #[prost(string, repeated, tag = "7")]
    pub argv: Vec<String>,
    /// Extra environment variables.
    #[prost(message, repeated, tag = "8")]
    pub env: Vec<EnvVar>,
    /// Limits.
    #[prost(message, optional, tag = "9")]
    pub limits: Option<Limits>,
    /// The function's name, for the program's `task.json` (the receipt binds
    /// `function_id`, not this).
    #[prost(string, tag = "10")]
    pub function_name: String,
}

/// Which list a [`Chunk`] belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ChunkTarget {
    /// Never sent; a chunk with it is malformed.
    Unspecified = 0,
    /// `Deploy.files[index]`.
    File = 1,
    /// `Deploy.inputs[index]`.
    Input = 2,
    /// `Deploy.outputs[index]`, sent by the instance before `Finished`.
    Output = 3,
}

/// A piece of a file's content. The pieces of one file come in order.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Chunk {
    /// Which list the file is in.
    #[prost(enumeration = "ChunkTarget", tag = "1")]
    pub target: i32,
    /// The file's index in that list.
    #[prost(uint32, tag = "2")]
    pub index: u32,
    /// The next bytes of the file, at most [`super::MAX_CHUNK_LEN`].
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
}

/// The workload is laid out, every digest verified, and the program started.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Started {}

/// Serve another task: the instance removes every file of the last run (workload,
/// inputs, outputs, scratch, return value) and says `Hello` again.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct Reset {}

/// Which output stream a log line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum LogStream {
    /// Standard output.
    Stdout = 0,
    /// Standard error.
    Stderr = 1,
}

/// One line the workload wrote, without its line ending.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Log {
    /// The stream.
    #[prost(enumeration = "LogStream", tag = "1")]
    pub stream: i32,
    /// The line, at most [`super::MAX_LOG_LINE_BYTES`] bytes of UTF-8 (invalid bytes
    /// replaced).
    #[prost(string, tag = "2")]
    pub line: String,
}

/// Stop the workload now; answered by `Error{code: CANCELED}`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Cancel {
    /// Why, for the instance's log.
    #[prost(string, tag = "1")]
    pub reason: String,
}

/// How the workload ended.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ExitStatus {
    /// The exit code, if it exited.
    #[prost(int32, optional, tag = "1")]
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    #[prost(int32, optional, tag = "2")]
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// Exited with code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0) && self.signal.is_none()
    }
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit status {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => f.write_str("unknown exit status"),
        }
    }
}

/// An output as the instance collected it; its bytes were sent as chunks before.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct OutputMeta {
    /// The slot.
    #[prost(string, tag = "1")]
    pub slot: String,
    /// The size in bytes.
    #[prost(uint64, tag = "2")]
    pub size: u64,
    /// Its SHA-256, 32 bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub sha256: Vec<u8>,
}

/// Resources the workload used, as the instance measured them.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct ResourceUsage {
    /// Wall-clock run time of the program, in microseconds.
    #[prost(uint64, tag = "1")]
    pub wall_us: u64,
    /// Bytes of input laid out.
    #[prost(uint64, tag = "2")]
    pub input_bytes: u64,
    /// Bytes of output collected.
    #[prost(uint64, tag = "3")]
    pub output_bytes: u64,
}

/// The workload ended: how, what it produced, and the signed receipt.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Finished {
    /// How it ended.
    #[prost(message, optional, tag = "1")]
    pub exit: Option<ExitStatus>,
    /// Every declared output, in `Deploy.outputs` order (none if the program failed).
    #[prost(message, repeated, tag = "2")]
    pub outputs: Vec<OutputMeta>,
    /// Resources used.
    #[prost(message, optional, tag = "3")]
    pub usage: Option<ResourceUsage>,
    /// The program's return value (the file named by `CELLA_RETURN_FILE`), at most
    /// [`super::MAX_RETURN_VALUE_BYTES`].
    #[prost(bytes = "vec", tag = "4")]
    pub return_value: Vec<u8>,
    /// Log lines the instance dropped (rate limit).
    #[prost(uint64, tag = "5")]
    pub log_dropped: u64,
    /// The receipt body, a [`crate::receipt::ReceiptBody`] encoded.
    #[prost(bytes = "vec", tag = "6")]
    pub receipt: Vec<u8>,
    /// ECDSA P-256 SHA-256 signature (ASN.1 DER) by the instance's attested key over
    /// [`crate::receipt::SIGNING_CONTEXT`] ‖ `receipt`.
    #[prost(bytes = "vec", tag = "7")]
    pub signature: Vec<u8>,
}

/// Why the sender gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ErrorCode {
    /// No more specific code.
    Unspecified = 0,
    /// The peer broke the protocol (a message out of place, a malformed frame).
    Protocol = 1,
    /// The peer speaks another protocol version.
    Version = 2,
    /// A file's content does not match its announced size or digest.
    DigestMismatch = 3,
    /// The workload could not be laid out.
    Layout = 4,
    /// The program could not be started.
    Spawn = 5,
    /// The program exited without writing a declared output.
    OutputMissing = 6,
    /// An output is larger than `Limits.max_output_bytes`.
    OutputTooLarge = 7,
    /// The workload was stopped on `Cancel`.
    Canceled = 8,
    /// The instance failed on its own.
    Internal = 9,
}

/// The sender gives up; the channel closes after this message.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ErrorMsg {
    /// The kind of failure.
    #[prost(enumeration = "ErrorCode", tag = "1")]
    pub code: i32,
    /// What happened, for people.
    #[prost(string, tag = "2")]
    pub message: String,
}

impl ErrorMsg {
    /// An error message with `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code: code as i32,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use prost::Message;

    use super::*;
    use crate::receipt::{Entry, ReceiptBody};

    /// The `name → number` table of `### {section}` in `docs/libos-protocol.md`.
    fn spec_table(section: &str) -> BTreeMap<String, u32> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/libos-protocol.md");
        let doc = std::fs::read_to_string(path).expect("docs/libos-protocol.md");
        let start = doc
            .find(&format!("### {section}\n"))
            .unwrap_or_else(|| panic!("no section {section}"));
        let rest = &doc[start + 4..];
        let end = rest.find("\n#").unwrap_or(rest.len());
        rest[..end]
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let number = cells.get(2)?.parse().ok()?;
                Some((name.to_owned(), number))
            })
            .collect()
    }

    /// The field number of the only top-level field in `bytes`.
    fn only_field(bytes: &[u8]) -> u32 {
        let mut buf = bytes;
        let key = prost::encoding::decode_varint(&mut buf).unwrap();
        let field = u32::try_from(key >> 3).unwrap();
        let wire = prost::encoding::WireType::try_from(key & 7).unwrap();
        prost::encoding::skip_field(wire, field, &mut buf, Default::default()).unwrap();
        assert!(buf.is_empty(), "more than one field");
        field
    }

    /// A field's name in the spec, and how to set it alone.
    type Setter<M> = (&'static str, fn(&mut M));

    fn check<M: Message + Default>(section: &str, setters: &[Setter<M>]) {
        let spec = spec_table(section);
        assert_eq!(
            spec.keys().map(String::as_str).collect::<Vec<_>>(),
            {
                let mut names: Vec<&str> = setters.iter().map(|(n, _)| *n).collect();
                names.sort_unstable();
                names
            },
            "{section}: the fields of the spec and of the code differ"
        );
        for (name, set) in setters {
            let mut m = M::default();
            set(&mut m);
            assert_eq!(
                only_field(&m.encode_to_vec()),
                spec[*name],
                "{section}.{name}"
            );
        }
    }

    #[test]
    fn field_numbers_match_the_spec() {
        check::<Envelope>(
            "Envelope",
            &[
                ("hello", |m| m.body = Some(Body::Hello(Hello::default()))),
                ("deploy", |m| m.body = Some(Body::Deploy(Deploy::default()))),
                ("chunk", |m| m.body = Some(Body::Chunk(Chunk::default()))),
                ("started", |m| m.body = Some(Body::Started(Started {}))),
                ("log", |m| m.body = Some(Body::Log(Log::default()))),
                ("cancel", |m| m.body = Some(Body::Cancel(Cancel::default()))),
                ("finished", |m| {
                    m.body = Some(Body::Finished(Finished::default()))
                }),
                ("error", |m| m.body = Some(Body::Error(ErrorMsg::default()))),
                ("reset", |m| m.body = Some(Body::Reset(Reset {}))),
            ],
        );
        check::<Hello>(
            "Hello",
            &[
                ("protocol_version", |m| m.protocol_version = 1),
                ("preload_version", |m| m.preload_version = "v".into()),
            ],
        );
        check::<Deploy>(
            "Deploy",
            &[
                ("protocol_version", |m| m.protocol_version = 1),
                ("task_id", |m| m.task_id = "t".into()),
                ("function_id", |m| m.function_id = "f".into()),
                ("files", |m| m.files = vec![FileMeta::default()]),
                ("inputs", |m| m.inputs = vec![FileMeta::default()]),
                ("outputs", |m| m.outputs = vec!["o".into()]),
                ("argv", |m| m.argv = vec!["a".into()]),
                ("env", |m| m.env = vec![EnvVar::default()]),
                ("limits", |m| m.limits = Some(Limits::default())),
                ("function_name", |m| m.function_name = "n".into()),
            ],
        );
        check::<Chunk>(
            "Chunk",
            &[
                ("target", |m| m.target = ChunkTarget::Input as i32),
                ("index", |m| m.index = 1),
                ("data", |m| m.data = vec![1]),
            ],
        );
        check::<Finished>(
            "Finished",
            &[
                ("exit", |m| m.exit = Some(ExitStatus::default())),
                ("outputs", |m| m.outputs = vec![OutputMeta::default()]),
                ("usage", |m| m.usage = Some(ResourceUsage::default())),
                ("return_value", |m| m.return_value = vec![1]),
                ("log_dropped", |m| m.log_dropped = 1),
                ("receipt", |m| m.receipt = vec![1]),
                ("signature", |m| m.signature = vec![1]),
            ],
        );
        check::<ReceiptBody>(
            "ReceiptBody",
            &[
                ("format", |m| m.format = "f".into()),
                ("task_id", |m| m.task_id = "t".into()),
                ("function_id", |m| m.function_id = "f".into()),
                ("measurement", |m| m.measurement = vec![1]),
                ("nonce", |m| m.nonce = vec![1]),
                ("workload", |m| m.workload = vec![Entry::default()]),
                ("inputs", |m| m.inputs = vec![Entry::default()]),
                ("outputs", |m| m.outputs = vec![Entry::default()]),
                ("exit", |m| m.exit = Some(ExitStatus::default())),
                ("return_value_sha256", |m| m.return_value_sha256 = vec![1]),
                ("command_sha256", |m| m.command_sha256 = vec![1]),
                ("signed_at_unix_secs", |m| m.signed_at_unix_secs = 1),
                ("run_index", |m| m.run_index = 2),
            ],
        );
    }

    #[test]
    fn inline_messages_and_enums_match_the_spec() {
        // The messages the spec describes in running text.
        let f = |m: &dyn Fn() -> Vec<u8>| only_field(&m());
        assert_eq!(
            f(&|| FileMeta {
                name: "n".into(),
                ..Default::default()
            }
            .encode_to_vec()),
            1
        );
        assert_eq!(
            f(&|| FileMeta {
                size: 1,
                ..Default::default()
            }
            .encode_to_vec()),
            2
        );
        assert_eq!(
            f(&|| FileMeta {
                sha256: vec![1],
                ..Default::default()
            }
            .encode_to_vec()),
            3
        );
        assert_eq!(
            f(&|| FileMeta {
                executable: true,
                ..Default::default()
            }
            .encode_to_vec()),
            4
        );
        assert_eq!(
            f(&|| EnvVar {
                value: "v".into(),
                ..Default::default()
            }
            .encode_to_vec()),
            2
        );
        assert_eq!(
            f(&|| Limits {
                deadline_ms: 1,
                ..Default::default()
            }
            .encode_to_vec()),
            2
        );
        assert_eq!(
            f(&|| Log {
                stream: 1,
                ..Default::default()
            }
            .encode_to_vec()),
            1
        );
        assert_eq!(
            f(&|| Log {
                line: "l".into(),
                ..Default::default()
            }
            .encode_to_vec()),
            2
        );
        assert_eq!(f(&|| Cancel { reason: "r".into() }.encode_to_vec()), 1);
        assert_eq!(
            f(&|| ExitStatus {
                signal: Some(9),
                code: None
            }
            .encode_to_vec()),
            2
        );
        assert_eq!(
            f(&|| OutputMeta {
                sha256: vec![1],
                ..Default::default()
            }
            .encode_to_vec()),
            3
        );
        assert_eq!(
            f(&|| ResourceUsage {
                output_bytes: 1,
                ..Default::default()
            }
            .encode_to_vec()),
            3
        );
        assert_eq!(
            f(&|| ErrorMsg::new(ErrorCode::Protocol, "").encode_to_vec()),
            1
        );
        assert_eq!(Started {}.encode_to_vec(), Vec::<u8>::new());
        let codes = [
            (ErrorCode::Unspecified, 0),
            (ErrorCode::Protocol, 1),
            (ErrorCode::Version, 2),
            (ErrorCode::DigestMismatch, 3),
            (ErrorCode::Layout, 4),
            (ErrorCode::Spawn, 5),
            (ErrorCode::OutputMissing, 6),
            (ErrorCode::OutputTooLarge, 7),
            (ErrorCode::Canceled, 8),
            (ErrorCode::Internal, 9),
        ];
        for (code, n) in codes {
            assert_eq!(code as i32, n, "{code:?}");
        }
        assert_eq!(ChunkTarget::File as i32, 1);
        assert_eq!(ChunkTarget::Input as i32, 2);
        assert_eq!(ChunkTarget::Output as i32, 3);
        assert_eq!(LogStream::Stderr as i32, 1);
        assert_eq!(super::super::MAX_FRAME_LEN, 1_048_576);
        assert_eq!(super::super::PROTOCOL_VERSION, 1);
    }
}
