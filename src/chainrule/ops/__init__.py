"""Primitive ops: the rule table (:mod:`.rules`, pure NumPy) and their functional forms on tensors
(:mod:`.functional`, also exported as ``chainrule.<op>``)."""
from .rules import RULES, Op, defop  # noqa: F401
