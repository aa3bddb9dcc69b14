"""Ship a finished teacher run with the library: copy its model.pt into
perceptcoh/engine/teachers/NAME.pt and write NAME.json (SHA-256, size, recipe, command,
metrics, provenance of the run and of this call).

    python scripts/ship_teacher.py runs/laptop/teacher-resnet20 cifar100-resnet20 \
        --command "python -m perceptcoh train-teacher --preset laptop"

The file must stay small (at most 3 MB): the repository carries it.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from perceptcoh.engine.checkpoint import MODEL_NAME, RESULTS_NAME, load_checkpoint
from perceptcoh.engine.files import atomic_write_text, file_sha256
from perceptcoh.engine.provenance import provenance
from perceptcoh.engine import shipped

LIMIT_BYTES = 3 * 10**6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="folder of a finished teacher run")
    parser.add_argument("name", help="name of the shipped teacher, e.g. cifar100-resnet20")
    parser.add_argument("--command", required=True, help="the command that trains it")
    args = parser.parse_args(argv)
    model, results_path = args.run / MODEL_NAME, args.run / RESULTS_NAME
    if not model.is_file() or not results_path.is_file():
        print(f"error: {args.run} is not a finished run (needs {MODEL_NAME} and "
              f"{RESULTS_NAME})", file=sys.stderr)
        return 1
    size = model.stat().st_size
    if size > LIMIT_BYTES:
        print(f"error: {model} is {size:,} bytes, over the {LIMIT_BYTES:,} a shipped teacher "
              f"may have", file=sys.stderr)
        return 1
    state = load_checkpoint(model)
    results = json.loads(results_path.read_text())
    folder = shipped.TEACHERS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{args.name}.pt"
    shutil.copyfile(model, target)
    record = {
        "name": args.name,
        "file": target.name,
        "sha256": file_sha256(target),
        "bytes": size,
        "model": state["model"],
        "dataset": state["dataset"]["name"],
        "command": args.command,
        "recipe": results["config"],
        "metrics": results["metrics"],
        "history": results["history"],
        "wall_time_seconds": results["wall_time_seconds"],
        "images_per_second": results["images_per_second"],
        "run_provenance": results["provenance"],
        "shipped_by": provenance(sys.argv),
    }
    atomic_write_text(folder / f"{args.name}.json", json.dumps(record, indent=1) + "\n")
    print(json.dumps({key: record[key] for key in ("file", "sha256", "bytes")}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
