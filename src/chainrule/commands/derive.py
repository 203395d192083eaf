"""``chainrule derive MODEL`` and ``chainrule dag SPEC.json``.

``chainrule derive {window,multilabel-mlp,layerwise,dag,rntn,all}`` builds a seed model on random
float64 data and computes its gradients three ways -- the hand derivation
(:mod:`chainrule.derivations`), the engine (each model as :mod:`chainrule.models` or
:class:`chainrule.nn.DAGNetwork` defines it, through its adapter to the derivation's layout) and central finite
differences of the derivation's NumPy loss -- then prints, per parameter, the largest relative error
of each pair (``rel(a, b) = max|a − b| / max(1e-8, max|a| + max|b|)``, the measure of
``chainrule.derivations.rel_error``).  The exit status is 1 if any pair differs by more than ``--tol``
(default 1e-6).

``chainrule dag SPEC.json`` builds a :class:`chainrule.nn.DAGNetwork` from a spec, trains it on the
spec's ``"data"`` (or XOR, or two moons with ``--task moons``), prints the loss curve, the final
accuracy and loss, and ``net.explain`` on one example; ``--draw out.svg`` draws the loss graph of that
example with its gradients.

Registered in the ``chainrule`` parser by ``register(sub, train_sub, gradcheck_sub)``, as every
command module (:mod:`chainrule.commands`).
"""
from __future__ import annotations

import json
import sys

import numpy as np

from .. import optim
from . import add_threads_arg, lr_from_args, plural, summary

from ..derivations.dag import EXAMPLE_SPEC as DAG_SPEC   # the example DAG (defined once; the DAG tests use it too)

MODELS = ("window", "multilabel-mlp", "layerwise", "dag", "rntn")
TOL = 1e-6


# ------------------------------------------------------------------------------------------ problems
class Problem:
    """One model on random data: ``params`` (name -> float64 array, perturbed in place by the finite
    differences), ``loss()`` and ``derived()`` (the derivation module's loss and gradients of the
    current ``params``), and the engine's side: ``engine(tensors)`` (the loss tensor built from fresh
    leaf tensors in the derivation's layout; their gradients are read after backward) or
    ``engine_grads()`` (``(loss value, {name: gradient})`` from the model of :mod:`chainrule.models`
    through its adapter to the derivation's layout)."""

    def __init__(self, title, params, loss, derived, engine=None, engine_grads=None):
        self.title, self.params, self.loss, self.derived = title, params, loss, derived
        self.engine, self.engine_grads = engine, engine_grads


def _leaves(params):
    """``{name: array}`` -> ``{name: float64 leaf Tensor requiring grad}``."""
    from ..tensor import Tensor
    return {k: Tensor(np.array(v, dtype=np.float64), requires_grad=True, name=k) for k, v in params.items()}


def problem_window(rng):
    """The window classifier that ``chainrule train window`` trains (:mod:`chainrule.models.window`,
    binary head, no capitalisation features), through its adapter to the derivation's layout."""
    from ..derivations import window
    from ..models import window as W
    n, C_win, H, V, m, C = 3, 3, 4, 7, 5, 0.3
    params = window.init_params(n, C_win, H, V, rng)
    params["b2"] = np.array(params["b2"])
    idx = rng.integers(0, V, size=(m, C_win))
    idx[0, 2] = idx[0, 0]                                 # a repeated word in a window
    y = (rng.random(m) < 0.5).astype(np.float64)
    keys = ("L", "W", "b1", "U", "b2")

    def engine_grads():
        model = W.from_derivation(params, C_win)
        loss, _ = W.make_loss_fn(C, m)(model, (idx, None, y))
        return float(loss.item()), W.derivation_grads(model, loss)
    return Problem(f"seed 002 window classifier (chainrule.models.window): batch m={m}, window {C_win}, n={n}, "
                   f"H={H}, |V|={V}, C={C}", params, lambda: window.loss(params, idx, y, C),
                   lambda: {k: window.gradients(params, idx, y, C)[k] for k in keys}, engine_grads=engine_grads)


def problem_multilabel(rng):
    """Seed 003's network as ``chainrule train mlp --activation sigmoid --loss multilabel-bce --l2 λ``
    builds it (:mod:`chainrule.models.mlp`), through its adapter to the derivation's layout."""
    from ..derivations import multilabel_mlp as ml
    from ..models import mlp
    D, H, K, N, lam = 5, 4, 3, 6, 0.1
    params = ml.init_params(D, H, K, rng)
    X = rng.standard_normal((N, D))
    Y = (rng.random((N, K)) < 0.5).astype(np.float64)

    def engine_grads():
        model = mlp.from_derivation(params)
        loss = mlp.multilabel_loss(model, X, Y, lam)
        return float(loss.item()), mlp.derivation_grads(model, loss)
    return Problem(f"seed 003 multi-label sigmoid net (chainrule.models.mlp): N={N}, D={D}, H={H}, K={K}, λ={lam}",
                   params, lambda: ml.loss(params, X, Y, lam),
                   lambda: {k: ml.gradients(params, X, Y, lam)[k] for k in ("W1", "b1", "W2", "b2")},
                   engine_grads=engine_grads)


def problem_layerwise(rng):
    from ..derivations import layerwise as lw
    from ..models.mlp import layerwise_loss
    sizes = [4, 5, 6, 5, 3]
    acts = ["tanh", "maxout", "leaky_relu", "softmax"]
    B = 3
    layers = lw.init_layers(sizes, acts, rng, scale=0.8, pieces=[None, 2, None, None], alphas=[None, None, 0.1, None])
    x = rng.standard_normal((sizes[0], B))
    d = np.zeros((sizes[-1], B))
    d[rng.integers(0, sizes[-1], size=B), np.arange(B)] = 1.0
    params = {}
    for k, layer in enumerate(layers, start=1):
        params[f"W{k}"] = layer["W"]
        params[f"b{k}"] = layer["b"]

    def derived():
        g = lw.gradients(layers, x, d, "ce")
        out = {}
        for k in range(len(layers)):
            out[f"W{k + 1}"], out[f"b{k + 1}"] = g["W"][k], g["b"][k]
        return out

    def engine(tp):
        tl = []
        for k, layer in enumerate(layers, start=1):
            new = dict(layer)
            new["W"], new["b"] = tp[f"W{k}"], tp[f"b{k}"]
            tl.append(new)
        return layerwise_loss(tl, x, d, "ce")
    return Problem(f"seed 004 layer-by-layer net {sizes}, {'/'.join(acts)}, multi-class divergence, batch {B}",
                   params, lambda: lw.loss(layers, x, d, "ce"), derived, engine)


def problem_dag(rng, spec=None):
    """Seed 001's network as :class:`chainrule.nn.DAGNetwork` (``chainrule dag``) builds it: one
    parameter per edge, the derivation's layout."""
    from ..derivations import dag
    from ..nn.dag import DAGNetwork, compile_spec
    spec = DAG_SPEC if spec is None else spec
    try:
        dag.compile_spec(spec)
    except ValueError as e:
        raise ValueError(f"derive dag: the spec is not one the derivation accepts: {e}") from None
    g = compile_spec(spec)
    params = {e.label: np.array(e.weight, dtype=np.float64) for e in g.edges}
    N = 3
    X = rng.standard_normal((N, len(g.inputs)))
    Y = rng.standard_normal((N, len(g.outputs)))
    labels = list(params)

    def current_spec():
        return dag.with_weights(spec, np.concatenate([np.atleast_1d(params[k]) for k in labels]))

    def loss():
        s = current_spec()
        return sum(dag.loss(s, X[i], Y[i]) for i in range(N))

    def derived():
        s = current_spec()
        out = {k: np.zeros_like(v) for k, v in params.items()}
        for i in range(N):
            for k, ge in zip(labels, dag.gradients(s, X[i], Y[i])["edges"]):
                out[k] = out[k] + ge
        return out

    def engine_grads():
        from ..autograd import gradients
        net = DAGNetwork(current_spec())
        L = net.loss(X, Y, reduction="sum")
        return float(L.item()), {k: np.asarray(gk) for k, gk in zip(labels, gradients(L, net.edge_weights()))}
    return Problem(f"seed 001 DAG (chainrule.nn.DAGNetwork): {len(g.names)} nodes, {len(g.edges)} edges, outputs "
                   f"{[g.names[v] for v in g.outputs]}, squared loss summed over {N} examples",
                   params, loss, derived, engine_grads=engine_grads)


def _random_tree(rng, leaves, vocab, classes):
    """A random binary tree over ``leaves`` words (nested tuples), built bottom-up without recursion."""
    items = [(int(rng.integers(classes)), int(rng.integers(vocab))) for _ in range(leaves)]
    while len(items) > 1:
        i = int(rng.integers(len(items) - 1))
        items[i:i + 2] = [(int(rng.integers(classes)), items[i], items[i + 1])]
    return items[0]


def problem_rntn(rng):
    """Seed 000's RNTN as :mod:`chainrule.models.rntn` builds it (its per-node reference path),
    through its adapter to the derivation's layout."""
    from ..derivations import rntn
    from ..models import rntn as R
    d, vocab, classes, reg = 3, 6, 4, 0.05
    params = rntn.init_params(d, vocab, classes, rng)
    trees = [_random_tree(rng, 5, vocab, classes), _random_tree(rng, 3, vocab, classes)]

    def engine_grads():
        model = R.from_derivation(params)
        loss = R.derivation_loss(model, trees, reg)
        return float(loss.item()), R.derivation_grads(model, loss, keys=params)
    return Problem(f"seed 000 RNTN (chainrule.models.rntn): d={d}, |V|={vocab}, {classes} classes, {len(trees)} "
                   f"trees, λ={reg}", params, lambda: rntn.batch_loss(params, trees, reg),
                   lambda: {k: v for k, v in rntn.batch_gradients(params, trees, reg).items()},
                   engine_grads=engine_grads)


PROBLEMS = {"window": problem_window, "multilabel-mlp": problem_multilabel, "layerwise": problem_layerwise,
            "dag": problem_dag, "rntn": problem_rntn}


# ------------------------------------------------------------------------------------------ derive
def compare(problem):
    """The three gradients of every parameter and the pairwise relative errors.

    Returns ``(loss_derivation, loss_engine, rows)`` with rows
    ``(name, shape, rel(derivation, engine), rel(derivation, numeric), rel(engine, numeric))``.
    """
    from ..derivations import numerical_gradient, rel_error
    params = problem.params
    derived = problem.derived()
    if problem.engine_grads is not None:
        l_eng, engine = problem.engine_grads()
    else:
        tp = _leaves(params)
        L = problem.engine(tp)
        L.backward()
        l_eng = float(L.item())
        engine = {k: np.asarray(t.grad) if t.grad is not None else np.zeros(t.shape) for k, t in tp.items()}
    rows = []
    for k, p in params.items():
        num = numerical_gradient(problem.loss, p)
        a = np.asarray(derived[k], dtype=np.float64).reshape(p.shape) if np.size(derived[k]) == p.size \
            else np.asarray(derived[k])
        rows.append((k, p.shape, rel_error(a, engine[k]), rel_error(a, num), rel_error(engine[k], num)))
    return float(problem.loss()), l_eng, rows


def _shape(s):
    return "(" + ", ".join(map(str, s)) + (",)" if len(s) == 1 else ")")


def run_derive(model, seed=0, tol=TOL, spec=None, out=None):
    """Print the comparison table of one model; returns True if every pair is within ``tol``."""
    out = out or sys.stdout
    rng = np.random.default_rng(seed)
    problem = problem_dag(rng, spec) if model == "dag" else PROBLEMS[model](rng)
    l_der, l_eng, rows = compare(problem)
    ok_all = True
    print(f"derive {model}: {problem.title}; float64, seed {seed}", file=out)
    print(f"loss: derivation {l_der:.12g}, engine {l_eng:.12g}", file=out)
    lrel = abs(l_der - l_eng) / max(1e-8, abs(l_der) + abs(l_eng))
    head = ("parameter", "shape", "deriv~engine", "deriv~numeric", "engine~numeric", "ok")
    w0 = max(len(head[0]), *(len(r[0]) for r in rows))
    w1 = max(len(head[1]), *(len(_shape(r[1])) for r in rows))
    print(f"{head[0]:<{w0}}  {head[1]:<{w1}}  {head[2]:>14}{head[3]:>15}{head[4]:>16}  {head[5]}", file=out)
    for name, shape, de, dn, en in rows:
        ok = max(de, dn, en) <= tol
        ok_all &= ok
        print(f"{name:<{w0}}  {_shape(shape):<{w1}}  {de:>14.2e}{dn:>15.2e}{en:>16.2e}  {'yes' if ok else 'NO'}",
              file=out)
    if lrel > tol:
        ok_all = False
        print(f"the two losses differ: relative error {lrel:.2e}", file=out)
    print(f"{'all pairs agree' if ok_all else 'DISAGREEMENT'} (max relative error per pair, "
          f"rel(a,b) = max|a-b| / max(1e-8, max|a| + max|b|); tolerance {tol:g})", file=out)
    return ok_all


def add_derive_args(p):
    p.add_argument("model", choices=[*MODELS, "all"],
                   help="which seed model to check (all: the five in turn)")
    p.add_argument("--seed", type=int, default=0, help="random parameters and data (default 0)")
    p.add_argument("--tol", type=float, default=TOL, help=f"largest accepted relative error (default {TOL:g})")
    p.add_argument("--spec", default=None, help="dag only: a bias-free DAG spec JSON file instead of the built-in one")
    add_threads_arg(p)


def cmd_derive(args):
    from ..nn.dag import load_spec
    models = MODELS if args.model == "all" else (args.model,)
    spec = load_spec(args.spec) if args.spec else None
    checks = []
    for k, model in enumerate(models):
        if k:
            print()
        checks.append((model, run_derive(model, seed=args.seed, tol=args.tol, spec=spec if model == "dag" else None)))
    return summary(f"derive {args.model} (derivation, engine and finite differences agree within {args.tol:g})",
                   checks)


DERIVE_DESCRIPTION = ("Check a seed model's gradients three ways on random float64 data: the hand derivation "
                      "(chainrule.derivations), the engine, and central finite differences; print the max relative "
                      "error of each pair per parameter. Exit status 1 if a pair differs by more than --tol.")


# ------------------------------------------------------------------------------------------ dag
def xor_data():
    """The four XOR examples: ``X`` (4, 2), labels (4,)."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    return X, np.array([0, 1, 1, 0])


def two_moons(n=200, noise=0.1, seed=0):
    """Two interleaving half circles (as scikit-learn's ``make_moons``), standardised: ``X`` (n, 2), labels (n,)."""
    rng = np.random.default_rng(seed)
    n0 = n // 2
    n1 = n - n0
    t0 = rng.uniform(0, np.pi, n0)
    t1 = rng.uniform(0, np.pi, n1)
    X = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1),
                        np.stack([1 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    X += noise * rng.standard_normal(X.shape)
    y = np.concatenate([np.zeros(n0, dtype=np.int64), np.ones(n1, dtype=np.int64)])
    X = (X - np.array([0.5, 0.25])) / np.array([0.87, 0.5])
    perm = rng.permutation(n)
    return X[perm], y[perm]


def _targets_for(net, labels):
    """Class labels (n,) -> targets the spec's loss takes."""
    k = len(net.output_names)
    if net.loss_kind == "ce":
        if k != 2:
            raise ValueError(f"dag: this two-class task needs 2 outputs for loss 'ce', the spec has {k}")
        return labels.astype(np.int64)
    if k != 1:
        raise ValueError(f"dag: this two-class task needs 1 output (or 2 with loss 'ce'), the spec has {k}")
    return labels.astype(np.float64).reshape(-1, 1)


def _dag_data(net, args):
    g = net.graph
    task = args.task
    if task == "auto":
        task = "data" if g.data is not None else "xor"
    if task == "data":
        if g.data is None:
            raise ValueError("dag: --task data, but the spec has no 'data' section {\"x\": [[...]], \"y\": [[...]]}")
        d = g.data
        if not isinstance(d, dict) or "x" not in d or "y" not in d:
            raise ValueError("dag: the spec's 'data' must be {\"x\": [[...], ...], \"y\": [[...], ...]}")
        X = np.asarray(d["x"], dtype=np.float64)
        Y = np.asarray(d["y"])
        if Y.dtype.kind == "f" and net.loss_kind == "ce" and Y.ndim == 1:
            Y = Y.astype(np.int64)
        if X.ndim != 2 or X.shape[1] != len(net.input_names):
            raise ValueError(f"dag: data 'x' must be a list of rows of {len(net.input_names)} values "
                             f"(inputs {net.input_names}), got shape {X.shape}")
        if Y.shape[0] != X.shape[0]:
            raise ValueError(f"dag: data has {X.shape[0]} rows of 'x' but {Y.shape[0]} of 'y'")
        return "spec data", X, Y, None
    if len(net.input_names) != 2:
        raise ValueError(f"dag: the {task} task has 2 inputs; the spec has {len(net.input_names)} input nodes "
                         f"{net.input_names} (give the spec a 'data' section instead)")
    if task == "xor":
        X, c = xor_data()
        return "XOR", X, _targets_for(net, c), None
    X, c = two_moons(args.samples, seed=args.seed)
    Xt, ct = two_moons(args.samples, seed=args.seed + 1)
    return f"two moons ({args.samples} train, {args.samples} test, noise 0.1)", X, _targets_for(net, c), \
        (Xt, _targets_for(net, ct))


def cmd_dag(args):
    from .. import autograd as ag
    from ..draw import draw
    from ..models.dag import train
    from ..nn.dag import DAGNetwork
    net = DAGNetwork(args.spec)
    name, X, Y, test = _dag_data(net, args)
    lr = lr_from_args(args)
    g = net.graph
    print(f"chainrule dag {args.spec}: {len(g.names)} nodes, {len(g.edges)} edges, "
          f"{sum(p.size for p in net.parameters())} parameters; inputs {net.input_names}, outputs "
          f"{net.output_names}, loss {net.loss_kind}")
    print(f"training on {name}: {X.shape[0]} examples, {plural(args.epochs, 'epoch')}, {args.optimizer} lr {lr}"
          + (f", batch {args.batch_size}" if args.batch_size else ", full batch"))
    before = float(net.loss(X, Y).item())
    hist = train(net, X, Y, epochs=args.epochs, lr=lr, optimizer=args.optimizer, batch_size=args.batch_size,
                 seed=args.seed)
    if hist:
        marks = sorted({0, *(int(f * (len(hist) - 1)) for f in (0.1, 0.25, 0.5, 0.75)), len(hist) - 1})
        print("loss curve: " + ", ".join(f"epoch {i + 1}: {hist[i]:.4g}" for i in marks))
    with ag.no_grad():
        after = float(net.loss(X, Y).item())
    print(f"final: loss {after:.6g} (initial {before:.6g}), training accuracy {net.accuracy(X, Y) * 100:.1f}%")
    if test is not None:
        with ag.no_grad():
            tl = float(net.loss(*test).item())
        print(f"       test loss {tl:.6g}, test accuracy {net.accuracy(*test) * 100:.1f}%")
    x0, y0 = X[0], Y[0]
    print(f"\nexample 0: x = {X[0].tolist()}, target {np.asarray(Y[0]).tolist()}")
    net.explain(x0, y0)
    if args.draw:
        cache = net.run(x0, requires_grad_inputs=True)
        from ..nn.dag import dag_loss
        L = dag_loss(g, cache, y0, reduction="sum")
        L.name = "loss"
        with ag.record_deltas() as deltas:
            L.backward(retain_graph=True)
        for p in net.parameters():
            p.grad = None
        path = draw(L, args.draw, deltas=deltas, title=f"{args.spec}: loss on example 0")
        print(f"\nwrote {path}")
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            json.dump(net.to_spec(), f, indent=1)
            f.write("\n")
        print(f"wrote the trained spec to {args.save}")
    return 0


def add_dag_args(p):
    p.add_argument("spec", help="DAG spec JSON file (format: docs/derivations.md, 'DAG networks')")
    p.add_argument("--task", default="auto", choices=["auto", "data", "xor", "moons"],
                   help="auto (default): the spec's 'data' section if it has one, else XOR; moons: two moons "
                        "(generated with numpy, seeded; reports test accuracy on a second draw)")
    p.add_argument("--epochs", type=int, default=1000, help="training epochs (default 1000)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: adam 0.001, sgd 0.1)")
    p.add_argument("--optimizer", default="adam", choices=list(optim.OPTIMIZERS))
    p.add_argument("--batch-size", type=int, default=None, help="minibatch size (default: full batch)")
    p.add_argument("--samples", type=int, default=200, help="moons: examples per split (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--draw", default=None, metavar="OUT.svg",
                   help="draw the loss graph of example 0 with its gradients (svg/png/pdf/dot; needs Graphviz's "
                        "dot, else the .dot text is written)")
    p.add_argument("--save", default=None, metavar="OUT.json", help="write the spec with the trained weights")
    add_threads_arg(p)


DAG_DESCRIPTION = ("Build a DAG network (seed 001: sigmoid, linear, tanh, relu and soft-maximum units, any skip "
                   "connections) from a JSON spec, train it, and explain every node's a[v], o[v] and error signal.")


def register(sub, train_sub, gradcheck_sub):
    """Add ``derive`` and ``dag`` to the ``chainrule`` parser (``train_sub`` and ``gradcheck_sub``
    unused: the same signature as every command module)."""
    p = sub.add_parser("derive", help="check a seed model's gradients: derivation vs engine vs numeric",
                              description=DERIVE_DESCRIPTION)
    add_derive_args(p)
    p.set_defaults(func=cmd_derive)
    p = sub.add_parser("dag", help="build, train and explain a DAG network from a JSON spec",
                              description=DAG_DESCRIPTION)
    add_dag_args(p)
    p.set_defaults(func=cmd_dag)
