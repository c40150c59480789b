"""Failure paths: every refusal is a typed exception with the node's own message, and a
local refusal sends nothing."""

import pathlib

import pytest

import cella
from conftest import Node, new_user
from test_sdk import psi_task

#: Every gRPC status code but OK (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
GRPC_CODES = [
    "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
]


def test_every_status_code_has_its_own_exception_class() -> None:
    classes = set()
    for code in GRPC_CODES:
        name = "".join(w.capitalize() for w in code.split("_")) + "Error"
        cls = getattr(cella, name)
        assert issubclass(cls, cella.StatusError) and cls is not cella.StatusError, name
        classes.add(cls)
    assert len(classes) == len(GRPC_CODES)


def test_a_wrong_digest_is_refused_before_anything_is_sent(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a, b, task, _ = psi_task(node, admin, tmp_path)
    with pytest.raises(cella.DigestMismatchError, match="nothing was sent"):
        b.approve(task.task_id, digest="0" * 64)
    assert a.get_task(task.task_id).approved_by == []
    # The digest it would have approved is the one recomputed locally.
    done = b.approve(task.task_id, digest=task.compute_digest())
    assert done.approved_by == [b.user]


def test_a_strict_policy_refuses_simulation_evidence(node: Node, tmp_path: pathlib.Path) -> None:
    text = node.policy.read_text()
    assert "allow_simulation = true" in text
    strict = tmp_path / "strict.toml"
    # Hardware evidence only (an SGX enclave measurement): the node's simulation evidence
    # must be refused, not accepted as a weaker fallback.
    strict.write_text(
        text.replace("allow_simulation = true", "allow_simulation = false")
        + 'mr_enclave = ["' + "ab" * 32 + '"]\naccepted_tcb_statuses = ["UpToDate"]\n'
    )
    with pytest.raises(cella.AttestationError, match="(?i)simulation"):
        cella.Client.connect(node.addr, policy=strict)
    with pytest.raises(cella.InvalidInputError, match="exactly one of policy"):
        cella.Client.connect(node.addr)


def test_not_found_and_invalid_ids_carry_the_node_message(node: Node, admin: cella.Client) -> None:
    c = new_user(node, admin, ["data_owner"])
    missing = "task-00000000-0000-4000-8000-000000000000"
    with pytest.raises(cella.NotFoundError) as e:
        c.get_task(missing)
    assert (e.value.code, e.value.op) == ("NOT_FOUND", "GetTask")
    assert e.value.message == f"task {missing} not found"
    with pytest.raises(cella.InvalidArgumentError, match='invalid task id "nope"') as bad:
        c.get_task("nope")
    assert bad.value.code == "INVALID_ARGUMENT"


def test_permission_denied_and_unauthenticated(node: Node, admin: cella.Client) -> None:
    c = new_user(node, admin, ["data_owner"])
    with pytest.raises(cella.PermissionDeniedError, match="needs the function_owner role") as e:
        c.register_function("f", "builtin", "echo")
    assert e.value.op == "RegisterFunction" and "function_owner" in e.value.message
    assert c.list_functions(mine_only=True) == []
    with pytest.raises(cella.PermissionDeniedError, match="admin role"):
        c.list_users()
    fresh = cella.Client.connect(node.addr, policy=node.policy)
    with pytest.raises(cella.NotLoggedInError):
        fresh.list_files()
    with pytest.raises(cella.UnauthenticatedError, match="wrong user name or password"):
        fresh.login("admin", "not the password")
    assert fresh.user is None


def test_a_non_participant_cannot_see_or_approve_a_task(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a, _, task, _ = psi_task(node, admin, tmp_path)
    stranger = new_user(node, admin, ["data_owner"])
    with pytest.raises(cella.StatusError) as e:
        stranger.approve(task.task_id)
    assert e.value.code in ("NOT_FOUND", "PERMISSION_DENIED"), e.value.code
    assert a.get_task(task.task_id).approved_by == []
