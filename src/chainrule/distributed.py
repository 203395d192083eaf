"""Data-parallel training over MPI (mpi4py + MPICH): ``pip install 'chainrule[mpi]'``.

Launch N copies of the same program with ``mpiexec -n N ...`` (or ``chainrule train MODEL
--workers N``, which runs ``mpiexec`` for you).  Every copy (a *rank*) builds the same model; the
:class:`~chainrule.train.Trainer` then notices it runs under MPI and, without any change to the
model code,

* broadcasts the parameters from rank 0 at the start and verifies them on every rank with a
  checksum (again after every epoch: ranks that drift apart are an error, not a silent fork);
* splits every global minibatch ``idx`` of the epoch's shuffle (the same seed on every rank, so
  every rank computes the same shuffle -- PyTorch ``DistributedSampler`` semantics) as
  ``idx[rank::N]``; every rank takes the same number of steps, and a rank whose share of the last,
  short batch is empty contributes a zero gradient;
* after backward, reduces the gradients so the update equals one process on the global batch.
  With ``loss_fn`` returning a *mean* over its batch's examples (plus terms that do not depend on
  the batch), rank r's gradient g_r on n_r of the batch's n examples is weighted:

      g = Σ_r (n_r / n) · g_r

  Dense gradients travel in **one** flat buffer per dtype and one ``Allreduce`` per step (with the
  training statistics, the "has a gradient" flags, the per-rank sparse row counts and the Ctrl-C
  flag appended to it, so they cost no extra message).  Row-sparse gradients (``nn.Embedding``'s
  :class:`~chainrule.RowSparseGrad`) are coalesced locally, exchanged as (indices, rows) with
  ``Allgatherv`` and coalesced again -- never densified to the full table;
* splits evaluation across the ranks when ``evaluate_fn`` is a
  :class:`~chainrule.train.ShardedEvaluation` (each rank predicts a contiguous range of examples,
  the predictions are gathered, and every rank computes the metrics from all of them: accuracy and
  F1 equal the single-process numbers);
* lets rank 0 alone print, write ``metrics.jsonl``, plots and checkpoints (after the other ranks
  have reached the same point; a barrier follows, so a checkpoint exists on return on every rank).

Faults: an uncaught exception on any rank prints that rank's traceback and aborts every rank
(``MPI_Abort``); Ctrl-C (or SIGINT to one rank) is carried in the next gradient allreduce so all
ranks stop after the same batch and rank 0 saves a resumable checkpoint; a collective that does
not complete within ``timeout`` seconds (a rank that never reached it) aborts all ranks with a
message saying so (``CHAINRULE_DIST_TIMEOUT``, default 600 s; 0 waits forever).

Without mpi4py, ``import chainrule`` and single-process training work as before; asking for more
than one process says what to install.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
import zlib

import numpy as np

_ABORT_GRACE = 0.5     # seconds between a rank's last message and MPI_Abort (see Communicator.abort)

__all__ = ["Communicator", "DataParallel", "init", "world", "is_main", "rank", "world_size",
           "launched_size", "require_mpi", "data_parallel", "launch", "mpiexec_path", "MPI_HINT",
           "DistributedError", "checksum"]

MPI_HINT = "pip install 'chainrule[mpi]'  (mpi4py and the mpich wheel; it also installs mpiexec)"

# environment variables that MPI launchers set in every process they start: (size, rank)
_LAUNCHER_VARS = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                  ("PMIX_SIZE", "PMIX_RANK"))


class DistributedError(RuntimeError):
    """Ranks that disagree (different models, parameters that drifted apart, a bad collective)."""


def _launcher_value(which):
    """The first launcher variable of kind ``which`` (0: size, 1: rank) that is set, else None."""
    for names in _LAUNCHER_VARS:
        v = os.environ.get(names[which])
        if v and v.isdigit():
            return int(v)
    return None


def launched_size():
    """The number of processes the MPI launcher started (1 when not started by ``mpiexec``), read
    from the launcher's environment variables so nothing is imported."""
    n = _launcher_value(0)
    return 1 if n is None else n


def require_mpi():
    """``mpi4py.MPI``, or an ImportError that says what to install."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"distributed training needs MPI: {MPI_HINT}") from e
    return MPI


def _default_timeout():
    v = os.environ.get("CHAINRULE_DIST_TIMEOUT")
    if v is None:
        return 600.0
    try:
        return float(v)
    except ValueError:
        raise ValueError(f"CHAINRULE_DIST_TIMEOUT must be a number of seconds, got {v!r}") from None


class Communicator:
    """An mpi4py communicator with what data parallelism needs: rank/size, collectives on NumPy
    arrays that give up after ``timeout`` seconds, JSON (never pickle) for small objects, and an
    abort that takes every rank down.

    Collectives are MPI's blocking calls (mpi4py releases the GIL inside them); a watchdog thread
    checks every 0.1 s whether the collective in progress has passed its deadline and, if so,
    prints which one and where and aborts every rank.  (Polling non-blocking collectives instead
    was measured 2x slower for 1 MB messages: MPICH progresses them only inside ``Test`` calls.)
    ``timeout=0`` waits forever.
    """

    def __init__(self, comm=None, timeout=None):
        MPI = require_mpi()
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = _default_timeout() if timeout is None else float(timeout)
        self.bytes_sent = 0          # payload bytes this rank contributed to collectives
        self.seconds = 0.0           # wall time spent inside collectives (waiting included)
        self.context = ""            # where the caller is (e.g. "epoch 2 batch 17"), for messages
        self._current = None         # (deadline, what) of the collective in progress
        self._watchdog = None

    # ------------------------------------------------------------------ waiting
    def _watch(self):
        while True:
            time.sleep(0.1)
            cur = self._current
            if cur is not None and time.perf_counter() > cur[0]:
                where = f" ({self.context})" if self.context else ""
                self.abort(f"{cur[1]}{where} did not complete within {self.timeout:g} s: at least one "
                           f"other rank never reached it (stuck, or died without MPI noticing). "
                           f"Aborting all {self.size} ranks. Set CHAINRULE_DIST_TIMEOUT (seconds) "
                           f"to wait longer, 0 to wait forever.")

    def _call(self, what, fn, *args, **kw):
        """Run the blocking collective ``fn(*args)`` under the watchdog."""
        t0 = time.perf_counter()
        if self.timeout > 0:
            if self._watchdog is None:
                import threading
                self._watchdog = threading.Thread(target=self._watch, name="chainrule-mpi-watchdog", daemon=True)
                self._watchdog.start()
            self._current = (t0 + self.timeout, what)
        try:
            return fn(*args, **kw)
        finally:
            self._current = None
            self.seconds += time.perf_counter() - t0

    # ------------------------------------------------------------------ collectives on arrays
    def allreduce_(self, buf, what="allreduce"):
        """Sum ``buf`` (contiguous ndarray) over all ranks, in place."""
        self.bytes_sent += buf.nbytes
        self._call(what, self.comm.Allreduce, self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        return buf

    def allgatherv(self, arr, counts, what="allgatherv"):
        """Concatenate every rank's ``arr`` along axis 0; ``counts[r]`` = rank r's number of rows
        (known to all ranks beforehand).  Trailing shape and dtype must agree."""
        arr = np.ascontiguousarray(arr)
        counts = [int(c) for c in counts]
        row = int(np.prod(arr.shape[1:], dtype=np.int64))
        out = np.empty((sum(counts),) + arr.shape[1:], dtype=arr.dtype)
        sizes = [c * row for c in counts]
        displs = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int).tolist()
        self.bytes_sent += arr.nbytes
        self._call(what, self.comm.Allgatherv, arr, [out, sizes, displs, self.MPI._typedict[arr.dtype.char]])
        return out

    def allgather_counts(self, n, what="allgather"):
        """Every rank's integer ``n``, as a list indexed by rank."""
        mine = np.array([n], dtype=np.int64)
        out = np.empty(self.size, dtype=np.int64)
        self._call(what, self.comm.Allgather, mine, out)
        return out.tolist()

    def allgather_array(self, arr, what="allgather"):
        """Concatenate every rank's ``arr`` along axis 0 when the row counts are not known: one
        small allgather of the shapes, then :meth:`allgatherv`.  Ranks with no rows may send an
        array of any trailing shape (it takes the others')."""
        arr = np.asarray(arr)
        shapes = self.allgather_json([list(arr.shape), arr.dtype.str], what=what + " (shapes)")
        full = [(s, d) for s, d in shapes if s and s[0] > 0] or shapes
        tail, dtype = tuple(full[0][0][1:]), np.dtype(full[0][1])
        if arr.ndim == 0:
            raise DistributedError(f"{what}: expected arrays with a first axis to concatenate, got a scalar")
        if arr.shape[0] == 0:
            arr = np.zeros((0,) + tail, dtype=dtype)
        for r, (s, d) in enumerate(shapes):
            if s and s[0] > 0 and (tuple(s[1:]) != tail or d != full[0][1]):
                raise DistributedError(f"{what}: rank {r} has rows of shape {tuple(s[1:])} {d}, "
                                       f"others {tail} {full[0][1]}")
        return self.allgatherv(arr.astype(dtype, copy=False), [s[0] for s, _ in shapes], what)

    def bcast_(self, arr, root=0, what="broadcast"):
        """Overwrite ``arr`` (contiguous) with root's, in place."""
        if self.rank == root:
            self.bytes_sent += arr.nbytes
        self._call(what, self.comm.Bcast, arr, root=root)
        return arr

    def barrier(self, what="barrier"):
        self._call(what, self.comm.Barrier)

    def allgather_json(self, obj, what="allgather"):
        """Every rank's JSON-serialisable ``obj``, as a list indexed by rank (bytes, not pickle)."""
        data = np.frombuffer(json.dumps(obj).encode(), dtype=np.uint8)
        counts = self.allgather_counts(len(data), what)
        blob = self.allgatherv(data, counts, what)
        offs = np.concatenate([[0], np.cumsum(counts)])
        return [json.loads(blob[offs[r]:offs[r + 1]].tobytes()) for r in range(self.size)]

    # ------------------------------------------------------------------ failure
    def abort(self, message, code=1):
        """Print ``message`` for this rank on stderr and take every rank down (``MPI_Abort``)."""
        sys.stdout.flush()
        print(f"chainrule.distributed: rank {self.rank} of {self.size}: {message}", file=sys.stderr, flush=True)
        # the launcher forwards a rank's stderr through its proxy, and MPI_Abort tears the proxies
        # down: give it a moment to pass the message on (seen lost once in a loaded CI run)
        time.sleep(_ABORT_GRACE)
        self.comm.Abort(code)
        os._exit(code)            # MPI_Abort may return before the launcher kills this process

    def fail(self, exc):
        """Print this rank's traceback of ``exc`` (with the rank) and abort every rank."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.abort(f"failed{f' at {self.context}' if self.context else ''}; stopping all ranks\n{tb}")


# ---------------------------------------------------------------------------------------- module state
_WORLD = None


def init(timeout=None):
    """The world :class:`Communicator` when this process was started by an MPI launcher with more
    than one process, else None (and nothing is imported).  Idempotent.  Installs an exception hook
    so an uncaught exception on one rank aborts every rank instead of leaving them hanging."""
    global _WORLD
    if _WORLD is not None:
        return _WORLD
    n = launched_size()
    if n <= 1:
        return None
    try:
        _WORLD = Communicator(timeout=timeout)
    except ImportError as e:
        raise ImportError(f"this process was started by an MPI launcher with {n} processes, but "
                          f"distributed training needs mpi4py: {MPI_HINT}") from e
    _install_excepthook(_WORLD)
    return _WORLD


def world():
    """The world :class:`Communicator` (see :func:`init`), or None in a single process."""
    return init()


def _install_excepthook(comm):
    previous = sys.excepthook

    def hook(tp, value, tb):
        if issubclass(tp, (KeyboardInterrupt, SystemExit)):
            return previous(tp, value, tb)
        sys.stdout.flush()
        sys.stderr.write(f"chainrule.distributed: rank {comm.rank} of {comm.size}: uncaught exception; "
                         f"stopping all ranks\n")
        previous(tp, value, tb)
        sys.stderr.flush()
        comm.comm.Abort(1)
        os._exit(1)
    sys.excepthook = hook


def abort_all(code=1):
    """Under MPI (after :func:`init`): take every rank down with exit status ``code``; else nothing."""
    if _WORLD is not None and _WORLD.size > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        _WORLD.comm.Abort(code)
        os._exit(code)


def rank():
    """This process's rank (0 in a single process); reads the launcher's environment."""
    return _WORLD.rank if _WORLD is not None else ((_launcher_value(1) or 0) if launched_size() > 1 else 0)


def world_size():
    """The number of processes (1 in a single process)."""
    return _WORLD.size if _WORLD is not None else launched_size()


def is_main():
    """True on rank 0 (and in a single process): the rank that prints and writes files."""
    return rank() == 0


# ---------------------------------------------------------------------------------------- checksums
def checksum(arrays):
    """CRC-32 of the bytes of ``arrays`` (in order), with their shapes and dtypes."""
    c = 0
    for a in arrays:
        a = np.ascontiguousarray(a)
        c = zlib.crc32(f"{a.shape}{a.dtype.str}".encode(), c)
        c = zlib.crc32(a.view(np.uint8).reshape(-1), c)
    return c


# ---------------------------------------------------------------------------------------- the strategy
class DataParallel:
    """What :class:`~chainrule.train.Trainer` calls to train data-parallel (see the module docstring).

    Methods, in the order the Trainer uses them: :meth:`sync_start` (broadcast + checksum, decorrelate
    dropout), :meth:`local_batch` (this rank's share of a global batch), :meth:`reduce` (gradients and
    statistics), :meth:`evaluate`, :meth:`verify` (checksum), :meth:`gather_json` and :meth:`barrier`
    (checkpoints), :meth:`fail`.
    """

    def __init__(self, comm=None, timeout=None):
        self.comm = comm if comm is not None else Communicator(timeout=timeout)
        self.rank, self.size = self.comm.rank, self.comm.size
        self._plan = None
        self.steps = 0
        self.reduce_seconds = 0.0

    @property
    def is_main(self):
        return self.rank == 0

    # -------------------------------------------------------------- start
    def sync_start(self, model, generators=(), decorrelate=True):
        """Check that every rank has the same parameter names/shapes/dtypes, broadcast rank 0's
        values and verify them by checksum; with ``decorrelate``, give every rank > 0 its own stream
        for each module generator (dropout masks must differ between ranks' examples)."""
        named = list(model.named_parameters())
        sig = [[n, list(p.shape), p.dtype.str] for n, p in named]
        sigs = self.comm.allgather_json(sig, "parameter layout check")
        for r, s in enumerate(sigs):
            if s != sigs[0]:
                diff = next((a, b) for a, b in zip(s + [None] * len(sigs[0]), sigs[0] + [None] * len(s)) if a != b)
                raise DistributedError(f"rank {r} built a different model than rank 0: {diff[0]} vs {diff[1]}")
        for n, p in named:
            if not p.data.flags.c_contiguous:
                p.data = np.ascontiguousarray(p.data)
            self.comm.bcast_(p.data, 0, f"broadcast of parameter {n!r}")
        self.verify(model, "after the initial broadcast")
        if decorrelate and self.rank > 0:
            for _, g in generators:
                g.bit_generator.state = np.random.default_rng([int(g.integers(2 ** 63)), self.rank]).bit_generator.state

    def verify(self, model, when):
        """Raise DistributedError unless every rank holds bit-identical parameters."""
        c = checksum(p.data for p in model.parameters())
        sums = self.comm.allgather_counts(c, f"parameter checksum {when}")
        bad = [r for r, s in enumerate(sums) if s != sums[0]]
        if bad:
            raise DistributedError(f"parameters differ between ranks {when}: checksum of rank 0 "
                                   f"{sums[0]:#010x}, of rank(s) {bad} {[hex(sums[r]) for r in bad]}")

    # -------------------------------------------------------------- data
    def local_batch(self, dataset, idx):
        """``(batch or None, n_local, n_global)``: this rank's share ``idx[rank::N]`` of the global
        batch ``idx``.  A dataset whose examples are themselves batches (e.g.
        :class:`~chainrule.models.sequence.BucketedBatches`) defines
        ``split_batch(idx, rank, size)`` returning the same triple, to split inside them."""
        split = getattr(dataset, "split_batch", None)
        if split is not None:
            return split(idx, self.rank, self.size)
        local = np.asarray(idx)[self.rank::self.size]
        return (dataset.batch(local) if len(local) else None), len(local), len(idx)

    # -------------------------------------------------------------- gradients
    def _make_plan(self, params):
        """Once: which parameters travel row-sparse (a RowSparseGrad on any rank at the first step)
        and the layout of the flat buffers (one per dtype; the header rides in the largest)."""
        from .autograd import RowSparseGrad
        kinds = [1 if type(p.grad) is RowSparseGrad else 0 for p in params]
        allk = self.comm.allgather_json(kinds, "gradient layout exchange")
        sparse = [i for i in range(len(params)) if any(k[i] for k in allk)]
        dense = [i for i in range(len(params)) if i not in set(sparse)]
        groups = {}
        for i in dense:
            groups.setdefault(params[i].dtype.str, []).append(i)
        order = sorted(groups, key=lambda d: -sum(params[i].size for i in groups[d]))
        plan = {"sparse": sparse, "groups": []}
        for gi, d in enumerate(order):
            offs, off = [], 0
            for i in groups[d]:
                offs.append((i, off, params[i].size))
                off += params[i].size
            plan["groups"].append({"dtype": np.dtype(d), "items": offs, "size": off})
        if not plan["groups"]:       # only sparse parameters: the header travels alone
            plan["groups"].append({"dtype": np.dtype(np.float64), "items": [], "size": 0})
        self.n_params = len(params)
        return plan

    def reduce(self, params, weight, scalars):
        """Replace each parameter's ``.grad`` by Σ_r weight_r · grad_r over the ranks, and return the
        sums over ranks of ``scalars`` (a 1-d float array: statistics and flags).

        Parameters without a gradient on every rank keep ``grad = None``; a rank without a
        gradient for a parameter contributes zero.  Dense gradients become views into the reduce
        buffer (valid until the next step)."""
        from .autograd import RowSparseGrad
        t0 = time.perf_counter()
        if self._plan is None or self.n_params != len(params):
            self._plan = self._make_plan(params)
            self._bufs = None
        plan = self._plan
        ns, k = len(plan["sparse"]), len(scalars)
        head_len = k + len(params) + ns * self.size     # scalars, has-grad flags, sparse counts per rank
        if self._bufs is None:
            self._bufs = [np.empty(g["size"] + (head_len if gi == 0 else 0), dtype=g["dtype"])
                          for gi, g in enumerate(plan["groups"])]
        w = float(weight)
        flags = np.zeros(len(params))
        for g, buf in zip(plan["groups"], self._bufs):
            for i, off, size in g["items"]:
                view = buf[off:off + size]
                gr = params[i].grad
                if gr is None or w == 0.0:
                    view[...] = 0
                    continue
                flags[i] = 1.0
                if type(gr) is RowSparseGrad:
                    view[...] = 0
                    gr.add_to(view.reshape(params[i].shape))
                    view *= view.dtype.type(w)
                else:
                    np.multiply(np.asarray(gr).reshape(-1), w, out=view, casting="unsafe")
        # sparse: coalesce locally, weight, and announce this rank's row count in its own slot
        local_sparse = []
        counts_slot = np.zeros(ns * self.size)
        for j, i in enumerate(plan["sparse"]):
            gr = params[i].grad
            if gr is None or w == 0.0:
                local_sparse.append(None)
                continue
            if type(gr) is not RowSparseGrad:          # a dense gradient for a usually-sparse table
                gr = RowSparseGrad(np.arange(params[i].shape[0]), np.asarray(gr), params[i].shape)
            gr = gr.coalesce()
            flags[i] = 1.0
            local_sparse.append(gr)
            counts_slot[j * self.size + self.rank] = len(gr.indices)
        head = self._bufs[0][plan["groups"][0]["size"]:]
        head[:k] = scalars
        head[k:k + len(params)] = flags
        head[k + len(params):] = counts_slot
        for gi, buf in enumerate(self._bufs):
            if buf.size:
                self.comm.allreduce_(buf, "gradient allreduce" + (f" (buffer {gi})" if gi else ""))
        head = self._bufs[0][plan["groups"][0]["size"]:]
        flags = head[k:k + len(params)]
        counts = np.rint(head[k + len(params):]).astype(np.int64).reshape(ns, self.size) if ns else None
        for g, buf in zip(plan["groups"], self._bufs):
            for i, off, size in g["items"]:
                params[i].grad = buf[off:off + size].reshape(params[i].shape) if flags[i] > 0 else None
        for j, i in enumerate(plan["sparse"]):
            p = params[i]
            c = counts[j]
            if c.sum() == 0:
                p.grad = None
                continue
            mine = local_sparse[j]
            row = p.shape[1:]
            if mine is None:
                idx_l, val_l = np.zeros(0, np.int64), np.zeros((0,) + row, dtype=p.dtype)
            else:
                idx_l = mine.indices.astype(np.int64)
                val_l = np.ascontiguousarray(mine.values, dtype=p.dtype) * p.dtype.type(w)
            idx = self.comm.allgatherv(idx_l, c, "sparse gradient allgatherv (indices)")
            val = self.comm.allgatherv(val_l, c, "sparse gradient allgatherv (rows)")
            p.grad = RowSparseGrad(idx, val, p.shape).coalesce()
        self.steps += 1
        self.reduce_seconds += time.perf_counter() - t0
        return np.array(head[:k], dtype=np.float64)

    # -------------------------------------------------------------- evaluation
    def evaluate(self, evaluate_fn, model, data):
        """``evaluate_fn(model, data)`` split across the ranks when it is a
        :class:`~chainrule.train.ShardedEvaluation`: rank r predicts examples
        [n·r/N, n·(r+1)/N), the predictions are gathered in rank order and every rank computes the
        metrics from all of them.  Any other ``evaluate_fn`` runs whole on every rank."""
        predict = getattr(evaluate_fn, "predict", None)
        finish = getattr(evaluate_fn, "finish", None)
        if predict is None or finish is None:
            return evaluate_fn(model, data)
        n = len(data)
        lo, hi = n * self.rank // self.size, n * (self.rank + 1) // self.size
        parts = predict(model, data, lo, hi)
        gathered = tuple(self.comm.allgather_array(np.asarray(a), f"evaluation gather ({i})")
                         for i, a in enumerate(parts))
        return finish(data, gathered)

    # -------------------------------------------------------------- checkpoints, sync, failure
    def gather_json(self, obj, what="allgather"):
        return self.comm.allgather_json(obj, what)

    def barrier(self, what="barrier"):
        self.comm.barrier(what)

    def fail(self, exc):
        self.comm.fail(exc)

    def stats(self):
        """Counters for benchmarks: steps, seconds in :meth:`reduce`, seconds in collectives, bytes."""
        return {"steps": self.steps, "reduce_seconds": self.reduce_seconds,
                "collective_seconds": self.comm.seconds, "bytes_sent": self.comm.bytes_sent}


# ---------------------------------------------------------------------------------------- launching
def mpiexec_path():
    """The ``mpiexec`` next to this Python (what the mpich wheel installs), else the one on PATH."""
    import shutil
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")


def strip_workers(argv):
    """``argv`` without ``--workers N`` / ``--workers=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            out.append(a)
    return out


def launch(argv, workers):
    """Run ``python -m chainrule ARGV`` on ``workers`` processes with ``mpiexec -n WORKERS`` and
    return its exit status.  Each process gets ``cores // workers`` BLAS threads unless
    OMP/OPENBLAS/MKL_NUM_THREADS are set.  Ctrl-C goes to mpiexec, which forwards it to every rank
    (they stop after the same batch and rank 0 saves a checkpoint)."""
    import importlib.util
    import signal
    import subprocess
    exe = mpiexec_path()
    if exe is None or importlib.util.find_spec("mpi4py") is None:
        missing = "mpiexec" if exe is None else "mpi4py"
        raise ImportError(f"--workers {workers}: {missing} not found; data-parallel training needs MPI: {MPI_HINT}")
    env = dict(os.environ)
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    cmd = [exe, "-n", str(workers), sys.executable, "-m", "chainrule", *strip_workers(argv)]
    proc = subprocess.Popen(cmd, env=env)
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)    # mpiexec handles Ctrl-C
    except ValueError:            # not the main thread
        previous = None
    try:
        return proc.wait()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def data_parallel(timeout=None):
    """A :class:`DataParallel` over the world when started by an MPI launcher with more than one
    process, else None."""
    comm = init(timeout)
    return DataParallel(comm) if comm is not None else None
