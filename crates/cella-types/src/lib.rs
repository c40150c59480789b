//! Cella's shared vocabulary: ids, the domain model, the task state machine and the
//! errors that go with them. This crate does no I/O.
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod digest;
pub mod file;
pub mod function;
pub mod id;
pub mod task;
pub mod user;

pub use digest::{DIGEST_LEN, Digest, Hasher};
pub use file::{FileSchema, InputFile, KeyMaterial, Location, OutputContent, OutputFile};
pub use function::{
    ArgumentSpec, ExecutorKind, Function, FunctionSpec, InstanceReuse, SlotSpec, SpecError,
    Visibility,
};
pub use id::{
    FileId, FunctionId, InputFileId, OutputFileId, ParseFileIdError, ParseIdError, TaskId,
};
pub use task::{
    InputSlot, Lease, NewTask, OutputSlot, Task, TaskDigest, TaskError, TaskResult, TaskStatus,
    Transition, UnassignedSlot, Usage,
};
pub use user::{Role, User, UserName};
