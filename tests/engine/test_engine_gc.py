"""The garbage collector does not rescan a growing graph (issue 14: its full passes took ~57% of
the forward of a 1e6-op chain).  Time-free: count the collector's generation-2 passes while a big
graph is built; the caller's thresholds come back after backward."""
import gc

import numpy as np
import pytest

import chainrule as cr
from chainrule import autograd


def _start_a_guard_period():
    """The guard engages each time the process-wide node counter reaches a multiple of 65,536, so a
    graph begun mid-period builds up to 65,535 nodes unguarded (with the default thresholds: a few
    full passes when the heap is small) -- a limit of autograd._GcGuard that made this test depend
    on how many nodes earlier tests had built.  Begin the measured graph on a period boundary, as the
    first graph of a process does."""
    while (next(autograd._SEQ) + 1) % autograd._GcGuard.EVERY:
        pass


def _full_passes_building(n):
    _start_a_guard_period()
    gc.collect()
    before = gc.get_stats()[2]["collections"]
    x = cr.tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(n):
        y = y * 1.0
    during = gc.get_stats()[2]["collections"] - before
    y.sum().backward()
    return during


@pytest.mark.slow
def test_no_full_collections_while_a_big_graph_grows(monkeypatch):
    # Start from the caller's thresholds (a graph an earlier test still holds may keep the guard on).
    autograd._GcGuard.release()
    old = gc.get_threshold()
    assert _full_passes_building(300_000) <= 1
    assert gc.get_threshold() == old                       # restored once backward freed the graph
    monkeypatch.setattr(autograd._GcGuard, "grow", classmethod(lambda cls, node: None))
    assert _full_passes_building(300_000) >= 2             # what the collector did before


def test_a_big_graph_dropped_without_backward_gives_the_thresholds_back():
    autograd._GcGuard.release()
    old = gc.get_threshold()
    _start_a_guard_period()
    x = cr.tensor(np.ones(2), requires_grad=True)
    y = x
    for _ in range(3):                      # the first op is the period's boundary node
        y = y * 1.0
    assert gc.get_threshold()[2] >= 1000    # raised while the graph lives
    del y
    assert gc.get_threshold() == old        # the boundary node was freed: the caller's thresholds
    # an earlier raise's finalizer does not undo a later one
    _start_a_guard_period()
    a = x * 1.0                             # raise no. 1, tied to a's node
    autograd._GcGuard.release()             # (as a backward pass would)
    _start_a_guard_period()
    b = x * 1.0                             # raise no. 2, tied to b's node
    del a
    assert gc.get_threshold()[2] >= 1000
    del b
    assert gc.get_threshold() == old
