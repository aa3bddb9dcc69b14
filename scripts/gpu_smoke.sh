#!/usr/bin/env bash
# The first run on a GPU machine, about 5 minutes: does the CUDA path work at all?
#
#   OUT=/some/folder scripts/gpu_smoke.sh        # on a lent machine $OUT is already set
#
# From the repository root. In order, each step's output in $OUT/logs/STEP.log and its exit
# status in $OUT/summary.txt:
#   device       the GPU, its driver and compute capability, torch and its CUDA version
#                ($OUT/device.json, with the provenance of the run)
#   cuda-tests   the tests marked cuda, by file (only those files' imports are needed)
#   smoke-*      the CLI's smoke presets on digits: the teacher, then PC under auto
#                precision (bf16 from compute capability 8.0, else fp16), PC under fp16 (the
#                T4 path, with the gradient scaler), PC under --compile, CRD under fp16
#                (runs under $OUT/runs, each with its results.json and provenance)
#   loss-bench   benchmarks/loss_speed.py on the GPU at B = 64..1024 (the naive form only
#                where it fits the GPU's memory): $OUT/loss_speed.json
#   dry-run      the full-scale comparison's images, FLOPs and time at rates measured here
# Every step runs even when one before it failed; the script exits 1 if any failed.
# On a machine without a GPU it says so and exits 0.
set -uo pipefail
: "${OUT:?set OUT to the folder that receives the logs and results}"
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "no GPU: torch.cuda.is_available() is False on this machine; nothing to smoke-test"
    exit 0
fi

mkdir -p "$OUT/logs" "$OUT/runs"
: > "$OUT/summary.txt"
failed=0

step() {  # step NAME SECONDS COMMAND...: run COMMAND within SECONDS, log it, record its status
    local name=$1 seconds=$2
    shift 2
    echo "== $name"
    timeout -k 10 "$seconds" "$@" > "$OUT/logs/$name.log" 2>&1
    local status=$?
    tail -n 15 "$OUT/logs/$name.log"
    echo "$name $status" >> "$OUT/summary.txt"
    [ "$status" -eq 0 ] || failed=1
}

step device 60 "$PYTHON" - "$OUT/device.json" <<'PYTHON'
import json, subprocess, sys
import torch
from perceptcoh.engine.provenance import provenance
index = torch.cuda.current_device()
properties = torch.cuda.get_device_properties(index)
driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                        capture_output=True, text=True).stdout.strip() or None
record = {"gpu": properties.name, "driver": driver,
          "capability": list(torch.cuda.get_device_capability(index)),
          "memory_gib": round(properties.total_memory / 2**30, 1),
          "torch": torch.__version__, "torch_cuda": torch.version.cuda,
          "cudnn": torch.backends.cudnn.version(), "bf16": torch.cuda.is_bf16_supported(),
          "provenance": provenance(device=torch.device("cuda", index))}
print(json.dumps(record, indent=2))
with open(sys.argv[1], "w") as handle:
    json.dump(record, handle, indent=2)
PYTHON

mapfile -t cuda_files < <(grep -l "pytest.mark.cuda" tests/test_*.py)
step cuda-tests 150 "$PYTHON" -m pytest -q -m cuda -p no:cacheprovider "${cuda_files[@]}"

runs="$OUT/runs"
transfer() {  # transfer NAME ARGS...: a smoke transfer from the smoke teacher
    local name=$1
    shift
    step "smoke-$name" 90 "$PYTHON" -m perceptcoh transfer --preset smoke --no-progress \
        --teacher-checkpoint "$runs/teacher/model.pt" --output-dir "$runs/$name" "$@"
}
step smoke-teacher 90 "$PYTHON" -m perceptcoh train-teacher --preset smoke --no-progress \
    --output-dir "$runs/teacher"
transfer pc-auto --method pc --precision auto
transfer pc-fp16 --method pc --precision fp16
transfer pc-compile --method pc --compile
transfer crd-fp16 --method crd --precision fp16

step loss-bench 90 "$PYTHON" benchmarks/loss_speed.py --devices cuda \
    --batch-sizes 64 256 1024 --json "$OUT/loss_speed.json"
step dry-run 60 "$PYTHON" -m perceptcoh experiment comparison --scale full --dry-run

echo "== summary (step, exit status)"
cat "$OUT/summary.txt"
exit "$failed"
