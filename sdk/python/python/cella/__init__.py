"""Cella's Python SDK: ``import cella``.

Every security check runs in the Rust client that the ``cella`` CLI uses (the native
module ``cella._native``): the node is attested before anything secret is sent, files
are sealed locally, ``approve`` recomputes the task digest before approving, and
``verify_receipt`` runs the CLI's receipt check. See docs/python.md.
"""

from typing import List

from ._native import (
    AbortedError,
    AlreadyExistsError,
    AsyncClient,
    AsyncTaskWatch,
    AttestationError,
    CancelledError,
    CellaError,
    Client,
    ConnectError,
    DataLossError,
    DeadlineExceededError,
    DigestMismatchError,
    FailedPreconditionError,
    File,
    FileKey,
    Function,
    InternalError,
    InvalidArgumentError,
    InvalidInputError,
    LoginInfo,
    NotFoundError,
    NotLoggedInError,
    OutOfRangeError,
    PermissionDeniedError,
    ProtocolError,
    Receipt,
    ReceiptError,
    ResourceExhaustedError,
    SealError,
    Sealed,
    Slot,
    StatusError,
    Task,
    TaskFailedError,
    TaskWatch,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
    User,
    inspect_sealed,
    seal_file,
    unseal_file,
)


def rows(data: bytes, sep: str = ",") -> List[List[str]]:
    """Splits a text output into rows of fields: one row per non-empty line.

    The rows go straight into ``pandas.DataFrame(rows(...))`` where pandas is installed;
    the SDK itself does not need it.
    """
    return [line.split(sep) for line in data.decode().splitlines() if line]


__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncClient",
    "AsyncTaskWatch",
    "AttestationError",
    "CancelledError",
    "CellaError",
    "Client",
    "ConnectError",
    "DataLossError",
    "DeadlineExceededError",
    "DigestMismatchError",
    "FailedPreconditionError",
    "File",
    "FileKey",
    "Function",
    "InternalError",
    "InvalidArgumentError",
    "InvalidInputError",
    "LoginInfo",
    "NotFoundError",
    "NotLoggedInError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "ProtocolError",
    "Receipt",
    "ReceiptError",
    "ResourceExhaustedError",
    "SealError",
    "Sealed",
    "Slot",
    "StatusError",
    "Task",
    "TaskFailedError",
    "TaskWatch",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "User",
    "inspect_sealed",
    "rows",
    "seal_file",
    "unseal_file",
]
