"""Data-parallel bilevel optimization on ``torch.distributed``.

A script launched as ``torchrun --nproc_per_node N script.py`` that calls
``torch.distributed.init_process_group`` and then :func:`bilevel.solve` runs one solve on N
processes: :func:`bilevel.solve` finds the process group (``distributed=None``, the default,
when it has more than one process; ``distributed=True`` uses it whatever its size, False
ignores it).  Every process is given the same (global) problem and data; each computes on
its slice of every global batch, and every process holds the same x and y at every step.

The global objective
--------------------
The batch streams are those of a single process (same seed, same order: every process
draws the same global batch), and the objectives are evaluated data-parallel.  A global
batch of B samples is split into N contiguous slices, process r taking
n_r = floor(B / N) + (1 if r < B mod N else 0) samples (the first B mod N processes one
more: ``torch.tensor_split``'s rule), and

    F(x, y; batch) = sum_r (n_r / B) f(x, y; slice_r)

which for an objective that is a mean over the batch's samples (plus terms that do not
depend on the batch, such as a weight penalty: the weights n_r / B sum to 1) is exactly
f(x, y; batch).  A batch is split along the first dimension of its tensors: a tensor, or
a (nested) tuple / list / dict of them; every tensor with at least one dimension must
have the same first size B (the samples), B >= N; 0-dim tensors and other values go to
every process unchanged.  Objectives that couple the samples of a batch (batch norm, a
median) are not means and are not split exactly.  Every process draws the whole global
batch and keeps its slice: free for tensors already in memory (the slices are views), but a
``DataLoader`` that reads or decodes samples does so for the whole batch on every process.

Full-batch data (``outer_data=None`` / ``inner_data=None``, the objective holding its
data) cannot be split from outside: every process then evaluates the whole objective,
with the same result on each and no communication (and no speed-up); so does
``method="mbbo"`` on a :class:`~bilevel.MultiBlockProblem`.  To split a
full-batch objective, pass its data as a one-batch list, ``inner_data=[(X, t)]``, and
read it from ``batch``.

Where the all-reduce sits
-------------------------
On the derivatives, once per product, and on the values, outside autograd.  The
algorithms take gradients, Hessian-vector products, mixed products and unrolled (ITD)
derivatives of f and g with ``torch.func`` (grad, vjp, jvp, nested) and
``torch.autograd.grad(create_graph=True)``; every such derivative with respect to the
replicated x and y is a backward pass through the objective, and the sum over processes
of each slice's contribution to it is the global derivative.  So the one reduction
point is an autograd function around the inputs (Megatron-LM's "copy to the parallel
region"), applied once to all the leaves of x and y together:

    F(x, y) = w_r f( Copy(x, y); slice_r )   + the value correction below

* ``Copy`` (replicated -> per-process): identity forward; backward all-reduces the
  cotangents of the inputs being differentiated, concatenated into one flat buffer (one
  collective per backward pass, whatever the number of leaves).  Its backward is
  ``Reduce`` (all-reduce forward, ``Copy`` backward) as an autograd function, so
  derivatives of any order compose: grad F = sum_r w_r grad f_r (one all-reduce), a
  Hessian-vector product H v (vjp of grad or jvp of grad) = sum_r w_r H_r v (one
  all-reduce per product), a mixed product (d^2 F / dx dy)^T u (one), an unrolled ITD
  step and its backward pass likewise.
* The value F = sum_r w_r f_r is all-reduced as a plain number, outside autograd (the
  tensor under ``torch.func``'s wrappers), and returned as total + (local - local): the
  all-reduced total bitwise (the same on every process), carrying the derivatives of the
  local term (zero in value).  No autograd node, and no collective in a backward pass,
  belongs to the value.  The one thing this leaves per-process is a forward-mode
  derivative of the value itself (``jvp`` of F, not of grad F: no algorithm takes one).

Every method (aid-*, itd, borep, penalty, newton inner steps, power iterations) then
runs unchanged on the global F and G: the wrapper is the one place that knows about
processes.  Decisions taken on values (CG convergence, line searches, the stale-step
guard) see the same all-reduced numbers on every process, so all processes take the same
branches and issue the same collectives in the same order.  The all-reduce's result is
bitwise the same on every process (gloo and NCCL), so x and y stay bitwise identical.
CUDA graphs are off in a data-parallel solve (a captured or skipped collective would
desynchronize the processes).

Weighting and rounding: F sums the slices' weighted means, a single process sums the
samples in one reduction; the two agree to rounding (2e-16 relative in float64 after 20
outer steps of aid-cg, itd and penalty in the tests).  Where a discrete decision sits on
that rounding (a CG solve's stopping test with ``solve_tol=1e-4``), one process and N may
part by more (4.5e-6 in x on an MLP data-cleaning run; 6e-12 with ``solve_tol=1e-12``):
the same run with other roundings, not another method.

Failures: an error raised on every process (bad input, a checkpoint of another run, a
non-finite value, which all processes see alike) is raised on every process; an error
raised on one process only (its own bug, out of memory) leaves the others waiting in their
next collective until the ``timeout`` of ``init_process_group``, and torchrun then ends the
group.

References:
    M. Shoeybi et al. Megatron-LM: training multi-billion parameter language models using
    model parallelism. 2019 (the f / g conjugate operators of section 3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils._pytree import tree_flatten, tree_unflatten

from .linalg import tree as T
from .linalg.tree import Tree
from .problem import BilevelProblem

__all__ = ["DataParallel", "DistributedProblem", "data_parallel", "split_batch"]


# ---------------------------------------------------------------------------------------
# the two conjugate autograd functions

def _all_reduce_sum(tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Sums over the processes of the tensors, as one coalesced all-reduce."""
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start:start + t.numel()].view_as(t))
        start += t.numel()
    return tuple(out)


class _Copy(torch.autograd.Function):
    """Replicated -> per-process: identity forward; backward sums over the processes the
    cotangents of the inputs that need them, in one all-reduce (``_Reduce``)."""

    @staticmethod
    def forward(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.view_as(t) for t in tensors)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *cotangents: torch.Tensor) -> tuple:
        # only the inputs being differentiated (y alone for grad_y g: x's zeros would
        # travel for nothing)
        wanted = [i for i, needed in enumerate(ctx.needs_input_grad) if needed]
        summed = iter(_Reduce.apply(*(cotangents[i] for i in wanted)) if wanted else ())
        return tuple(next(summed) if needed else None for needed in ctx.needs_input_grad)

    @staticmethod
    def jvp(ctx: Any, *tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.view_as(t) for t in tangents)


class _Reduce(torch.autograd.Function):
    """Per-process -> replicated: summed over the processes forward (one all-reduce),
    ``_Copy`` backward."""

    @staticmethod
    def forward(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _all_reduce_sum(tensors)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *cotangents: torch.Tensor) -> tuple:
        return _Copy.apply(*cotangents)

    @staticmethod
    def jvp(ctx: Any, *tangents: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _Reduce.apply(*tangents)


def _copy_trees(*trees: Tree) -> list[Tree]:
    """``_Copy`` of every tensor of the trees, in one node (one all-reduce per backward)."""
    leaves, spec = tree_flatten(list(trees))
    return tree_unflatten(list(_Copy.apply(*leaves)), spec)


def _underlying(t: torch.Tensor) -> torch.Tensor:
    """The plain tensor under ``torch.func``'s wrappers (grad / jvp levels), detached."""
    while torch._C._functorch.is_functorch_wrapped_tensor(t):
        t = torch._C._functorch.get_unwrapped(t)
    return t.detach()


def _global_value(local: torch.Tensor) -> torch.Tensor:
    """sum over the processes of ``local`` (a value), all-reduced outside autograd and
    returned as total + (local - local): bitwise the total on every process, with the
    derivatives of ``local`` (which ``_Copy`` sums over the processes)."""
    here = _underlying(local)
    total = here.clone()
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total + (local - here)


# ---------------------------------------------------------------------------------------
# batches

def split_batch(batch: Any, rank: int, world_size: int) -> tuple[Any, float]:
    """Process ``rank``'s contiguous slice of a global batch, and its weight n_r / B.

    Args:
        batch: a tensor or a (nested) tuple / list / dict of tensors and other values.
        rank, world_size: this process and the number of processes N.

    Returns:
        (slice, n_r / B): the batch with every tensor of >= 1 dimension cut to its rows
        [start_r, start_r + n_r) (views, no copy), other values unchanged.

    Raises:
        ValueError: no tensor with a sample dimension, tensors with different first sizes
            (names them), or fewer samples than processes.
    """
    sizes: dict[str, int] = {}
    _sample_sizes(batch, "batch", sizes)
    if not sizes:
        raise ValueError("bilevel.distributed: a batch has no tensor with a sample dimension to "
                         "split over the processes (got "
                         f"{type(batch).__name__}); pass tensors whose first dimension indexes "
                         "the samples, or full-batch data as None")
    distinct = set(sizes.values())
    if len(distinct) > 1:
        listed = ", ".join(f"{path}: {size}" for path, size in sizes.items())
        raise ValueError("bilevel.distributed: the tensors of a batch must share their first "
                         f"dimension (the samples) to be split over the processes; got {listed}")
    total = distinct.pop()
    if total < world_size:
        raise ValueError(f"bilevel.distributed: a global batch of {total} samples cannot be "
                         f"split over {world_size} processes; use batches of at least "
                         f"{world_size} samples")
    base, extra = divmod(total, world_size)
    count = base + (1 if rank < extra else 0)
    start = rank * base + min(rank, extra)
    return _cut(batch, start, count), count / total


def _sample_sizes(obj: Any, path: str, sizes: dict[str, int]) -> None:
    if isinstance(obj, torch.Tensor):
        if obj.ndim >= 1:
            sizes[path] = obj.shape[0]
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _sample_sizes(value, f"{path}[{key!r}]", sizes)
    elif isinstance(obj, (tuple, list)):
        for i, value in enumerate(obj):
            _sample_sizes(value, f"{path}[{i}]", sizes)


def _cut(obj: Any, start: int, count: int) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj[start:start + count] if obj.ndim >= 1 else obj
    if isinstance(obj, Mapping):
        return type(obj)({k: _cut(v, start, count) for k, v in obj.items()})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a namedtuple
        return type(obj)(*(_cut(v, start, count) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_cut(v, start, count) for v in obj)
    return obj


# ---------------------------------------------------------------------------------------
# the process group and the problem seen through it

@dataclass(frozen=True)
class DataParallel:
    """This process's place in a data-parallel solve (the default process group).

    Attributes:
        rank, world_size: this process and the number of processes.
        device: where the problem lives (and the small tensors of the collectives).
    """

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and shows progress."""
        return self.rank == 0

    def problem(self, problem: BilevelProblem) -> BilevelProblem:
        """``problem`` with globally averaged objectives (after checking that every process
        was given the same x0, y0 and data, see :meth:`check_same_problem`); a problem
        without data (both objectives full batch, e.g. a ``MultiBlockProblem``) has nothing
        to split and is returned as it is (each process computes it whole)."""
        self.check_same_problem(problem)
        if not problem.stochastic:
            return problem
        return DistributedProblem(problem, self)

    def on_main(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` run on rank 0, its result (or the error it raised) on every process.

        The result travels pickled: keep it to plain data and CPU tensors."""
        if self.is_main:
            try:
                box = [("ok", fn())]
            except Exception as err:  # noqa: BLE001 (raised on every process below)
                box = [("error", err)]
        else:
            box = [None]
        dist.broadcast_object_list(box, src=0, device=self._object_device)
        kind, value = box[0]
        if kind == "error":
            raise value
        return value

    def main_value(self, value: float | bool) -> float:
        """Rank 0's value of a number (e.g. a clock reading, a callback's stop decision)."""
        buffer = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.broadcast(buffer, src=0)
        return float(buffer.item())

    def barrier(self) -> None:
        """Wait for every process (an all-reduce on the problem's device: no guess of the
        GPU, as ``dist.barrier`` makes under NCCL)."""
        dist.all_reduce(torch.zeros(1, device=self.device))

    def check_same_problem(self, problem: BilevelProblem) -> None:
        """Raise the same ValueError on every process unless all hold rank 0's x0, y0 and
        f(x0, y0), g(x0, y0) on the first batches (a y0 drawn without a seed, or a
        per-process shard passed as data, would otherwise run silently wrong)."""
        differs = []
        for name, tree in (("x0", problem.x0), ("y0", problem.y0)):
            for leaf in T.leaves(tree):
                reference = leaf.clone()
                dist.broadcast(reference, src=0)
                if not torch.equal(reference, leaf):
                    differs.append(name)
        values = torch.tensor(problem.initial_values, dtype=torch.float64, device=self.device)
        reference = values.clone()
        dist.broadcast(reference, src=0)
        for label, here, there in zip(("f(x0, y0)", "g(x0, y0)"), values.tolist(),
                                      reference.tolist()):
            # with the same x0 and y0, other values mean other data (or objectives)
            if not differs and not math.isclose(here, there, rel_tol=1e-9, abs_tol=1e-300):
                differs.append(f"{label} on the first batch: other data")
        flags = torch.zeros(self.world_size, dtype=torch.float64, device=self.device)
        flags[self.rank] = float(bool(differs))
        dist.all_reduce(flags)
        bad = [r for r, flag in enumerate(flags.tolist()) if flag]
        if bad:
            mine = f" (here: {', '.join(dict.fromkeys(differs))})" if differs else ""
            raise ValueError(
                f"bilevel.distributed: process(es) {bad} were given another problem than "
                f"process 0{mine}; every process must build the same x0, y0 and pass the "
                "same global data (each computes on its own slice of every batch): call "
                "torch.manual_seed with the same seed on every process before building the "
                "problem (a random x0 / y0, and the first batch of a shuffled DataLoader, "
                "come from torch's global generator)")

    @property
    def _object_device(self) -> torch.device | None:
        return self.device if dist.get_backend() == "nccl" else None


def data_parallel(distributed: bool | None, device: torch.device) -> DataParallel | None:
    """The data-parallel context of a solve, or None for a single-process solve.

    Args:
        distributed: None: use the default process group when one is initialized with
            more than one process; True: use it whatever its size (it must exist);
            False: never (each process solves on its own).
        device: the problem's device.

    Raises:
        ValueError: ``distributed=True`` without an initialized process group, or an NCCL
            group with the problem on the CPU.
        TypeError: ``distributed`` is not None / True / False.
    """
    if distributed is not None and not isinstance(distributed, bool):
        raise TypeError(f"solve: distributed must be None, True or False, got {distributed!r}")
    initialized = dist.is_available() and dist.is_initialized()
    if distributed is False or (distributed is None and
                                (not initialized or dist.get_world_size() == 1)):
        return None
    if not initialized:
        raise ValueError("solve(distributed=True): no torch.distributed process group is "
                         "initialized; call torch.distributed.init_process_group first (under "
                         "torchrun, which sets the environment it reads)")
    if dist.get_backend() == "nccl" and device.type != "cuda":
        raise ValueError(f"solve: the process group uses NCCL, which needs the problem on a GPU, "
                         f"but x0 is on {device}; put x0, y0 and the data on "
                         "cuda:LOCAL_RANK, or initialize the group with backend='gloo'")
    return DataParallel(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


class DistributedProblem(BilevelProblem):
    """A :class:`BilevelProblem` whose objectives are the global, data-parallel F and G of
    the module docstring: ``outer_at(batch)`` and ``inner_at(batch)`` (and the Gauss-Newton
    split) evaluate this process's slice of ``batch`` and all-reduce through the
    Copy / Reduce pair.  Full-batch objectives (``batch=None``) are evaluated whole.
    Everything else (x0, y0, data, first batches, initial values) is the given problem's.
    """

    def __init__(self, problem: BilevelProblem, parallel: DataParallel) -> None:
        # no second validation: the problem was validated when built
        self.__dict__.update(problem.__dict__)
        self.local = problem
        self.parallel = parallel

    def _slice(self, batch: Any) -> tuple[Any, float]:
        return split_batch(batch, self.parallel.rank, self.parallel.world_size)

    def _global(self, fn: Callable, batch: Any) -> Callable[[Tree, Tree], torch.Tensor]:
        if batch is None:
            return lambda x, y: fn(x, y, None)
        part, weight = self._slice(batch)

        def objective(x: Tree, y: Tree) -> torch.Tensor:
            return _global_value(weight * fn(*_copy_trees(x, y), part))
        return objective

    def outer_at(self, batch: Any) -> Callable[[Tree, Tree], torch.Tensor]:
        return self._global(self.outer, batch)

    def inner_at(self, batch: Any) -> Callable[[Tree, Tree], torch.Tensor]:
        return self._global(self.inner, batch)

    def inner_split_at(self, batch: Any) -> tuple[Callable, Callable] | None:
        """(z, l) of the global G = l(x, z(x, y)): z is this process's outputs on its slice
        (per-process values, not reduced); l sums the weighted loss over the processes, so
        the Gauss-Newton product J^T H_l J v = sum_r w_r J_r^T H_l,r J_r v takes one
        all-reduce (the backward of z's ``_Copy``)."""
        if self.inner_output is None or batch is None:
            return super().inner_split_at(batch)
        part, weight = self._slice(batch)
        z, loss = self.inner_output, self.inner_loss
        return ((lambda x, y: z(*_copy_trees(x, y), part)),
                (lambda x, out: _global_value(weight * loss(*_copy_trees(x), out, part))))

    def __repr__(self) -> str:
        return (f"DistributedProblem({self.local!r}, process {self.parallel.rank} of "
                f"{self.parallel.world_size})")
