"""``chainrule train ... --workers N``, Ctrl-C under mpiexec, and life without the MPI extra."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from chainrule import distributed as D

from test_distributed_equivalence import env, mpiexec


def cli(*args, **kw):
    return [sys.executable, "-m", "chainrule", *map(str, args)]


def model_arrays(path):
    from chainrule.checkpoint import load_checkpoint
    arrays, meta = load_checkpoint(path)
    return {k: v for k, v in arrays.items() if k.startswith(("model.", "optim."))}, meta


@pytest.mark.slow
def test_workers_ctrl_c_and_resume_bit_for_bit(tmp_path):
    """--workers 2 runs mpiexec; Ctrl-C (SIGINT to the process group, as a terminal sends it) stops
    both ranks after the same batch, rank 0 saves; --resume on 2 ranks ends bit for bit where a
    straight 2-rank run ends (dropout on: every rank's generator state is in the checkpoint)."""
    mpiexec()
    common = ["train", "mlp", "--workers", 2, "--hidden", 16, "--epochs", 5, "--no-progress"]
    straight = subprocess.run(cli(*common, "--out", tmp_path / "a"), env=env(), capture_output=True,
                              text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    assert straight.stdout.count("epoch   1 ") == 1           # rank 0 alone prints
    assert "test" in straight.stdout and (tmp_path / "a" / "results.json").exists()

    p = subprocess.Popen(cli(*common, "--out", tmp_path / "b"), env=env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        for line in p.stdout:
            if line.startswith("epoch   1 "):
                os.killpg(p.pid, signal.SIGINT)
                break
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert "interrupted: saved" in out, out + err
    assert p.returncode == 130, err
    _, meta = model_arrays(tmp_path / "b" / "last.safetensors")
    assert meta["world_size"] == 2 and len(meta["rank_module_rng_states"]) == 2

    resumed = subprocess.run(cli(*common, "--out", tmp_path / "b", "--resume"), env=env(), capture_output=True,
                             text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a, _ = model_arrays(tmp_path / "a" / "last.safetensors")
    b, _ = model_arrays(tmp_path / "b" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def test_without_mpi4py_single_process_works_and_distributed_says_what_to_install(tmp_path):
    code = """
import os, sys
sys.modules["mpi4py"] = None                       # as if the mpi extra were not installed
import numpy as np
import chainrule as cr
from chainrule import nn, optim, losses
from chainrule.train import ArrayDataset, TrainConfig, Trainer
x = np.random.default_rng(0).standard_normal((40, 3)); y = (x[:, 0] > 0).astype(int)
m = nn.MLP([3, 4, 2], seed=0)
def loss_fn(model, b):
    return losses.cross_entropy(model(cr.tensor(b[0])), b[1]), {}
t = Trainer(m, optim.SGD(m.parameters(), lr=0.1), loss_fn, lambda model, d: {}, TrainConfig(epochs=1, batch_size=8, progress=False))
t.fit(ArrayDataset(x, y))
assert "chainrule.distributed" not in sys.modules or t.dist is None
print("single process ok")
os.environ["PMI_SIZE"], os.environ["PMI_RANK"] = "2", "0"
try:
    Trainer(m, optim.SGD(m.parameters(), lr=0.1), loss_fn, lambda model, d: {}, TrainConfig(epochs=1))
except ImportError as e:
    print("error:", e)
"""
    r = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "single process ok" in r.stdout
    assert "error: this process was started by an MPI launcher with 2 processes" in r.stdout
    assert "pip install 'chainrule[mpi]'" in r.stdout


def test_workers_without_mpiexec_is_a_clear_error(monkeypatch, capsys):
    from chainrule.cli import main
    monkeypatch.setattr(D, "mpiexec_path", lambda: None)
    assert main(["train", "mlp", "--workers", "2", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "--workers 2: mpiexec not found" in err and "chainrule[mpi]" in err


def test_strip_workers_and_launcher_detection(monkeypatch):
    assert D.strip_workers(["train", "mlp", "--workers", "2", "--epochs", "1"]) == ["train", "mlp", "--epochs", "1"]
    assert D.strip_workers(["train", "mlp", "--workers=3"]) == ["train", "mlp"]
    for var in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        monkeypatch.delenv(var, raising=False)
    assert D.launched_size() == 1 and D.world_size() == 1 and D.is_main()
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "3")
    assert D.launched_size() == 4 and D.rank() == 3 and not D.is_main()
