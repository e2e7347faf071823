#!/usr/bin/env bash
# gpt-pretrain at full size on one GPU, measured: steady-state median tokens/s (over every timed step,
# not one), MFU, peak VRAM, steps, val_bpb and the attention backend. Keeps the whole training log in
# bench/logs/ and appends one row to bench/gpu.md.
#
#   bash bench/gpu.sh                        # the template as it is (attention auto), 300 s budget
#   bash bench/gpu.sh --attention sdpa       # another attention backend: fa3 | flex | sdpa | auto
#   bash bench/gpu.sh --budget 60            # a shorter budget, for comparisons (marked in the row)
#
# Needs prepared data in $SKYLAB_CACHE (default ~/.cache/skylab): `skylab prepare` (the reference
# corpus, needs the network) or `skylab prepare --source demo` (offline).
set -euo pipefail
attention=auto
budget=""
label=""
while [ $# -gt 0 ]; do
    case "$1" in
        --attention) attention=$2; shift 2 ;;
        --budget) budget=$2; shift 2 ;;
        --label) label=$2; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "bench/gpu.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$attention" in auto|fa3|flex|sdpa) ;; *) echo "bench/gpu.sh: --attention must be auto, fa3, flex or sdpa" >&2; exit 2 ;; esac
case "$budget" in ""|*[!0-9]*) [ -z "$budget" ] || { echo "bench/gpu.sh: --budget takes whole seconds" >&2; exit 2; } ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
mkdir -p "$root/bench/logs"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

# train NAME SOURCE_DIR: copy the experiment, apply the options, train, keep the log, record a row.
train() {
    local name=$1 source=$2 workdir log
    workdir=$(mktemp -d)
    cp "$root"/experiments/gpt-pretrain/{prepare.py,schedules.py} "$workdir"
    cp "$source/train.py" "$workdir"
    sed -i "s/^ATTENTION = .*/ATTENTION = \"$attention\"  # set by bench\/gpu.sh/" "$workdir/train.py"
    if [ -n "$budget" ]; then
        sed -i "s/\"full\": {\(.*\)\"TIME_BUDGET\": [0-9]*}/\"full\": {\1\"TIME_BUDGET\": $budget}/" "$workdir/prepare.py"
    fi
    log="$root/bench/logs/gpu-$stamp-$name.log"
    echo "== $name: training in $workdir, log $log" >&2
    local status=0
    (cd "$workdir" && SKYLAB_PROFILE=full PYTHONUNBUFFERED=1 "$python" train.py) 2>&1 | tee "$log" || status=$?
    "$python" "$root/bench/gpu_record.py" "$log" --name "$name" --budget "${budget:-300}" \
        --label "$label" --table "$root/bench/gpu.md"
    rm -rf "$workdir"
    return "$status"
}

train template "$root/experiments/gpt-pretrain"
