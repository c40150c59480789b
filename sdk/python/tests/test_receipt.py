"""verify_receipt: the CLI's receipt check (cella_client::receipt) from Python, and what
it refuses."""

import pathlib
from typing import Tuple

import pytest

import cella
from conftest import REPO, Node, connect_admin, new_user
from test_sdk import psi_task, sealed_input

PSI_PY = REPO / "examples" / "libos" / "psi.py"


def finished_libos_task(node: Node, tmp: pathlib.Path) -> Tuple[cella.Client, str, bytes]:
    """A Finished libos task (examples/libos/psi.py in the sandbox) of one party; returns
    the party, the task and the decrypted output."""
    c = new_user(node, connect_admin(node), ["function_owner", "data_owner"])
    me = c.user or ""
    fn = c.register_function("psi", "libos", PSI_PY.read_bytes(), runtime="python3",
                             inputs=["left", "right"], outputs=["result"])
    task = c.create_task(fn.function_id, inputs={"left": [me], "right": [me]}, outputs={"result": [me]})
    left = sealed_input(c, tmp, "left", b"a\nb\n")
    right = sealed_input(c, tmp, "right", b"b\nc\n")
    key = cella.FileKey.generate()
    c.assign(task.task_id, inputs={"left": left.file_id, "right": right.file_id},
             outputs={"result": c.register_output(key).file_id})
    c.approve(task.task_id)
    c.invoke(task.task_id)
    done = c.wait(task.task_id)
    assert done.status == "Finished", done.reason
    return c, task.task_id, c.result_bytes(task.task_id, {"result": key})["result"]


def test_a_libos_receipt_verifies_and_refuses_a_wrong_output(
    libos_node: Node, tmp_path: pathlib.Path
) -> None:
    c, task_id, plain = finished_libos_task(libos_node, tmp_path)
    assert plain == b"b\n"
    r = c.verify_receipt(task_id)
    assert not r.appraised and r.sim_signer and r.task_id == task_id and r.outputs_checked == []
    assert r.workload["program"] == c.get_task(task_id).function_payload_digest
    r = c.verify_receipt(task_id, node_policy=True, outputs={"result": plain})
    assert r.appraised and r.outputs_checked == ["result"] and r.exit == "exit status 0", r.exit
    with pytest.raises(cella.ReceiptError, match='digest of output "result" does not match'):
        c.verify_receipt(task_id, outputs={"result": b"c\n"})
    # The node's TLS policy cannot appraise a LibOS instance: refused, saying why.
    with pytest.raises(cella.InvalidInputError, match='no role "libos-instance"'):
        c.verify_receipt(task_id, policy=libos_node.policy)
    with pytest.raises(cella.InvalidInputError, match="not both"):
        c.verify_receipt(task_id, policy=libos_node.policy, node_policy=True)


def test_receipts_that_cannot_be_verified_are_refused(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a, b, task, _ = psi_task(node, admin, tmp_path)
    with pytest.raises(cella.InvalidInputError, match="has no receipt"):
        a.verify_receipt(task.task_id)
    b.approve(task.task_id)
    a.approve(task.task_id)
    a.invoke(task.task_id)
    assert a.wait(task.task_id).receipt
    # A builtin task's receipt is an unsigned statement: never reported as verified.
    with pytest.raises(cella.ReceiptError, match="not a LibOS receipt"):
        a.verify_receipt(task.task_id)
    # The node publishes no instance policy without a LibOS executor.
    with pytest.raises(cella.InvalidInputError, match="no instance policy"):
        a.verify_receipt(task.task_id, node_policy=True)
