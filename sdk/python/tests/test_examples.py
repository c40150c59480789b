"""Every SDK example of examples/python runs against a real node and prints its result."""

import pathlib
import subprocess
import sys

from conftest import REPO, Node

EXAMPLES = REPO / "examples" / "python"


def run_example(name: str, node: Node, tmp: pathlib.Path) -> str:
    pw = tmp / "admin-password"
    pw.write_text(node.admin_password + "\n")
    out = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--addr", node.addr, "--policy", str(node.policy),
         "--admin-password-file", str(pw)],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, f"{name} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_the_two_bank_psi_example(node: Node, tmp_path: pathlib.Path) -> None:
    out = run_example("sdk_two_bank_psi.py", node, tmp_path)
    assert "common customers (2): bob, zoe" in out, out
    assert out.count("reviews:") == 2 and "Finished" in out, out


def test_the_notebook_example_gives_rows(node: Node, tmp_path: pathlib.Path) -> None:
    out = run_example("sdk_notebook.py", node, tmp_path)
    assert "[{'id': 'alice', 'sum': 101}, {'id': 'bob', 'sum': 10}]" in out, out


def test_the_python_function_runs_in_the_sandbox_with_a_verified_receipt(
    libos_node: Node, tmp_path: pathlib.Path
) -> None:
    out = run_example("sdk_python_function.py", libos_node, tmp_path)
    assert "common: alice, bob" in out, out
    assert "receipt verifies:" in out and "appraised=True" in out, out
    assert "outputs checked ['result']" in out, out


def test_the_grpcio_example_stubs_load_beside_the_sdk() -> None:
    """examples/python/cella_api_example.py generates the raw API's stubs under
    `cella_api.v1`, so the installed SDK package `cella` cannot shadow them."""
    code = (
        "import sys; import cella; sys.path.insert(0, sys.argv[1]); import cella_api_example as ex; "
        "pb = ex.load_stubs(); print(pb['task_pb2_grpc'].TaskServiceStub.__module__, cella.Client.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(EXAMPLES)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["cella_api.v1.task_pb2_grpc", "Client"]
