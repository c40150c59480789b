"""Starts a real node (`cella serve`, simulation evidence) for the SDK tests.

CELLA_BIN names the binary (default: the workspace's target/debug/cella, which
`cargo test --workspace` builds).
"""

import json
import os
import pathlib
import subprocess
import uuid
from typing import Iterator, NamedTuple

import pytest

import cella

REPO = pathlib.Path(__file__).resolve().parents[3]
PASSWORD = "correct horse battery staple"


class Node(NamedTuple):
    addr: str
    policy: pathlib.Path
    admin_password: str


BINARY = os.environ.get("CELLA_BIN", str(REPO / "target" / "debug" / "cella"))

#: The LibOS configuration of the node the sandbox tests use: the sandbox backend on a
#: python3 image of this host's interpreter (as `cella demo` configures it).
LIBOS_TOML = """backend = "sandbox"
images = ["python3"]

[pool]
warm = 1
max = 2

[sandbox]
accept_per_process_limits = true
"""


def start_node(tmp: pathlib.Path, *extra: str) -> "tuple[subprocess.Popen[str], Node]":
    proc = subprocess.Popen(
        [BINARY, "serve", "--json", "--data-dir", str(tmp), "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"{BINARY} serve printed nothing (exit {proc.wait()})")
    info = json.loads(line)
    password = pathlib.Path(info["admin_password_file"]).read_text().splitlines()[0]
    return proc, Node(info["listening"], pathlib.Path(info["attestation_policy"]), password)


@pytest.fixture(scope="session")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    proc, n = start_node(tmp_path_factory.mktemp("node"))
    yield n
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def other_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    proc, n = start_node(tmp_path_factory.mktemp("other"))
    yield n
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="session")
def libos_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node with the `libos` executor (sandbox backend, python3 image)."""
    data = tmp_path_factory.mktemp("libos")
    subprocess.run([BINARY, "image", "build", "python3", "--data-dir", str(data)], check=True, capture_output=True)
    (data / "libos.toml").write_text(LIBOS_TOML)
    proc, n = start_node(data, "--libos-config", str(data / "libos.toml"))
    yield n
    proc.terminate()
    proc.wait(timeout=30)


def connect_admin(node: Node) -> cella.Client:
    c = cella.Client.connect(node.addr, policy=node.policy)
    c.login("admin", node.admin_password)
    return c


@pytest.fixture(scope="session")
def admin(node: Node) -> cella.Client:
    return connect_admin(node)


def new_user(node: Node, admin: cella.Client, roles: "list[str]") -> cella.Client:
    """A fresh user with `roles`, logged in on its own client."""
    name = "u" + uuid.uuid4().hex[:10]
    admin.register_user(name, PASSWORD, roles)
    c = cella.Client.connect(node.addr, policy=node.policy)
    c.login(name, PASSWORD)
    return c
