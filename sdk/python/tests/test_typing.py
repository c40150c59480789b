"""The shipped stubs: they describe exactly what the native module exports, and
`mypy --strict` accepts them with the examples and these tests."""

import ast
import pathlib
import subprocess
import sys

import cella
import cella._native
from conftest import REPO

STUB = pathlib.Path(cella.__file__).with_name("_native.pyi")
#: Names the stub defines for its own signatures (type aliases), not module exports.
ALIASES = {"StrPath", "Payload", "ProgressCallback"}


def test_the_package_ships_its_stubs_and_py_typed() -> None:
    assert STUB.is_file() and STUB.with_name("py.typed").is_file()


def test_every_export_is_stubbed_and_every_stub_exists() -> None:
    tree = ast.parse(STUB.read_text())
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    stubbed |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    exported = {n for n in dir(cella._native) if not n.startswith("_")}
    assert exported == stubbed - ALIASES
    assert set(cella.__all__) == exported | {"rows"}
    # Every method of every class is stubbed too.
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and not issubclass(getattr(cella._native, node.name), BaseException):
            methods = {m.name for m in node.body if isinstance(m, ast.FunctionDef)} | {
                m.target.id for m in node.body if isinstance(m, ast.AnnAssign) and isinstance(m.target, ast.Name)
            }
            real = {m for m in vars(getattr(cella._native, node.name)) if not m.startswith("_")}
            assert real <= methods, (node.name, real - methods)


def test_mypy_strict_accepts_the_stubs_examples_and_tests() -> None:
    # The package as it is in the repository (what the wheel ships), with the examples.
    package = [str(REPO / "sdk" / "python" / "python" / "cella" / f) for f in ("__init__.py", "_native.pyi")]
    examples = sorted(str(p) for p in (REPO / "examples" / "python").glob("sdk_*.py"))
    tests = sorted(str(p) for p in pathlib.Path(__file__).parent.glob("*.py"))
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
         *package, *examples],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *tests],
        capture_output=True, text=True, cwd=pathlib.Path(__file__).parent,
    )
    assert out.returncode == 0, out.stdout + out.stderr
