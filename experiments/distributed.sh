#!/usr/bin/env bash
# Issue 15: the same MNIST MLP trained by one process and data-parallel on 2 MPI ranks (--workers 2),
# same global batch, dropout off (so the two are the same training up to float32 rounding).
# usage: bash experiments/distributed.sh [DATA_ROOT]   (DATA_ROOT holds mnist/ idx .gz files)
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${OUT:-runs}
CHAINRULE=${CHAINRULE:-chainrule}      # e.g. CHAINRULE="python -m chainrule" from a source tree
run() { echo "+ $*"; /usr/bin/time -f "wall %e s" "$@"; }
common=(train mlp --dataset mnist --data-dir "$DATA/mnist" --hidden 256,256 --dropout 0 --epochs 3 --batch-size 128 --no-progress)
run $CHAINRULE --threads 1 "${common[@]}" --out "$OUT/mlp-mnist-1proc"
run $CHAINRULE --threads 1 "${common[@]}" --workers 2 --out "$OUT/mlp-mnist-2ranks"
