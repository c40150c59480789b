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


def start_node(tmp: pathlib.Path) -> "tuple[subprocess.Popen[str], Node]":
    binary = os.environ.get("CELLA_BIN", str(REPO / "target" / "debug" / "cella"))
    proc = subprocess.Popen(
        [binary, "serve", "--json", "--data-dir", str(tmp), "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        raise RuntimeError(f"{binary} serve printed nothing (exit {proc.wait()})")
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
def admin(node: Node) -> cella.Client:
    c = cella.Client.connect(node.addr, policy=node.policy)
    c.login("admin", node.admin_password)
    return c


def new_user(node: Node, admin: cella.Client, roles: "list[str]") -> cella.Client:
    """A fresh user with `roles`, logged in on its own client."""
    name = "u" + uuid.uuid4().hex[:10]
    admin.register_user(name, PASSWORD, roles)
    c = cella.Client.connect(node.addr, policy=node.policy)
    c.login(name, PASSWORD)
    return c
