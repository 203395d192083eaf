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
from .debug import Deltas, detect_anomaly, record_deltas  # noqa: F401
from .tensor import Tensor, get_default_dtype, set_default_dtype, tensor  # noqa: F401
from .ops.functional import *  # noqa: F401,F403
from .ops.functional import __all__ as _ops_all
from .transforms import gradients, grad, value_and_grad, vjp, jvp, hvp, jacobian, hessian  # noqa: F401
from .gradcheck import GradcheckError, GradcheckReport, check_gradient, gradcheck, gradgradcheck  # noqa: F401
from .draw import draw  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "set_default_dtype", "get_default_dtype", "no_grad", "enable_grad",
    "is_grad_enabled", "grad", "value_and_grad", "gradients", "vjp", "jvp", "hvp", "jacobian", "hessian",
    "record_deltas", "Deltas",
    "detect_anomaly", "RowSparseGrad", "unbroadcast", "gradcheck", "gradgradcheck", "check_gradient",
    "GradcheckError", "GradcheckReport", "draw", *_ops_all,
]

from . import nn, losses, optim  # noqa: E402,F401  (built on the engine above; imported last)
