#!/usr/bin/env python3
"""Two banks find their common customers, and neither learns the other's other customers.

Bank A registers the builtin `ordered_set_intersect` (private set intersection) and
owns the output; bank B only brings its list. Each bank seals its list locally, uploads
it, and approves the task after the SDK recomputed its digest; then bank A runs it and
decrypts the result. See docs/python.md.
"""

import pathlib
import tempfile

import cella
import sdk_common

BANK_A = b"alice\ncarol\nbob\nzoe\n"
BANK_B = b"zoe\nerin\nbob\nmallory\n"


def main() -> None:
    args = sdk_common.parse_args(__doc__ or "")
    admin = sdk_common.admin(args)
    bank_a = sdk_common.new_party(args, admin, "bank-a", ["function_owner", "data_owner"])
    bank_b = sdk_common.new_party(args, admin, "bank-b", ["data_owner"])
    a, b = bank_a.user or "", bank_b.user or ""
    fn = bank_a.register_function(
        "customer-overlap", "builtin", "ordered_set_intersect",
        inputs=["a", "b"], outputs=["common"], allowed_users=[b],
        description="the customers both banks have",
    )
    task = bank_a.create_task(fn.function_id, inputs={"a": [a], "b": [b]}, outputs={"common": [a]})
    with tempfile.TemporaryDirectory() as tmp:
        files_a = sdk_common.share(bank_a, pathlib.Path(tmp), "bank-a", BANK_A)
        files_b = sdk_common.share(bank_b, pathlib.Path(tmp), "bank-b", BANK_B)
    out_key = cella.FileKey.generate()
    out = bank_a.register_output(out_key)
    bank_a.assign(task.task_id, inputs={"a": files_a.file_id}, outputs={"common": out.file_id})
    bank_b.assign(task.task_id, inputs={"b": files_b.file_id})
    for bank in (bank_a, bank_b):
        sdk_common.approve(bank, task.task_id)
    done = sdk_common.run(bank_a, task.task_id)
    common = bank_a.result_bytes(task.task_id, {"common": out_key})["common"]
    print(f"common customers ({(done.return_value or b'').decode()}): {', '.join(r[0] for r in cella.rows(common))}")


if __name__ == "__main__":
    main()
