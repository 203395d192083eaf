"""cr.explain: every built-in model's derivation holds line by line; the renderings; the errors."""
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

import chainrule as cr
from chainrule.explain import ExplainError, derive, explain
from chainrule.explain import expr as X
from chainrule.explain.models import MODELS, build


@pytest.mark.parametrize("name", MODELS)
def test_every_equation_of_every_model_holds(name):
    J, consts, title = build(name)
    d = derive(J, constants=consts, title=title)
    assert d.equations, name
    assert d.ok, [(e.txt(), e.max_abs) for e in d.failures()]
    assert not any(e.opaque for e in d.equations), [e.txt() for e in d.equations if e.opaque]
    kinds = {e.kind for e in d.equations}
    assert kinds == {"delta", "grad"}


def _mlp():
    rng = np.random.default_rng(1)
    X_ = rng.standard_normal((5, 3))
    W1 = cr.tensor(rng.standard_normal((4, 3)), requires_grad=True, name="W1", dtype="float64")
    W2 = cr.tensor(rng.standard_normal((2, 4)), requires_grad=True, name="W2", dtype="float64")
    with cr.record_forward():
        z1 = X_ @ W1.T
        z1.name = "z1"
        a1 = cr.sigmoid(z1)
        a1.name = "a1"
        z2 = a1 @ W2.T
        z2.name = "z2"
        J = (z2 * z2).sum() * 0.5
    return J, X_


def test_mlp_lines_read_like_the_seeds():
    J, X_ = _mlp()
    d = derive(J, constants={"X": X_})
    txt = [e.txt() for e in d.equations]
    assert txt == ["δ_z2 = z2", "∂J/∂W2 = δ_z2ᵀ a1", "δ_a1 = δ_z2 W2", "δ_z1 = δ_a1 ⊙ a1 ⊙ (1 − a1)",
                   "∂J/∂W1 = δ_z1ᵀ X"]
    assert d.ok


def test_a_wrong_printed_line_is_reported_not_hidden():
    J, X_ = _mlp()
    d = derive(J, check=False)
    e = d["z1"]
    # replace σ′ by tanh′: the check must fail for that line only
    e.rhs = X.had(e.rhs.a, X.Fp("tanh", None, e.rhs.b.out))
    from chainrule.explain.derive import check_equations
    check_equations(d)
    assert not d.ok and [f.name for f in d.failures()] == ["z1"]
    assert "FAIL" in str(d)


def test_fan_out_is_a_sum_over_consumers():
    x = cr.tensor([0.3, -0.2], requires_grad=True, name="x", dtype="float64")
    with cr.record_forward():
        h = cr.tanh(x)
        h.name = "h"
        J = (h * 2.0).sum() + (h * h).sum()
    d = derive(J)
    assert d["h"].consumers == 2 and d.ok
    assert d["h"].txt() == "δ_h = 2 + 2·h" or "2·h" in d["h"].txt()


def test_errors_are_clear():
    W = cr.tensor(np.eye(2), requires_grad=True, name="W")
    J = (W * W).sum()
    with pytest.raises(ExplainError, match="record_forward"):
        derive(J)
    with pytest.raises(ExplainError, match="scalar"):
        with cr.record_forward():
            derive(W * 2)
    # a function is run under record_forward
    d = explain(lambda: (W * W).sum())
    assert d.ok and d.names() == ["W"]


@pytest.mark.parametrize("fmt", ["text", "md", "tex", "html"])
def test_renderings(fmt, tmp_path):
    J, X_ = _mlp()
    out = tmp_path / f"d.{ {'text': 'txt', 'md': 'md', 'tex': 'tex', 'html': 'html'}[fmt]}"
    s = explain(J, format=fmt, out=out)
    assert out.read_text(encoding="utf-8") == s
    if fmt == "md":
        assert s.count("$$") == 2 * 5 and r"\delta_{z_{1}}" in s
    if fmt == "tex":
        assert r"\begin{align*}" in s and r"\frac{\partial J}{\partial W_{1}}" in s
    if fmt == "html":
        assert "katex.render" in s and "data:font/woff2;base64," in s
        import re
        # self-contained: nothing is loaded from elsewhere (xmlns names in the SVG are not loads)
        assert not re.search(r'(src|href)\s*=\s*"(https?:)?//', s) and "url(http" not in s


def test_cli_explain_runs_for_every_model(tmp_path, capsys):
    from chainrule.cli import main
    for name in ("mlp", "002", "003", "004", "001", "000", "lstm"):
        assert main(["explain", name]) == 0
        assert "checked against the engine's δ (float64): they hold" in capsys.readouterr().out
    assert main(["explain", "rntn", "--format", "md", "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().count("$$") > 10


# ----------------------------------------------------------------------------------- a real browser
def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def test_html_page_is_typeset_in_headless_chromium(tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (see .ci/run): the HTML page must be checked in a real browser")
        pytest.skip("no chromium binary on this machine (CI installs it)")
    J, consts, title = build("window")
    page = tmp_path / "window.html"
    explain(J, constants=consts, title=title, out=page)
    d = derive(J, constants=consts)
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    try:
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                            "--disable-background-networking", "--disable-component-update", "--disable-sync",
                            f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
                            page.as_uri()], capture_output=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    dom = r.stdout.decode("utf-8", errors="replace")
    assert 'data-typeset="done"' in dom, r.stderr.decode(errors="replace")[-2000:]
    body = dom.split("<body", 1)[1]
    visible = body.split("<script", 1)[0]              # the page content, before the bundled script
    # every formula (one per equation plus the J in the intro) became KaTeX markup, none failed
    assert visible.count('class="katex"') == len(d.equations) + 1
    assert "katex-error" not in visible
    # and no raw TeX is left in the rendered text (outside KaTeX's own MathML annotations)
    import re
    text = re.sub(r"<annotation[^>]*>.*?</annotation>", "", visible, flags=re.S)
    text = re.sub(r"<[^>]+>", "", text)
    assert "$$" not in text and r"\delta" not in text and r"\frac" not in text
    assert "<svg" in visible or "digraph" in visible


def test_the_losses_module_fused_ops_have_written_forms():
    """losses.multilabel_bce / binary_cross_entropy_with_logits and l2_penalty are single fused ops
    (bce_with_logits, sum_squares): explained as σ(z) − d and (C/m)·W, not through their rules."""
    from chainrule import losses
    rng = np.random.default_rng(3)
    X_ = rng.standard_normal((4, 3))
    Y = (rng.random((4, 2)) < 0.5).astype(float)
    W = cr.tensor(rng.standard_normal((2, 3)), requires_grad=True, name="W", dtype="float64")
    with cr.record_forward():
        z = X_ @ W.T
        z.name = "z"
        J = losses.binary_cross_entropy_with_logits(z, Y) + losses.l2_penalty([W], C=0.5, m=4)
    d = derive(J, constants={"X": X_, "Y": Y})
    assert d.ok and not any(e.opaque for e in d.equations)
    assert d["z"].txt() == "δ_z = 1/8·(σ(z) − Y)"
    assert d["W"].txt() == "∂J/∂W = δ_zᵀ X + 1/8·W"


def test_module_parameters_are_named_by_params():
    from chainrule import losses, nn
    rng = np.random.default_rng(0)
    lin = nn.Linear(3, 2)
    for p in lin.parameters():
        p.data = p.data.astype(np.float64)
    X_ = rng.standard_normal((4, 3))
    y = rng.integers(0, 2, 4)
    d = explain(lambda: losses.cross_entropy(lin(cr.tensor(X_)), y), params=lin, constants={"x": X_, "y": y})
    assert d.ok and set(d.names()) == {"weight", "bias"}
    assert d["weight"].txt() == "∂J/∂weight = 1/4·xᵀ (softmax(x weight + bias) − y)"     # nothing named: all folded
