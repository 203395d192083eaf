"""cr.explain.check_derivation: the first wrong line of a hand derivation, its slip, and clear errors."""
import os
import sys

import numpy as np
import pytest

import chainrule as cr
from chainrule.explain import DerivationError, check_derivation
from chainrule.explain import hand as H
from chainrule.explain.models import build

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("name", sorted(H.SEEDS))
def test_the_five_seed_derivations_raise_no_false_alarm(name):
    J, consts, _ = build(name)
    rep = check_derivation(J, H.SEEDS[name], constants=consts)
    assert rep.ok and rep.first is None, str(rep)
    assert all(e.status == "right" for e in rep.entries if e.status != "not given")
    assert "are right" in str(rep)


def _mlp_slip(v):
    """Seed 003 with one slip: tanh′ where σ′ belongs, in δ_z2."""
    N, D = v["X"].shape[0], {}
    D["z3"] = (H.sig(v["z3"]) - v["Y"]) / N
    D["W2"] = v["a2"].T @ D["z3"] + 0.1 * v["W2"]
    D["a2"] = D["z3"] @ v["W2"].T
    D["z2"] = D["a2"] * (1 - v["a2"] ** 2)
    D["W1"] = v["X"].T @ D["z2"] + 0.1 * v["W1"]
    D["b1"] = D["z2"].sum(axis=0)
    return D


def test_first_wrong_line_its_slip_and_the_lines_that_inherit_it():
    J, consts, _ = build("multilabel-mlp")
    rep = check_derivation(J, _mlp_slip, constants=consts)
    assert not rep.ok
    assert rep.first.name == "z2" and rep.first.status == "wrong"
    assert rep.first.diagnosis.kind == "wrong f′" and "tanh′" in rep.first.diagnosis.text
    assert rep["W1"].status == "inherits" and rep["W1"].inherits_from == ["z2"]
    assert rep["b1"].status == "inherits"
    assert [rep[n].status for n in ("z3", "W2", "a2")] == ["right"] * 3
    assert rep["b2"].status == "not given"                     # a partial derivation is fine
    s = str(rep)
    assert "The first wrong equation is δ_z2" in s and "δ_z2 = δ_a2 ⊙ a2 ⊙ (1 − a2)" in s
    assert "worst element" in s and "max rel" in s
    f = rep.first
    assert f.max_abs == pytest.approx(np.abs(f.user - f.expected).max())


@pytest.mark.parametrize("slip,kind", [
    (lambda D, v: D.__setitem__("W2", D["z3"].T @ v["a2"] + 0.1 * v["W2"].T), "transpose"),
    (lambda D, v: D.__setitem__("z3", D["z3"] * v["X"].shape[0]), "missing 1/m"),
    (lambda D, v: D.__setitem__("W1", v["X"].T @ D["z2"]), "missing regularisation"),
    (lambda D, v: D.__setitem__("b1", D["z2"].sum(axis=0) + 0.1 * v["b1"]), "extra regularisation"),
    (lambda D, v: D.__setitem__("a2", -D["z3"] @ v["W2"].T), "sign"),
    (lambda D, v: D.__setitem__("z2", D["a2"]), "missing f′"),
])
def test_each_slip_kind_is_named(slip, kind):
    J, consts, _ = build("multilabel-mlp")
    names = ["z3", "b2", "W2", "a2", "z2", "b1", "W1"]

    def derivation(v):
        D = H.multilabel_mlp(v)        # the correct lines, then one replaced by a slipped one
        slip(D, v)
        return D
    rep = check_derivation(J, derivation, constants=consts)
    assert rep.first is not None
    assert rep.first.diagnosis.kind == kind, str(rep)
    assert rep.first.name in names


def test_per_example_form_and_the_rows_of_L():
    """Seed 002 on one window (eq. 7): vectors (a batch of one), and ∂J/∂L given as {word: row} --
    with a slip in the row map (a repeated word counted once), found at L."""
    J, consts, _ = build("window", single=True)

    def per_example(v):
        m, C, n = 3, 0.3, v["L"].shape[1]
        x, a1, U, W, words = v["x"][0], v["a1"][0], v["U"][:, 0], v["W"], v["idx"][0]
        D = {}
        D["z2"] = H.sig(v["z2"]) - v["y"]
        D["U"] = (D["z2"][0] * a1 + C / m * U).reshape(-1, 1)
        D["a1"] = D["z2"][0] * U
        D["W"] = np.outer(x, D["a1"] * H.dtanh(a1)) + C / m * W
        D["x"] = W @ (D["a1"] * H.dtanh(a1))
        rows = {}
        for c, w in enumerate(words):
            rows[int(w)] = rows.get(int(w), 0) + D["x"][c * n:(c + 1) * n]
        D["L"] = rows
        return D
    rep = check_derivation(J, per_example, constants=consts)
    assert rep.ok, str(rep)

    def once(v):
        D = per_example(v)
        n = v["L"].shape[1]
        D["L"] = {int(w): D["x"][c * n:(c + 1) * n] for c, w in enumerate(v["idx"][0])}   # repeats overwrite
        return D
    rep = check_derivation(J, once, constants=consts)
    assert rep.first.name == "L" and rep.first.status == "wrong"


def test_batched_rows_given_per_example_and_a_row_sparse_table():
    J, consts, _ = build("window")

    def as_lists(v):
        D = H.window(v)
        D["a1"] = list(D["a1"])                              # one δ per example: stacked
        idx = np.asarray(v["idx"]).reshape(-1)
        n = v["L"].shape[1]
        D["L"] = cr.RowSparseGrad(idx, D["x"].reshape(-1, n), v["L"].shape)
        return D
    # a RowSparseGrad of L (the rows the engine gathers)
    rep = check_derivation(J, as_lists, constants=consts)
    assert rep.ok, str(rep)
    assert rep["a1"].note == "given per example, stacked"

    def ok(v):
        D = H.window(v)
        D["a1"] = list(D["a1"])
        return D
    assert check_derivation(J, ok, constants=consts).ok


def test_clear_errors():
    J, consts, _ = build("multilabel-mlp")
    with pytest.raises(DerivationError, match=r"'W7', which is no tensor.*z3, b2, W2, a2, z2, b1, W1"):
        check_derivation(J, lambda v: {"W7": 0.0}, constants=consts)
    with pytest.raises(DerivationError, match=r"'W1' has shape \(3,\), which cannot be ∂J/∂W1.*\(5, 4\)"):
        check_derivation(J, lambda v: {"W1": np.zeros(3)}, constants=consts)

    def raises(v):
        D = {}
        D["z3"] = v["z3"]
        D["a2"] = D["z3"] @ v["W2"]            # wrong shapes: raises
        return D
    with pytest.raises(DerivationError) as ei:
        check_derivation(J, raises, constants=consts)
    msg = str(ei.value)
    assert "raised ValueError" in msg and "while computing 'a2'" in msg and "Traceback" in msg
    with pytest.raises(DerivationError, match="must return a dict"):
        check_derivation(J, lambda v: [1, 2], constants=consts)


def test_fill_in_signature_and_delta_prefixed_names():
    J, consts, _ = build("multilabel-mlp")

    def fill(v, out):
        out["δ_z3"] = (H.sig(v["z3"]) - v["Y"]) / v["X"].shape[0]
    rep = check_derivation(J, fill, constants=consts)
    assert rep.ok and rep["z3"].status == "right"


def test_cli_check_derivation(tmp_path, capsys):
    from chainrule.cli import main
    f = tmp_path / "mine.py"
    f.write_text("from chainrule.explain.hand import multilabel_mlp as derive\n")
    assert main(["check-derivation", str(f), "--model", "003"]) == 0
    assert "are right" in capsys.readouterr().out
    f.write_text("import numpy as np\n"
                 "def derive(v):\n"
                 "    D = {}\n"
                 "    D['z3'] = np.exp(-np.logaddexp(0, -v['z3'])) - v['Y']\n"
                 "    return D\n")
    assert main(["check-derivation", str(f), "--model", "multilabel-mlp"]) == 1
    out = capsys.readouterr().out
    assert "first wrong equation is δ_z3" in out and "missing 1/m" in out


def test_readme_example_prints_the_report_it_shows():
    import re
    import subprocess
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    sec = readme.split("## Find the wrong line of your derivation", 1)[1]
    code = re.search(r"```python\n(.*?)```", sec, re.S).group(1)
    shown = re.search(r"```\n(The first wrong.*?)```", sec, re.S).group(1)
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "src"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    for line in shown.splitlines():
        if line.strip() and line.strip() != "...":
            assert line in out, line
