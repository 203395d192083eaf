"""chainrule.functional is the one definition of every op: Tensor's operators and op methods are its
functions (installed from functional.TENSOR_METHODS), and every public op documents its formula,
Args, Returns and an example that pytest runs (--doctest-modules)."""
import doctest
import re
from pathlib import Path

import numpy as np
import pytest

import chainrule as cr
from chainrule.ops import functional as F
from chainrule.ops import fused
from chainrule.tensor import Tensor

PUBLIC_OPS = [(F, name) for name in F.__all__] + [(fused, name) for name in fused.__all__]


@pytest.mark.parametrize("module,name", PUBLIC_OPS, ids=[n for _, n in PUBLIC_OPS])
def test_every_public_op_documents_formula_args_returns_and_an_example(module, name):
    f = getattr(module, name)
    doc = f.__doc__ or ""
    assert re.search(r"^\s*Args:\s*$", doc, re.M), f"{name}: no 'Args:' section"
    assert re.search(r"^\s*Returns:\s*$", doc, re.M), f"{name}: no 'Returns:' section"
    examples = doctest.DocTestParser().get_examples(doc)
    assert examples, f"{name}: no doctest example"
    assert any(e.want.strip() for e in examples), f"{name}: the example prints nothing to check"
    op = getattr(f, "op", None)
    if op is not None:                         # a primitive: the rule's forward | backward formula
        assert " ".join(op.__doc__.split()) in " ".join(doc.split()), f"{name}: the formula of rule '{op.name}' is missing"
    else:
        assert "|" in doc.split(">>>")[0] or "Composite" in doc or "not differentiable" in doc \
            or "name for" in doc or name == "primitive", f"{name}: no formula or composite note"


def test_public_op_examples_are_collected_by_doctest():
    """The examples live in the functions' own docstrings, so --doctest-modules runs them (the
    rule formula is spliced in after the first paragraph, outside any example)."""
    tests = {t.name.rsplit(".", 1)[-1]: t for t in doctest.DocTestFinder().find(F) if t.examples}
    missing = [n for n in F.__all__ if n not in tests and n != "view"]   # view is reshape
    assert not missing, f"no doctest collected for {missing}"


def test_tensor_operators_and_methods_are_the_functional_functions():
    assert Tensor.__add__ is F.add and Tensor.__matmul__ is F.matmul and Tensor.__getitem__ is F.getitem
    assert Tensor.__radd__.reflects is F.add and Tensor.__rsub__.reflects is F.sub
    assert Tensor.sum is F.sum and Tensor.exp is F.exp and Tensor.reshape is F.reshape
    assert Tensor.T.fget is F.transpose
    assert set(F.TENSOR_METHODS) <= set(vars(Tensor))
    for name, f in F.TENSOR_METHODS.items():
        member = vars(Tensor)[name]
        assert member is f, name
        fn = member.fget if isinstance(member, property) else getattr(member, "reflects", member)
        assert fn.__module__ == F.__name__ and getattr(F, fn.__name__) is fn, name
        assert fn.__name__ in F.__all__, f"Tensor.{name} is {fn.__name__}, not a public op"


def test_no_tensor_method_defines_an_op_itself():
    """Every member of Tensor written in tensor.py is bookkeeping (backward, hooks, shape, dtype, in
    place, comparisons without gradient): none records an op with apply -- those come from the table."""
    for name, member in vars(Tensor).items():
        fn = member.fget if isinstance(member, property) else member
        code = getattr(fn, "__code__", None)
        if code is None or fn.__module__ != "chainrule.tensor":
            continue
        assert "apply" not in code.co_names, f"Tensor.{name} calls apply: make it a row of functional.TENSOR_METHODS"


# the engine: the rule table and its ops, apply, the backward and forward passes, the transforms
ENGINE = {"tensor.py", "autograd.py", "sparse.py", "transforms.py", "forward.py", "compile.py", "debug.py"}


def test_no_rule_is_applied_above_the_engine():
    """Layers, losses, models, training and commands call the public ops (``x @ W``,
    ``F.softmax_cross_entropy``), never ``apply(R.X, ...)``: only the engine records ops directly."""
    root = Path(cr.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("ops/") or rel in ENGINE:
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"\bapply\(\s*R\.", text) or re.search(r"^from \.+tensor import .*\bapply\b", text, re.M):
            offenders.append(rel)
    assert not offenders, offenders


def test_operators_methods_and_functions_agree():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 1.5, (2, 3))
    A = rng.standard_normal((4, 2))
    for build in (lambda x: 2 - x, lambda x: 2 / x, lambda x: 2 ** x, lambda x: A @ x, lambda x: -abs(x),
                  lambda x: x.pow(2).T.sum(0), lambda x: x.reshape(3, 2).transpose(0, 1)[1]):
        x = cr.tensor(a, requires_grad=True, dtype="float64")
        assert cr.gradcheck(lambda x: build(x).sum(), x)
    x = cr.tensor(a, dtype="float64")
    np.testing.assert_array_equal((2 - x).data, F.sub(2, x).data)
    np.testing.assert_array_equal((A @ x).data, F.matmul(A, x).data)
    assert cr.reshape(x, 3, 2).shape == cr.reshape(x, (3, 2)).shape == x.view(3, 2).shape == (3, 2)
    assert cr.transpose(x, 0, 1).shape == cr.transpose(x).shape == x.T.shape == (3, 2)
    with pytest.raises(ValueError, match="permute: 1 axes"):
        cr.permute(x, 0)
