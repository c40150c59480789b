"""Mean and variance of one column across several owners' CSV files, as a Cella `libos`
function (runtime python3): a multi-party statistic where no owner sees another's rows.

Every input slot (e.g. `a`, `b`, `c`, one per data owner) is a CSV file with a header
row. The column is named by the task argument `column` (given to the program as
`--column=NAME` and in /cella/task.json). The output slot `summary` receives one JSON
object: {"column", "count", "mean", "variance"} (population variance), computed over the
rows of all inputs together. A row whose cell is empty is skipped; a cell that is not a
number, or an input without the column, fails the task naming the slot and row (exit
status 1, the message on stderr), without printing the cell itself.

Register and run (see docs/writing-functions.md):

    cella image build python3 --data-dir node          # libos.toml: images = ["python3"]
    cella function register --name column-stats --executor libos --runtime python3 \
        --payload examples/libos/stats.py --arg column \
        --input a --input b --input c --output summary --allow owner-a,owner-b,owner-c
    cella task create --function <function-id> --arg column=salary \
        --input a=owner-a --input b=owner-b --input c=owner-c --output summary=owner-a
    each owner: cella task assign <task-id> --input a=<file-id> ...; cella task approve <task-id>
    cella task invoke <task-id>

CELLA_INPUT_DIR / CELLA_OUTPUT_DIR / CELLA_TASK_FILE override /cella/inputs,
/cella/outputs and /cella/task.json, as in psi.py.
"""

import argparse
import csv
import json
import math
import os
import sys

INPUT_DIR = os.environ.get("CELLA_INPUT_DIR", "/cella/inputs")
OUTPUT_DIR = os.environ.get("CELLA_OUTPUT_DIR", "/cella/outputs")
TASK_FILE = os.environ.get("CELLA_TASK_FILE", "/cella/task.json")


class InputError(Exception):
    pass


def values(slot, column):
    """The numbers of `column` in input `slot`."""
    with open(os.path.join(INPUT_DIR, slot), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or column not in reader.fieldnames:
            raise InputError(f"input {slot!r} has no column {column!r}")
        for row_number, row in enumerate(reader, start=2):
            cell = (row.get(column) or "").strip()
            if not cell:
                continue
            try:
                value = float(cell)
            except ValueError:
                raise InputError(f"input {slot!r}, row {row_number}: not a number") from None
            if not math.isfinite(value):
                raise InputError(f"input {slot!r}, row {row_number}: not a finite number")
            yield value


def main():
    parser = argparse.ArgumentParser(description="mean and variance of a CSV column")
    parser.add_argument("--column", required=True)
    args, _unknown = parser.parse_known_args()
    with open(TASK_FILE, encoding="utf-8") as f:
        task = json.load(f)
    # Welford's algorithm: one pass, numerically stable, constant memory.
    count, mean, m2 = 0, 0.0, 0.0
    try:
        for slot in task["inputs"]:
            for x in values(slot, args.column):
                count += 1
                delta = x - mean
                mean += delta / count
                m2 += delta * (x - mean)
    except InputError as e:
        print(e, file=sys.stderr)
        return 1
    if count == 0:
        print(f"no values in column {args.column!r}", file=sys.stderr)
        return 1
    summary = {
        "column": args.column,
        "count": count,
        "mean": mean,
        "variance": m2 / count,
    }
    for slot in task["outputs"]:
        with open(os.path.join(OUTPUT_DIR, slot), "w", encoding="utf-8") as f:
            json.dump(summary, f)
            f.write("\n")
    print(f"{count} values from {len(task['inputs'])} inputs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
