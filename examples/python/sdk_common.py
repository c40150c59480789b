"""What the SDK examples share: their command line, the parties' accounts, and the steps
every party takes (seal and upload a file, review and approve the task, watch it run).

Each example creates fresh accounts through the node's admin (as a demo does), so it can
run against any node, again and again:

    python3 examples/python/sdk_two_bank_psi.py --addr 127.0.0.1:7443 \\
        --policy node/tls/attestation-policy.sim.toml --admin-password-file node/admin-password
"""

import argparse
import pathlib
import secrets
from typing import List

import cella


def parse_args(description: str) -> argparse.Namespace:
    """The examples' common options: the node and how to trust it, and the admin's password."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="the node, host:port")
    p.add_argument("--policy", required=True, type=pathlib.Path, help="the node's attestation policy")
    p.add_argument("--admin-password-file", required=True, type=pathlib.Path,
                   help="the admin's password (first line), to create the parties' accounts")
    return p.parse_args()


def connect(args: argparse.Namespace, user: str, password: str) -> cella.Client:
    """A client logged in as `user`, on a node attested under `--policy` before anything is sent."""
    client = cella.Client.connect(args.addr, policy=args.policy)
    client.login(user, password)
    return client


def new_party(args: argparse.Namespace, admin: cella.Client, name: str, roles: List[str]) -> cella.Client:
    """A fresh account `<name>-<random>` with `roles`, logged in on its own client."""
    user = f"{name}-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(18)
    admin.register_user(user, password, roles)
    return connect(args, user, password)


def admin(args: argparse.Namespace) -> cella.Client:
    """The node's admin, logged in."""
    password = args.admin_password_file.read_text().splitlines()[0]
    return connect(args, "admin", password)


def share(party: cella.Client, tmp: pathlib.Path, name: str, data: bytes) -> cella.File:
    """Seals `data` locally under a new key and uploads it; the key travels to the node
    only over the attested channel. Prints the upload's progress."""
    plain = tmp / f"{name}.txt"
    plain.write_bytes(data)
    key = cella.seal_file(plain, tmp / f"{name}.sealed")
    sent: List[int] = []
    uploaded = party.upload(tmp / f"{name}.sealed", key, progress=sent.append)
    print(f"{party.user}: uploaded {name} sealed ({uploaded.size} bytes in {len(sent)} chunks) as {uploaded.file_id}")
    return uploaded


def approve(party: cella.Client, task_id: str) -> None:
    """Approves the task after the SDK recomputed its digest, printing what is approved."""

    def review(task: cella.Task) -> bool:
        print(f"{party.user} reviews:\n{task.describe()}")
        return True

    party.approve(task_id, confirm=review)


def run(creator: cella.Client, task_id: str) -> cella.Task:
    """Invokes the task and watches it to its end; raises unless it Finished."""
    creator.invoke(task_id)
    last = None
    for last in creator.watch(task_id):
        print(f"task {task_id}: {last.status}")
    if last is None or last.status != "Finished":
        raise SystemExit(f"task {task_id} did not finish: {last and last.reason}")
    return last
