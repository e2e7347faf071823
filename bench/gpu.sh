#!/usr/bin/env bash
# gpt-pretrain at full size on one GPU, measured: steady-state median tokens/s (over every timed step,
# not one), MFU, peak VRAM, steps, val_bpb and the attention backend. Keeps the whole training log in
# bench/gpu-logs/ and appends one row to bench/gpu.md.
#
#   bash bench/gpu.sh                        # the template as it is (attention auto), 300 s budget
#   bash bench/gpu.sh --attention sdpa       # another attention backend: fa3 | flex | sdpa | auto
#   bash bench/gpu.sh --budget 60            # a shorter budget, for comparisons (marked in the row)
#   bash bench/gpu.sh --reference DIR        # then DIR/train.py, a reference train.py of yours, on
#                                            # the same prepared data, and both rows side by side
#   --skip-template (only the reference)  --label TEXT  --table FILE  --logs DIR
#
# Needs prepared data in $SKYLAB_CACHE (default ~/.cache/skylab): `skylab prepare` (the reference
# corpus, needs the network) or `python prepare.py --source demo` (offline), and SKYLAB_DATA naming
# that source (default climbmix; e.g. SKYLAB_DATA=demo). SKYLAB_PROFILE (default full) picks the
# profile. A reference train.py trains beside bench/reference_prepare.py, which gives
# it the published `prepare` interface over this data; it is copied to a temporary directory and
# nothing of it is kept but its log.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
attention=auto
budget=""
reference=""
label=""
template=yes
table="$root/bench/gpu.md"
logs="$root/bench/gpu-logs"
usage() { echo "bench/gpu.sh: $1 (see --help)" >&2; exit 2; }
while [ $# -gt 0 ]; do
    case "$1" in
        --attention) attention=${2-}; shift 2 || usage "--attention needs a value" ;;
        --budget) budget=${2-}; shift 2 || usage "--budget needs a value" ;;
        --reference) reference=${2-}; shift 2 || usage "--reference needs a directory" ;;
        --label) label=${2-}; shift 2 || usage "--label needs a value" ;;
        --table) table=${2-}; shift 2 || usage "--table needs a file" ;;
        --logs) logs=${2-}; shift 2 || usage "--logs needs a directory" ;;
        --skip-template) template=no; shift ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) usage "unknown argument $1" ;;
    esac
done
case "$attention" in auto|fa3|flex|sdpa) ;; *) usage "--attention must be auto, fa3, flex or sdpa" ;; esac
if [ -n "$budget" ]; then
    case "$budget" in *[!0-9]*) usage "--budget takes whole seconds" ;; esac
fi
[ -z "$reference" ] || [ -f "$reference/train.py" ] || usage "$reference/train.py does not exist"
[ "$template" = yes ] || [ -n "$reference" ] || usage "--skip-template needs --reference"

python=${PYTHON:-python3}
mkdir -p "$logs"
stamp=$(date -u +%Y%m%dT%H%M%SZ)

# train NAME TRAIN_PY: a temporary copy of the experiment with TRAIN_PY as its train.py; the options
# applied, trained, its log kept, its row recorded.
train() {
    local name=$1 train_py=$2 workdir log status=0
    workdir=$(mktemp -d)
    cp "$root"/experiments/gpt-pretrain/{prepare.py,runtime.py,schedules.py} "$workdir"
    cp "$train_py" "$workdir/train.py"
    if [ "$name" = reference ]; then
        mv "$workdir/prepare.py" "$workdir/skylab_prepare.py"
        cp "$root/bench/reference_prepare.py" "$workdir/prepare.py"
    fi
    local harness="$workdir/prepare.py"
    [ "$name" = reference ] && harness="$workdir/skylab_prepare.py"
    sed -i "s/^ATTENTION = .*/ATTENTION = \"$attention\"  # set by bench\/gpu.sh/" "$workdir/train.py"
    if [ -n "$budget" ]; then
        sed -i -E "s/(\"TIME_BUDGET\": )[0-9]+/\1$budget/" "$harness"
    fi
    log="$logs/gpu-$stamp-$name.log"
    echo "== $name: training in $workdir, log $log" >&2
    (cd "$workdir" && SKYLAB_PROFILE=${SKYLAB_PROFILE:-full} PYTHONUNBUFFERED=1 "$python" train.py) 2>&1 \
        | tee "$log" || status=$?
    "$python" "$root/bench/gpu_record.py" "$log" --name "$name" --budget "${budget:-default}" \
        --label "$label" --table "$table"
    rm -rf "$workdir"
    return "$status"
}

status=0
if [ "$template" = yes ]; then
    train template "$root/experiments/gpt-pretrain/train.py" || status=$?
fi
if [ -n "$reference" ]; then
    train reference "$reference/train.py" || status=$?
    if [ "$template" = yes ]; then
        echo "== side by side:"
        sed -n '/^| date/,/^|---/p' "$table"
        tail -n 2 "$table"
    fi
fi
exit "$status"
