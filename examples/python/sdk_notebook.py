#!/usr/bin/env python3
"""Notebook-friendly: a bank and an insurer join their tables on customer id and sum the
balances of the customers they share; the result comes back as a list of rows (and as a
pandas DataFrame when pandas is installed; the SDK does not need it).

Each `# %%` cell runs as is in Jupyter (set ARGS to the node's options first) or the
whole file as a script. The blocking `cella.Client` suits notebooks: each call releases
the GIL while it waits. See docs/python.md.
"""

# %% Connect: the node is attested under the policy before anything is sent.
import importlib
import pathlib
import tempfile
from typing import Dict, List, Union

import cella
import sdk_common

args = sdk_common.parse_args(__doc__ or "")
admin = sdk_common.admin(args)
bank = sdk_common.new_party(args, admin, "bank", ["function_owner", "data_owner"])
insurer = sdk_common.new_party(args, admin, "insurer", ["data_owner"])

# %% The task: the builtin private_join_and_compute over both tables.
fn = bank.register_function(
    "joint-balances", "builtin", "private_join_and_compute",
    inputs=["bank", "insurer"], outputs=["sums"], allowed_users=[insurer.user or ""],
)
task = bank.create_task(
    fn.function_id, inputs={"bank": [bank.user or ""], "insurer": [insurer.user or ""]},
    outputs={"sums": [bank.user or ""]},
)
with tempfile.TemporaryDirectory() as tmp:
    t = pathlib.Path(tmp)
    mine = sdk_common.share(bank, t, "bank", b"id,balance\nalice,100\nbob,-20\ndave,7\n")
    theirs = sdk_common.share(insurer, t, "insurer", b"bob,30\nalice,1\nerin,5\n")
key = cella.FileKey.generate()
bank.assign(task.task_id, inputs={"bank": mine.file_id}, outputs={"sums": bank.register_output(key).file_id})
insurer.assign(task.task_id, inputs={"insurer": theirs.file_id})

# %% Everyone approves what will run; then it runs.
for party in (bank, insurer):
    sdk_common.approve(party, task.task_id)
done = sdk_common.run(bank, task.task_id)

# %% The result as rows: one dict per customer both parties have.
rows: List[Dict[str, Union[str, int]]] = [
    {"id": cid, "sum": int(total)}
    for cid, total in cella.rows(bank.result_bytes(task.task_id, {"sums": key})["sums"])
]
print(rows)
try:
    pandas = importlib.import_module("pandas")
except ImportError:
    print("(pandas is not installed: the rows above are the result)")
else:
    print(pandas.DataFrame(rows))
