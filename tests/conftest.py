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
