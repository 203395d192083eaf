"""Re-evaluate a finished or interrupted ``chainrule train sequence`` run: dev and test accuracy of
its best.safetensors beside Tai et al. (2015), and results.json -- what the command prints at the
end of training.

    OPENBLAS_NUM_THREADS=1 python experiments/sequence_report.py experiments/results/sequence_NAME
"""
import json
import os
import sys

from chainrule.checkpoint import load_checkpoint
from chainrule.commands import sequence as S

out = sys.argv[1]
model, config, vocab, meta = S.load_model(os.path.join(out, "best.safetensors"))
_, last = load_checkpoint(os.path.join(out, "last.safetensors"))
print(f"# {out}: stopped at epoch {last['epoch'] + 1} batch {last['batch']}; history:")
for h in last["history"]:
    print("#  ", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in h.items()}))
sys.exit(S.report(out, S._datasets(config, vocab), last["train_seconds"]))
