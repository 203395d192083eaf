"""Backpropagation written out, and hand derivations checked line by line.

* :func:`explain` -- the backward derivation of any recorded graph in the seeds' notation (δ of every
  named tensor, gradient of every parameter, ⊙, ᵀ, f′, Σ over consumers), every line checked
  numerically against the engine's δ; text, Markdown, LaTeX or a self-contained HTML page.
* :func:`check_derivation` -- a user's hand derivation (a function from forward values to δ's and
  gradients) compared line by line in backward order: the first wrong equation, the expected
  formula, the error, and the diagnosed slip.
"""
from .derive import Derivation, Equation, ExplainError, derive  # noqa: F401


def explain(loss, format=None, out=None, constants=None, title=None, params=None, **kw):
    """The backward derivation of ``loss``, every equation checked against the engine's δ.

    Args:
        loss: a scalar tensor recorded inside ``with cr.record_forward():``, or a function of no
            arguments that computes it (run under ``record_forward`` here).
        format: None (return the :class:`Derivation`), or 'text', 'md', 'tex', 'html' (return the
            rendered string).
        out: a file to write the rendered derivation to (written to a temporary file, then renamed).
        constants: ``{label: array}`` to print constant inputs (targets, data) by name.
        params: a Module or ``{name: tensor}`` naming the parameters (default: the tensors' own
            names, θ1, θ2, ... for unnamed ones).

    >>> import chainrule as cr, numpy as np
    >>> W = cr.tensor(np.eye(2), requires_grad=True, name="W")
    >>> with cr.record_forward():
    ...     a = cr.tanh(W @ cr.tensor([1.0, -1.0], dtype="float64")); a.name = "a"
    ...     J = (a * a).sum()
    >>> d = cr.explain(J)
    >>> print(d.equations[0].txt(), d.ok)
    δ_a = 2·a True
    """
    d = derive(loss, constants=constants, title=title, params=params)
    if format is None and out is None:
        return d
    s = d.render(format or _format_of(out), **kw)
    if out is not None:
        _write(out, s)
    return s


def _format_of(path):
    p = str(path).lower()
    return "html" if p.endswith((".html", ".htm")) else "tex" if p.endswith(".tex") else \
        "md" if p.endswith(".md") else "text"


def _write(path, s):
    import os
    import tempfile
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".explain-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(s)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


__all__ = ["explain", "derive", "Derivation", "Equation", "ExplainError"]


class _CallableModule(__import__("types").ModuleType):
    """``chainrule.explain`` is both this package and the function: ``cr.explain(loss)`` calls
    :func:`explain`, and ``import chainrule.explain.models`` still finds the package."""

    def __call__(self, *args, **kwargs):
        return explain(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule

from .check import DerivationError, Diagnosis, Report, check_derivation  # noqa: E402,F401

__all__ += ["check_derivation", "Report", "Diagnosis", "DerivationError"]
