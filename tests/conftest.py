"""Fixtures shared by the test tree (which mirrors src/chainrule/): ``check_module`` (gradient-check
a layer in float64), ``ner_dir`` (a made-up CoNLL-2003 directory and a GloVe-format file), ``release_parsed_sst``
(a module that parses the SST training trees drops them when it is done), ``load_benchmark`` (a script of
benchmarks/ imported as a module, for the smoke tests of tests/benchmarks/) and ``random_dag_spec``."""
import gzip
import os

import numpy as np
import pytest

import chainrule as cr
from chainrule.gradcheck import gradcheck_params


def _check_module(module, x, seed=0, check_input=True, reset=None):
    """Gradient-check a module in float64: the input gradient with cr.gradcheck and every
    parameter's gradient with gradcheck_params, on L = Σ r ⊙ module(x) for a fixed random r.
    ``reset()`` is called before every forward (re-seeds random layers so the mask is fixed)."""
    module.to(np.float64)
    x = np.asarray(x)
    if x.dtype.kind == "f":
        x = x.astype(np.float64)

    def run(inp):
        if reset is not None:
            reset()
        return module(inp)

    if check_input:
        assert cr.gradcheck(run, cr.tensor(x, requires_grad=True))
    params = list(module.named_parameters())
    if params:
        r = np.random.default_rng(seed).standard_normal(run(x).shape)
        rep = gradcheck_params(lambda: (run(x) * r).sum(), params)
        assert rep.ok, str(rep)
    return True


@pytest.fixture
def check_module():
    return _check_module


FIRST = ["Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo"]


LAST = ["Moreau", "Lindqvist", "Okafor", "Petrov", "Quispe", "Rossi"]


CITIES = ["Lyon", "Tampere", "Oaxaca", "Brisbane", "Kraków", "Valparaiso"]


ORGS = [["Zentra", "Holdings"], ["Bluefin", "Labs"], ["Orvane"], ["Kestrel", "Bank"]]


EVENTS = [["Winter", "Cup"], ["Harbour", "Games"]]


def _sentence(rng):
    """A made-up sentence as (token, tag) pairs in IOB1."""
    kind = rng.integers(0, 4)
    per = [(FIRST[rng.integers(len(FIRST))], "I-PER"), (LAST[rng.integers(len(LAST))], "I-PER")]
    loc = [(CITIES[rng.integers(len(CITIES))], "I-LOC")]
    org = [(w, "I-ORG") for w in ORGS[rng.integers(len(ORGS))]]
    misc = [(w, "I-MISC") for w in EVENTS[rng.integers(len(EVENTS))]]
    o = lambda *ws: [(w, "O") for w in ws]  # noqa: E731
    if kind == 0:
        s = per + o("visited") + loc + o("on", "Monday", ".")
    elif kind == 1:
        s = org + o("said") + per + o("would", "lead", "the", "team", ".")
    elif kind == 2:
        s = o("The") + misc + o("opens", "in") + loc + o("today", ".")
    else:
        s = o("Shares", "of") + org + o("rose", "3.5", "percent", "in") + loc + o(".")
    return s


def _write_conll(path, n, seed):
    rng = np.random.default_rng(seed)
    lines = ["-DOCSTART- -X- O O", ""]
    for _ in range(n):
        for w, t in _sentence(rng):
            lines.append(f"{w} NNP I-NP {t}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def ner_dir(tmp_path):
    d = tmp_path / "ner"
    d.mkdir()
    _write_conll(d / "eng.train", 120, 0)
    _write_conll(d / "eng.testa", 20, 1)
    _write_conll(d / "eng.testb", 20, 2)
    rng = np.random.default_rng(3)
    words = ["the", "visited", "said", "lead", "lyon", "alice", "moreau", "shares", "of", "rose", ".", "0.0"]
    with gzip.open(d / "vectors.txt.gz", "wt", encoding="utf-8") as f:
        for w in words:
            f.write(w + " " + " ".join(f"{v:.4f}" for v in rng.standard_normal(8)) + "\n")
    return d


@pytest.fixture(scope="module")
def release_parsed_sst():
    """Drop the SST trees a test module parsed (~400,000 objects that every later gc.collect(), which
    pytest runs after each test, would otherwise walk again)."""
    from chainrule.data import sst
    cached = set(sst._cache)
    yield
    for split in set(sst._cache) - cached:
        sst._cache.pop(split, None)


def random_dag_spec(seed, n_inputs=3, n_hidden=6, n_outputs=1, last_pieces=3, loss="squared"):
    """A random DAG spec of seed 001's units: every non-input node draws its predecessors from all
    earlier nodes (skip connections); the last hidden node is a soft-maximum unit with
    ``last_pieces`` pieces (None: drawn like the others).  ``loss`` None leaves the key out.
    Imported by the tests as ``from conftest import random_dag_spec`` (tests/ is on sys.path)."""
    rng = np.random.default_rng(seed)
    nodes = [{"name": f"x{i}", "unit": "input"} for i in range(n_inputs)]
    edges = []
    for k in range(n_hidden):
        last = k == n_hidden - 1
        unit = "softmax" if last else ["sigmoid", "linear", "softmax"][k % 3]
        node = {"name": f"v{k}", "unit": unit}
        if unit == "softmax":
            node["pieces"] = last_pieces if last and last_pieces is not None else int(rng.integers(2, 4))
        preds = rng.choice(len(nodes), size=int(rng.integers(1, min(len(nodes), 4) + 1)), replace=False)
        for u in sorted(preds):
            w = rng.standard_normal(node["pieces"]).tolist() if unit == "softmax" else float(rng.standard_normal())
            edges.append({"from": nodes[u]["name"], "to": node["name"], "weight": w})
        nodes.append(node)
    spec = {"nodes": nodes, "edges": edges, "outputs": [nodes[-1 - j]["name"] for j in range(n_outputs)]}
    if loss is not None:
        spec["loss"] = loss
    return spec


BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")


@pytest.fixture
def load_benchmark(monkeypatch):
    """``load_benchmark('hvp')``: the script ``benchmarks/hvp.py`` imported as a module (its folder on
    sys.path for its sibling ``_harness``), so a smoke test can run it briefly with tiny sizes."""
    import importlib.util

    def load(name):
        monkeypatch.syspath_prepend(BENCHMARKS)
        spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(BENCHMARKS, f"{name}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    return load


@pytest.fixture
def user_ops():
    """Names of primitives a test registers with ``cr.primitive``; removed from the rule table after it."""
    from chainrule.ops import rules
    names = []
    yield names
    for n in names:
        rules.RULES.pop(n, None)
