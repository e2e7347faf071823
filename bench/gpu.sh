#!/usr/bin/env bash
# The full-size gpt-pretrain run on one GPU: the reference H100 configuration for the 5-minute budget.
# Prints the summary block; record val_bpb, mfu_percent, tokens/s, peak_vram_mb and num_steps in the
# README's performance section. Needs prepared data in $SKYLAB_CACHE (default ~/.cache/skylab):
# `skylab prepare` (climbmix, needs the network) or `skylab prepare --source demo` (offline corpus).
#
#   bash bench/gpu.sh [sdpa|flex|fa3|auto]      # attention backend, default auto
set -euo pipefail
backend=${1:-auto}
workdir=$(mktemp -d)
cp experiments/gpt-pretrain/{train.py,prepare.py,schedules.py} "$workdir"
cd "$workdir"
sed -i "s/^ATTENTION = .*/ATTENTION = \"$backend\"/" train.py
SKYLAB_PROFILE=full PYTHONUNBUFFERED=1 python3 train.py | tee train.log
awk '/^step/ {split($0, f, "|"); tok=f[4]} END {print "last logged" tok}' train.log
