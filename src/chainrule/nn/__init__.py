"""Neural-network building blocks on the chainrule engine: :class:`Parameter`, :class:`Module`,
containers, layers (Linear, Embedding), activations, Dropout, the :class:`MLP` builder, and
:mod:`~chainrule.nn.init`.

>>> import numpy as np, chainrule as cr
>>> net = cr.nn.MLP([4, 16, 3], activation="relu", seed=0)
>>> net(np.zeros((2, 4), dtype=np.float32)).shape
(2, 3)
"""
from . import init  # noqa: F401
from .module import (  # noqa: F401
    LoadResult, Module, ModuleDict, ModuleList, Parameter, RemovableHandle, Sequential, StateDictError,
)
from .layers import (  # noqa: F401
    ACTIVATIONS, MLP, Dropout, Embedding, Flatten, Identity, LeakyReLU, Linear, LogSoftmax, ReLU, RReLU, Sigmoid,
    Softmax, Softplus, Tanh, activation,
)
from .dag import DAGNetwork, DAGSpecError  # noqa: F401
from .loss import (  # noqa: F401
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L2Loss, MSELoss, MultiLabelBCELoss, NLLLoss,
)

__all__ = [
    "init", "Parameter", "Module", "ModuleList", "Sequential", "StateDictError", "LoadResult", "Linear",
    "Embedding", "Identity", "Sigmoid", "Tanh", "ReLU", "LeakyReLU", "RReLU", "Softplus", "Softmax",
    "LogSoftmax", "Dropout", "MLP", "ACTIVATIONS", "activation",
    "ModuleDict", "RemovableHandle", "Flatten", "CrossEntropyLoss", "NLLLoss", "MSELoss", "L2Loss", "BCELoss",
    "BCEWithLogitsLoss", "MultiLabelBCELoss",
]
from .recurrent import GRU, LSTM, GRUCell, LSTMCell, lengths_to_mask  # noqa: F401,E402
from .attention import AttentionPooling, MultiHeadAttention, causal_mask  # noqa: F401,E402
__all__ += ["LSTMCell", "GRUCell", "LSTM", "GRU", "lengths_to_mask", "MultiHeadAttention", "AttentionPooling",
            "causal_mask"]
