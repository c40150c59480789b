#!/usr/bin/env python3
"""A Python function run in the sandbox: `examples/libos/psi.py`, unmodified, in a LibOS
instance of the node's python3 runtime image, with a receipt anyone can verify.

The node needs the `libos` executor (docs/libos.md):

    cella image build python3 --data-dir node
    printf 'backend = "sandbox"\\nimages = ["python3"]\\n' > libos.toml
    cella serve --data-dir node --libos-config libos.toml

The function owner registers the script as the payload (read from its path); two banks
bring their lists and approve; after the run, bank A decrypts the result and verifies
the receipt: the instance's evidence (under the instance policy the node publishes), the
key it attested, the signature, and that the program, the outputs and the plaintext it
decrypted are the ones the receipt names. See docs/python.md.
"""

import pathlib
import tempfile

import cella
import sdk_common

PSI_PY = pathlib.Path(__file__).resolve().parents[1] / "libos" / "psi.py"


def main() -> None:
    args = sdk_common.parse_args(__doc__ or "")
    admin = sdk_common.admin(args)
    bank_a = sdk_common.new_party(args, admin, "bank-a", ["function_owner", "data_owner"])
    bank_b = sdk_common.new_party(args, admin, "bank-b", ["data_owner"])
    a, b = bank_a.user or "", bank_b.user or ""
    fn = bank_a.register_function(
        "customer-overlap-python", "libos", PSI_PY, runtime="python3",
        inputs=["left", "right"], outputs=["result"], allowed_users=[b],
        max_output_bytes=1 << 20,
    )
    print(f"registered {fn.function_id}: {PSI_PY.name}, payload sha256 {fn.payload_digest}")
    task = bank_a.create_task(fn.function_id, inputs={"left": [a], "right": [b]}, outputs={"result": [a]})
    with tempfile.TemporaryDirectory() as tmp:
        left = sdk_common.share(bank_a, pathlib.Path(tmp), "left", b"alice\ncarol\nbob\n")
        right = sdk_common.share(bank_b, pathlib.Path(tmp), "right", b"bob\nerin\nalice\n")
    out_key = cella.FileKey.generate()
    out = bank_a.register_output(out_key)
    bank_a.assign(task.task_id, inputs={"left": left.file_id}, outputs={"result": out.file_id})
    bank_b.assign(task.task_id, inputs={"right": right.file_id})
    for bank in (bank_a, bank_b):
        sdk_common.approve(bank, task.task_id)
    done = sdk_common.run(bank_a, task.task_id)
    print("log:", *done.log, sep="\n  ")
    plain = bank_a.result_bytes(task.task_id, {"result": out_key})
    print("common:", ", ".join(r[0] for r in cella.rows(plain["result"])))
    receipt = bank_a.verify_receipt(task.task_id, node_policy=True, outputs=plain)
    print(
        f"receipt verifies: measurement {receipt.measurement} ({receipt.platform}), "
        f"appraised={receipt.appraised}, program sha256 {receipt.workload['program']}, "
        f"outputs checked {receipt.outputs_checked}, {receipt.exit}"
    )


if __name__ == "__main__":
    main()
