"""chainrule: reverse-mode automatic differentiation on NumPy, and backpropagation made readable.

    >>> import chainrule as cr
    >>> x = cr.tensor([0.5, -1.0], requires_grad=True, dtype="float64")
    >>> y = (cr.tanh(x) * x).sum()
    >>> y.backward()
    >>> cr.gradcheck(lambda x: (cr.tanh(x) * x).sum(), x)
    True
"""
from .sparse import RowSparseGrad  # noqa: F401
from .autograd import enable_grad, is_grad_enabled, no_grad, unbroadcast  # noqa: F401
from .debug import Deltas, detect_anomaly, record_deltas, record_forward  # noqa: F401
from .tensor import Tensor, get_default_dtype, set_default_dtype, tensor  # noqa: F401
from .ops.functional import *  # noqa: F401,F403
from .ops.functional import __all__ as _ops_all
from .ops.table import LevelSchedule, NodeTable  # noqa: F401
from .ops.fused import sum_squares  # noqa: F401
from .transforms import gradients, grad, value_and_grad, vjp, jvp, hvp, jacobian, hessian  # noqa: F401
from .compile import compile, Compiled  # noqa: F401,A004
from .creation import *  # noqa: F401,F403
from .creation import __all__ as _creation_all
from .random import (  # noqa: F401
    default_generator, get_rng_state, manual_seed, rand, rand_like, randint, randint_like, randn, randn_like,
    randperm, set_rng_state,
)
from . import random  # noqa: F401,E402
from .gradcheck import GradcheckError, GradcheckReport, check_gradient, gradcheck, gradgradcheck  # noqa: F401
from .draw import draw  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "set_default_dtype", "get_default_dtype", "no_grad", "enable_grad",
    "is_grad_enabled", "grad", "value_and_grad", "gradients", "vjp", "jvp", "hvp", "jacobian", "hessian",
    "record_deltas", "Deltas",
    "detect_anomaly", "RowSparseGrad", "unbroadcast", "gradcheck", "gradgradcheck", "check_gradient",
    "GradcheckError", "GradcheckReport", "draw", "NodeTable", "LevelSchedule", "sum_squares", "compile", "Compiled", "explain",
    "record_forward", *_ops_all,
    # api: creation and randomness
    *_creation_all, "manual_seed", "default_generator", "get_rng_state", "set_rng_state", "rand", "randn",
    "randint", "randperm", "rand_like", "randn_like", "randint_like", "random",
]

from . import nn, losses, optim  # noqa: E402,F401  (built on the engine above; imported last)
from . import explain  # noqa: E402,F401  (a package that is also callable: cr.explain(loss))
from .explain import check_derivation  # noqa: E402,F401
