"""The SDK against a real node: the two-bank flow and its failure paths."""

import asyncio
import pathlib
from typing import Dict, List, Tuple

import pytest

import cella
from conftest import Node, new_user


def sealed_input(c: cella.Client, tmp: pathlib.Path, name: str, text: bytes) -> cella.File:
    plain = tmp / f"{name}.csv"
    plain.write_bytes(text)
    key = cella.seal_file(plain, tmp / f"{name}.sealed")
    seen: List[int] = []
    f = c.upload(tmp / f"{name}.sealed", key, progress=seen.append)
    assert seen and seen[-1] == f.size, seen
    return f


def psi_task(
    node: Node, admin: cella.Client, tmp: pathlib.Path, a_data: bytes = b"carol\nbob\nzoe\n"
) -> Tuple[cella.Client, cella.Client, cella.Task, cella.FileKey]:
    """Bank A owns the function and input a and the output; bank B owns input b."""
    a = new_user(node, admin, ["function_owner", "data_owner"])
    b = new_user(node, admin, ["data_owner"])
    assert a.user is not None and b.user is not None
    fn = a.register_function("psi", "builtin", "ordered_set_intersect", inputs=["a", "b"], outputs=["out"])
    task = a.create_task(fn.function_id, inputs={"a": [a.user], "b": [b.user]}, outputs={"out": [a.user]})
    fa = sealed_input(a, tmp, "a", a_data)
    fb = sealed_input(b, tmp, "b", b"zoe\nerin\nbob\n")
    out_key = cella.FileKey.generate()
    out = a.register_output(out_key)
    a.assign(task.task_id, inputs={"a": fa.file_id}, outputs={"out": out.file_id})
    task = b.assign(task.task_id, inputs={"b": fb.file_id})
    return a, b, task, out_key


def test_two_bank_psi_end_to_end(node: Node, admin: cella.Client, tmp_path: pathlib.Path) -> None:
    a, b, task, out_key = psi_task(node, admin, tmp_path)
    shown: List[str] = []

    def review(t: cella.Task) -> bool:
        shown.append(t.describe())
        return True

    b.approve(task.task_id, confirm=review)
    assert task.task_id in shown[0] and "input       b" in shown[0]
    a.approve(task.task_id, digest=task.compute_digest())
    a.invoke(task.task_id)
    statuses = [t.status for t in a.watch(task.task_id)]
    assert statuses[-1] == "Finished", statuses
    done = a.get_task(task.task_id)
    assert done.return_value == b"2"
    plain = a.result_bytes(task.task_id, {"out": out_key})
    assert sorted(cella.rows(plain["out"])) == [["bob"], ["zoe"]]
    paths = a.result(task.task_id, {"out": out_key}, tmp_path / "res")
    assert paths["out"].read_bytes() == plain["out"]
    # Bank B owns no output: a key for "out" is refused, naming the slot.
    with pytest.raises(cella.InvalidInputError, match="not an output slot"):
        b.result_bytes(task.task_id, {"out": out_key})


def test_a_wrong_policy_refuses_the_node_before_anything_is_sent(node: Node, other_node: Node) -> None:
    with pytest.raises(cella.AttestationError, match="attestation of node"):
        cella.Client.connect(node.addr, policy=other_node.policy)


def test_a_tampered_sealed_file_is_refused_locally(node: Node, admin: cella.Client, tmp_path: pathlib.Path) -> None:
    c = new_user(node, admin, ["data_owner"])
    plain = tmp_path / "p"
    plain.write_bytes(b"secret rows\n" * 1000)
    key = cella.seal_file(plain, tmp_path / "s")
    raw = bytearray((tmp_path / "s").read_bytes())
    raw[100] ^= 1
    (tmp_path / "s").write_bytes(bytes(raw))
    with pytest.raises(cella.SealError, match="does not open"):
        c.upload(tmp_path / "s", key)
    assert c.list_files() == []
    with pytest.raises(cella.SealError):
        cella.unseal_file(tmp_path / "s", tmp_path / "back", key)
    assert not (tmp_path / "back").exists()


def test_approve_refuses_a_digest_that_changed_since_review(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a = new_user(node, admin, ["function_owner", "data_owner"])
    assert a.user is not None
    fn = a.register_function("psi", "builtin", "ordered_set_intersect", inputs=["a", "b"], outputs=["out"])
    task = a.create_task(fn.function_id, inputs={"a": [a.user], "b": [a.user]}, outputs={"out": [a.user]})
    out = a.register_output(cella.FileKey.generate())
    f1 = sealed_input(a, tmp_path, "x", b"1\n")
    task = a.assign(task.task_id, inputs={"a": f1.file_id}, outputs={"out": out.file_id})
    reviewed = task.compute_digest()
    # The node now shows another task (b assigned): its digest is not the reviewed one.
    f2 = sealed_input(a, tmp_path, "y", b"2\n")
    a.assign(task.task_id, inputs={"b": f2.file_id})
    with pytest.raises(cella.DigestMismatchError, match="changed since it was reviewed"):
        a.approve(task.task_id, digest=reviewed)
    assert a.get_task(task.task_id).approved_by == []
    with pytest.raises(cella.CellaError, match="confirm returned false"):
        a.approve(task.task_id, confirm=lambda t: False)
    assert a.get_task(task.task_id).approved_by == []


def test_watch_ends_on_failed_and_result_says_why(node: Node, admin: cella.Client, tmp_path: pathlib.Path) -> None:
    a, b, task, out_key = psi_task(node, admin, tmp_path, a_data=b"\xff\xfe not utf-8\n")
    b.approve(task.task_id)
    a.approve(task.task_id)
    a.invoke(task.task_id)
    last = list(a.watch(task.task_id))[-1]
    assert last.status == "Failed" and last.reason, last
    with pytest.raises(cella.TaskFailedError, match="Failed"):
        a.result_bytes(task.task_id, {"out": out_key})


def test_cancel_ends_the_watch_and_the_node_refusal_is_typed(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a, b, task, _ = psi_task(node, admin, tmp_path)
    a.cancel(task.task_id)
    assert [t.status for t in a.watch(task.task_id)] == ["Canceled"]
    with pytest.raises(cella.FailedPreconditionError) as e:
        a.invoke(task.task_id)
    assert e.value.code == "FAILED_PRECONDITION" and e.value.op == "InvokeTask"
    with pytest.raises(cella.NotFoundError):
        a.get_task("task-00000000-0000-4000-8000-000000000000")


def test_async_client_runs_the_flow_and_watches_with_async_for(
    node: Node, admin: cella.Client, tmp_path: pathlib.Path
) -> None:
    a, b, task, out_key = psi_task(node, admin, tmp_path)

    async def run() -> Tuple[List[str], Dict[str, bytes]]:
        ac = await cella.AsyncClient.connect(node.addr, policy=node.policy)
        await ac.login(a.user or "", "correct horse battery staple")
        b.approve(task.task_id)
        await ac.approve(task.task_id)
        await ac.invoke(task.task_id)
        seen = [t.status async for t in ac.watch(task.task_id)]
        return seen, await ac.result_bytes(task.task_id, {"out": out_key})

    seen, plain = asyncio.run(run())
    assert seen[-1] == "Finished", seen
    assert sorted(cella.rows(plain["out"])) == [["bob"], ["zoe"]]


def test_function_caps_and_payloads_from_bytes_or_path(node: Node, admin: cella.Client, tmp_path: pathlib.Path) -> None:
    a = new_user(node, admin, ["function_owner"])
    fn = a.register_function("psi", "builtin", "ordered_set_intersect", inputs=["a", "b"], outputs=["out"],
                             max_output_bytes=4096, quota=5)
    got = a.get_function(fn.function_id)
    assert (got.max_output_bytes, got.quota, got.payload_len) == (4096, 5, len("ordered_set_intersect"))
    unset = a.register_function("psi2", "builtin", b"ordered_set_intersect", inputs=["a", "b"], outputs=["out"])
    assert (unset.max_output_bytes, unset.quota) == (None, None)
    assert unset.payload_digest == fn.payload_digest
    # A cap above the node's is refused, and registers nothing.
    before = len(a.list_functions(mine_only=True))
    with pytest.raises(cella.InvalidArgumentError, match="output"):
        a.register_function("big", "builtin", "echo", max_output_bytes=1 << 50)
    assert len(a.list_functions(mine_only=True)) == before
    # A payload path that does not exist is an OSError naming it, before anything is sent.
    with pytest.raises(OSError, match="cannot read payload"):
        a.register_function("w", "wasm", tmp_path / "missing.wasm")
