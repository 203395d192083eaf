"""Seed 001's DAG networks trained by chainrule.models.dag.train (the Trainer and the optimizer table)."""
import os

import numpy as np
import pytest

from chainrule.models.dag import train
from chainrule.nn.dag import DAGNetwork

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "dag_softmax.json")


XOR_X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])


XOR_Y = np.array([[0.0], [1.0], [1.0], [0.0]])


@pytest.mark.parametrize("optimizer,lr,epochs", [("adam", 0.05, 400), ("sgd", 2.0, 1500)])
def test_fit_learns_xor_with_the_example_spec(optimizer, lr, epochs):
    net = DAGNetwork(EXAMPLE)
    hist = train(net, XOR_X, XOR_Y, epochs=epochs, lr=lr, optimizer=optimizer)
    assert len(hist) == epochs and hist[-1] < 0.2 * hist[0]
    assert net.accuracy(XOR_X, XOR_Y) == 1.0
    assert net.predict(XOR_X).ravel().tolist() == [0, 1, 1, 0]


def test_fit_minibatches_and_bad_arguments():
    net = DAGNetwork(EXAMPLE)
    hist = train(net, np.tile(XOR_X, (4, 1)), np.tile(XOR_Y, (4, 1)), epochs=5, lr=0.05, optimizer="adam",
                 batch_size=3)
    assert len(hist) == 5 and all(np.isfinite(hist))
    with pytest.raises(ValueError, match="optimizer"):
        train(net, XOR_X, XOR_Y, epochs=1, optimizer="lbfgs")
