"""Record the environment a chapter's claims were written in: what decides floating-point
order (perceptcoh.engine.provenance.environment) and the usual provenance, as
results/<chapter>-environment.json. In that environment the chapter asserts its claims at
a margin of 4 standard errors or more, elsewhere at a margin above 0
(perceptcoh.book.claims.asserted_margin). Run it where the chapter's text was written, with
the thread count the chapter sets:

    python scripts/record_environment.py digits --threads 1
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from perceptcoh.engine.provenance import environment, provenance

RESULTS = Path(__file__).resolve().parents[1] / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapter", help="the chapter's short name, e.g. digits")
    parser.add_argument("--threads", type=int, required=True,
                        help="the CPU thread count the chapter sets (torch.set_num_threads)")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    path = RESULTS / f"{args.chapter}-environment.json"
    record = {"environment": environment(device="cpu"), "provenance": provenance(device="cpu")}
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {path}: {record['environment']}")


if __name__ == "__main__":
    main()
