#!/usr/bin/env python3
"""A Cella client in Python, end to end, with nothing but grpcio and cryptography.

It is the worked example of docs/api.md, and a test runs it against a real node
(crates/cella-server/tests/python.rs):

  1. verify the node's RA-TLS certificate against an attestation policy (simulation
     evidence here), then open a standard gRPC channel that trusts exactly that
     certificate and checks the node's name against its subjectAltName;
  2. log in, seal two files locally (docs/formats/sealed-file.md) and upload them;
  3. register a builtin function, create a task, assign the files;
  4. recompute the task digest locally (docs/formats/task-digest.md) and approve that,
     never the node's value unchecked;
  5. invoke, watch to the end, download the output and unseal it locally.

    python3 -m pip install -r examples/python/requirements.txt
    python3 examples/python/cella_api_example.py --addr localhost:7443 \\
        --policy node/tls/attestation-policy.sim.toml --user alice --password-file pw.txt
"""

import argparse
import hashlib
import hmac
import os
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import tomllib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


#: The package root the generated stubs are imported under. Not `cella`: that is the
#: Python SDK's package (sdk/python), and a regular package `cella` anywhere on sys.path
#: would shadow the namespace package `cella.v1` protoc writes (docs/python.md).
STUB_ROOT = "cella_api"


def load_stubs():
    """Generates the Python stubs from proto/cella/v1/*.proto and imports them as
    `cella_api.v1.*`."""
    out = tempfile.mkdtemp(prefix="cella-stubs-")
    proto = os.path.join(REPO, "proto")
    files = [os.path.join(proto, "cella", "v1", f) for f in sorted(os.listdir(os.path.join(proto, "cella", "v1")))]
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", proto, f"--python_out={out}", f"--grpc_python_out={out}", *files],
        check=True,
    )
    # protoc lays the modules out by proto path (cella/v1/…) and the service stubs import
    # their messages from there: move them under STUB_ROOT and point those imports at it.
    # The proto package (cella.v1, in every RPC's name) is unchanged.
    generated = os.path.join(out, STUB_ROOT, "v1")
    os.makedirs(os.path.dirname(generated))
    os.rename(os.path.join(out, "cella", "v1"), generated)
    for name in os.listdir(generated):
        path = os.path.join(generated, name)
        with open(path, encoding="utf-8") as f:
            text = f.read()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text.replace("from cella.v1 import ", f"from {STUB_ROOT}.v1 import "))
    sys.path.insert(0, out)
    import importlib

    return {n: importlib.import_module(f"{STUB_ROOT}.v1.{n}") for n in [
        "auth_pb2", "auth_pb2_grpc", "file_pb2", "file_pb2_grpc", "function_pb2",
        "function_pb2_grpc", "task_pb2", "task_pb2_grpc", "node_pb2", "node_pb2_grpc"]}


# ---- 1. trusting the node: RA-TLS (docs/attestation.md) ----

OID_TAGGED_EVIDENCE = x509.ObjectIdentifier("2.23.133.5.4.9")
TAG_CELLA_SIM = 0x63656C6C
CLOCK_SKEW = 120


def cbor(data, i=0):
    """Decodes one CBOR item (the subset RA-TLS uses): (value, next offset)."""
    head = data[i]
    major, info = head >> 5, head & 31
    i += 1
    if info < 24:
        arg = info
    elif info in (24, 25, 26, 27):
        n = 1 << (info - 24)
        arg = int.from_bytes(data[i:i + n], "big")
        i += n
    else:
        raise ValueError("indefinite or reserved CBOR length")
    if major == 0:
        return arg, i
    if major in (2, 3):
        raw = data[i:i + arg]
        return (raw if major == 2 else raw.decode()), i + arg
    if major == 4:
        items = []
        for _ in range(arg):
            item, i = cbor(data, i)
            items.append(item)
        return items, i
    if major == 5:
        entries = {}
        for _ in range(arg):
            k, i = cbor(data, i)
            v, i = cbor(data, i)
            entries[k] = v
        return entries, i
    if major == 6:
        value, i = cbor(data, i)
        return ("tag", arg, value), i
    raise ValueError(f"unexpected CBOR major type {major}")


def verify_node_certificate(pem, policy):
    """Checks a node certificate's simulation evidence against the policy's role `node`,
    in the order of docs/attestation.md: binding, authenticity, policy, freshness.
    Raises ValueError naming what failed; returns the measurement (hex)."""
    role = policy["roles"]["node"]
    cert = x509.load_pem_x509_certificate(pem)
    value = cert.extensions.get_extension_for_oid(OID_TAGGED_EVIDENCE).value.value
    (kind, tag, (evidence, claims_buffer)), _ = cbor(value)
    if kind != "tag" or tag != TAG_CELLA_SIM:
        raise ValueError(f"evidence tag {tag} is not Cella simulation evidence (SGX: verify the quote with DCAP)")
    # Binding: the claims name this certificate's key, and the evidence covers the claims.
    claims, _ = cbor(claims_buffer)
    (alg, key_hash), _ = cbor(claims["pubkey-hash"])
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if alg != 1 or key_hash != hashlib.sha256(spki).digest():
        raise ValueError("the evidence does not bind the certificate's key")
    if len(evidence) != 210 or evidence[:8] != b"CELLASIM" or evidence[8] != 1:
        raise ValueError("malformed simulation evidence")
    flags, measurement, report_data = evidence[9], evidence[10:42], evidence[42:106]
    issued_at = struct.unpack(">Q", evidence[106:114])[0]
    signer, signature = evidence[114:146], evidence[146:210]
    if report_data[:32] != hashlib.sha256(claims_buffer).digest():
        raise ValueError("the evidence's report_data does not cover the claims")
    # Authenticity, then policy.
    if not role.get("allow_simulation", False):
        raise ValueError("simulation evidence is not allowed (allow_simulation = false)")
    if signer.hex() not in role.get("trusted_sim_keys", []):
        raise ValueError(f"{signer.hex()} is not a trusted simulation key")
    Ed25519PublicKey.from_public_bytes(signer).verify(signature, b"cella sim evidence v1\0" + evidence[:146])
    if measurement.hex() not in role.get("sim_measurements", []):
        raise ValueError(f"measurement {measurement.hex()} is not accepted")
    if flags & 1 and not role.get("allow_debug", False):
        raise ValueError("debug instance refused")
    # Freshness.
    now = time.time()
    if issued_at > now + CLOCK_SKEW or now - issued_at > role["max_evidence_age_secs"]:
        raise ValueError("the evidence is not fresh")
    return measurement.hex()


def attested_channel(addr, policy_path, grpc):
    """A gRPC channel to `addr` that trusts exactly the certificate whose evidence was
    just verified. The node renews its certificate hourly: if the handshake then fails,
    verify again and reconnect."""
    host, port = addr.rsplit(":", 1)
    with open(policy_path, "rb") as f:
        policy = tomllib.load(f)
    pem = ssl.get_server_certificate((host, int(port))).encode()
    measurement = verify_node_certificate(pem, policy)
    # The certificate's subjectAltName holds the node's names (cella serve --tls-name),
    # so grpc's own host name check passes for `host`.
    channel = grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=pem))
    return channel, measurement


# ---- 2. the sealed file format (docs/formats/sealed-file.md) ----

CHUNK = 65536


def seal(key, plaintext, chunk_size=CHUNK):
    prefix = os.urandom(7)
    header = b"CELLA-SF" + bytes([1, 1]) + struct.pack("<I", chunk_size) + prefix
    header += hmac.new(key, b"cella-sealed-file-v1 key check" + header, hashlib.sha256).digest()
    chunks = [plaintext[i:i + chunk_size] for i in range(0, len(plaintext), chunk_size)] or [b""]
    out = header
    for i, chunk in enumerate(chunks):
        last = 1 if i == len(chunks) - 1 else 0
        out += AESGCM(key).encrypt(prefix + struct.pack(">I", i) + bytes([last]), chunk, header)
    return out


def unseal(key, sealed):
    header, body = sealed[:53], sealed[53:]
    if header[:10] != b"CELLA-SF\x01\x01":
        raise ValueError("not a version 1 sealed file")
    expected = hmac.new(key, b"cella-sealed-file-v1 key check" + header[:21], hashlib.sha256).digest()
    if not hmac.compare_digest(expected, header[21:53]):
        raise ValueError("wrong key")
    chunk_size, prefix = struct.unpack("<I", header[10:14])[0], header[14:21]
    full, out, i = chunk_size + 16, b"", 0
    while True:
        # The final chunk is the one with fewer than 16 bytes after it (see the spec).
        final = len(body) <= full
        chunk, body = (body, b"") if final else (body[:full], body[full:])
        out += AESGCM(key).decrypt(prefix + struct.pack(">I", i) + bytes([1 if final else 0]), chunk, header)
        if final:
            return out
        i += 1


# ---- 4. the task digest (docs/formats/task-digest.md) ----

def task_digest(task):
    def u32(n):
        return struct.pack(">I", n)

    def s(text):
        raw = text.encode()
        return u32(len(raw)) + raw

    def owners(names):
        return u32(len(names)) + b"".join(s(n) for n in sorted(names, key=str.encode))

    out = s("cella/task-digest/v2") + s(task.function_id)
    out += bytes.fromhex(task.function_payload_digest)
    out += bytes([1 if task.function_reuse == "same-function" else 0])
    args = sorted(task.arguments.items(), key=lambda kv: kv[0].encode())
    out += u32(len(args)) + b"".join(s(k) + s(v) for k, v in args)
    for slots, is_input in ((task.inputs, True), (task.outputs, False)):
        slots = sorted(slots, key=lambda x: x.slot.encode())
        out += u32(len(slots))
        for slot in slots:
            out += s(slot.slot) + owners(slot.owners)
            if not slot.file_id:
                out += b"\0"
            else:
                out += b"\1" + s(slot.file_id)
                if is_input:
                    out += bytes.fromhex(slot.ciphertext_digest)
    return hashlib.sha256(out).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--addr", required=True, help="host:port; host must be one of the node's TLS names")
    p.add_argument("--policy", required=True, help="attestation policy with role node")
    p.add_argument("--user", required=True, help="a user with roles function_owner and data_owner")
    p.add_argument("--password-file", required=True)
    a = p.parse_args()
    with open(a.password_file) as f:
        password = f.readline().strip()

    import grpc

    pb = load_stubs()
    channel, measurement = attested_channel(a.addr, a.policy, grpc)
    print(f"node attested: simulation evidence, measurement {measurement}")

    auth = pb["auth_pb2_grpc"].AuthServiceStub(channel)
    token = auth.Login(pb["auth_pb2"].LoginRequest(user=a.user, password=password)).token
    md = [("authorization", f"Bearer {token}")]
    files = pb["file_pb2_grpc"].FileServiceStub(channel)
    functions = pb["function_pb2_grpc"].FunctionServiceStub(channel)
    tasks = pb["task_pb2_grpc"].TaskServiceStub(channel)
    fpb, fnpb, tpb = pb["file_pb2"], pb["function_pb2"], pb["task_pb2"]

    def upload(plaintext):
        key = AESGCM.generate_key(bit_length=256)
        sealed = seal(key, plaintext)
        crypto = fpb.FileCrypto(schema="cella-sealed-v1", key=key)
        header = fpb.UploadHeader(crypto=crypto, ciphertext_digest=hashlib.sha256(sealed).hexdigest())
        parts = [fpb.UploadInputRequest(header=header)]
        parts += [fpb.UploadInputRequest(chunk=sealed[i:i + CHUNK]) for i in range(0, len(sealed), CHUNK)]
        return files.UploadInput(iter(parts), metadata=md).file_id

    in_a = upload(b"carol\nbob\nzoe\nbob\n")
    in_b = upload(b"zoe\nerin\nbob\n")
    out_key = AESGCM.generate_key(bit_length=256)
    out = files.RegisterOutput(
        fpb.RegisterOutputRequest(crypto=fpb.FileCrypto(schema="cella-sealed-v1", key=out_key)), metadata=md
    ).file_id

    spec = fnpb.FunctionSpec(
        name="psi", executor="builtin",
        inputs=[fnpb.SlotSpec(name="a"), fnpb.SlotSpec(name="b")], outputs=[fnpb.SlotSpec(name="out")],
    )
    function = functions.RegisterFunction(
        fnpb.RegisterFunctionRequest(spec=spec, payload=b"ordered_set_intersect"), metadata=md
    )
    me = [a.user]
    task = tasks.CreateTask(tpb.CreateTaskRequest(
        function_id=function.function_id,
        inputs=[tpb.SlotOwners(slot="a", owners=me), tpb.SlotOwners(slot="b", owners=me)],
        outputs=[tpb.SlotOwners(slot="out", owners=me)],
    ), metadata=md)
    task = tasks.AssignData(tpb.AssignDataRequest(
        task_id=task.task_id,
        inputs=[tpb.SlotFile(slot="a", file_id=in_a), tpb.SlotFile(slot="b", file_id=in_b)],
        outputs=[tpb.SlotFile(slot="out", file_id=out)],
    ), metadata=md)

    # Approve what we computed ourselves from what will run: the node's task_digest is
    # only compared, never trusted.
    digest = task_digest(task)
    if digest != task.task_digest:
        sys.exit(f"the node's task digest {task.task_digest} is not ours ({digest}): not approving")
    tasks.ApproveTask(tpb.ApproveTaskRequest(task_id=task.task_id, task_digest=digest), metadata=md)
    tasks.InvokeTask(tpb.InvokeTaskRequest(task_id=task.task_id), metadata=md)
    for update in tasks.WatchTask(tpb.WatchTaskRequest(task_id=task.task_id), metadata=md):
        task = update
    status = tpb.TaskStatus.Name(task.status)
    if status != "TASK_STATUS_FINISHED":
        sys.exit(f"task ended {status}: {task.reason}")

    sealed = b"".join(m.chunk for m in files.DownloadFile(fpb.DownloadFileRequest(file_id=out), metadata=md))
    result = unseal(out_key, sealed)
    print(f"task {task.task_id} finished, returned {task.result.return_value.decode()}")
    print("intersection: " + ",".join(result.decode().split()))

    # Lists come a page at a time: follow next_page_token until it is empty.
    seen, token = 0, ""
    while True:
        page = tasks.ListTasks(tpb.ListTasksRequest(page_size=1, page_token=token), metadata=md)
        seen += len(page.tasks)
        token = page.next_page_token
        if not token:
            break
    print(f"listed {seen} task(s)")


if __name__ == "__main__":
    main()
