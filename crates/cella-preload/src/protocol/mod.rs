//! The sidecar protocol between the LibOS executor and the pre-load module: frames,
//! messages, limits. Specified in `docs/libos-protocol.md`; this module is its code.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of one protobuf
//! [`Envelope`]. Frames travel inside TLS 1.3 on a Unix socket, with RA-TLS certificates
//! on both ends; the framing knows nothing of that and works over any byte stream.
//!
//! Invariants: a reader never buffers more than one frame ([`MAX_FRAME_LEN`] plus its
//! header) and refuses an oversized frame as soon as its header is read; every
//! malformed frame is an error that ends the session (there is no resynchronisation).

mod check;
mod frame;
pub mod messages;

pub use check::{CheckError, check_deploy, valid_name};
pub use frame::{
    FrameError, FrameReader, HEADER_LEN, append_frame, decode_frame, encode_frame, write_frame,
    write_frames,
};
pub use messages::{
    Body, Cancel, Chunk, ChunkTarget, Deploy, EnvVar, Envelope, ErrorCode, ErrorMsg, ExitStatus,
    FileMeta, Finished, Hello, Limits, Log, LogStream, OutputMeta, Reset, ResourceUsage, Started,
};

/// The protocol version this crate speaks, carried in `Hello` and `Deploy`. A peer with
/// another version is refused with `Error{code: VERSION}`: there is one version so far,
/// and a version bump is how an incompatible change is made.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest message in one frame: 1 MiB. Bulk content travels in chunks of at most
/// [`MAX_CHUNK_LEN`], so no legitimate frame comes near it; the limit bounds what a peer
/// can make the other side buffer before it can judge the frame.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Largest `Chunk.data`: 256 KiB, a quarter of [`MAX_FRAME_LEN`] so that a chunk's
/// envelope always fits, and large enough that a 1 GiB input is 4096 frames.
pub const MAX_CHUNK_LEN: usize = 256 * 1024;

/// Longest log line sent (4 KiB, as `cella_executor::MAX_LOG_LINE_BYTES`): the instance
/// cuts longer lines, and the executor refuses a `Log` frame with a longer one.
pub const MAX_LOG_LINE_BYTES: usize = 4 * 1024;

/// Sustained log rate the instance allows itself: 64 KiB/s. The executor keeps at most
/// 64 KiB of log per task, so a faster log is only a load on the channel.
pub const LOG_RATE_BYTES_PER_SEC: u64 = 64 * 1024;

/// Log burst the instance allows itself above the sustained rate: 256 KiB.
pub const LOG_BURST_BYTES: u64 = 256 * 1024;

/// Largest return value (`CELLA_RETURN_FILE`): 64 KiB, as it is stored with the task.
pub const MAX_RETURN_VALUE_BYTES: usize = 64 * 1024;

/// Most workload files, and most inputs, in one `Deploy`; most output slots too. A
/// function declares at most 64 slots (`cella_types::MAX_SPEC_ENTRIES`); 256 leaves room.
pub const MAX_FILES: usize = 256;

/// Most `argv` entries, and most `env` entries, in one `Deploy`.
pub const MAX_ARGS: usize = 256;

/// Longest `argv` or `env` string (64 KiB, a task argument's limit).
pub const MAX_ARG_LEN: usize = 64 * 1024;
