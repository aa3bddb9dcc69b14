#!/usr/bin/env bash
# Run the book's CIFAR experiments on a lent GPU machine in pieces, and send back what the
# book needs. Run from the repository root there; every step can be repeated.
#
#   scripts/device_table.sh stage              copy the CIFAR-100 files carried in data/stage/
#                                              (at most two shards a call) to $DATA/cifar100
#   scripts/device_table.sh run NAME SECONDS [ARGS...]
#                                              python -m perceptcoh experiment NAME --scale
#                                              $SCALE for at most SECONDS (then exit 75: call
#                                              again), ARGS e.g. --pairs/--seeds; then pack
#
# pack puts into $OUT: results.tgz (every results.json under runs/, and results/*.json) and
# the teacher's model.pt in parts of 15 MiB (teacher.part-*), which the device tool's 16 MiB
# per file allows back; rebuild it with `cat teacher.part-* > model.pt` and check its SHA-256
# against teacher.sha256.
set -euo pipefail
DATA=${PERCEPTCOH_DATA:-/root/data}
SCALE=${SCALE:-full}

pack() {
    find runs -name results.json -print0 | tar czf "$OUT/results.tgz" --null -T - results/*.json
    local teacher
    teacher=$(python3 -c "from perceptcoh.experiments import SCALES; from pathlib import Path; \
print(Path(SCALES['$SCALE']['teacher']['output_dir']) / 'model.pt')")
    if [ -f "$teacher" ]; then
        split -b 15M -d "$teacher" "$OUT/teacher.part-"
        sha256sum "$teacher" > "$OUT/teacher.sha256"
    fi
}

case "${1:-}" in
    stage)
        mkdir -p "$DATA/cifar100"
        cp -n data/stage/* "$DATA/cifar100/"
        ls -l "$DATA/cifar100"
        ;;
    run)
        : "${OUT:?set OUT to the folder whose files come back}"
        name=$2 seconds=$3
        shift 3
        status=0
        python3 -m perceptcoh experiment "$name" --scale "$SCALE" --data-root "$DATA" \
            --time-limit "$seconds" --no-progress "$@" || status=$?
        pack
        exit "$status"
        ;;
    *)
        sed -n '2,17p' "$0"
        exit 2
        ;;
esac
