"""Parameter, Module and the containers (ModuleList, Sequential).

A :class:`Module` owns :class:`Parameter` s and sub-modules simply by holding them as attributes:
``self.weight = Parameter(...)``, ``self.layers = Sequential(...)``.  Registration needs no
bookkeeping: the members are found by scanning the instance's attributes in the order they were
first assigned (Python dicts keep insertion order).  Plain lists/tuples whose items are all Modules
(or all Parameters) count too, with their items named by position (``'blocks.0.weight'``).

A module's parameters are its own (in attribute order) followed by its children's, depth first --
the order ``parameters()``, ``named_parameters()`` and ``state_dict()`` use.  A parameter reachable
under two names (weight tying) is listed once, under the first name.
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

import numpy as np

from ..tensor import Tensor
from ..tensor import _HookHandle as RemovableHandle  # one handle class: remove() unregisters

__all__ = ["Parameter", "Module", "ModuleList", "ModuleDict", "Sequential", "StateDictError", "LoadResult",
           "RemovableHandle"]


_HOOKED = False     # set when any module registers a forward (pre-)hook; Module.__call__ checks only this

class Parameter(Tensor):
    """A trainable leaf tensor: ``requires_grad=True``, floating dtype, optional ``name``.

    ``Parameter(array)`` wraps the array without copying it (an ndarray keeps its dtype; Python
    lists become the default dtype); a Tensor's data is taken and cut from its graph.

    >>> import numpy as np
    >>> from chainrule.nn import Parameter
    >>> w = Parameter(np.zeros((2, 3)), name="w")
    >>> w.requires_grad, w.is_leaf, w.shape
    (True, True, (2, 3))
    """
    __slots__ = ()

    def __init__(self, data, name=None, dtype=None):
        if isinstance(data, Tensor):
            data = data.data
        if isinstance(data, np.ndarray) and dtype is None and data.dtype.kind not in "f":
            raise TypeError(f"Parameter: only floating-point data can be a parameter, got dtype {data.dtype} "
                            f"(pass dtype=np.float32 or a float array)")
        try:
            super().__init__(data, requires_grad=True, dtype=dtype, name=name)
        except TypeError as e:
            raise TypeError(f"Parameter: {e}") from None
        if self.data.dtype.kind != "f":
            raise TypeError(f"Parameter: only floating-point data can be a parameter, got dtype {self.data.dtype}")
        if not self.data.flags.writeable:
            self.data = self.data.copy()

    def __repr__(self):
        nm = f"name='{self.name}', " if self.name else ""
        return f"Parameter({nm}shape={self.shape}, dtype={self.dtype})"


class StateDictError(ValueError):
    """``load_state_dict`` found missing or unexpected keys, or arrays of the wrong shape/dtype.
    Attributes: ``missing_keys``, ``unexpected_keys``, ``mismatched`` (list of (name, expected, got))."""

    def __init__(self, message, missing_keys=(), unexpected_keys=(), mismatched=()):
        super().__init__(message)
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)
        self.mismatched = list(mismatched)


LoadResult = namedtuple("LoadResult", ["missing_keys", "unexpected_keys"])


def _all_instances(seq, cls):
    return isinstance(seq, (list, tuple)) and len(seq) > 0 and all(isinstance(v, cls) for v in seq)


class Module:
    """Base class of layers and models.  Subclasses assign Parameters and Modules as attributes in
    ``__init__`` (after ``super().__init__()``) and define ``forward``; calling the module calls
    ``forward``.  Every forward is written with engine ops, so there is no backward code anywhere.

    ``training`` (True after construction) is switched recursively by :meth:`train` / :meth:`eval`
    and read by Dropout and RReLU.
    """
    training = True

    def __init__(self):
        self.training = True

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        old = self.__dict__.get(name)
        if isinstance(old, Parameter) and value is not None and not isinstance(value, Parameter):
            raise TypeError(
                f"{type(self).__name__}: cannot assign a {type(value).__name__} to parameter '{name}' "
                f"(a Parameter or None expected; to change the values write to '{name}.data')")
        bufs = self.__dict__.get("_buffers")
        if bufs is not None and name in bufs and value is not None:
            value = _as_buffer(value, f"{type(self).__name__}.{name}")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ buffers
    def register_buffer(self, name, value, persistent=True):
        """Register ``value`` (an array or a Tensor; None allowed) as the buffer ``self.<name>``: a
        Tensor that is not a parameter (no gradient, not in ``parameters()``, not optimized) but is
        saved in ``state_dict()`` (unless ``persistent=False``), restored by ``load_state_dict``,
        cast by ``to(dtype)`` when floating, and listed by ``named_buffers()`` -- e.g. running
        statistics or a fixed mask.  Assigning to ``self.<name>`` later keeps it a buffer."""
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{type(self).__name__}.register_buffer: bad name {name!r}")
        if isinstance(value, Parameter) or (name in self.__dict__ and isinstance(self.__dict__[name], (Parameter, Module))):
            raise TypeError(f"{type(self).__name__}.register_buffer: '{name}' is (or would replace) a parameter "
                            f"or a module")
        bufs = self.__dict__.get("_buffers")
        if bufs is None:
            bufs = {}
            object.__setattr__(self, "_buffers", bufs)
        bufs[name] = bool(persistent)
        setattr(self, name, value)

    def named_buffers(self, prefix="", recurse=True, persistent_only=False):
        """(dotted name, Tensor) for every buffer (this module's, then each descendant's)."""
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for bname, keep in (m.__dict__.get("_buffers") or {}).items():
                v = m.__dict__.get(bname)
                if v is None or (persistent_only and not keep):
                    continue
                yield (f"{mname}.{bname}" if mname else bname), v

    def buffers(self, recurse=True):
        return [b for _, b in self.named_buffers(recurse=recurse)]

    # ------------------------------------------------------------------ forward hooks
    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after every forward (``inputs`` the positional
        arguments, a tuple); if it returns something other than None, that replaces the output.
        Returns a handle whose ``remove()`` unregisters the hook."""
        return self._add_hook("_forward_hooks", hook)

    def register_forward_pre_hook(self, hook):
        """Call ``hook(module, inputs)`` before every forward; a returned value other than None
        replaces the inputs (a tuple, or a single value meaning a one-element tuple)."""
        return self._add_hook("_forward_pre_hooks", hook)

    def _add_hook(self, attr, hook):
        global _HOOKED
        if not callable(hook):
            raise TypeError(f"{type(self).__name__}: a hook must be callable, got {type(hook).__name__}")
        _HOOKED = True
        lst = self.__dict__.get(attr)
        if lst is None:
            lst = []
            object.__setattr__(self, attr, lst)
        lst.append(hook)
        return RemovableHandle(lst, hook)

    def _named_own_parameters(self):
        for k, v in vars(self).items():
            if isinstance(v, Parameter):
                yield k, v
            elif _all_instances(v, Parameter):
                for i, p in enumerate(v):
                    yield f"{k}.{i}", p

    def named_children(self):
        """(attribute name, module) for the direct sub-modules, in assignment order.  A list/tuple of
        modules appears as one child (a ModuleList over the same modules)."""
        for k, v in vars(self).items():
            if isinstance(v, Module):
                yield k, v
            elif _all_instances(v, Module):
                ml = ModuleList(v)
                ml.training = self.training
                yield k, ml

    def children(self):
        return [m for _, m in self.named_children()]

    def named_modules(self, prefix=""):
        """(dotted name, module) for this module ('' ) and all descendants, depth first."""
        seen = set()
        stack = [(prefix, self)]
        while stack:
            name, m = stack.pop()
            if id(m) in seen:
                continue
            seen.add(id(m))
            yield name, m
            kids = list(m.named_children())
            for cname, c in reversed(kids):
                stack.append((f"{name}.{cname}" if name else cname, c))

    def modules(self):
        return [m for _, m in self.named_modules()]

    def named_parameters(self, prefix="", recurse=True):
        """(dotted name, Parameter) pairs: 'layers.0.weight', ... -- own parameters first, then each
        child's, depth first.  A parameter shared under several names is yielded once."""
        seen = set()
        mods = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mname, m in mods:
            for pname, p in m._named_own_parameters():
                if id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self, recurse=True):
        """The list of Parameters (see :meth:`named_parameters` for the order)."""
        return [p for _, p in self.named_parameters(recurse=recurse)]

    def num_parameters(self, trainable_only=False):
        """Total number of scalar parameters (shared ones counted once)."""
        return int(sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only))

    # ------------------------------------------------------------------ modes, grads, dtype
    def train(self, mode=True):
        """Set ``training = mode`` on this module and every descendant; returns self."""
        for _, m in self.named_modules():
            m.training = bool(mode)
        return self

    def eval(self):
        """``train(False)``: Dropout becomes the identity, RReLU uses its mean slope."""
        return self.train(False)

    def zero_grad(self, set_to_none=True):
        """Set every parameter's ``.grad`` to None (default) or, with ``set_to_none=False``, to
        dense zeros."""
        for p in self.parameters():
            p.grad = None if set_to_none or p.grad is None else np.zeros_like(p.data)

    def requires_grad_(self, flag=True):
        """Freeze (False) or unfreeze (True) every parameter; returns self."""
        for p in self.parameters():
            p.requires_grad = bool(flag)
        return self

    def to(self, dtype):
        """Cast every parameter to the floating ``dtype`` in place (``p.data`` is replaced by a cast
        copy; gradients are dropped).  Use ``model.to(np.float64)`` before a gradient check.  Create
        the optimizer afterwards: optimizer state keeps the dtype it was created with."""
        dt = np.dtype(dtype)
        if dt.kind != "f":
            raise TypeError(f"{type(self).__name__}.to: parameters must be floating, got dtype {dt}")
        for p in self.parameters():
            if p.data.dtype != dt:
                p.data = p.data.astype(dt)
            p.grad = None
        for b in self.buffers():
            if b.data.dtype.kind == "f" and b.data.dtype != dt:
                b.data = b.data.astype(dt)
        return self

    def double(self):
        return self.to(np.float64)

    def float(self):
        return self.to(np.float32)

    def apply(self, fn):
        """Call ``fn(module)`` on every descendant and on self (children first); returns self."""
        for m in reversed(self.modules()):
            fn(m)
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self):
        """OrderedDict name -> a copy of the parameter's ndarray, in :meth:`named_parameters` order,
        then the persistent buffers (:meth:`register_buffer`)."""
        sd = OrderedDict((n, p.data.copy()) for n, p in self.named_parameters())
        for n, b in self.named_buffers(persistent_only=True):
            sd[n] = b.data.copy()
        return sd

    def load_state_dict(self, state_dict, strict=True):
        """Copy the arrays of ``state_dict`` into the parameters of the same names.

        Everything is validated before anything is written: on any problem a
        :class:`StateDictError` lists all missing keys, unexpected keys and shape/dtype mismatches
        (name, expected, got), and the module is left unchanged.  With ``strict=False`` missing and
        unexpected keys are tolerated (and returned) but mismatches still raise.  Returns
        ``LoadResult(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state_dict, "keys"):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a mapping name -> array, "
                            f"got {type(state_dict).__name__}")
        own = OrderedDict(self.named_parameters())
        own.update(self.named_buffers(persistent_only=True))
        missing = [k for k in own if k not in state_dict]
        unexpected = [k for k in state_dict if k not in own]
        mismatched, arrays = [], {}
        for k, p in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            a = v.data if isinstance(v, Tensor) else np.asarray(v)
            if a.shape != p.shape:
                mismatched.append((k, f"shape {p.shape}", f"shape {a.shape}"))
            elif a.dtype != p.dtype:
                mismatched.append((k, f"dtype {p.dtype}", f"dtype {a.dtype}"))
            else:
                arrays[k] = a
        if mismatched or (strict and (missing or unexpected)):
            lines = []
            if strict and missing:
                lines.append(f"  missing keys ({len(missing)}): {missing}")
            if strict and unexpected:
                lines.append(f"  unexpected keys ({len(unexpected)}): {unexpected}")
            for k, exp, got in mismatched:
                lines.append(f"  mismatch for '{k}': expected {exp}, got {got}")
            raise StateDictError(f"{type(self).__name__}.load_state_dict: the state dict does not fit "
                                 f"this module (nothing was changed):\n" + "\n".join(lines),
                                 missing, unexpected, mismatched)
        for k, a in arrays.items():
            np.copyto(own[k].data, a)
        return LoadResult(missing, unexpected)

    # ------------------------------------------------------------------ calling, printing
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        if not _HOOKED:                # no module has ever had a forward hook: one global lookup
            return self.forward(*args, **kwargs)
        d = self.__dict__
        if not (d.get("_forward_pre_hooks") or d.get("_forward_hooks")):
            return self.forward(*args, **kwargs)
        for h in list(d.get("_forward_pre_hooks") or ()):
            r = h(self, args)
            if r is not None:
                args = r if isinstance(r, tuple) else (r,)
        out = self.forward(*args, **kwargs)
        for h in list(d.get("_forward_hooks") or ()):
            r = h(self, args, out)
            if r is not None:
                out = r
        return out

    def extra_repr(self):
        """One line of configuration shown inside the parentheses of ``repr``."""
        return ""

    def __repr__(self):
        extra = self.extra_repr()
        lines = []
        if not extra:
            for n, p in self._named_own_parameters():
                lines.append(f"({n}): Parameter(shape={p.shape}, dtype={p.dtype})")
        for n, m in self.named_children():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"({n}): {sub}")
        if not lines:
            return f"{type(self).__name__}({extra})"
        head = f"{type(self).__name__}(" + (extra + "," if extra else "")
        return head + "\n  " + "\n  ".join(lines) + "\n)"


def _as_buffer(value, where):
    if isinstance(value, Tensor):
        if value.requires_grad:
            raise TypeError(f"{where}: a buffer cannot require grad (use a Parameter, or .detach())")
        return value
    try:
        return Tensor(np.asarray(value))
    except TypeError as e:
        raise TypeError(f"{where}: a buffer must be an array or a Tensor: {e}") from None


class ModuleDict(Module):
    """A dict of modules that registers them under their keys (``'encoder.weight'``).  Mapping
    operations: ``md[key]``, ``md[key] = m``, ``del md[key]``, ``in``, ``len``, iteration over
    the keys (insertion order), ``keys()``, ``values()``, ``items()``, ``update()``, ``pop()``.

    >>> from chainrule import nn
    >>> heads = nn.ModuleDict({"a": nn.Linear(2, 3, rng=0), "b": nn.Linear(2, 1, rng=1)})
    >>> [n for n, _ in heads.named_parameters()]
    ['a.weight', 'a.bias', 'b.weight', 'b.bias']
    """

    def __init__(self, modules=None):
        super().__init__()
        self._items = {}
        if modules is not None:
            self.update(modules)

    def _key(self, k):
        if not isinstance(k, str) or not k or "." in k:
            raise KeyError(f"ModuleDict: keys must be non-empty strings without '.', got {k!r}")
        return k

    def __setitem__(self, key, module):
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict[{key!r}] =: expected a Module, got {type(module).__name__}")
        self._items[self._key(key)] = module

    def __getitem__(self, key):
        try:
            return self._items[key]
        except KeyError:
            raise KeyError(f"ModuleDict: no module {key!r} (keys: {list(self._items)})") from None

    def __delitem__(self, key):
        del self._items[key]

    def __contains__(self, key):
        return key in self._items

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def keys(self):
        return self._items.keys()

    def values(self):
        return self._items.values()

    def items(self):
        return self._items.items()

    def update(self, modules):
        items = modules.items() if hasattr(modules, "items") else modules
        for k, m in items:
            self[k] = m

    def pop(self, key):
        return self._items.pop(key)

    def named_children(self):
        return iter(list(self._items.items()))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleDict has no forward(); index it by key")


class ModuleList(Module):
    """A list of modules that registers them (named '0', '1', ...).  Indexing, slicing (a new
    ModuleList over the same modules), ``len``, iteration, ``append``, ``extend``, ``insert``."""

    def __init__(self, modules=()):
        super().__init__()
        self._items = []
        for m in modules:
            self.append(m)

    @staticmethod
    def _check(m, where):
        if not isinstance(m, Module):
            raise TypeError(f"{where}: expected a Module, got {type(m).__name__}")
        return m

    def append(self, module):
        self._items.append(self._check(module, f"{type(self).__name__}.append"))
        return self

    def extend(self, modules):
        for m in modules:
            self.append(m)
        return self

    def insert(self, index, module):
        self._items.insert(index, self._check(module, f"{type(self).__name__}.insert"))

    def named_children(self):
        return ((str(i), m) for i, m in enumerate(self._items))

    def __len__(self):
        return len(self._items)

    def __iter__(self):
        return iter(self._items)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return type(self)(self._items[i]) if type(self) is ModuleList else Sequential(*self._items[i])
        return self._items[i]

    def __setitem__(self, i, module):
        self._items[i] = self._check(module, f"{type(self).__name__}[{i}] =")

    def __delitem__(self, i):
        del self._items[i]

    def forward(self, *args, **kwargs):
        raise NotImplementedError("ModuleList has no forward(); iterate over it, or use Sequential")


class Sequential(ModuleList):
    """``Sequential(m1, m2, ...)(x) = m_k(…m2(m1(x)))``.  Children are named '0', '1', ...

    >>> from chainrule import nn
    >>> net = nn.Sequential(nn.Linear(4, 8, rng=0), nn.Tanh(), nn.Linear(8, 2, rng=1))
    >>> [n for n, _ in net.named_parameters()]
    ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *modules):
        if len(modules) == 1 and isinstance(modules[0], (list, tuple)):
            modules = tuple(modules[0])
        super().__init__(modules)

    def forward(self, x):
        for m in self._items:
            x = m(x)
        return x
