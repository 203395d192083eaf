#!/usr/bin/env bash
# Issue 3 acceptance runs: the MLPs on digits, MNIST and Fashion-MNIST.
# usage: bash experiments/mlp.sh [DATA_ROOT]   (DATA_ROOT holds mnist/ and fashion-mnist/ idx .gz files)
# --threads 1: one BLAS thread (the machine these ran on was shared with other jobs; see README).
set -euo pipefail
DATA=${1:-../shared/data}
OUT=${OUT:-runs}
run() { echo "+ $*"; /usr/bin/time -f "wall %e s" "$@"; }
# the README's main job (digits: 64-512-256-10 ReLU, dropout 0.3, Adam, 30 epochs)
run chainrule --threads 1 train mlp --out "$OUT/mlp-digits" --no-progress
# MNIST 784-256-256-10 ReLU, cross-entropy, 10 epochs (inputs: one global mean/std, the default for MNIST)
run chainrule --threads 1 train mlp --dataset mnist --data-dir "$DATA" --hidden 256,256 --activation relu --loss ce \
    --optimizer adam --lr 1e-3 --dropout 0.2 --epochs 10 --batch-size 128 --out "$OUT/mlp-mnist" --no-progress
# seed 003's network: one sigmoid hidden layer, 10 sigmoid outputs, multi-label BCE, λ-regularisation
run chainrule --threads 1 train mlp --dataset mnist --data-dir "$DATA" --hidden 300 --activation sigmoid --loss multilabel-bce \
    --l2 1e-4 --optimizer sgd --lr 0.2 --epochs 10 --batch-size 64 --out "$OUT/mlp-mnist-seed003" --no-progress
# Fashion-MNIST, the same MLP and settings as MNIST
run chainrule --threads 1 train mlp --dataset fashion-mnist --data-dir "$DATA" --hidden 256,256 --activation relu --loss ce \
    --optimizer adam --lr 1e-3 --dropout 0.2 --epochs 10 --batch-size 128 --out "$OUT/mlp-fashion" --no-progress
