"""Typed stubs of ``cella._native`` (crates/cella-py), the SDK's native module.

Kept by hand beside the Rust code: a test runs ``mypy --strict`` over these stubs, the
examples and the tests (sdk/python/tests/test_typing.py), and another checks that every
name the module exports is stubbed and every stubbed name exists.
"""

import os
import pathlib
from typing import Awaitable, Callable, Dict, List, Optional, Sequence, Union

#: A path argument: a ``str`` or any ``os.PathLike`` (``pathlib.Path``).
StrPath = Union[str, "os.PathLike[str]"]
#: A function's payload: ``bytes``, a builtin's name (``str``, never taken as a path),
#: or a ``pathlib.Path`` (any ``os.PathLike``) to read it from.
Payload = Union[bytes, str, "os.PathLike[str]"]
#: Called with the bytes transferred so far; an exception it raises ends the call.
ProgressCallback = Callable[[int], object]

# ---- errors ----

class CellaError(Exception):
    """Base class of every Cella SDK error."""

class ConnectError(CellaError):
    """The node could not be reached, or TLS with it failed."""

class AttestationError(ConnectError):
    """The node's evidence (or pinned certificate) was refused: nothing was sent."""

class NotLoggedInError(CellaError):
    """An authenticated call without a session: call login first."""

class InvalidInputError(CellaError):
    """Bad input from the caller, caught before anything was sent."""

class ProtocolError(CellaError):
    """The node's answer broke the protocol (a missing or malformed field)."""

class SealError(CellaError):
    """A sealed file could not be written or opened (wrong key, tampered, truncated)."""

class DigestMismatchError(CellaError):
    """approve refused: the task digest is not the one recomputed or reviewed locally."""

class TaskFailedError(CellaError):
    """The task ended Failed or Canceled, so it has no results."""

class ReceiptError(CellaError):
    """A receipt does not verify, or does not match the task."""

class StatusError(CellaError):
    """The node refused a call."""

    #: The gRPC code's name, such as ``"NOT_FOUND"``.
    code: str
    #: The RPC, such as ``"GetTask"``.
    op: str
    #: The node's own message.
    message: str

class CancelledError(StatusError): ...
class UnknownError(StatusError): ...
class InvalidArgumentError(StatusError): ...
class DeadlineExceededError(StatusError): ...
class NotFoundError(StatusError): ...
class AlreadyExistsError(StatusError): ...
class PermissionDeniedError(StatusError): ...
class ResourceExhaustedError(StatusError): ...
class FailedPreconditionError(StatusError): ...
class AbortedError(StatusError): ...
class OutOfRangeError(StatusError): ...
class UnimplementedError(StatusError): ...
class InternalError(StatusError): ...
class UnavailableError(StatusError): ...
class DataLossError(StatusError): ...
class UnauthenticatedError(StatusError): ...

# ---- keys and sealing ----

class FileKey:
    """A 256-bit file key; its repr is redacted."""

    @staticmethod
    def generate() -> "FileKey": ...
    @staticmethod
    def from_hex(text: str) -> "FileKey": ...
    @staticmethod
    def load(path: StrPath) -> "FileKey": ...
    def save(self, path: StrPath) -> None: ...
    def hex(self) -> str: ...
    def __eq__(self, other: object) -> bool: ...

class Sealed:
    """What sealing or inspecting a sealed file found."""

    plaintext_len: int
    ciphertext_len: int
    ciphertext_digest: str

def seal_file(path: StrPath, out: StrPath, key: Optional[FileKey] = None) -> FileKey: ...
def unseal_file(path: StrPath, out: StrPath, key: FileKey) -> int: ...
def inspect_sealed(path: StrPath, key: FileKey) -> Sealed: ...

# ---- values ----

class LoginInfo:
    user: str
    roles: List[str]
    expires_at_ms: int

class User:
    name: str
    roles: List[str]
    created_at_ms: int

class Function:
    function_id: str
    owner: str
    name: str
    executor: str
    runtime: Optional[str]
    description: str
    inputs: List[str]
    outputs: List[str]
    max_output_bytes: Optional[int]
    quota: Optional[int]
    payload_digest: str
    payload_len: int
    disabled: bool
    created_at_ms: int

class File:
    file_id: str
    owner: str
    location: str
    schema: str
    ciphertext_digest: Optional[str]
    size: int
    created_at_ms: int
    written_by_task: Optional[str]

class Slot:
    slot: str
    owners: List[str]
    optional: bool
    file_id: Optional[str]
    ciphertext_digest: Optional[str]

class Task:
    @property
    def task_id(self) -> str: ...
    @property
    def creator(self) -> str: ...
    @property
    def function_id(self) -> str: ...
    @property
    def function_owner(self) -> str: ...
    @property
    def function_payload_digest(self) -> str: ...
    @property
    def function_reuse(self) -> str: ...
    @property
    def arguments(self) -> Dict[str, str]: ...
    @property
    def inputs(self) -> List[Slot]: ...
    @property
    def outputs(self) -> List[Slot]: ...
    @property
    def participants(self) -> List[str]: ...
    @property
    def approved_by(self) -> List[str]: ...
    @property
    def status(self) -> str: ...
    @property
    def is_terminal(self) -> bool: ...
    @property
    def task_digest(self) -> Optional[str]: ...
    @property
    def reason(self) -> Optional[str]: ...
    @property
    def attempts(self) -> int: ...
    @property
    def return_value(self) -> Optional[bytes]: ...
    @property
    def log(self) -> List[str]: ...
    @property
    def output_digests(self) -> Dict[str, str]: ...
    @property
    def receipt(self) -> Optional[bytes]: ...
    def compute_digest(self) -> str: ...
    def describe(self) -> str: ...

class Receipt:
    task_id: str
    measurement: str
    platform: str
    sim_signer: Optional[str]
    appraised: bool
    workload: Dict[str, str]
    inputs: Dict[str, str]
    outputs: Dict[str, str]
    outputs_checked: List[str]
    exit: Optional[str]

class TaskWatch:
    def __iter__(self) -> "TaskWatch": ...
    def __next__(self) -> Task: ...

class AsyncTaskWatch:
    def __aiter__(self) -> "AsyncTaskWatch": ...
    def __anext__(self) -> Awaitable[Task]: ...

# ---- clients ----

class Client:
    """A blocking client (scripts, notebooks); each call releases the GIL."""

    @staticmethod
    def connect(
        addr: str, *, policy: Optional[StrPath] = None, cert: Optional[StrPath] = None
    ) -> "Client": ...
    @property
    def addr(self) -> str: ...
    @property
    def user(self) -> Optional[str]: ...
    def watch(self, task_id: str) -> TaskWatch: ...
    def login(self, user: str, password: str) -> LoginInfo: ...
    def logout(self) -> None: ...
    def register_user(self, user: str, password: str, roles: Sequence[str]) -> User: ...
    def change_password(
        self, old_password: str, new_password: str, *, user: Optional[str] = None
    ) -> None: ...
    def list_users(self) -> List[User]: ...
    def register_function(
        self,
        name: str,
        executor: str,
        payload: Payload,
        *,
        inputs: Sequence[str] = ...,
        outputs: Sequence[str] = ...,
        arguments: Optional[Dict[str, Optional[str]]] = None,
        description: str = "",
        runtime: Optional[str] = None,
        public: bool = False,
        allowed_users: Sequence[str] = ...,
        reuse: Optional[str] = None,
        max_output_bytes: Optional[int] = None,
        quota: Optional[int] = None,
    ) -> Function: ...
    def get_function(self, function_id: str) -> Function: ...
    def list_functions(self, *, mine_only: bool = False) -> List[Function]: ...
    def disable_function(self, function_id: str) -> Function: ...
    def delete_function(self, function_id: str) -> None: ...
    def upload(
        self, path: StrPath, key: FileKey, *, progress: Optional[ProgressCallback] = None
    ) -> File: ...
    def register_input_url(self, url: str, key: FileKey, ciphertext_digest: str) -> File: ...
    def register_output(self, key: FileKey, *, url: Optional[str] = None) -> File: ...
    def get_file(self, file_id: str) -> File: ...
    def list_files(self) -> List[File]: ...
    def delete_file(self, file_id: str) -> None: ...
    def download(
        self, file_id: str, out: StrPath, *, progress: Optional[ProgressCallback] = None
    ) -> int: ...
    def create_task(
        self,
        function_id: str,
        *,
        inputs: Dict[str, Sequence[str]],
        outputs: Dict[str, Sequence[str]],
        arguments: Dict[str, str] = ...,
    ) -> Task: ...
    def get_task(self, task_id: str) -> Task: ...
    def list_tasks(self) -> List[Task]: ...
    def assign(
        self,
        task_id: str,
        *,
        inputs: Dict[str, str] = ...,
        outputs: Dict[str, str] = ...,
    ) -> Task: ...
    def approve(
        self,
        task_id: str,
        *,
        digest: Optional[str] = None,
        confirm: Optional[Callable[[Task], object]] = None,
    ) -> Task: ...
    def invoke(self, task_id: str) -> Task: ...
    def cancel(self, task_id: str) -> Task: ...
    def wait(self, task_id: str) -> Task: ...
    def result(
        self,
        task_id: str,
        keys: Dict[str, FileKey],
        out_dir: StrPath,
        *,
        overwrite: bool = False,
    ) -> Dict[str, pathlib.Path]: ...
    def result_bytes(self, task_id: str, keys: Dict[str, FileKey]) -> Dict[str, bytes]: ...
    def verify_receipt(
        self,
        task_id: str,
        *,
        policy: Optional[StrPath] = None,
        node_policy: bool = False,
        outputs: Dict[str, bytes] = ...,
        collateral: Sequence[StrPath] = ...,
    ) -> Receipt: ...

class AsyncClient:
    """An asyncio client (services); each call returns an awaitable."""

    @staticmethod
    def connect(
        addr: str, *, policy: Optional[StrPath] = None, cert: Optional[StrPath] = None
    ) -> Awaitable["AsyncClient"]: ...
    @property
    def addr(self) -> str: ...
    @property
    def user(self) -> Optional[str]: ...
    def watch(self, task_id: str) -> AsyncTaskWatch: ...
    def login(self, user: str, password: str) -> Awaitable[LoginInfo]: ...
    def logout(self) -> Awaitable[None]: ...
    def register_user(
        self, user: str, password: str, roles: Sequence[str]
    ) -> Awaitable[User]: ...
    def change_password(
        self, old_password: str, new_password: str, *, user: Optional[str] = None
    ) -> Awaitable[None]: ...
    def list_users(self) -> Awaitable[List[User]]: ...
    def register_function(
        self,
        name: str,
        executor: str,
        payload: Payload,
        *,
        inputs: Sequence[str] = ...,
        outputs: Sequence[str] = ...,
        arguments: Optional[Dict[str, Optional[str]]] = None,
        description: str = "",
        runtime: Optional[str] = None,
        public: bool = False,
        allowed_users: Sequence[str] = ...,
        reuse: Optional[str] = None,
        max_output_bytes: Optional[int] = None,
        quota: Optional[int] = None,
    ) -> Awaitable[Function]: ...
    def get_function(self, function_id: str) -> Awaitable[Function]: ...
    def list_functions(self, *, mine_only: bool = False) -> Awaitable[List[Function]]: ...
    def disable_function(self, function_id: str) -> Awaitable[Function]: ...
    def delete_function(self, function_id: str) -> Awaitable[None]: ...
    def upload(
        self, path: StrPath, key: FileKey, *, progress: Optional[ProgressCallback] = None
    ) -> Awaitable[File]: ...
    def register_input_url(
        self, url: str, key: FileKey, ciphertext_digest: str
    ) -> Awaitable[File]: ...
    def register_output(self, key: FileKey, *, url: Optional[str] = None) -> Awaitable[File]: ...
    def get_file(self, file_id: str) -> Awaitable[File]: ...
    def list_files(self) -> Awaitable[List[File]]: ...
    def delete_file(self, file_id: str) -> Awaitable[None]: ...
    def download(
        self, file_id: str, out: StrPath, *, progress: Optional[ProgressCallback] = None
    ) -> Awaitable[int]: ...
    def create_task(
        self,
        function_id: str,
        *,
        inputs: Dict[str, Sequence[str]],
        outputs: Dict[str, Sequence[str]],
        arguments: Dict[str, str] = ...,
    ) -> Awaitable[Task]: ...
    def get_task(self, task_id: str) -> Awaitable[Task]: ...
    def list_tasks(self) -> Awaitable[List[Task]]: ...
    def assign(
        self,
        task_id: str,
        *,
        inputs: Dict[str, str] = ...,
        outputs: Dict[str, str] = ...,
    ) -> Awaitable[Task]: ...
    def approve(
        self,
        task_id: str,
        *,
        digest: Optional[str] = None,
        confirm: Optional[Callable[[Task], object]] = None,
    ) -> Awaitable[Task]: ...
    def invoke(self, task_id: str) -> Awaitable[Task]: ...
    def cancel(self, task_id: str) -> Awaitable[Task]: ...
    def wait(self, task_id: str) -> Awaitable[Task]: ...
    def result(
        self,
        task_id: str,
        keys: Dict[str, FileKey],
        out_dir: StrPath,
        *,
        overwrite: bool = False,
    ) -> Awaitable[Dict[str, pathlib.Path]]: ...
    def result_bytes(
        self, task_id: str, keys: Dict[str, FileKey]
    ) -> Awaitable[Dict[str, bytes]]: ...
    def verify_receipt(
        self,
        task_id: str,
        *,
        policy: Optional[StrPath] = None,
        node_policy: bool = False,
        outputs: Dict[str, bytes] = ...,
        collateral: Sequence[StrPath] = ...,
    ) -> Awaitable[Receipt]: ...
