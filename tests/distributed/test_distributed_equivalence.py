"""Data parallelism on MPI: N ranks × batch B/N give the same parameters and evaluation numbers as
one process × batch B (float64, dropout off, rtol 1e-10) for the MLP, the window tagger (sparse
embeddings), the RNTN (level-batched trees, penalty on the batch's word vectors) and the LSTM
(buckets of sentences split inside each bucket); resume; faults.

Each run is a subprocess (``mpiexec -n N python mpi_worker.py ...``); the MPI extra is part of the
test extra, so these tests run wherever the test suite does (CI included) and fail, not skip,
without it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")
SRC = os.path.normpath(os.path.join(HERE, "..", "..", "src"))
MODELS = ["mlp", "window", "rntn", "treelstm", "lstm"]
RTOL = 1e-10


def env(**extra):
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([SRC] + ([e["PYTHONPATH"]] if e.get("PYTHONPATH") else []))
    e["OPENBLAS_NUM_THREADS"] = e["OMP_NUM_THREADS"] = "1"
    for k in ("CHAINRULE_TEST_FAULT", "CHAINRULE_TEST_VAL", "CHAINRULE_TEST_CKPT", "CHAINRULE_TEST_RESUME", "CHAINRULE_TEST_EPOCHS",
              "CHAINRULE_DIST_TIMEOUT"):
        e.pop(k, None)
    e.update({k: str(v) for k, v in extra.items()})
    return e


def mpiexec():
    from chainrule.distributed import mpiexec_path
    exe = mpiexec_path()
    if exe is None or importlib.util.find_spec("mpi4py") is None:
        pytest.fail("the MPI tests need mpi4py and mpiexec: pip install -e '.[test]' (the test extra "
                    "includes chainrule[mpi]: mpi4py and the mpich wheel)")
    return exe


def run(n, *args, timeout=180, **extra):
    cmd = ([sys.executable] if n == 1 else [mpiexec(), "-n", str(n), sys.executable]) + [WORKER, *map(str, args)]
    # a session of its own, so that a timeout kills mpiexec *and* its ranks (not mpiexec alone,
    # which would leave the ranks running as orphans)
    with subprocess.Popen(cmd, env=env(**extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, start_new_session=True) as p:
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            raise
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def load(d, name):
    with np.load(os.path.join(d, f"{name}.npz")) as z:
        params = {k: z[k] for k in z.files}
    with open(os.path.join(d, f"{name}.json")) as f:
        return params, json.load(f)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One process, 2 ranks and 3 ranks, each training all four models."""
    out = {}
    for n in (1, 2, 3):
        d = tmp_path_factory.mktemp(f"ranks{n}")
        r = run(n, d, *MODELS)
        assert r.returncode == 0, f"{n} rank(s) failed:\n{r.stdout}\n{r.stderr}"
        out[n] = (str(d), r)
    return out


def assert_same_params(a, b, what):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(b[k], a[k], rtol=RTOL, atol=0, err_msg=f"{what}: parameter {k}")


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("model", MODELS)
def test_same_parameters_as_one_process(runs, model, n):
    one, _ = load(runs[1][0], model)
    many, info = load(runs[n][0], model)
    assert info["world_size"] == n
    init = np.load(os.path.join(runs[1][0], f"{model}.init.npz"))
    moved = max(float(np.max(np.abs(one[k] - init[k]))) for k in one)
    assert moved > 1e-3, "training did not move the parameters: the comparison would be vacuous"
    assert_same_params(one, many, f"{model}, {n} ranks vs 1 process")


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("model", MODELS)
def test_same_evaluation_and_history(runs, model, n):
    _, one = load(runs[1][0], model)
    _, many = load(runs[n][0], model)
    for key, v in one["eval"].items():
        if key == "loss":
            assert many["eval"][key] == pytest.approx(v, rel=1e-12)
        else:                       # accuracy, F1, ...: ratios of counts, exactly equal
            assert many["eval"][key] == v, key
    for h1, hn in zip(one["history"], many["history"], strict=True):
        assert hn["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-12)
        assert hn.get("train_acc") == h1.get("train_acc")
        assert hn["best"] == h1["best"]


def test_only_rank_0_prints(runs):
    one, many = runs[1][1].stdout, runs[2][1].stdout
    lines = [ln for ln in many.splitlines() if ln.startswith("epoch")]
    assert len(lines) == len([ln for ln in one.splitlines() if ln.startswith("epoch")]) == 2 * len(MODELS)


@pytest.mark.slow
def test_resume(tmp_path, runs):
    """Checkpoints of 2 ranks: the MLP interrupted by SIGINT to rank 1 alone inside step 4 (it
    travels with that step's allreduce: both ranks stop after batch 4, rank 0 saves), the RNTN and
    the window tagger after one epoch.  Resumed on 2 ranks, the MLP and the RNTN end bit for bit
    where the straight 2-rank run ends; the tagger resumed on 3 ranks (same global batch) equals one
    process to rounding (rtol 1e-10), not bit for bit: the sums are taken in another order."""
    ck = tmp_path / "ck"
    first = run(2, tmp_path, "mlp", "rntn", "window", CHAINRULE_TEST_CKPT=ck, CHAINRULE_TEST_EPOCHS=1,
                CHAINRULE_TEST_FAULT="sigint:1:4:mlp")
    assert first.returncode == 0, first.stderr
    # both ranks write to one stderr pipe, so their lines may interleave mid-line: find, don't split
    stops = sorted(re.findall(r"mlp: interrupted at epoch \d+ batch \d+ on rank \d+", first.stderr))
    assert stops == ["mlp: interrupted at epoch 1 batch 4 on rank 0", "mlp: interrupted at epoch 1 batch 4 on rank 1"]
    r = run(2, tmp_path, "mlp", "rntn", CHAINRULE_TEST_CKPT=ck, CHAINRULE_TEST_RESUME=1)
    assert r.returncode == 0, r.stderr
    for model in ("mlp", "rntn"):
        straight, _ = load(runs[2][0], model)
        resumed, info = load(tmp_path, model)
        for k in straight:
            assert np.array_equal(resumed[k], straight[k]), (model, k)
        assert len(info["history"]) == 2
    r = run(3, tmp_path, "window", CHAINRULE_TEST_CKPT=ck, CHAINRULE_TEST_RESUME=1)
    assert r.returncode == 0, r.stderr
    one, _ = load(runs[1][0], "window")
    resumed, info = load(tmp_path, "window")
    assert info["world_size"] == 3
    assert_same_params(one, resumed, "window, 2 ranks then 3 ranks vs 1 process")


def test_evaluation_with_fewer_examples_than_ranks(tmp_path):
    """Validation sets of 2 examples on 3 ranks: one rank predicts nothing; the numbers still equal
    one process's."""
    one, many = tmp_path / "one", tmp_path / "many"
    one.mkdir()
    many.mkdir()
    models = ["mlp", "rntn", "lstm"]
    for n, d in ((1, one), (3, many)):
        r = run(n, d, *models, CHAINRULE_TEST_VAL=2, CHAINRULE_TEST_EPOCHS=1)
        assert r.returncode == 0, r.stderr
    for model in models:
        _, a = load(one, model)
        _, b = load(many, model)
        assert a["eval"].keys() == b["eval"].keys()
        for key, v in a["eval"].items():
            assert b["eval"][key] == pytest.approx(v, rel=1e-12, nan_ok=True), (model, key)


def test_exception_on_one_rank_stops_all(tmp_path):
    r = run(3, tmp_path, "mlp", timeout=120, CHAINRULE_TEST_FAULT="raise:1:3")
    assert r.returncode != 0
    assert "rank 1 of 3: failed at epoch 1 batch 3" in r.stderr
    assert "RuntimeError: injected failure at step 3" in r.stderr


def test_rank_that_never_reaches_the_allreduce_times_out(tmp_path):
    r = run(2, tmp_path, "mlp", timeout=120, CHAINRULE_TEST_FAULT="hang:1:3", CHAINRULE_DIST_TIMEOUT="2")
    assert r.returncode != 0
    assert "rank 0 of 2: gradient allreduce (epoch 1 batch 3) did not complete within 2 s" in r.stderr
    assert "never reached it" in r.stderr
