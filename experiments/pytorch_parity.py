"""chainrule vs PyTorch on the API of issue 13: optimizers (with parameter groups, weight decay,
parameters that first get a gradient late), losses (class weights, ignore_index, label smoothing,
nll), and the tensor methods with PyTorch names.  Prints one line per check with the largest
absolute difference; exits 1 if any exceeds its tolerance.  Needs torch (the ``bench`` extra).

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=src python experiments/pytorch_parity.py
"""
from __future__ import annotations

import sys

import numpy as np
import torch

import chainrule as cr
from chainrule import losses, nn, optim

torch.set_default_dtype(torch.float64)
RESULTS = []


def check(name, a, b, tol=1e-10):
    d = float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)))) if np.size(a) else 0.0
    RESULTS.append((name, d, d <= tol))
    print(f"{'ok  ' if d <= tol else 'FAIL'} {name:<60} max |diff| = {d:.2e}")


def run_optimizer(name, cr_cls, t_cls, kw, t_kw=None, steps=6):
    rng = np.random.default_rng(0)
    shapes = [(4, 3), (3,), (2, 2)]
    w0 = [rng.standard_normal(s) for s in shapes]
    grads = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
    ps = [nn.Parameter(w.copy()) for w in w0]
    ts = [torch.tensor(w.copy(), requires_grad=True) for w in w0]
    groups_cr = [{"params": ps[:2]}, {"params": ps[2:], "lr": kw.get("lr", 0.01) * 3}]
    groups_t = [{"params": ts[:2]}, {"params": ts[2:], "lr": kw.get("lr", 0.01) * 3}]
    o1, o2 = cr_cls(groups_cr, **kw), t_cls(groups_t, **(t_kw or kw))
    for k in range(steps):
        for i, (p, t) in enumerate(zip(ps, ts)):
            late = i == 1 and k < 2                    # parameter 1 gets its first gradient at step 3
            p.grad = None if late else grads[k][i].copy()
            t.grad = None if late else torch.tensor(grads[k][i])
        o1.step()
        o2.step()
    check(f"optim {name}", np.concatenate([p.data.ravel() for p in ps]),
          np.concatenate([t.detach().numpy().ravel() for t in ts]))


def main():
    run_optimizer("SGD momentum+nesterov+wd, 2 groups", optim.SGD, torch.optim.SGD,
                  dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01))
    run_optimizer("Adam wd, 2 groups, late parameter", optim.Adam, torch.optim.Adam,
                  dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.1))
    run_optimizer("AdamW, 2 groups, late parameter", optim.AdamW, torch.optim.AdamW, dict(lr=0.05))
    run_optimizer("AdaGrad defaults, 2 groups", optim.AdaGrad, torch.optim.Adagrad, dict(lr=0.1))
    run_optimizer("RMSprop defaults, 2 groups", optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01))
    run_optimizer("RMSprop centered+momentum+wd", optim.RMSprop, torch.optim.RMSprop,
                  dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1))
    F = torch.nn.functional
    rng = np.random.default_rng(1)
    z = rng.standard_normal((7, 5))
    t = np.array([0, 4, -100, 2, 2, 1, -100])
    c = rng.random(5) + 0.5
    for eps in (0.0, 0.15):
        for w in (None, c):
            for red in ("mean", "sum", "none"):
                zc = cr.tensor(z, requires_grad=True)
                a = losses.cross_entropy(zc, t, weight=w, label_smoothing=eps, reduction=red)
                zt = torch.tensor(z, requires_grad=True)
                b = F.cross_entropy(zt, torch.tensor(t), weight=None if w is None else torch.tensor(w),
                                    label_smoothing=eps, reduction=red)
                (a.sum() if red == "none" else a).backward()
                (b.sum() if red == "none" else b).backward()
                tag = f"cross_entropy eps={eps} weight={'yes' if w is not None else 'no'} {red}"
                check(tag + " value", a.data, b.detach().numpy())
                check(tag + " grad", zc.grad, zt.grad.numpy())
    lp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    check("nll_loss weighted mean", losses.nll_loss(lp, t, weight=c).data,
          F.nll_loss(torch.tensor(lp), torch.tensor(t), weight=torch.tensor(c)).numpy())
    x = rng.standard_normal((2, 3, 4))
    xc, xt = cr.tensor(x), torch.tensor(x)
    check("transpose(0, 2)", xc.transpose(0, 2).data, xt.transpose(0, 2).numpy(), 0)
    check("unsqueeze(1)/squeeze", xc.unsqueeze(1).squeeze(1).data, xt.unsqueeze(1).squeeze(1).numpy(), 0)
    check("flatten(1)", xc.flatten(1).data, xt.flatten(1).numpy(), 0)
    check("expand(-1, 3, -1, -1)", xc.unsqueeze(1).expand(-1, 3, -1, -1).data,
          xt.unsqueeze(1).expand(-1, 3, -1, -1).numpy(), 0)
    v, i = xc.max(dim=2)
    vt, it = xt.max(dim=2)
    check("max(dim=2) values", v.data, vt.numpy(), 0)
    check("max(dim=2) indices", i.data, it.numpy(), 0)
    check("argmin(dim=1, keepdim=True)", xc.argmin(dim=1, keepdim=True).data, xt.argmin(dim=1, keepdim=True).numpy(), 0)
    check("sum(dim=(0, 2), keepdim=True)", xc.sum(dim=(0, 2), keepdim=True).data,
          xt.sum(dim=(0, 2), keepdim=True).numpy(), 1e-12)
    check("cat(dim=1)", cr.cat([xc, xc], dim=1).data, torch.cat([xt, xt], dim=1).numpy(), 0)
    check("linspace(0, 1, 7)", cr.linspace(0, 1, 7, dtype="float64").data, torch.linspace(0, 1, 7).numpy(), 1e-15)
    check("arange(1, 10, 3)", cr.arange(1, 10, 3).data, torch.arange(1, 10, 3).numpy(), 0)
    bad = [r for r in RESULTS if not r[2]]
    print(f"{len(RESULTS) - len(bad)}/{len(RESULTS)} checks agree with torch {torch.__version__}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
