"""Cella's Python SDK: ``import cella``.

Every security check runs in the Rust client that the ``cella`` CLI uses (the native
module ``cella._native``): the node is attested before anything secret is sent, files
are sealed locally, and ``approve`` recomputes the task digest before approving.
See docs/python.md.
"""

from typing import List

from ._native import (
    AlreadyExistsError,
    AsyncClient,
    AsyncTaskWatch,
    AttestationError,
    CellaError,
    Client,
    ConnectError,
    DigestMismatchError,
    FailedPreconditionError,
    File,
    FileKey,
    Function,
    InvalidArgumentError,
    InvalidInputError,
    LoginInfo,
    NotFoundError,
    NotLoggedInError,
    PermissionDeniedError,
    ProtocolError,
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
    User,
    inspect_sealed,
    seal_file,
    unseal_file,
)


def rows(data: bytes, sep: str = ",") -> List[List[str]]:
    """Splits a text output into rows of fields: one row per non-empty line."""
    return [line.split(sep) for line in data.decode().splitlines() if line]


__all__ = [
    "AlreadyExistsError", "AsyncClient", "AsyncTaskWatch", "AttestationError", "CellaError",
    "Client", "ConnectError", "DigestMismatchError", "FailedPreconditionError", "File",
    "FileKey", "Function", "InvalidArgumentError", "InvalidInputError", "LoginInfo",
    "NotFoundError", "NotLoggedInError", "PermissionDeniedError", "ProtocolError",
    "ResourceExhaustedError", "SealError", "Sealed", "Slot", "StatusError", "Task",
    "TaskFailedError", "TaskWatch", "UnauthenticatedError", "UnavailableError", "User",
    "inspect_sealed", "rows", "seal_file", "unseal_file",
]
