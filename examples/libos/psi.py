"""Two-party private set intersection, as a Cella `libos` function (runtime python3).

Reads two input slots, `left` and `right`, each a list of ids, one per line, and writes
the ids present in both, one per line, sorted and without duplicates, to the output slot
`result`. Blank lines and surrounding whitespace are ignored. The log (stdout) says only
how many ids matched: the ids themselves never appear in the log, which every participant
of the task can read.

Each party sees only the output addressed to it: Cella encrypts `result` for its owner.
Give each party its own output slot (e.g. --output result --output result_b) if both
should receive the intersection; this script writes every declared output slot.

Register and run (see docs/writing-functions.md):

    # on the node, once: an image of the host's Python, named in the LibOS config
    cella image build python3 --data-dir node          # libos.toml: images = ["python3"]
    # the function owner
    cella function register --name psi --executor libos --runtime python3 \
        --payload examples/libos/psi.py \
        --input left --input right --output result --allow bank-a,bank-b
    # one party creates the task; each owner assigns its file and approves
    cella task create --function <function-id> \
        --input left=bank-a --input right=bank-b --output result=bank-a
    cella task assign <task-id> --input left=<file-id> --output result=<file-id>
    cella task approve <task-id>
    cella task invoke <task-id>

Inside the instance the inputs are at /cella/inputs/<slot> and the outputs at
/cella/outputs/<slot>; CELLA_INPUT_DIR / CELLA_OUTPUT_DIR / CELLA_TASK_FILE override the
locations (the pre-load module sets them, and the tests run this script outside an
instance with them).
"""

import json
import os
import sys

INPUT_DIR = os.environ.get("CELLA_INPUT_DIR", "/cella/inputs")
OUTPUT_DIR = os.environ.get("CELLA_OUTPUT_DIR", "/cella/outputs")
TASK_FILE = os.environ.get("CELLA_TASK_FILE", "/cella/task.json")


def read_ids(slot):
    with open(os.path.join(INPUT_DIR, slot), encoding="utf-8") as f:
        return {line.strip() for line in f if line.strip()}


def main():
    with open(TASK_FILE, encoding="utf-8") as f:
        task = json.load(f)
    inputs = task["inputs"]
    if sorted(inputs) != ["left", "right"]:
        print(f"psi needs the input slots left and right, got {inputs}", file=sys.stderr)
        return 2
    common = sorted(read_ids("left") & read_ids("right"))
    data = "".join(f"{item}\n" for item in common)
    for slot in task["outputs"]:
        with open(os.path.join(OUTPUT_DIR, slot), "w", encoding="utf-8") as f:
            f.write(data)
    print(f"{len(common)} ids in common")
    return 0


if __name__ == "__main__":
    sys.exit(main())
