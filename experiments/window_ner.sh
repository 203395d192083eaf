#!/usr/bin/env bash
# Issue 5: the window classifier of seed 002 on CoNLL-2003 (eng.train / eng.testa / eng.testb)
# with GloVe 6B 50d vectors. Results: experiments/results/window_ner.md.
#
#   experiments/window_ner.sh [RUN ...]      RUN in: ner ner-default person-seed person
#
# Single-threaded BLAS and nice, as the machine's 2 cores are shared. Every run logs to
# experiments/results/window_<run>.log and writes its checkpoints to runs/window-<run>/.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-/work/shared/data/ner/conll2003}
GLOVE=${GLOVE:-/work/shared/data/ner/glove.6B.50d.txt.gz}
# `chainrule train window` once the subcommands are registered in chainrule.cli; the same parser otherwise
CR=${CR:-python -m chainrule}
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
COMMON=(--data-dir "$DATA" --embeddings "$GLOVE" --no-progress)

run() {
  local name=$1; shift
  echo "== $name: $CR train window ${COMMON[*]} --out runs/window-$name $*"
  /usr/bin/time -f "wall %e s (user %U s, sys %S s)" nice -n 5 $CR train window "${COMMON[@]}" \
      --out "runs/window-$name" "$@" 2>&1 | tee "experiments/results/window_$name.log"
}

runs=("$@")
[ ${#runs[@]} -eq 0 ] && runs=(ner ner-default person-seed person)
for r in "${runs[@]}"; do
  case $r in
    # 4-type NER: window 5, 300 tanh units, caps features, IOBES + Viterbi, dropout 0.5 on x, Adam
    ner)          run ner --task ner --window 5 --hidden 300 --dropout 0.5 --epochs 20 --batch-size 64 --optimizer adam --lr 1e-3 --seed 0 ;;
    # 4-type NER with the command's defaults (window 3, H 100, no dropout, 10 epochs)
    ner-default)  run ner-default --task ner --seed 0 ;;
    # PERSON vs. not, exactly the seed's model and training: no caps features, sigmoid + BCE,
    # C/2m (|W|^2+|U|^2), SGD one window at a time
    person-seed)  run person-seed --task person --caps-dim 0 --window 3 --hidden 100 --batch-size 1 --optimizer sgd --lr 0.01 --epochs 5 --seed 0 ;;
    # PERSON vs. not, binary head with caps features, minibatch Adam
    person)       run person --task person --window 5 --hidden 300 --dropout 0.5 --epochs 10 --batch-size 64 --optimizer adam --lr 1e-3 --seed 0 ;;
    *) echo "unknown run $r" >&2; exit 2 ;;
  esac
done
