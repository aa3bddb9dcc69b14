#!/usr/bin/env bash
# Work on a lent GPU machine in calls of at most 10 minutes, sending back what the book
# needs even from a call that is killed. Run from the repository root there, with $OUT set
# to the folder whose files come back. Every step can be repeated.
#
#   scripts/device_table.sh STEP SECONDS [ARGS...]
#
# Steps, in the order a session with a GPU runs them (one call each, or several steps in
# one call joined by "+", e.g. "cuda-tests+bench 300"):
#   cuda-tests   pytest -m cuda on the files that have such tests (they skip without a GPU)
#   bench        benchmarks/train_speed.py and benchmarks/loss_speed.py on the GPU
#   dry-run      the comparison's images, FLOPs and estimated time at rates measured here
#   table        python -m perceptcoh experiment comparison --scale $SCALE: the teacher,
#                then PC and the strongest baselines (CRD, KD, PKT, FitNet, CE alone) of seed 0
#                on the main pair, then every other run; ARGS go to each experiment call
#
# Data: every call first copies whatever CIFAR-100 files it carries in data/stage/ (an
# ignored folder: name it in the call's carry list) to
# $DATA/cifar100 (a folder outside the working tree that outlives the call while the
# machine stays warm). The six files (5 training shards and the test split, 23 MB each) take
# three calls at 64 MiB each; carry them with the first three calls, whatever their steps.
#
# Time: Python runs under `timeout`, SECONDS after the call started, and the experiments get
# a --time-limit a minute shorter so that they stop at an epoch boundary (exit 75: call
# again). Whatever happens, an EXIT trap packs into $OUT: results.tgz (every results.json
# under runs/ and results/*.json), logs/ (each step's output), and the teacher's model.pt,
# or its checkpoint.pt while it is unfinished, in parts of 15 MiB (teacher.part-*, rebuilt
# with `cat teacher.part-* > FILE`, checked against teacher.sha256).
set -euo pipefail
: "${OUT:?set OUT to the folder whose files come back}"
DATA=${PERCEPTCOH_DATA:-/root/data}
SCALE=${SCALE:-full}
export PERCEPTCOH_DATA=$DATA
started=$(date +%s)
mkdir -p "$OUT/logs"

pack() {
    set +e
    find runs -name results.json -print0 2>/dev/null \
        | tar czf "$OUT/results.tgz" --null -T - results/*.json
    local folder file
    folder=$(python3 -c "from perceptcoh.engine.experiments import SCALES; \
print(SCALES['$SCALE']['teacher']['output_dir'])")
    for file in "$folder/model.pt" "$folder/checkpoint.pt"; do
        if [ -f "$file" ]; then
            rm -f "$OUT"/teacher.part-*
            split -b 15M -d "$file" "$OUT/teacher.part-"
            sha256sum "$file" > "$OUT/teacher.sha256"
            break
        fi
    done
}
trap pack EXIT

left() {  # seconds left before the call's limit, less a margin for packing
    echo $(( $1 - ($(date +%s) - started) - 30 ))
}

stage() {
    if compgen -G "data/stage/*" > /dev/null; then
        mkdir -p "$DATA/cifar100"
        cp -n data/stage/* "$DATA/cifar100/"
    fi
    ls "$DATA/cifar100" 2>/dev/null | tr '\n' ' '
    echo
}

experiment() {  # experiment SECONDS ARGS...: one comparison call, within the time left
    local budget=$1
    shift
    [ "$budget" -gt 60 ] || return 75
    timeout -k 10 "$budget" python3 -m perceptcoh experiment comparison --scale "$SCALE" \
        --data-root "$DATA" --time-limit $(( budget - 60 )) --no-progress "$@"
}

run_step() {
    local step=$1 seconds=$2
    shift 2
    case "$step" in
        cuda-tests)
            # By file: collecting every test module would need all of their imports.
            mapfile -t files < <(grep -l "pytest.mark.cuda" tests/test_*.py)
            timeout -k 10 "$(left "$seconds")" python3 -m pytest -q -m cuda "${files[@]}" ;;
        bench)
            timeout -k 10 "$(left "$seconds")" python3 benchmarks/train_speed.py \
                --json "$OUT/train_speed.json"
            timeout -k 10 "$(left "$seconds")" python3 benchmarks/loss_speed.py \
                --devices cuda --json "$OUT/loss_speed.json" ;;
        dry-run)
            timeout -k 10 "$(left "$seconds")" python3 -m perceptcoh experiment comparison \
                --scale "$SCALE" --data-root "$DATA" --dry-run "$@" ;;
        table)
            experiment "$(left "$seconds")" --pairs resnet32x4:resnet8x4 --seeds 0 \
                --methods pc crd kd pkt fitnet ce "$@"
            experiment "$(left "$seconds")" "$@" ;;
        *)
            sed -n '2,28p' "$0"
            return 2 ;;
    esac
}

[ $# -ge 2 ] || { sed -n '2,28p' "$0"; exit 2; }
steps=$1 seconds=$2
shift 2
stage
IFS=+ read -ra names <<< "$steps"
for name in "${names[@]}"; do
    echo "== $name ($(left "$seconds") s left)"
    set +e
    run_step "$name" "$seconds" "$@" 2>&1 | tee "$OUT/logs/$name.log"
    status=${PIPESTATUS[0]}
    set -e
    [ "$status" -eq 0 ] || exit "$status"
done
