"""Crash soak: kill a short ``chainrule train mlp`` run at random moments, resume it, and check the
result is the straight run's, bit for bit.

Each round starts ``chainrule train mlp`` (``--resume`` when a checkpoint exists) in a child process,
waits a random time (three times in four a moment of the training loop -- batches, validation,
checkpoint writes -- counted from the line the command prints just before training; otherwise any
moment of the process, start-up and final report included), then kills it — with SIGKILL, with one SIGINT, or with two SIGINTs a random
0-1 ms (half the time) or 0-50 ms apart — and resumes.  When a run completes, its directory is checked against a
straight (never interrupted) run of the same command:

* every array of ``last.safetensors`` (model and optimizer state) equal bit for bit,
* ``metrics.jsonl``: epochs 1..N once each, in order,
* no temporary files (``.tmp-*``) left in the directory,

and a new run directory starts, until ``--kills`` interruptions have been delivered.

    python experiments/crash_soak.py --kills 300          # the soak (minutes)
    tests/test_train_crash.py runs it with 20 kills (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

_SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
TRAIN = ["train", "mlp", "--hidden", "128,128", "--epochs", "3", "--batch-size", "8", "--dropout", "0.3",
         "--no-progress"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.path.abspath(_SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def _start(out, resume):
    cmd = [sys.executable, "-m", "chainrule", "--threads", "1", *TRAIN, "--out", out] + (["--resume"] if resume else [])
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())


def _wait_for_banner(p):
    """Read the child's stdout up to the line printed just before training starts."""
    while True:
        line = p.stdout.readline()
        if not line or line.startswith(b"chainrule train"):
            return


def _arrays(path):
    sys.path.insert(0, os.path.abspath(_SRC))
    from chainrule.checkpoint import load_checkpoint
    return load_checkpoint(path)[0]


def check_run(out, reference):
    """Problems (a list of strings, empty when all is well) of the completed run in ``out``."""
    problems = []
    got, want = _arrays(os.path.join(out, "last.safetensors")), _arrays(os.path.join(reference, "last.safetensors"))
    if set(got) != set(want):
        problems.append(f"{out}: arrays {sorted(set(got) ^ set(want))} differ in name")
    for k in sorted(set(got) & set(want)):
        if got[k].dtype != want[k].dtype or got[k].shape != want[k].shape or got[k].tobytes() != want[k].tobytes():
            problems.append(f"{out}: {k} differs from the straight run "
                            f"(max abs diff {np.max(np.abs(got[k].astype(float) - want[k].astype(float))):.3g})")
    with open(os.path.join(out, "metrics.jsonl")) as f:
        epochs = [json.loads(line)["epoch"] for line in f]
    with open(os.path.join(reference, "metrics.jsonl")) as f:
        n = len(f.read().splitlines())
    if epochs != list(range(1, n + 1)):
        problems.append(f"{out}: metrics.jsonl epochs {epochs}, expected 1..{n} once each")
    temps = [f for f in os.listdir(out) if f.startswith(".tmp-")]
    if temps:
        problems.append(f"{out}: temporary files left: {temps}")
    return problems


def soak(workdir, kills=20, seed=0, per_run=7, log=print):
    """Run the soak in ``workdir``: ``kills`` interruptions in all, at most ``per_run`` on one run
    directory before it is let finish and compared.  Returns a dict with the counts and the list of
    problems found."""
    rng = np.random.default_rng(seed)
    reference = os.path.join(workdir, "straight")
    t0 = time.perf_counter()
    p = _start(reference, resume=False)
    out, err = p.communicate()
    if p.returncode != 0:
        raise RuntimeError(f"the straight run failed ({p.returncode}):\n{err.decode()}")
    duration = time.perf_counter() - t0
    with open(os.path.join(reference, "results.json")) as f:
        train_window = 1.3 * json.load(f)["train_seconds"] + 0.05
    stats = {"kills": 0, "sigkill": 0, "sigint": 0, "double_sigint": 0, "runs_completed": 0, "resumes": 0,
             "straight_seconds": duration, "problems": [], "odd_exits": [], "runs_interrupted": 0}
    run_id = 0
    out_dir = os.path.join(workdir, f"run{run_id}")
    run_kills = 0
    while True:
        resume = os.path.exists(os.path.join(out_dir, "last.safetensors"))
        stats["resumes"] += resume
        p = _start(out_dir, resume)
        if stats["kills"] >= kills or run_kills >= per_run:      # enough: let this one finish
            _, err = p.communicate()
            finished = True
        else:
            try:
                if rng.random() < 0.75:          # a moment of the training loop
                    _wait_for_banner(p)
                    delay = rng.uniform(0.0, train_window)
                else:
                    delay = rng.uniform(0.0, duration)
                _, err = p.communicate(timeout=delay)
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
        if not finished:
            how = rng.choice(["sigkill", "sigint", "double_sigint"])
            if how == "sigkill":
                p.send_signal(signal.SIGKILL)
            else:
                p.send_signal(signal.SIGINT)
                if how == "double_sigint":       # half the time within one training step of the first
                    time.sleep(rng.uniform(0.0, 0.001) if rng.random() < 0.5 else rng.uniform(0.0, 0.05))
                    if p.poll() is None:
                        p.send_signal(signal.SIGINT)
            _, err = p.communicate()
            stats["kills"] += 1
            run_kills += 1
            stats[how] += 1
            if p.returncode == 0:         # it finished before the signal arrived
                finished = True
            elif how != "sigkill" and p.returncode not in (130, -signal.SIGINT):
                # not a data problem (the files are checked when the run completes), but worth seeing:
                # e.g. a rare CPython abort (-6) when the signal lands while the interpreter finalizes
                stats["odd_exits"].append(f"{out_dir}: {how} gave exit code {p.returncode}:\n{err.decode()[-2000:]}")
        elif p.returncode != 0:
            stats["problems"].append(f"{out_dir}: exit code {p.returncode}:\n{err.decode()[-2000:]}")
            finished = True
        if finished:
            if p.returncode == 0:
                found = check_run(out_dir, reference)
                stats["problems"] += found
                stats["runs_completed"] += 1
                if run_kills:
                    stats["runs_interrupted"] += 1
                    log(f"  {out_dir}: completed after {run_kills} interruptions; "
                        f"{'OK' if not found else 'PROBLEMS: ' + '; '.join(found)} "
                        f"(total {stats['kills']} interruptions so far)")
            if stats["kills"] >= kills:
                break
            run_id += 1
            run_kills = 0
            out_dir = os.path.join(workdir, f"run{run_id}")
    log(f"crash soak: {stats['kills']} interruptions ({stats['sigkill']} SIGKILL, {stats['sigint']} SIGINT, "
        f"{stats['double_sigint']} double SIGINT), {stats['resumes']} resumes, {stats['runs_completed']} runs "
        f"completed and compared with a straight run ({stats['runs_interrupted']} of them interrupted at least "
        f"once; straight run {duration:.1f} s); problems: {len(stats['problems'])}")
    for prob in stats["problems"]:
        log("  " + prob)
    if stats["odd_exits"]:
        log(f"{len(stats['odd_exits'])} interrupted processes ended with an unexpected exit code:")
        for odd in stats["odd_exits"]:
            log("  " + odd)
    return stats


def main(argv=None):
    import tempfile
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-run", type=int, default=7, help="interruptions of one run before it may finish")
    ap.add_argument("--workdir", default=None, help="default: a temporary directory, removed afterwards")
    args = ap.parse_args(argv)
    if args.workdir:
        os.makedirs(args.workdir, exist_ok=True)
        stats = soak(args.workdir, args.kills, args.seed, args.per_run)
    else:
        with tempfile.TemporaryDirectory() as d:
            stats = soak(d, args.kills, args.seed, args.per_run)
    return 1 if stats["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
